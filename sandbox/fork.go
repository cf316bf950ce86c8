package sandbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/platform/ptrace"
	"golang.org/x/sys/unix"
)

// fork, vfork and clone, as vmspace does them:
//
// The host makes the child; ptrace stops the parent at the clone event
// (inside its system call) and the child before its first instruction.
//
//   - A thread (CLONE_THREAD) joins its process.
//   - A process sharing memory (CLONE_VM without CLONE_THREAD: vfork,
//     posix_spawn) shares its parent's host address space, hence its
//     memory manager (space), until it execs.
//   - A fork child has a copy of its parent's host mappings: shared
//     mappings of the memory file (and of host files), through which
//     parent and child would see each other's writes to private memory.
//     So the parent's manager forks (mm.ForkWithPlan), sharing private
//     pages copy-on-write, and its plan says what the child inherits.
//     The host then follows the managers, as Linux's page tables do: the
//     plan's Copy ranges (private memory the parent could write, now
//     shared) are made read-only in both processes, and a write fault
//     (or a system call that will write there: prevalidate.go) breaks
//     copy-on-write in the writer's manager, which maps its own page.
//     With the parent still stopped in its fork, its host mappings of the
//     Copy ranges (which stubAS.PreFork kept until the plan was read)
//     become read-only at once (mprotect injected into another of its
//     threads: stubAS.protectNow), never unmapped: its other threads run
//     on, and the host kernel reads that memory for them (a signal frame
//     at rt_sigreturn, a system call's buffer) where Linux's would find
//     it mapped (if no other thread can take the call now, none runs:
//     the record says read-only at once, the host at the shootdown
//     before any task runs on: stubAS.protectLater). What the host
//     kernel may write for them without the
//     tracer seeing them stop first (kernelWrites: the rseq areas and
//     clear_child_tid words, the frame of a signal given but maybe not yet
//     written, the buffers of a system call made through the host, which
//     may be blocked in it) is not shared at all: the child gets copies
//     of those pages and the parent keeps them writable (mm.ForkPinned,
//     Linux's copy at fork of pages pinned for DMA), since a host write to
//     a read-only page fails where Linux's would break copy-on-write
//     (the thread killed with SIGSEGV, the signal replaced by SIGSEGV
//     SI_KERNEL, the call failed with EFAULT). Then the
//     child is brought in line with its manager (fixFork): its inherited
//     mappings of the Copy ranges are mapped again read-only, those in
//     the plan's Keep ranges are kept where the child's manager maps the
//     same pages (what it has there is mapped, nothing is faulted in:
//     like Linux's fork, which copies only the page table entries that
//     exist, the child has no page of memory the parent never touched
//     or that the fork did not copy, and mincore and pagemap say so) and
//     replaced where it maps others; every other inherited host mapping goes
//     (MADV_DONTFORK, MADV_WIPEONFORK, and whatever the parent's manager
//     dropped since the host fork: the parent's pages may be freed and
//     reused at once, while the child must never see them). At the exit
//     of its fork system call, the parent's manager records the Copy
//     ranges as mapped, read-only (forkDone).
//
// The memory the host kernel writes by itself for a thread (its rseq
// area, clear_child_tid word and robust list: kareas.go) must never be
// read-only in the host when the kernel writes it, or the thread is
// killed or the write lost. So it is made private and writable on both
// sides before either runs on: in the child by fixFork, in the parent by
// the keeping of kernel areas that precedes every flush of deferred
// unmaps (Sandbox.resume). So are, in the parent at the exit of its fork,
// the futex words of the robust mutexes its threads hold, which the
// kernel marks FUTEX_OWNER_DIED when a holder exits. The pages holding them are copied at each
// fork (a thread's areas share a few pages); the rest of private memory
// is copied only when written, and the memory file's usage grows only by
// what is written.
//
// A fork whose child cannot have a manager (mm.ForkWithPlan fails: ENOMEM
// past CommitLimit) fails as Linux's does: the program sees the error and
// no child (failedFork).
//
// The parent's shadow tells what the child inherited only if the parent's
// host mappings did not change between the forking thread's last
// resumption and its clone event (task.mapGen); otherwise no inherited
// mapping is trusted, and everything the child keeps is mapped again.
//
// Other threads of a forking parent run on during the fork; a write they
// make between the host fork and the moment the parent's mappings become
// read-only (at the fork event, before the child first runs), or, in the
// pages copied for the child, before the copy, is seen by the child, as if
// made before the fork.
//
// A fork child with CLONE_CHILD_SETTID (glibc's fork sets the thread id in
// the child's thread descriptor so) writes its thread id into its memory
// before its first stop, through the host mapping it shares with its
// parent: into the parent's page. So at the entry of such a clone (which
// stops: child_tid is a pointer argument) the word is saved (sysClone),
// and the parent gets it back once the child has its own copy (forkDone).
// The other way round, the parent's word at parent_tid, which the host's
// clone sets (CLONE_PARENT_SETTID, CLONE_PIDFD) after Linux's would have
// copied the memory but before the managers fork, is saved at the entry
// (saveParentTid) and given back to the child's copy (childParentTid).

// forkFixup is the work for a fork child's first stop.
type forkFixup struct {
	// copy are the parent's host mappings in the fork plan's Copy
	// ranges, shared copy-on-write, which the child maps read-only.
	copy []shadowPiece
	// keep are the parent's host mappings in the plan's Keep ranges,
	// which may stay as they are, with their permissions, if the child's
	// manager maps them the same way.
	keep []shadowPiece
	// trusted is true if the child inherited exactly the parent's shadow
	// (the parent's host mappings did not change since the forking
	// thread last ran).
	trusted bool
	// pinned are the ranges the child got copies of at the fork
	// (mm.ForkPlan.Pinned).
	pinned []hostarch.AddrRange
	// settid is the child's CLONE_CHILD_SETTID word, 0 if none.
	settid hostarch.Addr
}

// childSettid returns the address at which the host's clone of t, at its
// fork event, has the child write its thread id (CLONE_CHILD_SETTID), or
// 0.
func childSettid(t *task) hostarch.Addr {
	if t.regs.Orig_rax == unix.SYS_CLONE && t.regs.Rdi&unix.CLONE_CHILD_SETTID != 0 {
		return hostarch.Addr(t.regs.R10)
	}
	return 0
}

// inRanges reports whether ar lies within one of rs.
func inRanges(ar hostarch.AddrRange, rs []hostarch.AddrRange) bool {
	for _, r := range rs {
		if r.IsSupersetOf(ar) {
			return true
		}
	}
	return false
}

// shadowPiece is one range of a process's host mappings and its mapping.
type shadowPiece struct {
	ar hostarch.AddrRange
	m  ptrace.Mapping
}

// piecesIn returns the shadow's ranges within rs (sorted and disjoint),
// with their mappings.
func (as *stubAS) piecesIn(rs []hostarch.AddrRange) []shadowPiece {
	var out []shadowPiece
	for _, pc := range as.h.PiecesIn(rs) {
		out = append(out, shadowPiece{pc.Range, pc.Mapping})
	}
	return out
}

// cloneEvent serves a fork, vfork or clone event of t.
func (s *Sandbox) cloneEvent(t *task, ev int) {
	msg, err := ptraceEventMsg(t.tid)
	if err != nil {
		return
	}
	ctid := int(msg)
	if err := s.fetchRegs(t); err != nil {
		return
	}
	var flags uint64
	switch t.regs.Orig_rax {
	case unix.SYS_CLONE:
		flags = t.regs.Rdi
	case unix.SYS_VFORK:
		flags = unix.CLONE_VM | unix.CLONE_VFORK
	}
	p := t.p
	forgetHiddenExits(p, ctid)
	switch {
	case flags&unix.CLONE_THREAD != 0:
		s.newTask(p, ctid)
	case flags&unix.CLONE_VM != 0:
		s.stats.Processes++
		cp := s.childProcess(p, ctid)
		if p.sp != nil {
			s.joinSpace(cp, p.sp)
		}
		if flags&unix.CLONE_VFORK != 0 {
			t.vforkChild = ctid
		}
	default:
		exitSig := unix.SIGCHLD
		if t.regs.Orig_rax == unix.SYS_CLONE {
			exitSig = unix.Signal(flags & 0xff) // CSIGNAL
		}
		s.forkProcess(t, ctid, exitSig)
		p.noteForker(ctid, t.tid)
		if ct := s.tasks[ctid]; ct != nil {
			ct.altStack = t.altStack // fork keeps the alternate stack
		}
	}
	if ct := s.tasks[ctid]; ct != nil {
		s.inheritKernelAreas(t, ct, flags)
	}
	if ws, ok := s.early[ctid]; ok {
		s.forgetEarly(ctid)
		s.deferred = append([]waitResult{{ctid, ws}}, s.deferred...)
	}
}

// inVfork reports whether t may be waiting in the host for its
// CLONE_VFORK child to exec or exit: the child is still a process of t's
// address space (it leaves it at its exec, and the sandbox forgets it once
// it has exited, after the host released its parent). Such a wait ends
// only when the child lets it (or with a fatal signal), whatever is sent
// to t: a SIGSTOP stops t only after it, so a task of the sandbox that
// waits for t to stop while the child is held stopped waits forever.
func (s *Sandbox) inVfork(t *task) bool {
	if t.vforkChild == 0 {
		return false
	}
	if c := s.procs[t.vforkChild]; c != nil && c.sp != nil && c.sp == t.p.sp {
		return true
	}
	t.vforkChild = 0
	return false
}

// childProcess makes the process of a new child ctid of p, with its first
// task.
func (s *Sandbox) childProcess(p *process, ctid int) *process {
	cp := s.newProcess(ctid)
	cp.memFD, cp.memFDOurs = p.memFD, p.memFDOurs
	cp.stubPrivate = p.stubPrivate
	cp.exe, cp.name = p.exe, p.name
	s.newTask(cp, ctid)
	s.reportFork(p, cp)
	return cp
}

// forkProcess makes the process of a new fork child ctid of t, whose exit
// signal is exitSig, and parks t until the child's host mappings follow
// its manager.
func (s *Sandbox) forkProcess(t *task, ctid int, exitSig unix.Signal) {
	p := t.p
	if p.sp == nil {
		s.stats.Processes++
		s.childProcess(p, ctid)
		return
	}
	trusted := t.mapGen != 0 && t.mapGen == p.as.h.Generation()+1 && !p.as.h.Pending()
	// What the host kernel may write for the parent's threads stays
	// writable in the parent; the child gets copies.
	cm, plan, err := p.mm.ForkPinned(s.ctx, s.kernelWrites(p.sp, t))
	if err != nil {
		s.failFork(t, ctid, exitSig, err)
		return
	}
	s.stats.Processes++
	cp := s.childProcess(p, ctid)
	s.joinSpace(cp, s.newSpace(cm))
	s.keepSettid(t)
	s.childParentTid(t, cm, plan.Pinned)
	// The fork left the parent's host mappings as they were
	// (stubAS.PreFork): what the child inherited, if trusted.
	fx := &forkFixup{copy: p.as.piecesIn(plan.Copy), keep: p.as.piecesIn(plan.Keep), trusted: trusted,
		pinned: plan.Pinned, settid: childSettid(t)}
	cp.fixup = fx
	cp.forkParent = t
	// The parent's writable mappings of what is now shared become
	// read-only at once, never unmapped: its other threads, which run
	// on, and the host kernel for them, still read them. (Its manager
	// counts them as unmapped until the exit of its fork: forkDone.) If
	// no task can make the call now, none runs before the shootdown,
	// which makes it.
	if !p.as.protectNow(fx.copy) {
		p.as.protectLater(fx.copy)
	}
	for _, pc := range fx.copy {
		t.forkShared = append(t.forkShared, pc.ar)
	}
	if !t.dead() {
		t.state = taskParked
	}
	if p.held == t {
		p.held = nil
	}
	// (A sibling stopped to make the calls stays held until it is
	// resumed with the borrowed: resumeBorrowed.)
}

// keepSettid makes the word that t saved at the entry of its clone
// (sysClone) the one to restore at the exit of its fork (forkDone), if the
// clone that made a child was the one that saved it.
func (s *Sandbox) keepSettid(t *task) {
	if st := t.settid; st != nil && t.regs.Orig_rax == unix.SYS_CLONE && t.regs.Rdi&unix.CLONE_CHILD_SETTID != 0 && t.regs.R10 == uint64(st.addr) {
		t.settidFork = st
	}
	t.settid = nil
}

// failedFork is a fork whose child's memory manager could not be made
// (mm.Fork failed: ENOMEM past CommitLimit, say). Linux's fork then makes
// no child and returns the error; the host has made one, which the
// program must never see: it is killed and reaped at once by the tracer
// (failFork), which hands its zombie, and its exit signal, to the parent;
// at the exit of the parent's fork system call the zombie is reaped in the
// parent and the call made to return the error (finishFailedFork). The
// exit signal is taken back there if still pending, and is otherwise kept
// from whichever thread of the parent it reaches (hiddenExit).
//
// Races are left: another thread of the parent that waits for any child
// between the two reaps may get the dead child, and one that takes the
// exit signal with sigwaitinfo or a signalfd gets it. If the exit signal
// was already pending (from another child), the child's is the same
// signal (standard signals are not queued), and is left alone.
//
// What the host's clone gave the parent for the child is taken back as
// well, since Linux's fork fails before it gives any: the word at
// parent_tid (CLONE_PARENT_SETTID's thread id, CLONE_PIDFD's descriptor
// number) is restored and CLONE_PIDFD's descriptor closed
// (undoParentTid); CLONE_CHILD_SETTID's word is restored as after any
// fork (forkDone).
type failedFork struct {
	// pid is the host child's.
	pid int
	// sig is its exit signal (0 if none).
	sig unix.Signal
	// errno is what the fork returns.
	errno unix.Errno
	// ptid is the parent's word at parent_tid before the clone, if the
	// clone wrote it (CLONE_PARENT_SETTID, CLONE_PIDFD), to restore;
	// pidfd is true if the word is now a descriptor of the child, to
	// close.
	ptid  *settidSave
	pidfd bool
}

// hiddenExit is the exit signal sig of a fork child pid killed unseen.
type hiddenExit struct {
	pid int
	sig unix.Signal
}

// failFork serves the clone event of t whose new child ctid, with exit
// signal exitSig, cannot have a memory manager (err): the child is killed
// and reaped unseen, and t runs to the exit of its fork system call, which
// returns the error (finishFailedFork).
func (s *Sandbox) failFork(t *task, ctid int, exitSig unix.Signal, err error) {
	e := unix.ENOMEM
	errors.As(err, &e)
	if debug {
		fmt.Fprintf(os.Stderr, "vmspace-debug: fork of %d: child %d killed unseen, fork returns %v: %v\n", t.tid, ctid, e, err)
	}
	p := t.p
	before, ok := sharedPending(p.pid)
	reapUnseen(ctid)
	// Reports of it the main loop holds are stale.
	s.forgetEarly(ctid)
	kept := s.deferred[:0]
	for _, wr := range s.deferred {
		if wr.tid != ctid {
			kept = append(kept, wr)
		}
	}
	clear(s.deferred[len(kept):])
	s.deferred = kept
	if exitSig > 0 && exitSig <= 64 && ok && before&(1<<(exitSig-1)) == 0 && len(p.hiddenExits) < maxHiddenExits {
		p.hiddenExits = append(p.hiddenExits, hiddenExit{ctid, exitSig})
	}
	ff := &failedFork{pid: ctid, sig: exitSig, errno: e}
	if st := takeParentTid(t); st != nil {
		ff.ptid, ff.pidfd = st, t.regs.Rdi&unix.CLONE_PIDFD != 0
	}
	t.failedFork = ff
	// The child may have written its thread id into the parent's page.
	s.keepSettid(t)
	t.state = taskForkExit
}

// maxHiddenExits bounds a process's hiddenExits (one is left behind only
// when the program takes the signal itself: see failedFork).
const maxHiddenExits = 64

// reapUnseen kills the new host child pid, which the sandbox traces but
// has not taken as a task, and waits until the tracer has reaped it:
// its zombie is then its parent's.
func reapUnseen(pid int) {
	unix.Kill(pid, unix.SIGKILL)
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(pid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || ws.Exited() || ws.Signaled() {
			return
		}
		if ws.Stopped() {
			// Its first stop or its exit-stop: SIGKILL ends it.
			ptraceCont(pid, 0)
		}
	}
}

// sharedPending returns the signals pending for the whole of process pid
// (ShdPnd in /proc/PID/status), bit n-1 for signal n.
func sharedPending(pid int) (uint64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "ShdPnd:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return m, err == nil
		}
	}
	return 0, false
}

// finishFailedFork ends t's failed fork at the exit of its system call: t
// reaps the dead child's zombie and takes its exit signal back if it is
// still pending, and the call returns the error.
func (s *Sandbox) finishFailedFork(t *task, ff *failedFork) {
	p := t.p
	s.inject(t, unix.SYS_WAIT4, uintptr(ff.pid), 0, unix.WALL|unix.WNOHANG, 0)
	for i, h := range p.hiddenExits {
		if h.pid != ff.pid {
			continue
		}
		bit := uint64(1) << (h.sig - 1)
		if pend, ok := sharedPending(p.pid); ok && pend&bit != 0 {
			var b [24]byte // sigset_t, then a zero timespec
			binary.LittleEndian.PutUint64(b[:], bit)
			if s.writeMem(p.pid, scratchAddr, b[:]) == nil {
				if r, err := s.inject(t, unix.SYS_RT_SIGTIMEDWAIT, uintptr(scratchAddr), 0, uintptr(scratchAddr)+8, 8); err == nil && r == uintptr(h.sig) {
					p.hiddenExits = append(p.hiddenExits[:i], p.hiddenExits[i+1:]...)
				}
			}
		}
		break
	}
	s.undoParentTid(t, ff)
	t.failedFork = nil
	if s.fetchRegs(t) == nil {
		t.regs.Rax = uint64(-int64(ff.errno))
		t.regState = regsOwed
	}
}

// saveParentTid returns the word at the parent_tid address of a clone
// for a new process with CLONE_PARENT_SETTID or CLONE_PIDFD (arguments a),
// which the host's clone overwrites, or nil: the child's copy gets it back
// (childParentTid), or the parent if the fork fails (undoParentTid).
func (s *Sandbox) saveParentTid(t *task, a [6]uint64) *settidSave {
	addr := hostarch.Addr(a[2])
	if t.p.mm == nil || a[0]&(unix.CLONE_VM|unix.CLONE_THREAD) != 0 ||
		a[0]&(unix.CLONE_PARENT_SETTID|unix.CLONE_PIDFD) == 0 || addr+4 < addr {
		return nil
	}
	st := &settidSave{addr: addr}
	if n, err := t.p.mm.CopyIn(s.ctx, addr, st.old[:], mm.IOOpts{IgnorePermissions: true}); err != nil || n != len(st.old) {
		return nil
	}
	return st
}

// takeParentTid returns, and forgets, the word that t saved at the entry
// of its clone (saveParentTid) if the clone whose event t is at is the
// one that saved it.
func takeParentTid(t *task) *settidSave {
	st := t.ptid
	t.ptid = nil
	if st != nil && t.regs.Orig_rax == unix.SYS_CLONE && t.regs.Rdx == uint64(st.addr) &&
		t.regs.Rdi&(unix.CLONE_PARENT_SETTID|unix.CLONE_PIDFD) != 0 {
		return st
	}
	return nil
}

// childParentTid gives the fork child of t, whose manager is cm, back the
// word at parent_tid that the host's clone overwrote (CLONE_PARENT_SETTID's
// thread id, CLONE_PIDFD's descriptor number). Linux's clone writes it
// after it has copied the parent's memory, so the child's copy holds the
// word from before the clone; the host's clone wrote it through the
// parent's host mapping before the managers forked, into the page the
// child's manager now shares with the parent's, or copied (pinned). So
// where the child's manager shares that page, the child breaks
// copy-on-write and its copy gets the old word back, as does a copy;
// shared memory (the child sees the write on Linux too) and a page the
// child did not inherit are left alone.
func (s *Sandbox) childParentTid(t *task, cm *mm.MemoryManager, pinned []hostarch.AddrRange) {
	st, pm := takeParentTid(t), t.p.mm
	if st == nil || pm == nil {
		return
	}
	ar := hostarch.AddrRange{Start: st.addr, End: st.addr + hostarch.Addr(len(st.old))}
	if rs := cm.Regions(ar); len(rs) != 1 || !rs[0].Mapped || !rs[0].Private {
		return
	}
	// A page the child got a copy of at the fork (pinned) was copied
	// with the word too.
	if !sameBacking(pm.Backings(ar), cm.Backings(ar)) && !inRanges(ar, pinned) {
		return
	}
	cm.CopyOut(s.ctx, st.addr, st.old[:], mm.IOOpts{IgnorePermissions: true})
}

// sameBacking reports whether a and b describe the same pages, all backed.
func sameBacking(a, b []mm.Backing) bool {
	if len(a) == 0 || len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Range != b[i].Range || a[i].File != b[i].File || a[i].Offset != b[i].Offset {
			return false
		}
	}
	return true
}

// undoParentTid takes back from t, at the exit of its refused fork, what
// the host's clone gave it at parent_tid: CLONE_PIDFD's descriptor is
// closed, and the word is restored.
func (s *Sandbox) undoParentTid(t *task, ff *failedFork) {
	st, m := ff.ptid, t.p.mm
	if st == nil || m == nil {
		return
	}
	if ff.pidfd {
		var b [4]byte
		if n, err := m.CopyIn(s.ctx, st.addr, b[:], mm.IOOpts{IgnorePermissions: true}); err == nil && n == len(b) {
			if fd := int32(binary.LittleEndian.Uint32(b[:])); fd >= 0 && (fd != int32(t.p.memFD) || !t.p.memFDOurs) {
				s.inject(t, unix.SYS_CLOSE, uintptr(fd))
			}
		}
	}
	m.CopyOut(s.ctx, st.addr, st.old[:], mm.IOOpts{IgnorePermissions: true})
}

// hiddenExit reports whether sig, with si, is the exit signal of a fork
// child of p killed unseen, which no thread of p may be given; it is then
// forgotten (a signal is given once).
func (s *Sandbox) hiddenExit(p *process, sig unix.Signal, si *siginfo) bool {
	for i, h := range p.hiddenExits {
		if sig == h.sig && int(si.pid()) == h.pid && si.code() > 0 {
			p.hiddenExits = append(p.hiddenExits[:i], p.hiddenExits[i+1:]...)
			return true
		}
	}
	return false
}

// forgetHiddenExits forgets the hidden exit signals of pid in p: pid is
// in use again (a new child of p could have it).
func forgetHiddenExits(p *process, pid int) {
	out := p.hiddenExits[:0]
	for _, h := range p.hiddenExits {
		if h.pid != pid {
			out = append(out, h)
		}
	}
	p.hiddenExits = out
}

// firstStop serves the first stop of a new task.
func (s *Sandbox) firstStop(t *task, ws unix.WaitStatus) {
	p := t.p
	if p.fixup != nil {
		if err := s.fastpathFork(t); err != nil {
			s.killProcess(p, err.Error())
			return
		}
	}
	if fx := p.fixup; fx != nil {
		p.fixup = nil
		err := s.fixFork(t, fx)
		if par := p.forkParent; par != nil {
			p.forkParent = nil
			s.unpark(par)
		}
		if err != nil {
			s.killProcess(p, err.Error())
			return
		}
	}
	// Its clear_child_tid word may lie in memory that is read-only in
	// the host (shared copy-on-write since a fork).
	s.keepTaskAreas(t)
	if ws.StopSignal() == unix.SIGSTOP || event(ws) != 0 {
		s.resume(t, 0, nil)
		return
	}
	// Something else came first (a signal): deliver it.
	var si siginfo
	if ptraceGetSiginfo(t.tid, &si) != nil {
		s.resume(t, 0, nil)
		return
	}
	s.resume(t, ws.StopSignal(), &si)
}

// unpark lets a parent parked at its fork event go on to the exit of its
// fork system call.
func (s *Sandbox) unpark(t *task) {
	if t.state != taskParked {
		return
	}
	t.state = taskForkExit
	s.resume(t, 0, nil)
}

// forkDone finishes a fork in the parent, at the exit of its fork system
// call: it maps the memory it now shares with the child again, read-only
// (what its manager has there, with its permissions), and takes back the
// word the child's CLONE_CHILD_SETTID overwrote.
func (s *Sandbox) forkDone(t *task) {
	if ff := t.failedFork; ff != nil {
		s.finishFailedFork(t, ff)
	}
	rs := t.forkShared
	t.forkShared = nil
	if m := t.p.mm; m != nil && len(rs) > 0 {
		// The kernel areas first: never read-only at the return from
		// an injected call. Then the words of the robust mutexes the
		// threads hold, which the kernel marks at their exit.
		s.keepKernelAreas(t.p.sp)
		s.keepRobustLists(t.p.sp)
		for _, r := range rs {
			m.MapPresent(s.ctx, r.Start, r.Length())
		}
	}
	if st := t.settidFork; st != nil {
		t.settidFork = nil
		if m := t.p.mm; m != nil {
			m.CopyOut(s.ctx, st.addr, st.old[:], mm.IOOpts{IgnorePermissions: true})
		}
	}
	s.uffdForkDone(t)
}

// settidSave is the word at a clone's child_tid address in the parent's
// private memory before the clone.
type settidSave struct {
	addr hostarch.Addr
	old  [4]byte
}

// sysClone serves the entry of a clone: for a new process with
// CLONE_CHILD_SETTID (whose child_tid the filter stops for), it saves the
// parent's word at child_tid, which the child overwrites in the parent's
// page, if that lies in private memory (in shared memory, the parent sees
// the child's write on Linux too). The clone itself runs on the host.
func (s *Sandbox) sysClone(t *task, a [6]uint64) sysResult {
	t.settid = nil
	p := t.p
	t.ptid = s.saveParentTid(t, a)
	addr := hostarch.Addr(a[3])
	if p.mm == nil || a[0]&(unix.CLONE_VM|unix.CLONE_CHILD_SETTID) != unix.CLONE_CHILD_SETTID || addr+4 < addr {
		return pass()
	}
	regions := p.mm.Regions(hostarch.AddrRange{Start: addr, End: addr + 4})
	if len(regions) != 1 || !regions[0].Mapped || !regions[0].Private {
		return pass()
	}
	st := &settidSave{addr: addr}
	if n, err := p.mm.CopyIn(s.ctx, addr, st.old[:], mm.IOOpts{IgnorePermissions: true}); err == nil && n == len(st.old) {
		t.settid = st
	}
	return pass()
}

// fixFork brings a fork child's host mappings in line with its manager:
// afterwards every host mapping of the child maps what its manager maps
// there (see the top of this file).
func (s *Sandbox) fixFork(t *task, fx *forkFixup) error {
	p := t.p
	if err := s.activate(p.mm, p.as); err != nil {
		return err
	}
	call := func(what string, nr uintptr, args ...uintptr) error {
		r, err := s.inject(t, nr, args...)
		if err != nil {
			return err
		}
		if e, bad := errnoOf(r); bad {
			return fmt.Errorf("sandbox: fixing the mappings of fork child %d: %s: %w", p.pid, what, e)
		}
		return nil
	}
	// Unmap everything but what the child may keep or copies: the
	// shadow is empty, so MapFile would not replace it.
	var inherited []shadowPiece
	for _, pc := range fx.copy {
		inherited = append(inherited, pc)
	}
	for _, pc := range fx.keep {
		inherited = append(inherited, pc)
	}
	sort.Slice(inherited, func(i, j int) bool { return inherited[i].ar.Start < inherited[j].ar.Start })
	next := hostarch.Addr(0)
	for _, r := range append(s.withVDSO(inherited, p.mm), shadowPiece{ar: hostarch.AddrRange{Start: ptrace.StubStart, End: ptrace.StubStart}}) {
		if r.ar.Start > next {
			if debug {
				fmt.Fprintf(os.Stderr, "vmspace-debug:   fork child %d: unmap %v\n", p.pid, hostarch.AddrRange{Start: next, End: r.ar.Start})
			}
			if err := call("munmap", unix.SYS_MUNMAP, uintptr(next), uintptr(r.ar.Start-next)); err != nil {
				return err
			}
		}
		next = r.ar.End
	}
	// The rest is stale until the child's manager maps it: confirmed
	// where it maps the same pages with the same permissions (if the
	// child inherited exactly what the shadow shows), mapped over
	// elsewhere. What the child shares with its parent is mapped again
	// read-only (no page is faulted in: MapPresent), until a write
	// breaks copy-on-write.
	for _, pc := range inherited {
		p.as.h.Inherit([]ptrace.Piece{{Range: pc.ar, Mapping: pc.m}})
	}
	p.as.h.SetTrustStale(fx.trusted)
	defer p.as.h.SetTrustStale(false)
	// The child wrote its thread id (CLONE_CHILD_SETTID) before its
	// first stop through the mapping it inherited, into its parent's
	// page: a copy of a page made at the fork (pinned) may have been
	// made before, and gets it now.
	if a := fx.settid; a != 0 && inRanges(hostarch.AddrRange{Start: a, End: a + 4}, fx.pinned) {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], uint32(p.pid))
		p.mm.CopyOut(s.ctx, a, b[:], mm.IOOpts{})
	}
	// First, the memory the host kernel writes for the child becomes its
	// own and writable (its thread id, written before its first stop
	// through the mapping it inherited, is in its copy): the kernel
	// updates the rseq area at the return from every injected call, and
	// a read-only one would kill the child.
	s.keepKernelAreas(p.sp)
	for _, pc := range fx.copy {
		if debug {
			fmt.Fprintf(os.Stderr, "vmspace-debug:   fork child %d: share %v\n", p.pid, pc.ar)
		}
		if err := p.mm.MapPresent(s.ctx, pc.ar.Start, pc.ar.Length()); err != nil {
			return err
		}
	}
	for _, pc := range fx.keep {
		// What the child's manager has there (shared memory, the
		// pages of private memory the parent could not write) is
		// mapped as it says, shared memory the parent could write
		// writable; nothing is faulted in: memory the child has no
		// page of (never touched, or not copied at the fork) stays
		// without one, as on Linux, whose fork copies only the page
		// table entries that exist.
		if err := p.mm.MapPresent(s.ctx, pc.ar.Start, pc.ar.Length()); err != nil {
			return err
		}
	}
	// Whatever the manager does not map goes.
	for _, pc := range inherited {
		for _, r := range p.as.h.StalePieces(pc.ar) {
			if err := call("munmap", unix.SYS_MUNMAP, uintptr(r.Start), uintptr(r.Length())); err != nil {
				return err
			}
			p.as.h.Forget(r)
		}
	}
	return nil
}

// forgetEarly forgets the first stop of tid kept in s.early.
func (s *Sandbox) forgetEarly(tid int) {
	delete(s.early, tid)
	delete(s.earlyParent, tid)
}

// creatorOf returns the process that made the new task tid as the host
// says (/proc/TID/status): its thread group for a thread, else its parent
// (for a CLONE_PARENT child, its creator's parent); 0 if unknown.
func creatorOf(tid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", tid))
	if err != nil {
		return 0
	}
	var tgid, ppid int
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
			tgid, _ = strconv.Atoi(strings.TrimSpace(v))
		} else if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			ppid, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if tgid != 0 && tgid != tid {
		return tgid
	}
	return ppid
}

// noteEarly keeps the first stop ws of the new task tid, seen before its
// creator's clone event, until the event. If the creator has ended
// already (it will report nothing more), the task is killed at once
// (dropEarly).
func (s *Sandbox) noteEarly(tid int, ws unix.WaitStatus) {
	s.early[tid] = ws
	c := creatorOf(tid)
	s.earlyParent[tid] = c
	if c != 0 && c != s.selfPid && s.procs[c] == nil {
		s.killEarly(tid, c)
	}
}

// dropEarly kills the new tasks whose first stop waits in s.early for a
// clone event of p, which has ended (or had when the stop came: noteEarly): a process killed in its fork after
// the host made the child but before the event was reported never reports
// it, and its child would stay stopped, the run never ending. The child
// has no memory manager (the parent's is gone) and has run no instruction
// of the program; it is killed, and its exit report forgets it.
func (s *Sandbox) dropEarly(p *process) {
	for tid, c := range s.earlyParent {
		if c == p.pid {
			s.killEarly(tid, c)
		}
	}
}

// killEarly kills tid, a new task of ended process c (dropEarly).
func (s *Sandbox) killEarly(tid, c int) {
	if debug {
		fmt.Fprintf(os.Stderr, "vmspace-debug: new task %d of ended process %d killed: no clone event\n", tid, c)
	}
	unix.Kill(tid, unix.SIGKILL)
}
