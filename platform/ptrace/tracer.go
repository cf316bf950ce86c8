package ptrace

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/internal/lockrank"
)

// ErrStubDead is wrapped by every error from an AddressSpace whose stub
// process has died (killed by someone, or by the tracer after it
// misbehaved) or has been released.
var ErrStubDead = errors.New("ptrace: stub process is dead")

// tracer is a stub process and the goroutine, locked to its own OS thread
// (the tracer thread), that traces it: every ptrace request for the stub is
// made there.
//
// After its start-up (system calls injected with registers set, Inject),
// the stub is parked: running its serve loop, sleeping on the comm page's
// futex between requests. Any goroutine holding mu can have it make
// system calls through the comm page, without ptrace. The tracer
// goroutine sits in wait4, to learn of the stub's death or of signals
// (which it suppresses), at once.
type tracer struct {
	// pid is the stub's process id. Immutable after start.
	pid int
	// comm is the comm page. Immutable after start (the page itself is
	// shared memory with its own protocol, see comm.request).
	comm *comm
	// mem is the stub's /proc/PID/mem, open read-write. Immutable after
	// start; closed by the owner after the tracer has exited.
	mem *os.File

	// mu gives a goroutine the stub to itself for one operation (never
	// held by the tracer goroutine). Invariant: while mu is free, the
	// stub is parked or dead. mu protects the state of the AddressSpace
	// that operations use (its file cache, its HostMappings).
	mu lockrank.Mutex[lockrank.PlatformTag]
	// exited is closed when the tracer goroutine has returned (and with it
	// its thread: the stub, if still alive, dies through
	// PTRACE_O_EXITKILL and Pdeathsig).
	exited chan struct{}
	// deadErr is the reason the stub died (wrapping ErrStubDead), nil while
	// it lives. Set once, by the tracer goroutine.
	deadErr atomic.Pointer[error]
	// killReason, if set, says why the stub was killed by another
	// goroutine (release, or a failed operation); set before the kill.
	killReason atomic.Pointer[string]

	// The fields below are used only on the tracer thread.

	// dead is non-nil (and wraps ErrStubDead) once the stub has been
	// reaped.
	dead error
	// own is the register set for running the stub's own code: segment
	// registers from the stub's start, eflags = IF, rip set per use.
	own unix.PtraceRegs
	// bootIP is the address of regsys during start-up (at stubLinkAddr,
	// then at StubCode).
	bootIP uint64
}

// startTracer starts the tracer goroutine, which runs start on its locked
// thread to make the stub (setting t.pid, t.mem and t.own), parks it, and
// then watches it. If start fails, the goroutine exits and its error is
// returned.
func startTracer(c *comm, start func(t *tracer) error) (*tracer, error) {
	t := &tracer{
		comm:   c,
		exited: make(chan struct{}),
	}
	errCh := make(chan error, 1)
	go func() {
		defer close(t.exited)
		// Never unlocked: when this goroutine returns, the runtime ends
		// the thread, and with it the ptrace relationship.
		runtime.LockOSThread()
		err := start(t)
		if err == nil {
			err = t.parkLocked()
		}
		if err != nil {
			if t.pid > 0 {
				t.killLocked("failed to start")
			}
			if t.mem != nil {
				t.mem.Close()
			}
			errCh <- err
			return
		}
		errCh <- nil
		t.watch()
	}()
	if err := <-errCh; err != nil {
		<-t.exited
		return nil, err
	}
	return t, nil
}

// watch is the tracer goroutine's life while the stub is parked: wait for
// its stops (signals, suppressed; its own code faulting) until it dies.
func (t *tracer) watch() {
	for t.dead == nil {
		ws, err := t.waitLocked()
		if err != nil {
			break
		}
		if t.faultedLocked(ws) {
			break
		}
		// A signal: suppressed.
		if err := unix.PtraceCont(t.pid, 0); err != nil {
			t.failLocked("PTRACE_CONT", err)
		}
	}
}

// faultedLocked reports whether the stop ws is the stub's own code
// faulting (a synchronous SIGSEGV, SIGBUS, SIGILL, SIGFPE or SIGTRAP, as
// when a careless Syscall unmapped the comm page), in which case it kills
// the stub, which cannot go on. The same signals sent by kill(2) are not
// faults.
func (t *tracer) faultedLocked(ws unix.WaitStatus) bool {
	switch ws.StopSignal() {
	case unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGFPE, unix.SIGTRAP:
	default:
		return false
	}
	var si Siginfo
	if err := GetSiginfo(t.pid, &si); err != nil {
		t.failLocked("PTRACE_GETSIGINFO", err)
		return true
	}
	if !si.Synchronous(ws.StopSignal()) {
		return false // SI_USER, SI_TKILL, SI_QUEUE...: sent, not a fault
	}
	var r unix.PtraceRegs
	unix.PtraceGetRegs(t.pid, &r)
	t.killLocked(fmt.Sprintf("killed by the tracer: the stub's code faulted: %v (code %d, address %#x) at rip %#x",
		ws.StopSignal(), si.Code(), si.Addr(), r.Rip))
	return true
}

// deadError returns why the stub died, or nil.
func (t *tracer) deadError() error {
	if p := t.deadErr.Load(); p != nil {
		return *p
	}
	return nil
}

// deadErrorOr returns why the stub died if it has, else err.
func (t *tracer) deadErrorOr(err error) error {
	if d := t.deadError(); d != nil {
		return d
	}
	select {
	case <-t.exited:
		if d := t.deadError(); d != nil {
			return d
		}
	default:
	}
	return err
}

// errReleased is returned for calls on a released AddressSpace.
var errReleased = fmt.Errorf("%w (address space released)", ErrStubDead)

// release kills the stub and waits for the tracer goroutine to reap it and
// exit. Idempotent; must not be called on the tracer thread.
func (t *tracer) release() {
	t.mu.Lock()
	if t.deadError() == nil {
		why := "released"
		t.killReason.Store(&why)
		unix.Kill(t.pid, unix.SIGKILL)
	}
	t.mu.Unlock()
	<-t.exited
}

// killFromOutside kills the stub from a goroutine holding mu (the stub
// parked), and waits until the tracer has recorded its death.
func (t *tracer) killFromOutside(why string) {
	t.killReason.Store(&why)
	unix.Kill(t.pid, unix.SIGKILL)
	<-t.exited
}

// setDeadLocked records the stub's death and tells every goroutine that
// may wait for it.
func (t *tracer) setDeadLocked(err error) error {
	if t.dead != nil {
		return t.dead
	}
	t.dead = err
	t.deadErr.Store(&err)
	t.comm.page.state.Store(commDead)
	futexWake(&t.comm.page.state, 1<<30)
	return err
}

// killLocked kills the stub (unless it is already reaped), reaps it, and
// records why. Idempotent.
func (t *tracer) killLocked(why string) error {
	if t.dead != nil {
		return t.dead
	}
	// SIGKILL wakes a tracee from any ptrace-stop; the wait cannot hang
	// unless the process is stuck in an uninterruptible sleep.
	unix.Kill(t.pid, unix.SIGKILL)
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(t.pid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || ws.Exited() || ws.Signaled() {
			break
		}
	}
	return t.setDeadLocked(fmt.Errorf("%w: pid %d %s", ErrStubDead, t.pid, why))
}

// reapedLocked records that the stub has gone, as reported by ws.
func (t *tracer) reapedLocked(ws unix.WaitStatus) error {
	var why string
	switch {
	case t.killReason.Load() != nil:
		why = *t.killReason.Load()
	case ws.Signaled():
		why = fmt.Sprintf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
	default:
		why = fmt.Sprintf("exited with status %d", ws.ExitStatus())
	}
	return t.setDeadLocked(fmt.Errorf("%w: pid %d %s", ErrStubDead, t.pid, why))
}

// failLocked handles an unexpected ptrace failure: the stub cannot be
// trusted any more (a request failing with ESRCH means it is no longer
// stopped, normally because it was killed), so it is killed and reaped,
// and the error says why.
func (t *tracer) failLocked(op string, err error) error {
	if t.dead != nil {
		return t.dead
	}
	// If the stub is dying (ESRCH: a killed tracee leaves its stop at
	// once, and becomes a zombie soon after), reap it and report its
	// death rather than err.
	polls := 1
	if err == unix.ESRCH {
		polls = 100
	}
	for i := 0; i < polls; i++ {
		var ws unix.WaitStatus
		wpid, werr := unix.Wait4(t.pid, &ws, unix.WALL|unix.WNOHANG, nil)
		if werr == nil && wpid == t.pid && (ws.Exited() || ws.Signaled()) {
			return t.reapedLocked(ws)
		}
		if werr != nil && werr != unix.EINTR || wpid == t.pid {
			break // gone, or some stop: kill it
		}
		if i+1 < polls {
			time.Sleep(time.Millisecond)
		}
	}
	return t.killLocked(fmt.Sprintf("killed by the tracer after %s failed: %v", op, err))
}

// waitLocked waits for the stub's next stop. It returns the status of a
// stop, or an error (wrapping ErrStubDead) if the stub has died.
func (t *tracer) waitLocked() (unix.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(t.pid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return ws, t.failLocked("wait4", err)
		}
		if ws.Exited() || ws.Signaled() {
			return ws, t.reapedLocked(ws)
		}
		if ws.Stopped() {
			return ws, nil
		}
	}
}

// contLocked resumes the stopped stub, delivering sig.
func (t *tracer) contLocked(sig unix.Signal) error {
	if err := unix.PtraceCont(t.pid, int(sig)); err != nil {
		return t.failLocked("PTRACE_CONT", err)
	}
	return nil
}

// setRegsLocked sets the stopped stub's registers.
func (t *tracer) setRegsLocked(r *unix.PtraceRegs) error {
	if err := unix.PtraceSetRegs(t.pid, r); err != nil {
		return t.failLocked("PTRACE_SETREGS", err)
	}
	return nil
}

// ownRegs returns t.own with rip at offset off of the code page.
func (t *tracer) ownRegs(off uint64) *unix.PtraceRegs {
	r := t.own
	r.Rip = uint64(StubCode) + off
	return &r
}

// parkLocked resumes the stub, stopped after its start-up, in its serve
// loop.
func (t *tracer) parkLocked() error {
	if t.dead != nil {
		return t.dead
	}
	if err := t.setRegsLocked(t.ownRegs(prog.serve)); err != nil {
		return err
	}
	return t.contLocked(0)
}

// regSyscallLocked makes a system call through regsys at t.bootIP with
// the injector (Inject), setting all registers; used during start-up,
// before the comm page exists.
func (t *tracer) regSyscallLocked(nr uintptr, args ...uintptr) (uintptr, error) {
	if t.dead != nil {
		return 0, t.dead
	}
	var a [6]uintptr
	copy(a[:], args)
	r, _, err := Inject(t.pid, &t.own, t.bootIP, nr, &a, startWaiter{t})
	if err != nil {
		var op *OpError
		switch {
		case t.dead != nil:
			return 0, t.dead
		case errors.As(err, &op):
			return 0, t.failLocked(op.Op, op.Err)
		default:
			return 0, t.killLocked(fmt.Sprintf("killed by the tracer during start-up: %v", err))
		}
	}
	return errnoResult(r)
}

// startWaiter is the injector's Waiter during a stub's start-up: signals
// that arrive are suppressed.
type startWaiter struct{ t *tracer }

func (w startWaiter) Wait() (unix.WaitStatus, error) { return w.t.waitLocked() }

func (startWaiter) Interrupted(unix.WaitStatus, *Siginfo) (unix.Signal, error) { return 0, nil }

// Errno returns the errno of a raw system call result (rax), if it is one
// (-4095 to -1).
func Errno(r uintptr) (unix.Errno, bool) {
	if r > ^uintptr(4095) {
		return unix.Errno(-r), true
	}
	return 0, false
}

// errnoResult converts a raw system call result to (value, error).
func errnoResult(r uintptr) (uintptr, error) {
	if e, ok := Errno(r); ok {
		return 0, e
	}
	return r, nil
}

// syscaller makes system calls in a stub that the caller has to itself
// (holding mu): through the comm page.
type syscaller struct {
	t *tracer
}

// raw makes system call nr and returns its raw result; the error is only
// for a dead stub.
func (s syscaller) raw(nr uintptr, args *[6]uintptr) (uintptr, error) {
	r, err := s.t.comm.request(uint64(nr), args, s.t.exited)
	if err != nil {
		return 0, s.t.deadErrorOr(err)
	}
	return uintptr(r), nil
}

// kill kills the stub after it misbehaved, so that later calls fail.
func (s syscaller) kill(why string) error {
	s.t.killFromOutside(why)
	return s.t.deadErrorOr(errReleased)
}

// with runs fn with the stub to the caller: holding mu with the stub
// parked. It fails without running fn if the stub is dead.
func (t *tracer) with(fn func(s syscaller) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.deadError(); err != nil {
		return err
	}
	return fn(syscaller{t})
}
