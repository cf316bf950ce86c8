package mm

import (
	"cmp"
	"context"
	"slices"
	"sync/atomic"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
	"github.com/vmspace/vmspace/safemem"
	"golang.org/x/sys/unix"
)

// ForkPlan describes what a fork child inherits, range by range, for a
// platform whose host copies the parent's host address space into the
// child (a traced process that forks): it says how to bring that copy in
// line with the child's manager. Its ranges are page-aligned, sorted and
// disjoint. The child has nothing outside Copy and Keep (unmapped memory,
// MADV_DONTFORK ranges, and MADV_WIPEONFORK ranges, which are empty in the
// child): its host address space must map nothing there.
type ForkPlan struct {
	// Copy are the private ranges whose pages the parent could write
	// until the fork: parent and child now share them copy-on-write
	// (those ever touched; the child has none of the others), and
	// neither may map them writable until a write fault breaks
	// copy-on-write in its manager (the sandbox maps them read-only in
	// both host processes). If the parent's AddressSpace asked for it
	// (AddressSpace.PreFork), its mappings of them are left as they
	// were, and its manager counts them as unmapped: the host must
	// remove or replace them before the parent runs on.
	Copy []hostarch.AddrRange
	// Keep are the child's other ranges: shared memory, private memory
	// the parent could not write, memory never written. The child's
	// manager maps there the parent's pages or none yet, so an inherited
	// host mapping may stay where the child's manager maps the same.
	Keep []hostarch.AddrRange
	// Pinned are the private ranges the parent could write that the
	// child got copies of at the fork (ForkPinned): the parent keeps its
	// pages there as they were, writable and mapped. They lie within
	// Keep: the child's manager maps its own pages there.
	Pinned []hostarch.AddrRange
}

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
	child, _, err := mm.ForkWithPlan(ctx)
	return child, err
}

// ForkWithPlan is Fork, also returning what the child inherits (ForkPlan).
// It brackets the copy with the PreFork and PostFork of the AddressSpace
// active when it starts, if any.
func (mm *MemoryManager) ForkWithPlan(ctx context.Context) (*MemoryManager, ForkPlan, error) {
	return mm.ForkPinned(ctx, nil)
}

// ForkPinned is ForkWithPlan, except that the pages of private memory the
// parent can write within pinned (page-aligned ranges, in any order) are
// copied for the child at once instead of being shared copy-on-write: the
// parent keeps them writable and mapped in its AddressSpace, so that
// accesses to them made behind the pmas' back (the host kernel's, for
// the parent's other threads, which run on during the fork) never find
// them read-only. It is Linux's copy at fork of the pages that may be
// pinned for DMA (page_needs_cow_for_dma). Only pages holding data are
// copied; the child has no page where the parent has none. If the memory
// file cannot supply a copy, that range is shared copy-on-write as any.
func (mm *MemoryManager) ForkPinned(ctx context.Context, pinned []hostarch.AddrRange) (*MemoryManager, ForkPlan, error) {
	pinned = pageRanges(pinned)
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
		codeSegment:   mm.codeSegment,
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
	as := mm.as
	keepWritable := as != nil && as.PreFork()
	mm.captureInvalidations = true
	mm.activeMu.Unlock()

	var err error
	var uf uffdForks
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
		uf.inherit(&v, mm2)
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
		if as != nil {
			as.PostFork()
		}
		mm.activeMu.Unlock()
		mm2.activeMu.Unlock()
		// The child's locks come before the parent's held ones in the
		// lock order, but no one else can reach the child.
		lockRankUnshared(func() { mm2.DecUsers(ctx) })
		return nil, ForkPlan{}, err
	}

	if testHookForkCopyingPMAs != nil {
		testHookForkCopyingPMAs(mm2)
	}
	// Copy the pmas of inherited vmas.
	var lostWrite []hostarch.AddrRange
	var pins []pinnedCopy
	pgap := mm2.pmas.FirstGap()
	var rw residencyWindow
	// runs holds forkedRuns' result for one pma at a time.
	var runs []hostarch.AddrRange
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
			v := vseg.ValuePtr()
			pin := false
			if pp := pseg.ValuePtr(); v.private() && pp.private && pp.effectivePerms.Write {
				pin, r.End = cutPinned(pinned, r)
			}
			addr = r.End
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
			if pin {
				// The parent keeps these pages as they are; the
				// child gets copies of those holding data (below,
				// once privateRefs.mu is let go).
				runs = mm.forkedRuns(runs[:0], pseg, pr, true, &rw)
				for _, cr := range runs {
					pins = append(pins, pinnedCopy{ar: cr, fr: pmaRef{pseg}.fileRange(cr), p: *p})
				}
				continue
			}
			if v.private() && !p.isZero() {
				// (The zero page is shared by everyone and never
				// written: the child gets the same mapping of it, as
				// Linux's copy_page_range copies its entries.)
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
			runs = mm.forkedRuns(runs[:0], pseg, pr, v.private() && p.private, &rw)
			for _, cr := range runs {
				fr := pmaRef{pseg}.fileRange(cr)
				if v.private() && p.private {
					mm.privateRefs.incRefLocked(fr)
				} else {
					p.file.IncRef(fr)
				}
				cp := *p
				cp.off = fr.Start
				cp.im = safemem.Origin{}
				cp.mapped = 0 // nothing is mapped in the child's AddressSpace
				cp.uffdWP = cp.uffdWP && v.flags.has(vmaUffdWP)
				pgap = mm2.pmas.InsertWithoutMergingUnchecked(pgap, addrSegRange(cr), cp).NextGap()
				mm2.curRSS += cr.Length()
			}
		}
	}
	mm.privateRefs.mu.Unlock()
	var pinnedRanges []hostarch.AddrRange
	for _, pc := range pins {
		if mm.copyPinnedLocked(mm2, pc) {
			pinnedRanges = append(pinnedRanges, pc.ar)
			continue
		}
		lostWrite = append(lostWrite, pc.ar)
	}
	if len(pins) > 0 {
		slices.SortFunc(lostWrite, func(a, b hostarch.AddrRange) int { return cmp.Compare(a.Start, b.Start) })
	}
	mm.forkUffdMarkersLocked(mm2)
	// The child's VmHWM is its resident set until that first shrinks
	// (Linux's dup_mm sets hiwater_rss to the child's RSS).
	mm2.maxRSS = 0
	for _, r := range lostWrite {
		if keepWritable && mm.as == as {
			// The AddressSpace keeps them writable until the child
			// has its copies (ForkPlan.Copy); what it maps is no
			// longer what the pmas say.
			mm.forgetMappedLocked(r)
		} else {
			mm.unmapASLocked(r)
		}
	}
	if as != nil {
		as.PostFork()
	}
	plan := ForkPlan{Copy: mergeRanges(lostWrite), Pinned: mergeRanges(pinnedRanges)}
	plan.Keep = mm2.forkKeep(plan.Copy)
	mm.activeMu.Unlock()
	mm2.activeMu.Unlock()

	for _, inv := range captured {
		mm2.Invalidate(inv.ar, inv.opts)
	}
	uf.complete()
	return mm2, plan, nil
}

// forgetMappedLocked records that the pmas overlapping ar are not known to
// be mapped as they say in the AddressSpace. Preconditions: activeMu held
// for writing.
func (mm *MemoryManager) forgetMappedLocked(ar hostarch.AddrRange) {
	for pseg := mm.pmas.LowerBoundSegment(ar.Start); pseg.Ok() && pseg.Start() < ar.End; pseg = pseg.NextSegment() {
		atomic.StoreUint32(&pseg.ValuePtr().mapped, 0)
	}
}

// forkKeep returns ForkPlan.Keep for a fork child, given the plan's
// Copy ranges (copied): the child's vmas that are not wiped, less those.
// Preconditions: mm is the child of a fork in progress, whose vmas nothing
// else reads or changes.
func (mm *MemoryManager) forkKeep(copied []hostarch.AddrRange) []hostarch.AddrRange {
	var keep []hostarch.AddrRange
	add := func(r hostarch.AddrRange) {
		if n := len(keep); n > 0 && keep[n-1].End == r.Start {
			keep[n-1].End = r.End
			return
		}
		keep = append(keep, r)
	}
	ci := 0
	for vseg := mm.vmas.FirstSegment(); vseg.Ok(); vseg = vseg.NextSegment() {
		if vseg.ValuePtr().flags.has(vmaWipeOnFork) {
			continue
		}
		vr := hostarch.AddrRange(vseg.Range())
		for ci < len(copied) && copied[ci].End <= vr.Start {
			ci++
		}
		next := vr.Start
		for i := ci; i < len(copied) && copied[i].Start < vr.End; i++ {
			if copied[i].Start > next {
				add(hostarch.AddrRange{Start: next, End: copied[i].Start})
			}
			next = max(next, copied[i].End)
		}
		if next < vr.End {
			add(hostarch.AddrRange{Start: next, End: vr.End})
		}
	}
	return keep
}

// mergeRanges merges the adjacent ranges of sorted, disjoint rs in place.
func mergeRanges(rs []hostarch.AddrRange) []hostarch.AddrRange {
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && out[n-1].End == r.Start {
			out[n-1].End = r.End
			continue
		}
		out = append(out, r)
	}
	return out
}

// forkedRuns appends to runs, and returns, the parts of pr, a range of the
// parent's pma pseg, that a fork child gets: all of it, or for private
// memory (private) the runs of pages that hold data, adjacent runs joined.
// If the pages cannot be mapped to ask, all of it. rw caches residency
// across the calls of one fork. It returns a slice rather than an
// iterator, which cost a fork several heap allocations a pma (the
// iterator's and the loop body's closures and their state), about a tenth
// of fork_256m's time. Preconditions: activeMu held for writing.
func (mm *MemoryManager) forkedRuns(runs []hostarch.AddrRange, pseg pmaIterator, pr hostarch.AddrRange, private bool, rw *residencyWindow) []hostarch.AddrRange {
	if !private {
		return append(runs, pr)
	}
	p := pseg.ValuePtr()
	if p.allData {
		return append(runs, pr)
	}
	if _, err := mm.internalMappingsLocked(pseg); err != nil {
		return append(runs, pr)
	}
	return appendDataRuns(runs, pseg, pr, rw)
}

// appendDataRuns is forkedRuns for private memory whose pages may not all
// hold data: it asks rw. It is apart so that forkedRuns, whose other cases
// are the common ones, allocates nothing (the loop below makes runs escape).
// Preconditions: as forkedRuns; pseg's internal mapping is cached.
func appendDataRuns(runs []hostarch.AddrRange, pseg pmaIterator, pr hostarch.AddrRange, rw *residencyWindow) []hostarch.AddrRange {
	p := pseg.ValuePtr()
	var cur hostarch.AddrRange
	for run := range rw.dataRuns(internalMappingsOf(pseg, pr), p.file, pmaRef{pseg}.fileRange(pr)) {
		r := hostarch.AddrRange{Start: pr.Start + hostarch.Addr(run[0]<<hostarch.PageShift), End: pr.Start + hostarch.Addr(run[1]<<hostarch.PageShift)}
		if cur.Length() != 0 && cur.End == r.Start {
			cur.End = r.End
			continue
		}
		if cur.Length() != 0 {
			runs = append(runs, cur)
		}
		cur = r
	}
	if cur.Length() != 0 {
		if cur == pr && pr == hostarch.AddrRange(pseg.Range()) {
			// Every page holds data: the next fork need not ask.
			p.allData = true
		}
		runs = append(runs, cur)
	}
	return runs
}

// pinnedCopy is a run of a fork parent's pages that the child gets a copy
// of (ForkPinned): ar, at fr of the memory file, in the parent's pma p.
type pinnedCopy struct {
	ar hostarch.AddrRange
	fr memmap.FileRange
	p  pma
}

// pageRanges returns rs rounded out to pages, sorted and merged.
func pageRanges(rs []hostarch.AddrRange) []hostarch.AddrRange {
	var out []hostarch.AddrRange
	for _, r := range rs {
		end, ok := r.End.RoundUp()
		if !ok {
			end = ^hostarch.Addr(0) &^ hostarch.PageMask
		}
		if r = (hostarch.AddrRange{Start: r.Start.RoundDown(), End: end}); r.Start < r.End {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b hostarch.AddrRange) int { return cmp.Compare(a.Start, b.Start) })
	merged := out[:0]
	for _, r := range out {
		if n := len(merged); n > 0 && r.Start <= merged[n-1].End {
			merged[n-1].End = max(merged[n-1].End, r.End)
			continue
		}
		merged = append(merged, r)
	}
	return merged
}

// cutPinned reports whether r.Start lies in one of pinned (sorted and
// disjoint), and returns where r's part that is all in or all out of
// pinned ends.
func cutPinned(pinned []hostarch.AddrRange, r hostarch.AddrRange) (bool, hostarch.Addr) {
	i, _ := slices.BinarySearchFunc(pinned, r.Start, func(p hostarch.AddrRange, a hostarch.Addr) int {
		if p.End <= a {
			return -1
		}
		if p.Start > a {
			return 1
		}
		return 0
	})
	if i == len(pinned) {
		return false, r.End
	}
	if p := pinned[i]; p.Start <= r.Start {
		return true, min(r.End, p.End)
	}
	return false, min(r.End, pinned[i].Start)
}

// copyPinnedLocked gives mm2, the child of a fork in progress, its own copy
// of the parent's pages pc. If the memory file cannot supply one, the
// pages are shared copy-on-write instead, as in any fork (the parent's pma
// needs copy-on-write from now on, and the caller takes away the write
// access its AddressSpace has): it then reports false. Preconditions: as
// in ForkPinned's pma copy, with privateRefs.mu not held.
func (mm *MemoryManager) copyPinnedLocked(mm2 *MemoryManager, pc pinnedCopy) bool {
	cp := pc.p
	cp.im = safemem.Origin{}
	cp.mapped = 0
	nfr, err := mm.allocatePrivateOpts(pc.ar.Length(), pgalloc.AllocOpts{Populate: true, Overwrite: true})
	if err == nil {
		var src, dst safemem.BlockSeq
		if src, err = mm.mf.MapInternal(pc.fr, hostarch.Read); err == nil {
			if dst, err = mm.mf.MapInternal(nfr, hostarch.ReadWrite); err == nil {
				_, err = safemem.CopySeq(dst, src)
			}
		}
		if err != nil {
			mm.privateRefs.decRef(mm.mf, nfr)
		}
	}
	if err == nil {
		cp.off, cp.allData = nfr.Start, true
		mm2.pmas.InsertWithoutMerging(mm2.pmas.FindGap(pc.ar.Start), addrSegRange(pc.ar), cp)
		mm2.curRSS += pc.ar.Length()
		return true
	}
	// Shared: the child's pma starts at pc's first page, which need not
	// be the parent pma's (forkedRuns gives only the runs holding data).
	cp.off = pc.fr.Start
	pseg := mm.pmas.Isolate(mm.pmas.FindSegment(pc.ar.Start), addrSegRange(pc.ar))
	p := pseg.ValuePtr()
	p.needCOW = true
	p.effectivePerms.Write = false
	mm.privateRefs.mu.Lock()
	mm.privateRefs.incRefLocked(pc.fr)
	mm.privateRefs.mu.Unlock()
	cp.needCOW = true
	cp.effectivePerms.Write = false
	mm2.pmas.InsertWithoutMerging(mm2.pmas.FindGap(pc.ar.Start), addrSegRange(pc.ar), cp)
	mm2.curRSS += pc.ar.Length()
	return false
}
