package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/vmspace/vmspace/platform/ptrace"
	"golang.org/x/sys/unix"
)

// pendingSignal is a signal to deliver later: its number and details.
type pendingSignal struct {
	sig unix.Signal
	si  siginfo
}

// syncSignal reports whether sig, with si, was raised by the kernel for
// what the thread was doing (a fault, a trap, a failed rseq update), not
// sent.
func syncSignal(sig unix.Signal, si *siginfo) bool {
	return (*ptrace.Siginfo)(si).Synchronous(sig)
}

// killsNow reports whether delivering sig to process pid ends it: its
// default action terminates, and the process neither catches nor ignores
// it.
func killsNow(pid int, sig unix.Signal) bool {
	switch sig {
	case unix.SIGCHLD, unix.SIGCONT, unix.SIGURG, unix.SIGWINCH,
		unix.SIGSTOP, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
		return false
	}
	if sig <= 0 || sig > 64 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	bit := uint64(1) << (uint(sig) - 1)
	for _, line := range strings.Split(string(b), "\n") {
		for _, field := range []string{"SigCgt:", "SigIgn:"} {
			if v, ok := strings.CutPrefix(line, field); ok {
				m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				if err != nil || m&bit != 0 {
					return false
				}
			}
		}
	}
	return true
}

// noteSignal records the signal of a stop that interrupted vmspace's use of
// t, to deliver it later.
func (s *Sandbox) noteSignal(t *task, ws unix.WaitStatus) {
	if event(ws) != 0 {
		return
	}
	var si siginfo
	if err := ptraceGetSiginfo(t.tid, &si); err != nil {
		return // group-stop
	}
	sig := ws.StopSignal()
	if sig == unix.SIGSTOP && t.expectStop > 0 && si.code() == siTkill && int(si.pid()) == s.selfPid {
		t.expectStop--
		return
	}
	if len(t.pending) >= maxPendingSignals || s.hiddenExit(t.p, sig, &si) {
		return
	}
	if sig < sigRTMin {
		// A standard signal already pending is not queued twice (as
		// in Linux).
		for _, ps := range t.pending {
			if ps.sig == sig {
				return
			}
		}
	}
	t.pending = append(t.pending, pendingSignal{sig, si})
}

// carryPending makes sure that t, just resumed with kept signals still
// pending (only one can be delivered at a stop, and none at a system call
// or event stop), stops again soon to have the next delivered: a SIGSTOP
// of the sandbox's own (expectStop) interrupts it, and resume delivers
// the first kept signal at that signal-delivery-stop, with its own
// details set by PTRACE_SETSIGINFO. Sending the kept signals again with
// tgkill would lose those details: the program would see si_code SI_TKILL
// and vmspace's pid, where a JVM expects the si_code and si_addr of its
// implicit null check's fault (and took it for a kill, and died). A
// delivered signal the thread blocks is queued by the kernel with the
// details given, as if it had never left. One SIGSTOP at a time is
// enough (a second would merge with it): every stop resumes the task,
// which delivers a kept signal. Whether one is on its way is asked of the
// kernel, not of expectStop, which two SIGSTOPs merged by stopTask leave
// one too high for ever (harmlessly otherwise: every SIGSTOP of the
// sandbox's is suppressed).
func (s *Sandbox) carryPending(t *task) {
	if len(t.pending) == 0 || t.dead() || threadSignalPending(t.p.pid, t.tid, unix.SIGSTOP) {
		return
	}
	if unix.Tgkill(t.p.pid, t.tid, unix.SIGSTOP) == nil {
		t.expectStop++
	}
}

// threadSignalPending reports whether sig is pending for thread tid of
// process pid itself (sent to the thread, not to the process).
func threadSignalPending(pid, tid int, sig unix.Signal) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "SigPnd:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && m&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}

// sigRTMin is the first real-time signal (queued, unlike the others).
const sigRTMin = 32

// maxPendingSignals bounds the signals kept for one task while vmspace
// uses it.
const maxPendingSignals = 1024
