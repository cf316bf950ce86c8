package sandbox

import "golang.org/x/sys/unix"

// A page fault reaches vmspace as the faulting thread's SIGSEGV stop, whose
// siginfo (si_code SEGV_MAPERR or SEGV_ACCERR, si_addr) tells it apart
// from a SIGSEGV that someone sent. Rarely, and more often under load, the
// kernel delivers a signal without the record it queued with it, and
// makes one up: si_code SI_USER, no sender (si_pid and si_uid 0), no
// address. Seen for faults, this made a fault look like kill(SIGSEGV)
// from nobody: vmspace delivered it and the program died at an access it
// was entitled to (1 run in about 300 of a loop of fast calls and faults
// under load; the JVM's "SIGSEGV sent by kill" in TestJava). No process
// of the machine sends a signal with no sender (pid 0 is nobody's in
// vmspace's pid namespace), so such a SIGSEGV or SIGBUS is taken for a
// fault whose details were lost: the thread is resumed without it and
// makes its access again, which faults again with its siginfo if it was
// a fault. If the thread's next stop is such a signal at the same
// instruction, the signal is delivered (it was no fault, or the access
// keeps failing the same way); a loss at an instruction that faulted
// with its siginfo in between is retried again (a loop's store: before,
// a second loss at the same instruction, however much later, was
// delivered). A fault's stop that interrupts vmspace's stopping of the
// thread (stopTask) is dropped the same way.

// siginfoHook, if not nil, is called at every signal-delivery-stop with
// the stop's siginfo, which it may change (tests make the kernel's loss).
var siginfoHook func(t *task, sig unix.Signal, si *siginfo)

// lostFault reports whether t's stop for sig with si is a SIGSEGV or
// SIGBUS whose siginfo the kernel lost, to be retried as a fault (t is
// then resumed without it), rather than delivered.
func (s *Sandbox) lostFault(t *task, sig unix.Signal, si *siginfo) bool {
	if (sig != unix.SIGSEGV && sig != unix.SIGBUS) || si.code() != siUser || si.addr() != 0 {
		return false
	}
	if s.fetchRegs(t) != nil {
		return false
	}
	if t.lostAt == t.regs.Rip && t.lostStop+1 == t.stops {
		t.lostAt = 0
		return false
	}
	t.lostAt, t.lostStop = t.regs.Rip, t.stops
	return true
}
