package sandbox

import (
	"fmt"
	"os"
	"strings"

	"github.com/vmspace/vmspace/hostarch"
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
//     mappings of the memory file, through which parent and child would
//     see each other's writes to private memory. So the parent's manager
//     forks (mm.Fork, copy-on-write), and, with the parent still stopped in
//     its fork, the child is brought in line with its manager (forkFixup):
//     mappings it did not inherit (MADV_DONTFORK, MADV_WIPEONFORK) go,
//     and the private memory the parent had mapped writable is copied at
//     once into the child (breaking copy-on-write in the child's manager);
//     other private memory stays shared read-only, copied on write.
//     Then, at the exit of its fork system call, the parent takes its
//     pages back (sole owner again, without copying).
//
// So no process ever has writable memory mapped read-only in the host
// behind the program's back, which matters because the host kernel writes
// into the program's memory by itself: the rseq area on every preemption,
// the clear_child_tid word and the robust futex list at thread exit, system
// call results. The cost is a copy of the parent's writable resident
// memory at each fork (vfork and posix_spawn cost nothing).
//
// Other threads of a forking parent run on during the fork; a write they
// make between the host fork and the child's copy is seen by the child.

// forkFixup is the work for a fork child's first stop.
type forkFixup struct {
	// unmap are the inherited host mappings the child must not have.
	unmap []hostarch.AddrRange
	// copy are the private ranges the parent had mapped writable, which
	// the child copies.
	copy []hostarch.AddrRange
	// keep are the inherited host mappings that stay as they are, with
	// their permissions (shared memory; read-only private memory).
	keep []shadowPiece
}

// shadowPiece is one range of a shadow set: the range and its mapping.
type shadowPiece struct {
	ar hostarch.AddrRange
	m  hostMap
}

// pieces returns the shadow's ranges.
func (as *stubAS) pieces() []shadowPiece {
	var out []shadowPiece
	for seg := as.shadow.FirstSegment(); seg.Ok(); seg = seg.NextSegment() {
		out = append(out, shadowPiece{hostarch.AddrRange(seg.Range()), seg.Value()})
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
	switch {
	case flags&unix.CLONE_THREAD != 0:
		s.newTask(p, ctid)
	case flags&unix.CLONE_VM != 0:
		s.stats.Processes++
		cp := s.childProcess(p, ctid)
		if p.sp != nil {
			s.joinSpace(cp, p.sp)
		}
	default:
		s.forkProcess(t, ctid)
		if ct := s.tasks[ctid]; ct != nil {
			ct.altStack = t.altStack // fork keeps the alternate stack
		}
	}
	if ws, ok := s.early[ctid]; ok {
		delete(s.early, ctid)
		s.deferred = append([]waitResult{{ctid, ws}}, s.deferred...)
	}
}

// childProcess makes the process of a new child ctid of p, with its first
// task.
func (s *Sandbox) childProcess(p *process, ctid int) *process {
	cp := s.newProcess(ctid)
	cp.memFD, cp.memFDOurs = p.memFD, p.memFDOurs
	cp.exe, cp.name = p.exe, p.name
	s.newTask(cp, ctid)
	return cp
}

// forkProcess makes the process of a new fork child ctid of t, and parks t
// until the child has copied what it must.
func (s *Sandbox) forkProcess(t *task, ctid int) {
	p := t.p
	s.stats.Processes++
	cp := s.childProcess(p, ctid)
	if p.sp == nil {
		return
	}
	parentMaps := p.as.pieces()
	p.as.PreFork()
	cm, err := p.mm.Fork(s.ctx)
	p.as.PostFork()
	if err != nil {
		s.killProcess(cp, fmt.Sprintf("fork of the address space failed: %v", err))
		return
	}
	s.joinSpace(cp, s.newSpace(cm))
	fx := s.planFork(cp, parentMaps)
	cp.fixup = fx
	cp.forkParent = t
	t.reown = fx.copy
	t.parked = true
	p.held = nil
}

// planFork classifies the parent's host mappings against the child's vmas.
func (s *Sandbox) planFork(cp *process, parentMaps []shadowPiece) *forkFixup {
	vmas := cp.mm.VMAs(s.ctx)
	fx := &forkFixup{}
	addRange := func(l *[]hostarch.AddrRange, r hostarch.AddrRange) {
		if n := len(*l); n > 0 && (*l)[n-1].End == r.Start {
			(*l)[n-1].End = r.End
			return
		}
		*l = append(*l, r)
	}
	vi := 0
	for _, pc := range parentMaps {
		addr := pc.ar.Start
		for addr < pc.ar.End {
			for vi < len(vmas) && vmas[vi].Range.End <= addr {
				vi++
			}
			if vi >= len(vmas) || vmas[vi].Range.Start >= pc.ar.End {
				addRange(&fx.unmap, hostarch.AddrRange{Start: addr, End: pc.ar.End})
				break
			}
			v := vmas[vi]
			if v.Range.Start > addr {
				addRange(&fx.unmap, hostarch.AddrRange{Start: addr, End: v.Range.Start})
				addr = v.Range.Start
			}
			r := hostarch.AddrRange{Start: addr, End: min(v.Range.End, pc.ar.End)}
			private := strings.HasSuffix(v.Perms, "p")
			wipe := false
			for _, f := range v.Flags {
				if f == "wf" {
					wipe = true
				}
			}
			switch {
			case private && wipe:
				addRange(&fx.unmap, r)
			case private && pc.m.perms.Write:
				addRange(&fx.copy, r)
			default:
				fx.keep = append(fx.keep, shadowPiece{r, pc.m})
			}
			addr = r.End
		}
	}
	return fx
}

// firstStop serves the first stop of a new task.
func (s *Sandbox) firstStop(t *task, ws unix.WaitStatus) {
	p := t.p
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
	if !t.parked || t.dead {
		return
	}
	t.parked = false
	t.awaitExit = true
	t.inKernel = true
	s.resume(t, 0, nil)
}

// forkDone finishes a fork in the parent, at the exit of its fork system
// call: it takes back, without copying, the pages the child copied.
func (s *Sandbox) forkDone(t *task) {
	rs := t.reown
	t.reown = nil
	for _, r := range rs {
		s.populate(t.p, r, true)
	}
}

// fixFork brings a fork child's host mappings in line with its manager.
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
	for _, r := range fx.unmap {
		if debug {
			fmt.Fprintf(os.Stderr, "vmspace-debug:   fork child %d: unmap %v\n", p.pid, r)
		}
		if err := call("munmap", unix.SYS_MUNMAP, uintptr(r.Start), uintptr(r.Length())); err != nil {
			return err
		}
	}
	for _, pc := range fx.keep {
		p.as.record(pc.ar, pc.m)
	}
	// Copy what the parent had writable. Until copied, those pages are
	// the parent's, still mapped writable (making them read-only first
	// would make the kernel's own writes to the rseq area fail); whatever
	// the manager could not copy is made read-only afterwards
	// (copy-on-write).
	for _, r := range fx.copy {
		if debug {
			fmt.Fprintf(os.Stderr, "vmspace-debug:   fork child %d: copy %v\n", p.pid, r)
		}
		p.as.record(r, hostMap{perms: hostarch.ReadWrite, stale: true})
		s.populate(p, r, true)
	}
	for _, r := range fx.copy {
		for _, pc := range p.as.stalePieces(r) {
			if err := call("mprotect", unix.SYS_MPROTECT, uintptr(pc.Start), uintptr(pc.Length()), unix.PROT_READ); err != nil {
				return err
			}
			p.as.record(pc, hostMap{perms: hostarch.Read})
		}
	}
	return nil
}
