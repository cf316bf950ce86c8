package sandbox

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
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
//
// A terminal sends SIGINT, SIGQUIT and SIGHUP (si_code SI_KERNEL) to its
// whole foreground process group, vmspace and the program's processes in
// its group alike: those must not get the signal a second time from
// vmspace. A process's copy reaches it before vmspace's would (it was
// queued first, and a standard signal is not queued twice), so the two
// are matched per process and signal: a terminal's copy seen at the
// process's signal-delivery-stop leaves a token that the forwarder, or the
// forwarded copy at its own stop, takes instead of delivering a second;
// a copy still pending in the process when the forwarder runs makes the
// forwarder send nothing and leaves no token. A group kill by another
// process (si_code SI_USER) is not told apart from a kill of the process
// alone, and still arrives twice.
type forwarder struct {
	// mu protects the fields below.
	mu sync.Mutex
	// pids are the program's live processes.
	pids map[int]struct{}
	// tokens has, per process, a bit (1<<sig) for each terminal signal
	// whose terminal copy the process got and whose forwarded copy is
	// yet to be matched.
	tokens map[int]uint64
	// pending has, per process, a bit for each terminal signal that the
	// forwarder did not send because the process had it pending: the
	// copy it had leaves no token.
	pending map[int]uint64
	// self is vmspace's pid.
	self int
}

// ttySignals are the signals a terminal sends to its foreground group.
const ttySignals = 1<<unix.SIGINT | 1<<unix.SIGQUIT | 1<<unix.SIGHUP

// add records a new process of the program.
func (f *forwarder) add(pid int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pids == nil {
		f.pids = make(map[int]struct{})
		f.tokens = make(map[int]uint64)
		f.pending = make(map[int]uint64)
		f.self = unix.Getpid()
	}
	f.pids[pid] = struct{}{}
}

// remove forgets an ended process.
func (f *forwarder) remove(pid int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pids, pid)
	delete(f.tokens, pid)
	delete(f.pending, pid)
}

// forward sends each signal from sigs to every process of the program,
// until stop is closed, except to those that had it from the terminal.
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
				if f.hadIt(pid, n) {
					continue
				}
				unix.Kill(pid, n)
			}
			f.mu.Unlock()
		}
	}
}

// hadIt reports whether process pid already had terminal signal sig from
// the terminal (see forwarder). Preconditions: mu held.
func (f *forwarder) hadIt(pid int, sig unix.Signal) bool {
	bit := uint64(1) << sig
	if bit&ttySignals == 0 || !f.sameGroup(pid) {
		return false
	}
	if f.tokens[pid]&bit != 0 {
		f.tokens[pid] &^= bit
		return true
	}
	if signalPending(pid, sig) {
		f.pending[pid] |= bit
		return true
	}
	return false
}

// sameGroup reports whether process pid is in vmspace's process group
// (where a terminal's signals reach both).
func (f *forwarder) sameGroup(pid int) bool {
	pg, err := unix.Getpgid(pid)
	return err == nil && pg == unix.Getpgrp()
}

// delivering is called at a signal-delivery-stop of process pid for sig
// with si, and reports whether the signal is a forwarded copy of one the
// process already had from the terminal, not to be delivered.
func (f *forwarder) delivering(pid int, sig unix.Signal, si *siginfo) bool {
	bit := uint64(1) << sig
	if bit&ttySignals == 0 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.pids[pid]; !ok {
		return false
	}
	switch {
	case si.code() == siKernel && f.sameGroup(pid):
		if f.pending[pid]&bit != 0 {
			f.pending[pid] &^= bit
		} else {
			f.tokens[pid] |= bit
		}
	case si.code() == siUser && int(si.pid()) == f.self:
		if f.tokens[pid]&bit != 0 {
			f.tokens[pid] &^= bit
			return true
		}
	}
	return false
}

// signalPending reports whether sig is pending in process pid (for the
// process or one of its threads).
func signalPending(pid int, sig unix.Signal) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "SigPnd" && k != "ShdPnd") {
			continue
		}
		if m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && m&(1<<(sig-1)) != 0 {
			return true
		}
	}
	return false
}
