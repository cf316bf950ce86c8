package sandbox

import (
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
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
	if len(t.pending) >= maxPendingSignals || t.taken(sig) || s.hiddenExit(t.p, sig, &si) {
		return
	}
	if sig == unix.SIGCONT {
		s.contSeen(t.p)
	}
	if s.childSignal(t, sig, &si) {
		return // kept for the thread that forked the child
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
	s.forgetForker(t.p, si)
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

// On Linux a child's exit signal is sent before its parent can reap it
// (the child becomes waitable and its parent is signalled at once), to the
// thread that forked it if that thread can take it; a thread asleep in
// wait4 or waitid can, and runs the handler on its way back from the
// wait. Under vmspace the signal often comes while the forking thread is
// in a ptrace stop (at the entry of its wait), and the kernel hands it to
// another thread; childSignal moves it back to the forking thread, but
// only when that other thread's stop is served, which may come after the
// wait has returned and the program has gone on (11 to 26 waits in 300
// returned before the handler ran). So a wait of a forking thread whose
// process catches SIGCHLD is watched to its exit (watchWait): if it
// returned a child the thread forked, the child's signal is taken for the
// thread before it returns to its code (waitDone), from wherever it is:
// already kept for it (delivered at the stop carryPending makes, before
// the program's next instruction), still pending for the process (taken
// with an injected rt_sigtimedwait, its siginfo read first with
// PTRACE_PEEKSIGINFO), or taken by another thread whose stop for it is
// not served yet (taken from that stop: takenSig).

// watchWait is called at the entry of t's wait4 or waitid (nr, with
// arguments a): if t forked children, does not block SIGCHLD and its
// process catches it, the call's exit is served by waitDone.
func (s *Sandbox) watchWait(t *task, nr int, a [6]uint64) {
	forker := keeps(t, unix.SIGCHLD)
	for _, ftid := range t.p.forkers {
		if ftid == t.tid {
			forker = true
			break
		}
	}
	if !forker || threadBlocks(t.p.pid, t.tid, unix.SIGCHLD) {
		return
	}
	if m, ok := statusSigMasks(t.p.pid, 0, "SigCgt"); !ok || m[0]&sigBit(unix.SIGCHLD) == 0 {
		return
	}
	prev := t.atExit
	t.atExit = func(t *task) {
		if prev != nil {
			prev(t)
		}
		s.waitDone(t, nr, a)
	}
}

// waitDone is called at the exit of t's wait4 or waitid (nr, with
// arguments a) that watchWait watched: if it returned a child that t
// forked, the child's exit signal is kept for t, and a SIGSTOP of
// vmspace's is queued for t before it resumes, so that the signal is
// delivered before t runs on (carryPending's, sent once t runs, may come
// too late).
func (s *Sandbox) waitDone(t *task, nr int, a [6]uint64) {
	if keeps(t, unix.SIGCHLD) {
		s.sendStop(t)
		return
	}
	if s.fetchRegs(t) != nil {
		return
	}
	res := int64(t.regs.Rax)
	child := 0
	switch nr {
	case unix.SYS_WAIT4:
		child = int(res)
	case unix.SYS_WAITID:
		// si_pid of the siginfo_t at infop.
		var b [4]byte
		if res == 0 && a[2] != 0 && t.p.mm != nil {
			if n, _ := t.p.mm.CopyIn(s.ctx, hostarch.Addr(a[2]+16), b[:], mm.IOOpts{}); n == len(b) {
				child = int(int32(binary.LittleEndian.Uint32(b[:])))
			}
		}
	}
	if child <= 0 || t.p.forkers[child] != t.tid {
		return
	}
	if pend, ok := sharedPending(t.p.pid); ok && pend&sigBit(unix.SIGCHLD) != 0 {
		s.takeSharedChildSignal(t)
	}
	if !keeps(t, unix.SIGCHLD) {
		s.takeStoppedChildSignal(t)
	}
	if keeps(t, unix.SIGCHLD) {
		s.sendStop(t)
	}
}

// keeps reports whether a signal sig is kept for t.
func keeps(t *task, sig unix.Signal) bool {
	return slices.ContainsFunc(t.pending, func(ps pendingSignal) bool { return ps.sig == sig })
}

// takeSharedChildSignal takes the SIGCHLD pending for t's process and
// keeps it for t, with its siginfo: t, stopped at the exit of its wait,
// makes an rt_sigtimedwait for it, at whose return to user mode it
// usually takes the signal already (kept by noteSignal), else the call
// takes it (its siginfo read before with PTRACE_PEEKSIGINFO). Another
// thread woken for the signal may take it first.
func (s *Sandbox) takeSharedChildSignal(t *task) {
	var sis [8]siginfo
	n, err := ptracePeekSharedSiginfo(t.tid, sis[:])
	if err != nil {
		return
	}
	for _, si := range sis[:n] {
		if si.signo() != int32(unix.SIGCHLD) {
			continue
		}
		var b [24]byte // sigset_t, then a zero timespec
		binary.LittleEndian.PutUint64(b[:], sigBit(unix.SIGCHLD))
		if s.writeMem(t.p.pid, scratchAddr, b[:]) != nil {
			return
		}
		r, err := s.inject(t, unix.SYS_RT_SIGTIMEDWAIT, uintptr(scratchAddr), 0, uintptr(scratchAddr)+8, 8)
		if err == nil && r == uintptr(unix.SIGCHLD) {
			t.keep(pendingSignal{unix.SIGCHLD, si})
		}
		break
	}
	for _, ps := range t.pending {
		if ps.sig == unix.SIGCHLD {
			s.forgetForker(t.p, &ps.si)
		}
	}
}

// takeStoppedChildSignal takes a SIGCHLD of a child that t forked from
// another thread of t's process that took it from the process and is
// stopped for it, its stop not served yet (takenSig: served without it),
// and keeps it for t.
func (s *Sandbox) takeStoppedChildSignal(t *task) {
	for _, u := range t.p.tasks {
		var si siginfo
		if u == t || u.dead() || u.state != taskRunning || u.takenSig != 0 ||
			ptraceGetSiginfo(u.tid, &si) != nil || si.signo() != int32(unix.SIGCHLD) ||
			si.code() <= 0 || si.code() == siKernel || t.p.forkers[int(si.pid())] != t.tid {
			continue
		}
		s.forgetForker(t.p, &si)
		u.takenSig = unix.SIGCHLD
		t.keep(pendingSignal{unix.SIGCHLD, si})
		return
	}
}

// forgetForker forgets who forked the child whose exit signal si is, if
// the child has ended.
func (s *Sandbox) forgetForker(p *process, si *siginfo) {
	switch si.code() {
	case cldExited, cldKilled, cldDumped:
		delete(p.forkers, int(si.pid()))
	}
}

// taken reports whether sig, the signal of t's signal-delivery-stop, was
// taken by another thread (waitDone), and forgets it: the stop is served
// without it.
func (t *task) taken(sig unix.Signal) bool {
	if t.takenSig == 0 || sig != t.takenSig {
		return false
	}
	t.takenSig = 0
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
