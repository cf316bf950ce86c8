package mm

import (
	"context"
	"iter"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

// Fork returns a copy of the address space, as fork(2) makes for the child:
// vmas are copied except MADV_DONTFORK ones, without mlock; private memory
// is shared copy-on-write (the pmas of both sides need COW, and the parent's
// AddressSpace loses write access to it), only the pages ever touched, as
// Linux copies only the page table entries that exist; MADV_WIPEONFORK
// ranges are empty (zero-filled) in the child; shared mappings are shared.
// The child keeps the layout, break, limits, shared-memory factory,
// metadata and MDWE (unless PR_MDWE_NO_INHERIT); it starts without AIO
// contexts, mlockall(MCL_FUTURE) and fault counts (forkFields in
// fork_test.go says what happens to every field).
func (mm *MemoryManager) Fork(ctx context.Context) (*MemoryManager, error) {
	mm.metadataMu.Lock()
	defer mm.metadataMu.Unlock()
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()

	mm2 := &MemoryManager{
		p:             mm.p,
		mf:            mm.mf,
		privateRefs:   mm.privateRefs,
		layout:        mm.layout,
		brk:           mm.brk,
		dataSegment:   mm.dataSegment,
		sharedAnon:    mm.sharedAnon,
		limits:        mm.limits,
		mdwe:          mm.mdwe.inherited(),
		commit:        mm.commit,
		argv:          mm.argv,
		envv:          mm.envv,
		auxv:          append([]AuxEntry(nil), mm.auxv...),
		executable:    mm.executable,
		dumpability:   mm.dumpability,
		vdsoSigReturn: mm.vdsoSigReturn,
	}
	mm2.users.Store(1)
	if mm2.executable != nil {
		mm2.executable.IncRef()
	}

	// Invalidations that arrive while the vmas are copied (Mappable locks
	// are taken by CopyMapping, so activeMu cannot be held across it) are
	// captured and applied to the child afterwards.
	mm.activeMu.Lock()
	mm.captureInvalidations = true
	mm.activeMu.Unlock()

	var err error
	gap := mm2.vmas.FirstGap()
	for vseg := mm.vmas.FirstSegment(); vseg.Ok(); vseg = vseg.NextSegment() {
		v := vseg.Value()
		if v.flags.has(vmaDontFork) {
			continue
		}
		vr := hostarch.AddrRange(vseg.Range())
		if v.flags.has(vmaAccount) && !mm.enoughMemoryLocked(vr.Length()) {
			// Like Linux's dup_mmap, the child's copy of an accounted
			// vma is committed, checked against the parent's figures.
			err = unix.ENOMEM
			break
		}
		v.mlockMode = memmap.MLockNone
		// Like Linux's anon_vma_fork, the child's vma gets an anon_vma
		// of its own chained to the parent's (a wiped one gets none).
		if v.anonVMA != 0 && !v.flags.has(vmaWipeOnFork) {
			v.anonVMA, v.anonChained = newAnonVMA(), true
		} else {
			v.anonVMA, v.anonChained = 0, false
		}
		if v.mappable != nil {
			if err = v.mappable.CopyMapping(ctx, mm2, vr, vr, v.off, v.canWriteMappable()); err != nil {
				break
			}
		}
		if v.id != nil {
			v.id.IncRef()
		}
		mm2.accountVMA(&v, vr.Length(), +1)
		gap = mm2.vmas.InsertWithoutMergingUnchecked(gap, addrSegRange(vr), v).NextGap()
	}
	// Guard regions are kept in the child within the vmas it inherited,
	// except wiped ones (their page tables, which hold the guard
	// markers, are not copied).
	for g := mm.guards.FirstSegment(); g.Ok(); g = g.NextSegment() {
		for vseg := range mm2.vmas.Segments(g.Range()) {
			if vseg.ValuePtr().flags.has(vmaWipeOnFork) {
				continue
			}
			mm2.guards.Add(g.Range().Intersect(vseg.Range()), struct{}{})
		}
	}

	// CopyMapping made the child visible to Mappables, which may call its
	// Invalidate now: hold its activeMu (first, as the lock order says)
	// while its pmas are copied.
	mm2.activeMu.Lock()
	mm.activeMu.Lock()
	mm.captureInvalidations = false
	captured := mm.capturedInvalidations
	mm.capturedInvalidations = nil
	if err != nil {
		mm.activeMu.Unlock()
		mm2.activeMu.Unlock()
		mm2.DecUsers(ctx)
		return nil, err
	}

	// Copy the pmas of inherited vmas.
	var lostWrite []hostarch.AddrRange
	pgap := mm2.pmas.FirstGap()
	mm.privateRefs.mu.Lock()
	for pseg := mm.pmas.FirstSegment(); pseg.Ok(); pseg = pseg.NextSegment() {
		vseg := mm2.vmas.FindSegment(pseg.Start())
		// pmas lie within vmas, but a parent vma may be split in several
		// pmas; walk the pma range piecewise against the child's vmas.
		pr := hostarch.AddrRange(pseg.Range())
		for addr := pr.Start; addr < pr.End; {
			vseg = mm2.vmas.FindSegment(addr)
			if !vseg.Ok() {
				// Not inherited (MADV_DONTFORK): skip to the next vma.
				next := mm2.vmas.LowerBoundSegment(addr)
				if !next.Ok() || next.Start() >= pr.End {
					break
				}
				addr = next.Start()
				continue
			}
			r := hostarch.AddrRange{Start: addr, End: min(vseg.End(), pr.End)}
			addr = r.End
			v := vseg.ValuePtr()
			if v.flags.has(vmaWipeOnFork) || !v.written() {
				// Like Linux, pages of a vma never written (no
				// anon_vma) are not copied: the child faults them
				// again, from the file or as zeros.
				continue
			}
			if r != pr {
				pseg = mm.pmas.Isolate(pseg, addrSegRange(r))
				pr = hostarch.AddrRange(pseg.Range())
				addr = pr.End
			}
			p := pseg.ValuePtr()
			if v.private() {
				if p.effectivePerms.Write {
					lostWrite = append(lostWrite, pr)
				}
				p.needCOW = true
				p.effectivePerms.Write = false
			}
			// Like Linux's copy_page_range, which copies only the
			// page table entries that exist, the child gets only the
			// pages of private memory that were ever touched: the
			// holes stay the parent's alone (faulting them later is
			// private to each side, and mincore tells the same).
			for cr := range mm.forkedRuns(pseg, pr, v.private() && p.private) {
				fr := pmaRef{pseg}.fileRange(cr)
				if v.private() && p.private {
					mm.privateRefs.incRefLocked(fr)
				} else {
					p.file.IncRef(fr)
				}
				cp := *p
				cp.off = fr.Start
				cp.imBase = nil
				cp.mapped = 0 // nothing is mapped in the child's AddressSpace
				pgap = mm2.pmas.InsertWithoutMergingUnchecked(pgap, addrSegRange(cr), cp).NextGap()
				mm2.curRSS += cr.Length()
			}
		}
	}
	mm.privateRefs.mu.Unlock()
	mm2.maxRSS = mm2.curRSS
	for _, r := range lostWrite {
		mm.unmapASLocked(r)
	}
	mm.activeMu.Unlock()
	mm2.activeMu.Unlock()

	for _, inv := range captured {
		mm2.Invalidate(inv.ar, inv.opts)
	}
	return mm2, nil
}

// forkedRuns yields the parts of pr, a range of the parent's pma pseg, that
// a fork child gets: all of it, or for private memory (private) the runs
// of pages that hold data, adjacent runs joined. If the pages cannot be
// mapped to ask, all of it. Preconditions: activeMu held for writing.
func (mm *MemoryManager) forkedRuns(pseg pmaIterator, pr hostarch.AddrRange, private bool) iter.Seq[hostarch.AddrRange] {
	return func(yield func(hostarch.AddrRange) bool) {
		if !private {
			yield(pr)
			return
		}
		if _, err := mm.internalMappingsLocked(pseg); err != nil {
			yield(pr)
			return
		}
		p := pseg.ValuePtr()
		var cur hostarch.AddrRange
		for run := range privateDataRuns(internalMappingsOf(pseg, pr), p.file, pmaRef{pseg}.fileRange(pr)) {
			r := hostarch.AddrRange{Start: pr.Start + hostarch.Addr(run[0]<<hostarch.PageShift), End: pr.Start + hostarch.Addr(run[1]<<hostarch.PageShift)}
			if cur.Length() != 0 && cur.End == r.Start {
				cur.End = r.End
				continue
			}
			if cur.Length() != 0 && !yield(cur) {
				return
			}
			cur = r
		}
		if cur.Length() != 0 {
			yield(cur)
		}
	}
}
