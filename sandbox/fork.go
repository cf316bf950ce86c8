package sandbox

import (
	"fmt"
	"strings"

	"github.com/vmspace/vmspace/hostarch"
	"golang.org/x/sys/unix"
)

// fork, as vmspace does it:
//
// The host forks (vfork and CLONE_VM clones having been made forks at entry,
// see syscalls.go), and ptrace stops the parent at the fork event and the
// child before its first instruction. The host child's mappings are the
// parent's: shared mappings of the memory file, so that parent and child
// would see each other's writes to private memory. Before either runs on:
//
//   - the parent's manager forks (mm.Fork): private memory becomes
//     copy-on-write for both, and the parent's host mappings of it lose
//     write permission (stubAS.forking turns the manager's unmapping of
//     them into mprotect, so that the host kernel can still read them);
//   - at the child's first stop, its host mappings are brought in line
//     with the child's manager (forkFixup): private memory loses write
//     permission, mappings the child does not inherit (MADV_DONTFORK,
//     MADV_WIPEONFORK) go.
//
// Writes then fault in each process and break copy-on-write in its own
// manager. Threads (CLONE_THREAD) share their process's manager.
//
// Other threads of a forking parent run on during the fork; a write they
// make between the host fork and the manager's fork is seen by the child.

// forkFixup is the work for a fork child's first stop.
type forkFixup struct {
	// parentMaps are the parent's host mappings at the fork (what the
	// host gave the child).
	parentMaps []shadowPiece
}

// shadowPiece is one range of a shadow set.
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
	flags := uint64(unix.SIGCHLD)
	if t.regs.Orig_rax == unix.SYS_CLONE {
		flags = t.regs.Rdi
	}
	p := t.p
	if flags&unix.CLONE_THREAD != 0 {
		s.newTask(p, ctid)
	} else {
		s.forkProcess(t, ctid)
	}
	if ws, ok := s.early[ctid]; ok {
		delete(s.early, ctid)
		s.deferred = append(s.deferred, waitResult{ctid, ws})
	}
}

// forkProcess makes the process of a new fork child ctid of t.
func (s *Sandbox) forkProcess(t *task, ctid int) {
	p := t.p
	s.stats.Processes++
	cp := s.newProcess(ctid)
	cp.memFD, cp.memFDOurs = p.memFD, p.memFDOurs
	cp.exe, cp.name = p.exe, p.name
	s.newTask(cp, ctid)
	if p.mm == nil {
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
	cp.mm = cm
	cp.as = &stubAS{s: s, p: cp}
	cp.fixup = &forkFixup{parentMaps: parentMaps}
}

// firstStop serves the first stop of a new task.
func (s *Sandbox) firstStop(t *task, ws unix.WaitStatus) {
	p := t.p
	if p.fixup != nil {
		fx := p.fixup
		p.fixup = nil
		if err := s.fixFork(t, fx); err != nil {
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

// fixFork brings a fork child's host mappings in line with its manager and
// activates the manager.
func (s *Sandbox) fixFork(t *task, fx *forkFixup) error {
	p := t.p
	vmas := p.mm.VMAs(s.ctx)
	type op struct {
		ar    hostarch.AddrRange
		unmap bool
		perms hostarch.AccessType
	}
	var ops []op
	add := func(o op) {
		if n := len(ops); n > 0 && ops[n-1].ar.End == o.ar.Start && ops[n-1].unmap == o.unmap && ops[n-1].perms == o.perms {
			ops[n-1].ar.End = o.ar.End
			return
		}
		ops = append(ops, o)
	}
	vi := 0
	for _, pc := range fx.parentMaps {
		addr := pc.ar.Start
		for addr < pc.ar.End {
			for vi < len(vmas) && vmas[vi].Range.End <= addr {
				vi++
			}
			if vi >= len(vmas) || vmas[vi].Range.Start >= pc.ar.End {
				// Not inherited.
				add(op{ar: hostarch.AddrRange{Start: addr, End: pc.ar.End}, unmap: true})
				break
			}
			v := vmas[vi]
			if v.Range.Start > addr {
				add(op{ar: hostarch.AddrRange{Start: addr, End: v.Range.Start}, unmap: true})
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
			m := pc.m
			switch {
			case wipe && private:
				add(op{ar: r, unmap: true})
			case private && m.perms.Write:
				m.perms.Write = false
				add(op{ar: r, perms: m.perms})
				p.as.record(r, m)
			default:
				p.as.record(r, m)
			}
			addr = r.End
		}
	}
	for _, o := range ops {
		var r uintptr
		var err error
		if o.unmap {
			r, err = s.inject(t, unix.SYS_MUNMAP, uintptr(o.ar.Start), uintptr(o.ar.Length()))
		} else {
			r, err = s.inject(t, unix.SYS_MPROTECT, uintptr(o.ar.Start), uintptr(o.ar.Length()), uintptr(o.perms.Prot()))
		}
		if err != nil {
			return err
		}
		if e, bad := errnoOf(r); bad {
			return fmt.Errorf("sandbox: fixing the fork child's mappings at %v: %w", o.ar, e)
		}
	}
	p.as.shadow.MergeAll()
	return s.activate(p.mm, p.as)
}
