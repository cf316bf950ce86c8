package ptrace

import (
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/vmspace/vmspace/hostarch"
	"golang.org/x/sys/unix"
)

// commPage mirrors the head of the comm page (offsets in stub.go), shared
// with the stub process. The protocol: the requester (a goroutine holding
// tracer.mu) writes cmd, nr and args while state is commIdle, then sets
// state to commReq with a locked instruction; the serve loop makes the
// call, writes result, sets state to commDone with a locked exchange and
// wakes the requester if waiting is set; the requester reads result and
// sets state back to commIdle. The tracer sets commDead when the stub dies.
type commPage struct {
	// state is commIdle, commReq, commDone or commDead; a futex word.
	state atomic.Uint32
	// waiting is nonzero while the requester may sleep on state.
	waiting atomic.Uint32
	// cmd is cmdSyscall (the stub's serve loop also knows cmdTrap, which
	// nothing sends now). Written by the requester.
	cmd uint64
	// nr and args are the system call. Written by the requester.
	nr   uint64
	args [6]uint64
	// result is the raw result (rax). Written by the stub.
	result uint64
	// seq is incremented by the stub's inject loop (unused now) after
	// each system call.
	seq uint64
}

func init() {
	var c commPage
	if unsafe.Offsetof(c.state) != commState || unsafe.Offsetof(c.waiting) != commWaiting ||
		unsafe.Offsetof(c.cmd) != commCmd || unsafe.Offsetof(c.nr) != commNr ||
		unsafe.Offsetof(c.args) != commArgs || unsafe.Offsetof(c.result) != commResult ||
		unsafe.Offsetof(c.seq) != commSeq {
		panic("ptrace: commPage does not match the comm page layout")
	}
}

// comm is the tracer's mapping of a stub's comm page.
type comm struct {
	// fd is the memfd holding the page; passed to the stub at start-up,
	// then closed (-1). Only used during start-up.
	fd int
	// mem is the host mapping of the page. Immutable until unmap.
	mem []byte
	// page is the head of mem.
	page *commPage
}

// newComm makes a comm page.
func newComm() (*comm, error) {
	fd, err := unix.MemfdCreate("vmspace-stub-comm", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("ptrace: memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, hostarch.PageSize); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ptrace: ftruncate: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, hostarch.PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ptrace: mapping the comm page: %w", err)
	}
	c := &comm{fd: fd, mem: mem, page: (*commPage)(unsafe.Pointer(&mem[0]))}
	copy(mem[commMsghdr:], msghdrTemplate())
	return c, nil
}

// closeFD closes the memfd once the stub has mapped it.
func (c *comm) closeFD() {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}

// release unmaps the page.
func (c *comm) release() {
	c.closeFD()
	if c.mem != nil {
		unix.Munmap(c.mem)
		c.mem, c.page = nil, nil
	}
}

// futexWake wakes up to n waiters on w (a shared futex: the stub is
// another process).
func futexWake(w *atomic.Uint32, n int) {
	unix.RawSyscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWakeOp, uintptr(n), 0, 0, 0)
}

// futexWait sleeps while *w == v, for at most d.
func futexWait(w *atomic.Uint32, v uint32, d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWaitOp, uintptr(v), uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// yieldSpins is how many times a requester yields the CPU, checking for the
// result, before it sleeps.
var yieldSpins = 20

// deathPollInterval bounds how long a requester sleeps before checking
// whether the stub died without the tracer telling it (which it always
// should: this is a safety net).
const deathPollInterval = 50 * time.Millisecond

// request makes the parked stub make system call nr and waits for its
// result. The caller holds the tracer's mu, so the stub is parked in its
// serve loop (or dead). exited is closed when the tracer has gone.
func (c *comm) request(nr uint64, args *[6]uintptr, exited <-chan struct{}) (uint64, error) {
	p := c.page
	p.cmd = cmdSyscall
	p.nr = nr
	for i, a := range args {
		p.args[i] = uint64(a)
	}
	// CompareAndSwap is a locked instruction: the arguments are visible
	// before the state.
	if !p.state.CompareAndSwap(commIdle, commReq) {
		return 0, errDeadComm
	}
	futexWake(&p.state, 1)
	for spins := 0; ; spins++ {
		switch s := p.state.Load(); s {
		case commDone:
			r := p.result
			p.state.Store(commIdle)
			return r, nil
		case commDead:
			return 0, errDeadComm
		case commReq:
			if spins < yieldSpins {
				// Let the stub run: on the same CPU this switches
				// to it (and it need not wake us); on another, it
				// is a short spin.
				unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
				continue
			}
			// Waiting is set with a locked store before the kernel
			// compares state; the stub sets state with a locked
			// exchange before reading waiting: one of us sees the
			// other's write.
			p.waiting.Store(1)
			futexWait(&p.state, commReq, deathPollInterval)
			p.waiting.Store(0)
			select {
			case <-exited:
				if p.state.Load() == commReq {
					return 0, errDeadComm
				}
			default:
			}
		default:
			return 0, errDeadComm
		}
	}
}

// errDeadComm says the stub died during a comm request; callers replace it
// with the tracer's account of the death.
var errDeadComm = fmt.Errorf("%w (during a request)", ErrStubDead)

// futex(2) operations (on shared futexes: no FUTEX_PRIVATE_FLAG).
const (
	futexWaitOp = 0
	futexWakeOp = 1
)
