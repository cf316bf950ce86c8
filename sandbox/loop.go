package sandbox

import (
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// waitResult is one state change from wait4.
type waitResult struct {
	// tid is the task that changed state; ws how.
	tid int
	ws  unix.WaitStatus
}

// run starts the program and serves its tasks until all have ended.
func (s *Sandbox) run() (unix.WaitStatus, error) {
	defer s.fp.unlock()
	if err := s.startRoot(); err != nil {
		return 0, err
	}
	s.outside.start(s.files)
	defer s.outside.stop()
	for len(s.tasks) > 0 {
		// Truncations made outside the sandbox are applied between two
		// stops (outside.go); stopping a task for them may keep other
		// tasks' reports, served below before any new wait.
		s.applyOutside()
		var wr waitResult
		if n := len(s.deferred); n > 0 {
			wr = s.deferred[0]
			s.deferred = s.deferred[1:]
			if t := s.tasks[wr.tid]; t != nil {
				t.stopKept = false
			}
		} else {
			tid, ws, err := s.waitMain()
			if err == unix.EINTR {
				// Woken to apply truncations, or for a
				// userfaultfd event read without a stop.
				s.uffdService()
				continue
			}
			if err != nil {
				if err == unix.ECHILD {
					break
				}
				return 0, fmt.Errorf("sandbox: wait4: %w", err)
			}
			wr = waitResult{tid, ws}
		}
		t0 := time.Now()
		s.handle(wr.tid, wr.ws)
		s.uffdService()
		// Another address space may have lost pages (a file hole
		// punched through a shared mapping): unmap them before its
		// tasks touch them again.
		s.keepUnflushedKernelAreas()
		s.shootdown()
		if checkShadow != nil {
			s.verifyShadows()
		}
		if len(s.exiting) > 0 {
			s.releaseExiting(false)
		}
		s.resumeBorrowed()
		s.stats.ManagerTime += time.Since(t0)
		s.reportTick()
	}
	s.releaseExiting(true)
	if !s.rootDone {
		return 0, errors.New("sandbox: lost track of the program")
	}
	return s.rootStatus, nil
}

// resumeBorrowed resumes the tasks stopped to serve another's request.
func (s *Sandbox) resumeBorrowed() {
	for len(s.borrowed) > 0 {
		t := s.borrowed[0]
		s.borrowed = s.borrowed[1:]
		if !t.dead() && t.p.held == t {
			s.resume(t, 0, nil)
		}
	}
}

// handle serves one state change of a task.
func (s *Sandbox) handle(tid int, ws unix.WaitStatus) {
	t := s.tasks[tid]
	if debug && os.Getenv("VMSPACE_DEBUG") == "2" {
		var rip, orax uint64
		var r unix.PtraceRegs
		if ws.Stopped() && ptraceGetRegs(tid, &r) == nil {
			rip, orax = r.Rip, r.Orig_rax
		}
		fmt.Fprintf(os.Stderr, "vmspace-debug: tid %d known=%v status %#x (stop %v event %d exited %v signaled %v) rip %#x orig_rax %d\n",
			tid, t != nil, uint32(ws), ws.StopSignal(), event(ws), ws.Exited(), ws.Signaled(), rip, int64(orax))
	}
	if t == nil {
		switch {
		case event(ws) == unix.PTRACE_EVENT_EXIT:
			// A new task killed before its creator's clone event
			// was served (the creator, killed with it, may never
			// report it): let it die; its exit report ends it.
			ptraceCont(tid, 0)
		case ws.Stopped():
			// A new task whose parent's clone event has not been
			// seen yet.
			s.noteEarly(tid, ws)
		default:
			s.forgetEarly(tid)
		}
		return
	}
	if ws.Exited() || ws.Signaled() {
		s.taskExited(t, ws)
		return
	}
	if !ws.Stopped() {
		return
	}
	if event(ws) == unix.PTRACE_EVENT_EXIT {
		s.exitStop(t)
		return
	}
	if t.dead() {
		// Given up for dead while being killed: let it go on dying.
		ptraceCont(tid, 0)
		return
	}
	t.regState = regsStale
	t.stops++
	t.p.held = t
	// A frame of a signal it was given is written by now.
	t.kframe = t.kframe[:0]
	defer func() {
		if t.p.held == t && !t.dead() {
			// A handler that did not resume the task: resume it as
			// it is.
			s.resume(t, 0, nil)
		}
	}()
	if t.state == taskNew {
		t.state = taskSignalStop
		s.firstStop(t, ws)
		return
	}
	switch event(ws) {
	case eventSeccomp:
		t.state = taskStopped
		if stopHook != nil {
			stopHook(s, t)
		}
		s.stats.Stops++
		if debug {
			var r unix.PtraceRegs
			ptraceGetRegs(t.tid, &r)
			s.debugCounts[int(r.Orig_rax)]++
		}
		s.syscall(t)
		return
	case eventFork, eventVfork, eventClone:
		t.state = taskInKernel
		s.cloneEvent(t, event(ws))
		return
	case eventExec:
		// Only vmspace's own exec of the stub image execs, and it
		// waits for this itself.
		t.state = taskStopped
		s.killProcess(t.p, "exec'd behind vmspace's back")
		return
	}
	sig := ws.StopSignal()
	if sig == sysStopSig {
		// At the exit of its system call: done with its buffers.
		t.kcall = t.kcall[:0]
		forkExit := t.state == taskForkExit
		t.state = taskStopped
		if forkExit {
			s.forkDone(t)
		}
		if f := t.atExit; f != nil {
			t.atExit = nil
			f(t)
		}
		s.resume(t, 0, nil)
		return
	}
	t.state = taskSignalStop
	var si siginfo
	if err := ptraceGetSiginfo(tid, &si); err != nil {
		// A group-stop (job control). vmspace does not support
		// stopping the program: let it go on.
		t.state = taskStopped
		s.resume(t, 0, nil)
		return
	}
	if siginfoHook != nil {
		siginfoHook(t, sig, &si)
	}
	if s.lostFault(t, sig, &si) {
		s.resume(t, 0, nil)
		return
	}
	s.fp.restartable(t)
	if t.taken(sig) {
		s.resume(t, 0, nil)
		return
	}
	if sig == unix.SIGSTOP && t.expectStop > 0 && si.code() == siTkill && int(si.pid()) == s.selfPid {
		t.expectStop--
		s.resume(t, 0, nil)
		return
	}
	if (sig == unix.SIGSEGV || sig == unix.SIGBUS) && si.code() > 0 && si.code() != siKernel {
		// A fault of its own code: no system call is in flight (one
		// interrupted is made again through its seccomp stop, or has
		// failed with EINTR).
		t.kcall = t.kcall[:0]
		s.fault(t, sig, &si)
		return
	}
	if sig == unix.SIGCONT {
		s.contSeen(t.p)
	}
	if s.hiddenExit(t.p, sig, &si) {
		s.resume(t, 0, nil)
		return
	}
	if s.childSignal(t, sig, &si) {
		s.resume(t, 0, nil)
		return
	}
	if s.fwd.delivering(t.p.pid, sig, &si) {
		s.resume(t, 0, nil)
		return
	}
	s.resume(t, sig, &si)
}

// fetchRegs makes t.regs hold the application's registers.
func (s *Sandbox) fetchRegs(t *task) error {
	if t.regState != regsStale {
		return nil
	}
	if err := ptraceGetRegs(t.tid, &t.regs); err != nil {
		return s.lost(t, "PTRACE_GETREGS", err)
	}
	t.regState = regsRead
	return nil
}

// lost handles a ptrace request that failed for t: normally t was killed
// (ESRCH); it is reaped when its exit is reported.
func (s *Sandbox) lost(t *task, op string, err error) error {
	if err == unix.ESRCH {
		return errTaskDead
	}
	return fmt.Errorf("sandbox: %s of task %d: %w", op, t.tid, err)
}

// resume restores t's application registers and lets it run, delivering
// sig (with si, if not nil) or else the first of its kept signals (at a
// signal-delivery-stop, where a signal can be delivered with its
// details); the others wait for the next stop (carryPending).
func (s *Sandbox) resume(t *task, sig unix.Signal, si *siginfo) {
	if sig == 0 && len(t.pending) > 0 && t.sigStop() {
		ps := t.pending[0]
		t.pending = t.pending[1:]
		sig, si = ps.sig, &ps.si
	}
	if sig != 0 && t.sigStop() && !t.dead() && !t.inKernel() && t.p.as != nil {
		if t.p.held == nil {
			t.p.held = t
		}
		s.prepareSignalFrame(t)
	}
	if as := t.p.as; as != nil && !t.dead() && !t.inKernel() {
		if t.p.held == nil {
			t.p.held = t
		}
		// Every address space loses the pages the manager unmapped
		// before t runs on: t's own, and those of the processes
		// sharing memory with it, which must not see t's next writes
		// to that memory in their stale pages. Pages the kernel writes
		// for a thread are replaced in the host first, never left
		// unmapped (kareas.go).
		pending := len(s.unflushed) > 0 && t.state == taskStopped && t.regState != regsOwed && atSeccompStop(t.tid)
		s.keepUnflushedKernelAreas()
		s.shootdown()
		if pending && t.regState == regsOwed && int64(t.regs.Orig_rax) >= 0 {
			// The unmaps were injected into t at the seccomp stop of
			// a system call it goes on to make (not one served, whose
			// Orig_rax is -1 with its result in Rax): the injected calls
			// replaced the stop, so t makes its call again from the
			// syscall instruction (as syscall does after its own
			// injections), stopping at its seccomp stop again.
			t.regs.Rax = t.regs.Orig_rax
			t.regs.Orig_rax = ^uint64(0)
			t.regs.Rip -= 2
			t.atExit = nil
		}
		t.mapGen = 0
		if !as.h.Pending() {
			t.mapGen = as.h.Generation() + 1
		}
	} else if len(s.unflushed) > 0 {
		s.keepUnflushedKernelAreas()
		s.shootdown()
	}
	if t.p.held == t {
		t.p.held = nil
	}
	if t.dead() {
		return
	}
	if t.regState == regsOwed {
		if err := ptraceSetRegs(t.tid, &t.regs); err != nil {
			return
		}
		t.regState = regsRead
	}
	if sig != 0 && si != nil && t.sigStop() {
		ptraceSetSiginfo(t.tid, si)
	}
	if t.state == taskForkExit || t.atExit != nil {
		ptraceSyscall(t.tid, sig)
	} else {
		ptraceCont(t.tid, sig)
	}
	if t.state != taskForkExit {
		t.state = taskRunning
	}
	t.regState = regsStale
	s.carryPending(t)
	if afterResume != nil {
		afterResume()
	}
}

// atSeccompStop reports whether task tid, stopped, is at a seccomp stop
// (PTRACE_GET_SYSCALL_INFO's op PTRACE_SYSCALL_INFO_SECCOMP), with the
// system call it stopped not yet made.
func atSeccompStop(tid int) bool {
	const opSeccomp = 3
	var info [88]byte // struct ptrace_syscall_info; op is its first byte
	n, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GET_SYSCALL_INFO, uintptr(tid),
		uintptr(len(info)), uintptr(unsafe.Pointer(&info[0])), 0, 0)
	return e == 0 && n > 0 && info[0] == opSeccomp
}

// stopHook, if not nil, is called at every system call stop before it is
// served (tests force races with it).
var stopHook func(s *Sandbox, t *task)

// afterResume, if not nil, is called after every resumption of a task
// (tests widen race windows with it).
var afterResume func()
