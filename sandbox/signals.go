package sandbox

import (
	"encoding/binary"
	"os"
	"sync"
	"syscall"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// Page faults reach vmspace as SIGSEGVs, which Linux forces on the
// faulting thread: if SIGSEGV is blocked when the fault happens, the kernel
// resets its action to the default (and unblocks it) before vmspace even
// sees the fault. A fault that vmspace serves transparently would then
// have silently destroyed the program's SIGSEGV handler (the JVM's, Go's,
// any program's that catches SIGSEGV), and the program would die at its
// next real SIGSEGV. So vmspace keeps SIGSEGV from ever being blocked in
// the host:
//
//   - rt_sigprocmask that would block it blocks the rest only;
//   - rt_sigaction installs actions whose sa_mask does not hold it, and
//     SIGSEGV's own action gets SA_NODEFER (the kernel blocks a signal
//     during its handler otherwise).
//
// The program can notice only by asking for its mask or action back.

// segvBit is SIGSEGV's bit in a sigset.
const segvBit = uint64(1) << (unix.SIGSEGV - 1)

// saNoDefer is SA_NODEFER.
const saNoDefer = 0x40000000

// sysSigaction serves rt_sigaction(sig, act, oldact, sigsetsize) with an
// action to install.
func (s *Sandbox) sysSigaction(t *task, a [6]uint64) sysResult {
	sig, act, old, size := int(int32(a[0])), a[1], a[2], a[3]
	if act == 0 || size != 8 || t.p.mm == nil {
		return pass()
	}
	var b [32]byte
	if _, err := t.p.mm.CopyIn(s.ctx, hostarch.Addr(act), b[:], mm.IOOpts{}); err != nil {
		return pass() // the host fails it with EFAULT
	}
	le := binary.LittleEndian
	flags, mask := le.Uint64(b[8:]), le.Uint64(b[24:])
	nflags, nmask := flags, mask&^segvBit
	if sig == int(unix.SIGSEGV) {
		nflags |= saNoDefer
	}
	s.ensure(t, old, 32, true)
	if nflags == flags && nmask == mask {
		return pass()
	}
	le.PutUint64(b[8:], nflags)
	le.PutUint64(b[24:], nmask)
	if s.writeMem(t.p.pid, scratchAddr, b[:]) != nil {
		return pass()
	}
	r, err := s.inject(t, unix.SYS_RT_SIGACTION, uintptr(a[0]), uintptr(scratchAddr), uintptr(old), 8)
	if err != nil {
		return sysResult{act: actDone}
	}
	return ret(r)
}

// sysSigprocmask serves rt_sigprocmask(how, set, oldset, sigsetsize) that
// may block signals.
func (s *Sandbox) sysSigprocmask(t *task, a [6]uint64) sysResult {
	how, set, old, size := int(int32(a[0])), a[1], a[2], a[3]
	if set == 0 || size != 8 || t.p.mm == nil || how == unix.SIG_UNBLOCK {
		return pass()
	}
	s.ensure(t, old, 8, true)
	var b [8]byte
	if _, err := t.p.mm.CopyIn(s.ctx, hostarch.Addr(set), b[:], mm.IOOpts{}); err != nil {
		return pass()
	}
	m := binary.LittleEndian.Uint64(b[:])
	if m&segvBit == 0 {
		return pass()
	}
	binary.LittleEndian.PutUint64(b[:], m&^segvBit)
	if s.writeMem(t.p.pid, scratchAddr, b[:]) != nil {
		return pass()
	}
	r, err := s.inject(t, unix.SYS_RT_SIGPROCMASK, uintptr(a[0]), uintptr(scratchAddr), uintptr(old), 8)
	if err != nil {
		return sysResult{act: actDone}
	}
	return ret(r)
}

// unblockSEGV makes sure SIGSEGV is not blocked in t (at start-up).
func (s *Sandbox) unblockSEGV(t *task) {
	if m, err := ptraceGetSigmask(t.tid); err == nil && m&segvBit != 0 {
		ptraceSetSigmask(t.tid, m&^segvBit)
	}
}

// forwarder passes signals sent to vmspace on to every process of the
// program (Options.Signals). The tracer keeps its set of processes up to
// date; the forwarding goroutine reads it.
type forwarder struct {
	// mu protects pids.
	mu sync.Mutex
	// pids are the program's live processes.
	pids map[int]struct{}
}

// add records a new process of the program.
func (f *forwarder) add(pid int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pids == nil {
		f.pids = make(map[int]struct{})
	}
	f.pids[pid] = struct{}{}
}

// remove forgets an ended process.
func (f *forwarder) remove(pid int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pids, pid)
}

// forward sends each signal from sigs to every process of the program,
// until stop is closed.
func (f *forwarder) forward(sigs <-chan os.Signal, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case sig := <-sigs:
			n, ok := sig.(syscall.Signal)
			if !ok {
				continue
			}
			f.mu.Lock()
			for pid := range f.pids {
				unix.Kill(pid, n)
			}
			f.mu.Unlock()
		}
	}
}
