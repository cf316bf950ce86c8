package sandbox

import (
	"fmt"
	"os"
	"slices"
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
	m, ok := statusSigMasks(pid, 0, "SigCgt", "SigIgn")
	return ok && (m[0]|m[1])&sigBit(sig) == 0
}

// sigBit is sig's bit in a signal mask.
func sigBit(sig unix.Signal) uint64 { return uint64(1) << (uint(sig) - 1) }

// statusSigMasks returns the signal masks named fields ("SigPnd",
// "SigBlk", "SigIgn", "SigCgt") of /proc/PID/status, or of thread tid's
// /proc/PID/task/TID/status if tid is not 0, in the order asked; ok is
// false if the file cannot be read or a field is missing.
func statusSigMasks(pid, tid int, fields ...string) (masks []uint64, ok bool) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	if tid != 0 {
		path = fmt.Sprintf("/proc/%d/task/%d/status", pid, tid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	masks = make([]uint64, len(fields))
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		name, v, _ := strings.Cut(line, ":")
		if i := slices.Index(fields, name); i >= 0 {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return nil, false
			}
			masks[i] = m
			found++
		}
	}
	return masks, found == len(fields)
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
	if sig == unix.SIGCONT {
		s.contSeen(t.p)
	}
	t.keep(pendingSignal{sig, si})
}

// keep adds ps to the signals kept for t and reports whether it did: a
// standard signal already kept is not kept twice (as Linux keeps a
// standard signal pending once), and at most maxPendingSignals are kept.
func (t *task) keep(ps pendingSignal) bool {
	if len(t.pending) >= maxPendingSignals {
		return false
	}
	if ps.sig < sigRTMin {
		for _, q := range t.pending {
			if q.sig == ps.sig {
				return false
			}
		}
	}
	t.pending = append(t.pending, ps)
	return true
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
	if len(t.pending) == 0 || t.dead() {
		return
	}
	if beforeCarry != nil {
		beforeCarry(t)
	}
	s.sendStop(t)
	if afterCarry != nil {
		afterCarry(t)
	}
}

// sendStop sends t a SIGSTOP of vmspace's own (expectStop), unless one is
// pending for it already.
func (s *Sandbox) sendStop(t *task) {
	if threadSignalPending(t.p.pid, t.tid, unix.SIGSTOP) {
		return
	}
	if unix.Tgkill(t.p.pid, t.tid, unix.SIGSTOP) == nil {
		t.expectStop++
	}
}

// beforeCarry and afterCarry, if not nil, are called by carryPending
// before and after it makes sure of a SIGSTOP for t (tests force races
// with them).
var beforeCarry, afterCarry func(t *task)

// A SIGCONT sent to a process discards every stop signal pending for its
// threads, when it is sent (Linux's prepare_signal), whether or not any
// thread can take the SIGCONT itself: vmspace's own SIGSTOPs too, those
// that carry kept signals (carryPending) and those that stop a running
// thread for vmspace's use (stopTask). Without another, kept signals
// waited for the thread's next stop, for ever if it made no system call
// vmspace stops (a thread spinning on a flag its SIGCHLD handler sets),
// and stopTask waited for ever for a thread that never stopped. vmspace
// learns of the SIGCONT when a thread of the process stops for it (its
// signal-delivery-stop, served or kept, or one that interrupts vmspace's
// use of a thread): contSeen sends its SIGSTOPs again there. The stop
// signals kept for the process's threads are dropped as Linux drops them
// when pending (vmspace took them from the kernel, but the program has
// not been given them: to it they are pending).

// contSeen is called when a SIGCONT sent to process p is seen at a stop
// of one of its threads.
func (s *Sandbox) contSeen(p *process) {
	for _, u := range p.tasks {
		u.pending = slices.DeleteFunc(u.pending, func(ps pendingSignal) bool { return stopSignal(ps.sig) })
		if u.dead() || u.state != taskRunning || u.stopKept {
			continue
		}
		if len(u.pending) > 0 || u.expectStop > 0 {
			s.sendStop(u)
		}
	}
}

// stopSignal reports whether sig is one of the signals that stop a
// process by default, which a SIGCONT discards.
func stopSignal(sig unix.Signal) bool {
	switch sig {
	case unix.SIGSTOP, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
		return true
	}
	return false
}

// A signal sent to a process (kill, sigqueue, a child's exit signal, a
// timer's) that the kernel handed to one thread, and vmspace kept for that
// thread or moved to it (childSignal), is still the process's: if the
// thread exits before it is delivered, Linux would give it to another
// thread (it stays pending for the process until one takes it). Kept
// signals were lost with their thread: handOver gives them to another.
// Signals sent to the thread alone (tgkill: SI_TKILL) and faults die with
// it, as on Linux. A signal queued to the thread by rt_tgsigqueueinfo
// looks like one queued to the process (SI_QUEUE) and is handed over too.

// handOver is called when t exits with kept signals: those sent to its
// process go to another of its threads (heir), delivered at that
// thread's next stop.
func (s *Sandbox) handOver(t *task) {
	kept := t.pending
	t.pending = nil
	for _, ps := range kept {
		if ps.si.code() == siTkill || syncSignal(ps.sig, &ps.si) {
			continue
		}
		u := s.heir(t, ps.sig)
		if u == nil {
			return
		}
		if u.keep(ps) && u.state == taskRunning && !u.stopKept {
			s.carryPending(u)
		}
	}
}

// heir returns the thread of t's process, other than t, that a signal sig
// of t's goes to: the first (the leader, then the others by thread id)
// that does not block sig, else the first; nil if t is the last thread.
func (s *Sandbox) heir(t *task, sig unix.Signal) *task {
	var cands []*task
	for _, u := range t.p.tasks {
		if u != t && !u.dead() && u.state != taskNew {
			cands = append(cands, u)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	pid := t.p.pid
	slices.SortFunc(cands, func(a, b *task) int {
		if (a.tid == pid) != (b.tid == pid) {
			if a.tid == pid {
				return -1
			}
			return 1
		}
		return a.tid - b.tid
	})
	for _, u := range cands {
		if !threadBlocks(pid, u.tid, sig) {
			return u
		}
	}
	return cands[0]
}

// threadSignalPending reports whether sig is pending for thread tid of
// process pid itself (sent to the thread, not to the process).
func threadSignalPending(pid, tid int, sig unix.Signal) bool {
	m, ok := statusSigMasks(pid, tid, "SigPnd")
	return ok && m[0]&sigBit(sig) != 0
}

// A child's exit signal (SIGCHLD) goes to the process as a whole, and the
// kernel hands it to the thread that forked the child if that thread can
// take it at once, else to another. Under vmspace the forking thread is
// often in a ptrace stop when the child ends (at the exit of its fork,
// at the entry of its wait4), which no thread that can take a signal is
// on Linux: the kernel then passes it over, and the signal reaches
// another thread: its handler runs in the wrong thread, and a forking
// thread waiting for it in sigsuspend never wakes (3 in 100 forks of a
// process with a second thread). So the exit signal of a child that
// reaches a thread other than the one that forked it, which does not
// block it, is taken from that thread and kept for the forking one
// (childSignal), delivered at its next stop. It may still come after the
// forking thread's waitpid has returned, where on Linux it comes before
// (the kernel sends it before it wakes the parent): vmspace learns of it
// only when the other thread stops for it.

// maxForkers bounds the children a process's forkers map remembers.
const maxForkers = 4096

// noteForker records that thread tid of p forked child pid.
func (p *process) noteForker(pid, tid int) {
	if p.forkers == nil {
		p.forkers = make(map[int]int)
	}
	if len(p.forkers) >= maxForkers {
		// Children whose exit signal never came through a stop
		// (ignored, or taken by sigwaitinfo): forget the gone ones.
		for c := range p.forkers {
			if unix.Kill(c, 0) == unix.ESRCH {
				delete(p.forkers, c)
			}
		}
		if len(p.forkers) >= maxForkers {
			clear(p.forkers)
		}
	}
	p.forkers[pid] = tid
}

// Child exit codes of SIGCHLD.
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// childSignal is called at t's signal-delivery-stop for sig, with si. If
// it is the exit signal of a child forked by another thread of t's
// process that does not block it, it takes the signal from t and keeps it
// for that thread (delivered with its details: carryPending), and reports
// true: t resumes without it.
func (s *Sandbox) childSignal(t *task, sig unix.Signal, si *siginfo) bool {
	if sig != unix.SIGCHLD || si.code() <= 0 || si.code() == siKernel {
		return false
	}
	child := int(si.pid())
	ftid, ok := t.p.forkers[child]
	if !ok {
		return false
	}
	switch si.code() {
	case cldExited, cldKilled, cldDumped:
		delete(t.p.forkers, child)
	}
	f := s.tasks[ftid]
	if f == nil || f == t || f.p != t.p || f.dead() || threadBlocks(t.p.pid, ftid, sig) {
		return false
	}
	// Merged if one is kept already, as a standard signal pending twice.
	if f.keep(pendingSignal{sig, *si}) && f.state == taskRunning && !f.stopKept {
		// Its next stop delivers it.
		s.carryPending(f)
	}
	return true
}

// threadBlocks reports whether thread tid of process pid blocks sig.
func threadBlocks(pid, tid int, sig unix.Signal) bool {
	m, ok := statusSigMasks(pid, tid, "SigBlk")
	return !ok || m[0]&sigBit(sig) != 0
}

// sigRTMin is the first real-time signal (queued, unlike the others).
const sigRTMin = 32

// maxPendingSignals bounds the signals kept for one task while vmspace
// uses it.
const maxPendingSignals = 1024
