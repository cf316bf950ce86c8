package mm

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
	"github.com/vmspace/vmspace/safemem"
	"github.com/vmspace/vmspace/segment"
	"golang.org/x/sys/unix"
)

// pma is one platform mapping area: a range of addresses backed by a range
// of a File. A pma's range is its key in MemoryManager.pmas; all fields are
// protected by activeMu (the pma set's lock).
type pma struct {
	// file backs the pma. A non-private pma holds a reference on its file
	// range (file.IncRef); a private pma's pages are counted in
	// privateRefs instead, which holds one memory-file reference per page
	// while any pma refers to it.
	file memmap.File

	// off is the offset into file of the pma's start.
	off uint64

	// translatePerms are the accesses the Translation allowed (AnyAccess for
	// private memory).
	translatePerms hostarch.AccessType

	// effectivePerms are the accesses the platform may map the pma with:
	// the vma's effective permissions, less what translatePerms forbid, less
	// Write while needCOW.
	effectivePerms hostarch.AccessType

	// maxPerms are the vma's maximum permissions, less what translatePerms
	// forbid.
	maxPerms hostarch.AccessType

	// needCOW is true if a write must copy the pma's pages first: a private
	// mapping of a file, or private memory shared with a fork.
	needCOW bool

	// lazyFree is true for private pages that MADV_FREE found exclusive
	// and that nothing has written since (Linux's lazily freed anonymous
	// folios whose page table entries are clean): MADV_PAGEOUT discards
	// them. needCOW is set with it, so that the first write goes through
	// breakCOWLocked, which clears it for the pages written.
	lazyFree bool

	// private is true if file is the memory file and the pages are private
	// memory counted in privateRefs.
	private bool

	// A pma whose file is memmap.ZeroPage (isZero) maps Linux's shared
	// zero page: pages of private anonymous memory that a read faulted in
	// and nothing wrote since, on a kernel with the zero page (not
	// Limits.NoZeroPage). It holds no memory: not private, never needCOW,
	// never writable (translatePerms lack Write); it is not in the
	// resident set (smaps, status, statm), but present to mincore and
	// pagemap (PAGE_IS_PFNZERO); MADV_FREE and MADV_PAGEOUT leave it; a
	// write replaces the pages written, and only those, with private
	// memory (breakZeroLocked). Its off is meaningless: zero pmas merge
	// whatever their offsets.

	// uffdWP is true for pages write-protected by userfaultfd
	// (UFFDIO_WRITEPROTECT, UFFDIO_COPY_MODE_WP): effectivePerms lacks
	// Write, and a write is a userfault (uffd.go).
	uffdWP bool

	// poison is true for a UFFDIO_POISON marker: effectivePerms is
	// NoAccess, and any access is SIGBUS (uffd.go).
	poison bool

	// allData is true if every page of the pma is known to hold data
	// (private memory: a host query found them all resident or written
	// back, or a copy wrote them all). A page of the memory file holds
	// data until it is freed, which only the removal of every pma
	// referring to it does, so the flag stays true while the pma maps the
	// same pages (splits keep it; a merge keeps it only if both had it):
	// fork and copy-on-write then need not ask the host again which pages
	// hold data (privateDataRuns).
	allData bool

	// im is where the pma's whole range starts in file's internal
	// mapping (file.MapInternal), cached when that is one contiguous
	// Block, whose length is the pma's (imBlock); none until first
	// needed, or if it is not. An Origin, not a Block, keeps the pma at
	// 56 bytes (a leaf of 16 in a 1280-byte allocation). Set with
	// activeMu held for writing; read with it held for reading.
	im safemem.Origin

	// mapped records what the AddressSpace holds for the whole pma: 0 if
	// nothing is known to be mapped, else mappedBit | the PROT bits of the
	// permissions it was mapped with. It lets a fault on a page that is
	// already mapped (a spurious fault, as when two threads fault on one
	// page) return without remapping. Accessed atomically: faults set it
	// with activeMu held only for reading.
	mapped uint32
}

// isZero reports whether p maps the shared zero page (see pma.private).
func (p *pma) isZero() bool { return p.file == memmap.ZeroPage }

// mappedBit marks pma.mapped as valid.
const mappedBit = 1 << 8

// mappedValue returns pma.mapped's encoding of a mapping with perms at.
func mappedValue(at hostarch.AccessType) uint32 { return mappedBit | uint32(at.Prot()) }

type pmaSetFunctions struct{}

type (
	pmaSet         = segment.Set[hostarch.Addr, pma, pmaSetFunctions]
	pmaIterator    = segment.Iterator[hostarch.Addr, pma, pmaSetFunctions]
	pmaGapIterator = segment.GapIterator[hostarch.Addr, pma, pmaSetFunctions]
)

func (pmaSetFunctions) MinKey() hostarch.Addr { return 0 }
func (pmaSetFunctions) MaxKey() hostarch.Addr { return ^hostarch.Addr(0) }
func (pmaSetFunctions) ClearValue(p *pma)     { *p = pma{} }

func (pmaSetFunctions) Merge(r1 addrSegRange, p1 pma, r2 addrSegRange, p2 pma) (pma, bool) {
	if p1.file != p2.file ||
		(p1.off+uint64(r1.Length()) != p2.off && !p1.isZero()) ||
		p1.translatePerms != p2.translatePerms ||
		p1.effectivePerms != p2.effectivePerms ||
		p1.maxPerms != p2.maxPerms ||
		p1.needCOW != p2.needCOW ||
		p1.lazyFree != p2.lazyFree ||
		p1.private != p2.private ||
		p1.uffdWP != p2.uffdWP ||
		p1.poison != p2.poison {
		return pma{}, false
	}
	// Keep the cached internal mapping only when the two are contiguous.
	if p1.im.IsZero() || p2.im.IsZero() || p1.im.Add(uint64(r1.Length())) != p2.im {
		p1.im = safemem.Origin{}
	}
	if p1.mapped != p2.mapped {
		p1.mapped = 0
	}
	p1.allData = p1.allData && p2.allData
	return p1, true
}

func (pmaSetFunctions) Split(r addrSegRange, p pma, split hostarch.Addr) (pma, pma) {
	n := uint64(split - r.Start)
	p2 := p
	p2.off += n
	p2.im = p.im.Add(n)
	return p, p2
}

// fileRange returns the file range backing ar, a sub-range of pseg.
func (pseg pmaRef) fileRange(ar hostarch.AddrRange) memmap.FileRange {
	p := pseg.ValuePtr()
	start := p.off + uint64(ar.Start-pseg.Start())
	return memmap.FileRange{Start: start, End: start + ar.Length()}
}

// pmaRef wraps a pmaIterator to add helpers.
type pmaRef struct{ pmaIterator }

// internalMappingsLocked returns the host mapping of pseg's whole range,
// caching its address in the pma when it is contiguous. Preconditions:
// activeMu held for writing.
func (mm *MemoryManager) internalMappingsLocked(pseg pmaIterator) (safemem.BlockSeq, error) {
	p := pseg.ValuePtr()
	if !p.im.IsZero() {
		return safemem.BlockSeqOf(p.imBlock(pseg)), nil
	}
	ims, err := p.file.MapInternal(pmaRef{pseg}.fileRange(hostarch.AddrRange(pseg.Range())), p.internalPerms())
	if err != nil {
		return safemem.BlockSeq{}, err
	}
	if ims.NumBlocks() == 1 {
		p.im, _ = safemem.OriginOf(ims.Head())
	}
	return ims, nil
}

// imBlock returns pseg's cached internal mapping (im) as a Block over its
// whole range, empty if none is cached.
func (p *pma) imBlock(pseg pmaIterator) safemem.Block {
	return p.im.Block(uint64(pseg.Range().Length()))
}

// internalMappingsForLocked makes sure that the host mapping of ar, a
// range within pseg, exists: that of pseg's whole range (cached, as
// internalMappingsLocked), or, when vmspace's address space has no room for
// that (ENOMEM: a hard RLIMIT_AS binds vmspace too), that of ar alone.
// Preconditions: activeMu held for writing.
func (mm *MemoryManager) internalMappingsForLocked(pseg pmaIterator, ar hostarch.AddrRange) error {
	_, err := mm.internalMappingsLocked(pseg)
	if err == nil || !errors.Is(err, unix.ENOMEM) || ar == hostarch.AddrRange(pseg.Range()) {
		return err
	}
	p := pseg.ValuePtr()
	_, err = p.file.MapInternal(pmaRef{pseg}.fileRange(ar), p.internalPerms())
	return err
}

// internalMappingsOf returns the host mapping of ar within pseg.
// Preconditions: internalMappingsLocked(pseg), or internalMappingsForLocked
// of a range including ar, succeeded (mappings of the file last as long as
// the pma holds its pages), and activeMu is held.
func internalMappingsOf(pseg pmaIterator, ar hostarch.AddrRange) safemem.BlockSeq {
	p := pseg.ValuePtr()
	if !p.im.IsZero() {
		return safemem.BlockSeqOf(p.im.Add(uint64(ar.Start - pseg.Start())).Block(ar.Length()))
	}
	ims, _ := p.file.MapInternal(pmaRef{pseg}.fileRange(ar), p.internalPerms())
	return ims
}

// internalPerms returns the accesses p's internal mapping must allow: what
// the vma may ever allow, within what the Translation allows (a private
// mapping of a read-only file is never written in place: writes copy), and
// at least Read.
func (p *pma) internalPerms() hostarch.AccessType {
	return p.maxPerms.Intersect(p.translatePerms).Union(hostarch.Read)
}

// allocUnit returns the range of private memory to allocate for a fault at
// addr inside vseg and the gap pgap: the huge-page-aligned range around
// addr, clipped to the vma and the gap, and extended to cover required.
func allocUnit(vseg vmaIterator, pgap pmaGapIterator, addr hostarch.Addr, required hostarch.AddrRange) hostarch.AddrRange {
	return allocUnitIn(vseg.ValuePtr(), hostarch.AddrRange(vseg.Range()).Intersect(hostarch.AddrRange(pgap.Range())), addr, required)
}

// allocUnitIn is allocUnit for a fault at addr in v, within bound.
func allocUnitIn(v *vma, bound hostarch.AddrRange, addr hostarch.Addr, required hostarch.AddrRange) hostarch.AddrRange {
	if v.flags.has(vmaNoHugePage) {
		return required.Intersect(bound)
	}
	start := addr.HugeRoundDown()
	end, ok := addr.HugeRoundUp()
	if !ok || end == addr {
		end, ok = (addr + 1).HugeRoundUp()
		if !ok {
			end = bound.End
		}
	}
	unit := hostarch.AddrRange{Start: start, End: end}
	if required.End > unit.End {
		unit.End = required.End
	}
	return unit.Intersect(bound)
}

// errMemoryExhausted is returned, wrapped, when the memory file refuses an
// allocation; syscalls report it as ENOMEM, faults as SIGBUS.
var errMemoryExhausted = fmt.Errorf("memory file exhausted: %w", unix.ENOMEM)

// allocatePrivate allocates length bytes of private memory counted once in
// privateRefs.
func (mm *MemoryManager) allocatePrivate(length uint64, huge, populate bool) (memmap.FileRange, error) {
	return mm.allocatePrivateOpts(length, pgalloc.AllocOpts{Huge: huge, Populate: populate})
}

// allocatePrivateOpts is allocatePrivate with the memory file's options.
func (mm *MemoryManager) allocatePrivateOpts(length uint64, opts pgalloc.AllocOpts) (memmap.FileRange, error) {
	fr, err := mm.mf.Allocate(length, opts)
	if err != nil {
		if errors.Is(err, pgalloc.ErrLimit) {
			return fr, errMemoryExhausted
		}
		return fr, err
	}
	mm.privateRefs.newRange(fr)
	return fr, nil
}

// getPMAsLocked makes sure that pmas cover ar, which lies within vseg's
// vma, with at least the permissions at (breaking copy-on-write for writes).
// It returns the first pma covering ar.Start. On an error, pmas cover a
// prefix of ar (possibly empty), and the error says why the rest could not
// be covered.
//
// Preconditions: mappingMu held (read or write); activeMu held for writing;
// vseg's vma permits at.
func (mm *MemoryManager) getPMAsLocked(ctx context.Context, vseg vmaIterator, ar hostarch.AddrRange, at hostarch.AccessType) (pmaIterator, error) {
	v := vseg.ValuePtr()
	// pmas, like Translations, cover whole pages.
	ar.Start = ar.Start.RoundDown()
	ar.End = ar.End.MustRoundUp()
	addr := ar.Start
	var first pmaIterator
	for addr < ar.End {
		pseg, pgap := mm.pmas.Find(addr)
		if v.uffd != nil || (pseg.Ok() && pseg.ValuePtr().poison) {
			// A userfault, a poisoned page (uffd.go).
			if err := mm.userfaultCheckLocked(ctx, vseg, pseg, addr, at); err != nil {
				return first, err
			}
			pseg, pgap = mm.pmas.Find(addr)
		}
		if pgap.Ok() {
			var err error
			pseg, err = mm.fillGapLocked(ctx, vseg, pgap, addr, ar, at)
			if err != nil {
				return first, err
			}
		}
		p := pseg.ValuePtr()
		if at.Write && v.private() {
			mm.prepareAnonVMA(vseg)
		}
		if at.Write && p.private && !p.needCOW && !p.effectivePerms.Write && v.effectivePerms().Write {
			// Private memory first mapped by a read: writable now,
			// within this vma only.
			pseg = mm.pmas.Isolate(pseg, addrSegRange(vseg.Range()))
			p = pseg.ValuePtr()
			p.effectivePerms = v.pmaPerms(p.translatePerms, false, true)
		}
		if at.Write && p.isZero() {
			var err error
			pseg, err = mm.breakZeroLocked(ctx, vseg, pseg, addr, ar)
			if err != nil {
				return first, err
			}
			p = pseg.ValuePtr()
		}
		if at.Write && !p.needCOW && !p.translatePerms.Write && !p.private {
			// A shared mapping first translated for reading: translate
			// the written range again, for writing.
			r := hostarch.AddrRange{Start: addr, End: min(ar.End, pseg.End())}
			mm.removePMAsLocked(ctx, r)
			var err error
			pseg, err = mm.fillGapLocked(ctx, vseg, mm.pmas.FindGap(addr), addr, ar, at)
			if err != nil {
				return first, err
			}
			p = pseg.ValuePtr()
		}
		if at.Write && p.needCOW {
			var err error
			pseg, err = mm.breakCOWLocked(ctx, vseg, pseg, addr, ar)
			if err != nil {
				return first, err
			}
		}
		if !first.Ok() || first.Start() > addr {
			first = pseg
		}
		addr = pseg.End()
	}
	// Iterators may have been invalidated by later insertions; look the
	// first one up again.
	return mm.pmas.FindSegment(ar.Start), nil
}

// fillGapLocked creates pmas for part of pgap starting at addr, and returns
// the one that covers addr. Preconditions: as for getPMAsLocked; addr lies
// in pgap and in ar.
func (mm *MemoryManager) fillGapLocked(ctx context.Context, vseg vmaIterator, pgap pmaGapIterator, addr hostarch.Addr, ar hostarch.AddrRange, at hostarch.AccessType) (pmaIterator, error) {
	v := vseg.ValuePtr()
	required := hostarch.AddrRange{Start: addr, End: ar.End}.Intersect(hostarch.AddrRange(pgap.Range()))
	if v.mappable == nil {
		if !at.Write && !mm.limits.NoZeroPage {
			// Like Linux's do_anonymous_page, a read maps the zero
			// page, a page at a time: only the pages read, so that
			// a later read of a neighbour comes here too.
			zr := mm.markerFreeLocked(mm.guardFreeLocked(required, addr), addr)
			pseg := mm.pmas.Insert(pgap, addrSegRange(zr), newZeroPMA(v, zr.Start))
			mm.addRSSLocked(zr.Length())
			return mm.pmas.FindSegment(addr), checkSeg(pseg)
		}
		unit := mm.markerFreeLocked(mm.guardFreeLocked(allocUnit(vseg, pgap, addr, required), addr), addr)
		huge := unit.Start.IsHugePageAligned() && unit.End.IsHugePageAligned()
		fr, err := mm.allocatePrivate(unit.Length(), huge, false)
		if err != nil {
			return pmaIterator{}, err
		}
		// A write prepares the vma's anon_vma; so does a read on a kernel
		// without the zero page, where it allocates a page: from now on
		// fork copies the vma's pages.
		mm.prepareAnonVMA(vseg)
		pseg := mm.pmas.Insert(pgap, addrSegRange(unit), mm.newPrivatePMA(v, fr.Start))
		mm.addRSSLocked(unit.Length())
		return mm.pmas.FindSegment(addr), checkSeg(pseg)
	}

	// A Mappable: translate the required range and as much of the
	// allocation unit as is cheap.
	optAR := mm.guardFreeLocked(allocUnit(vseg, pgap, addr, required), addr)
	if v.uffd != nil {
		// Like Linux's, faults in a registered range map only their
		// page, so that each page faults (uffd.go), and none maps a
		// page with a write-protect marker (uffd_wp.go).
		required = mm.markerFreeLocked(required, addr)
		optAR = required
	}
	translateAt := at
	if v.private() {
		// Private mappings read the file and copy on write.
		translateAt.Write = false
		translateAt.Read = true
	}
	reqMR := mappableRangeOf(vseg, required)
	optMR := mappableRangeOf(vseg, optAR)
	ts, terr := v.mappable.Translate(ctx, reqMR, optMR, translateAt)
	eff := v.effectivePerms()
	bound := hostarch.AddrRange(pgap.Range()).Intersect(hostarch.AddrRange(vseg.Range()))
	if v.uffd != nil {
		bound = required
	}
	boundMR := mappableRangeOf(vseg, bound)
	for _, t := range ts {
		src := t.Source.Intersect(boundMR)
		if src.Length() == 0 {
			continue
		}
		tar := hostarch.AddrRange{
			Start: vseg.Start() + hostarch.Addr(src.Start-v.off),
			End:   vseg.Start() + hostarch.Addr(src.End-v.off),
		}
		fr := memmap.FileRange{Start: t.Offset + (src.Start - t.Source.Start)}
		fr.End = fr.Start + src.Length()
		t.File.IncRef(fr)
		p := pma{
			file:           t.File,
			off:            fr.Start,
			translatePerms: t.Perms,
			effectivePerms: eff.Intersect(t.Perms),
			maxPerms:       v.maxPerms.Intersect(t.Perms),
			needCOW:        v.private(),
		}
		if v.private() {
			p.effectivePerms.Write = false
			p.maxPerms = v.maxPerms
		}
		mm.pmas.Insert(mm.pmas.FindGap(tar.Start), addrSegRange(tar), p)
		mm.addRSSLocked(tar.Length())
	}
	pseg := mm.pmas.FindSegment(addr)
	if !pseg.Ok() {
		if terr == nil {
			terr = fmt.Errorf("mm: Translate of %v returned no translation for %#x", reqMR, addr)
		}
		return pmaIterator{}, terr
	}
	// Translations covering addr were made; a failure further on is
	// reported when the loop reaches it.
	return pseg, nil
}

func checkSeg(pseg pmaIterator) error {
	if !pseg.Ok() {
		return errors.New("mm: pma insertion failed")
	}
	return nil
}

// breakCOWLocked gives the caller a private, writable copy of the pages of
// pseg from addr to ar.End (within pseg and vseg), and returns the pma now
// covering addr. Like Linux, which breaks copy-on-write a page at a time,
// only the pages written are copied: the memory file's usage grows by what
// is written, and the pages left alone stay shared (smaps, pagemap's
// exclusive bit). Pages no one else refers to are taken over without a
// copy; for them a whole allocation unit around addr is taken over at
// once when every page of it is the writer's alone, which changes nothing
// observable but saves faults. Preconditions: as for getPMAsLocked; pseg
// covers addr and needs copy-on-write.
func (mm *MemoryManager) breakCOWLocked(ctx context.Context, vseg vmaIterator, pseg pmaIterator, addr hostarch.Addr, ar hostarch.AddrRange) (pmaIterator, error) {
	v := vseg.ValuePtr()
	bound := hostarch.AddrRange(pseg.Range()).Intersect(hostarch.AddrRange(vseg.Range()))
	unit := hostarch.AddrRange{Start: addr, End: ar.End}.Intersect(bound)
	if p := pseg.ValuePtr(); p.private {
		// Take over pages that nobody else refers to. The other lazily
		// freed pages stay so: only those written are taken.
		owned := false
		if !p.lazyFree {
			if hu := cowTakeOverUnit(addr, ar).Intersect(bound); mm.privateRefs.soleOwner(pmaRef{pseg}.fileRange(hu)) {
				unit, owned = hu, true
			}
		}
		if owned || mm.privateRefs.soleOwner(pmaRef{pseg}.fileRange(unit)) {
			pseg = mm.pmas.Isolate(pseg, addrSegRange(unit))
			p = pseg.ValuePtr()
			p.needCOW = false
			p.lazyFree = false
			p.effectivePerms = v.effectivePerms().Intersect(p.translatePerms)
			mm.pmas.MergeAdjacent(addrSegRange(unit))
			return mm.pmas.FindSegment(addr), nil
		}
	}

	// Copy.
	pseg = mm.pmas.Isolate(pseg, addrSegRange(unit))
	p := pseg.ValuePtr()
	fr := pmaRef{pseg}.fileRange(unit)
	src, err := mm.internalMappingsLocked(pseg)
	if err != nil {
		return pmaIterator{}, err
	}
	// A source whose pages all hold data is copied whole, and so is the
	// copy. Otherwise one residency query says which source pages hold
	// data (only those are copied: see copyData) and whether every
	// destination page will be written, in which case they are
	// committed in one batch rather than one host fault each.
	srcAll := p.allData
	var vec []byte
	if p.private && !srcAll {
		vec = residency(src, fr.Length())
	}
	// A populated copy is a whole one (copyData copies every page when
	// every source page holds data): what the reused pages held before
	// need not be zeroed first.
	populate := p.private && (srcAll || !slices.Contains(vec, 0))
	nfr, err := mm.allocatePrivateOpts(unit.Length(), pgalloc.AllocOpts{
		Huge:      unit.Start.IsHugePageAligned() && unit.End.IsHugePageAligned(),
		Populate:  populate,
		Overwrite: populate,
	})
	if err != nil {
		return pmaIterator{}, err
	}
	dst, err := mm.mf.MapInternal(nfr, hostarch.ReadWrite)
	if err == nil {
		err = copyData(dst, src, p.file, fr, vec)
	}
	if err != nil {
		mm.privateRefs.decRef(mm.mf, nfr)
		return pmaIterator{}, err
	}
	// Drop the old pages and install the copy.
	mm.releasePMAPages(p, fr)
	*p = pma{
		file:           mm.mf,
		off:            nfr.Start,
		translatePerms: hostarch.AnyAccess,
		effectivePerms: v.effectivePerms(),
		maxPerms:       v.maxPerms,
		private:        true,
		allData:        srcAll || !p.private,
	}
	if dst.NumBlocks() == 1 {
		p.im, _ = safemem.OriginOf(dst.Head())
	}
	mm.unmapASLocked(unit)
	mm.pmas.MergeAdjacent(addrSegRange(unit))
	return mm.pmas.FindSegment(addr), nil
}

// breakZeroLocked replaces the zero page of pseg from addr to ar.End
// (within pseg and vseg) by private memory, writable, and returns the pma
// now covering addr: like Linux's write fault on a zero page table entry,
// which allocates a page for the entry written and leaves its neighbours
// mapped to the zero page. As a write into a gap does (fillGapLocked), it
// also allocates the pages never touched around them in their allocation
// unit (not other zero pages, which were read): that changes nothing
// observable but saves faults, since a platform that cannot tell a read
// fault from a write (ptrace) serves a first store as a read, which maps
// the zero page, and then as a write. The write prepares the vma's
// anon_vma. Preconditions: as for getPMAsLocked; pseg covers addr and
// isZero.
func (mm *MemoryManager) breakZeroLocked(ctx context.Context, vseg vmaIterator, pseg pmaIterator, addr hostarch.Addr, ar hostarch.AddrRange) (pmaIterator, error) {
	v := vseg.ValuePtr()
	r := hostarch.AddrRange{Start: addr, End: ar.End}.Intersect(hostarch.AddrRange(pseg.Range())).Intersect(hostarch.AddrRange(vseg.Range()))
	ext := r
	if v.uffd == nil {
		// The gaps next to r, within r's allocation unit.
		unit := allocUnitIn(v, hostarch.AddrRange(vseg.Range()), addr, r)
		if pg := pseg.PrevGap(); r.Start == pseg.Start() && pg.Ok() {
			ext.Start = max(unit.Start, pg.Start(), vseg.Start())
		}
		if ng := pseg.NextGap(); r.End == pseg.End() && ng.Ok() {
			ext.End = min(unit.End, ng.End(), vseg.End())
		}
		ext = mm.markerFreeLocked(mm.guardFreeLocked(ext, addr), addr)
	}
	fr, err := mm.allocatePrivate(ext.Length(), ext.Start.IsHugePageAligned() && ext.End.IsHugePageAligned(), false)
	if err != nil {
		return pmaIterator{}, err
	}
	mm.prepareAnonVMA(vseg)
	// The zero page holds nothing to release; the host's mapping of it
	// is replaced when the new pages are mapped.
	pseg = mm.pmas.Isolate(pseg, addrSegRange(r))
	mm.unmapASLocked(r)
	*pseg.ValuePtr() = mm.newPrivatePMA(v, fr.Start+uint64(r.Start-ext.Start))
	for _, g := range [2]hostarch.AddrRange{{Start: ext.Start, End: r.Start}, {Start: r.End, End: ext.End}} {
		if g.Length() == 0 {
			continue
		}
		mm.pmas.Insert(mm.pmas.FindGap(g.Start), addrSegRange(g), mm.newPrivatePMA(v, fr.Start+uint64(g.Start-ext.Start)))
		mm.addRSSLocked(g.Length())
	}
	mm.pmas.MergeAdjacent(addrSegRange(ext))
	return mm.pmas.FindSegment(addr), nil
}

// cowTakeOverUnit returns the range that a write at addr (to ar) takes over
// when all of it is the writer's alone: the huge page around addr,
// extended over the rest of ar.
func cowTakeOverUnit(addr hostarch.Addr, ar hostarch.AddrRange) hostarch.AddrRange {
	unit := hostarch.AddrRange{Start: addr.HugeRoundDown(), End: addr.HugeRoundDown() + hostarch.HugePageSize}
	if unit.End < unit.Start { // overflow at the very top
		unit.End = ^hostarch.Addr(0) &^ hostarch.PageMask
	}
	if ar.End > unit.End {
		unit.End = ar.End
	}
	return unit
}

// residency returns the host residency of the n bytes mapped by ims, one
// byte (0 or 1) a page.
func residency(ims safemem.BlockSeq, n uint64) []byte {
	vec := make([]byte, n>>hostarch.PageShift)
	i := 0
	for b := range ims.All {
		m := b.Len() >> hostarch.PageShift
		hostMincore(b, vec[i:i+m])
		i += m
	}
	return vec
}

// copyData copies src, the host mapping of fr in file, to dst. If vec is
// nil, the whole of it; else vec is the host residency of fr's pages, a
// range of private memory, and its holes (privateDataRuns) are skipped:
// they read as zero, as dst's fresh pages do, and copying them would make
// them resident (mincore would then differ from Linux, which copies only
// pages that exist).
func copyData(dst, src safemem.BlockSeq, file memmap.File, fr memmap.FileRange, vec []byte) error {
	copyRun := func(p, q uint64) error {
		off, n := p<<hostarch.PageShift, (q-p)<<hostarch.PageShift
		_, err := safemem.CopySeq(dst.DropFirst64(off).TakeFirst64(n), src.DropFirst64(off).TakeFirst64(n))
		return err
	}
	if vec == nil {
		return copyRun(0, fr.Length()>>hostarch.PageShift)
	}
	for run := range dataRuns(vec, file, fr) {
		if err := copyRun(run[0], run[1]); err != nil {
			return err
		}
	}
	return nil
}

// privateDataRuns yields the runs [p, q) of page indexes of fr, a range of
// private memory in file whose host mapping is ims, that hold data: pages
// the host holds (mincore), and of a run it does not hold, those lseek
// (SEEK_DATA) finds (pages swapped out; the question is slow on shmem, so
// it is asked only about such runs). The holes between them were never
// touched: they read as zero, and Linux has no page there.
func privateDataRuns(ims safemem.BlockSeq, file memmap.File, fr memmap.FileRange) iter.Seq[[2]uint64] {
	return dataRuns(residency(ims, fr.Length()), file, fr)
}

// dataRuns is privateDataRuns given the host residency of fr's pages, one
// byte (0 or 1) each in vec.
func dataRuns(vec []byte, file memmap.File, fr memmap.FileRange) iter.Seq[[2]uint64] {
	return func(yield func([2]uint64) bool) {
		npages := uint64(len(vec))
		for p := uint64(0); p < npages; {
			q := p
			resident := vec[p] != 0
			for q < npages && (vec[q] != 0) == resident {
				q++
			}
			if resident || hasData(file.FD(), fr.Start+p<<hostarch.PageShift, fr.Start+q<<hostarch.PageShift) {
				if !yield([2]uint64{p, q}) {
					return
				}
			}
			p = q
		}
	}
}

// hasData reports whether the file has data (not a hole) in [start, end);
// if it cannot tell, it says yes.
func hasData(fd int, start, end uint64) bool {
	data, err := unix.Seek(fd, int64(start), unix.SEEK_DATA)
	if err == unix.ENXIO {
		return false
	}
	return err != nil || uint64(data) < end
}

// releasePMAPages drops the reference that p holds on fr.
func (mm *MemoryManager) releasePMAPages(p *pma, fr memmap.FileRange) {
	if p.private {
		mm.privateRefs.decRef(mm.mf, fr)
	} else {
		p.file.DecRef(fr)
	}
}

// removePMAsLocked removes every pma in ar, unmapping it from the
// AddressSpace and dropping its pages. Preconditions: mappingMu held for
// writing, or for reading by a caller that has made sure no vma can
// change; activeMu held for writing.
func (mm *MemoryManager) removePMAsLocked(ctx context.Context, ar hostarch.AddrRange) {
	if pseg := mm.pmas.LowerBoundSegment(ar.Start); pseg.Ok() && pseg.Start() < ar.End {
		mm.updateHiwaterLocked()
		mm.dropPMAsLocked(ctx, ar)
	}
}

// dropPMAsLocked is removePMAsLocked without raising maxRSS first: for the
// release of the whole address space, whose VmHWM nobody reads any more
// (Linux's exit_mmap does not update hiwater_rss either). Preconditions:
// as removePMAsLocked's.
func (mm *MemoryManager) dropPMAsLocked(ctx context.Context, ar hostarch.AddrRange) {
	pseg := mm.pmas.LowerBoundSegment(ar.Start)
	if !pseg.Ok() || pseg.Start() >= ar.End {
		return
	}
	mm.unmapASLocked(ar)
	for pseg.Ok() && pseg.Start() < ar.End {
		pseg = mm.pmas.Isolate(pseg, addrSegRange(ar))
		r := hostarch.AddrRange(pseg.Range())
		mm.releasePMAPages(pseg.ValuePtr(), pmaRef{pseg}.fileRange(r))
		mm.curRSS -= r.Length()
		pseg = mm.pmas.Remove(pseg).NextSegment()
	}
}

// addRSSLocked accounts for new pmas. Preconditions: activeMu held for
// writing.
func (mm *MemoryManager) addRSSLocked(n uint64) {
	mm.curRSS += n
}

// updateHiwaterLocked raises maxRSS to the present resident set, as
// Linux's update_hiwater_rss before every unmap: called before pmas are
// removed, and when VmHWM is read. Between two such points the resident
// set only grows (the program touches pages), so that VmHWM is its peak.
// The pmas' size bounds the resident set: while it is not above maxRSS,
// nothing needs reading. Preconditions: activeMu held for writing.
func (mm *MemoryManager) updateHiwaterLocked() {
	if mm.curRSS <= mm.maxRSS {
		return
	}
	anon, file, shmem := mm.rssLocked()
	mm.maxRSS = max(mm.maxRSS, anon+file+shmem)
}

// privateRefs counts, for each page of private memory, the pmas referring
// to it, across every MemoryManager forked from one another. While a page's
// count is positive, privateRefs holds one reference on it in the memory
// file.
type privateRefs struct {
	// mu protects refs. It comes after activeMu in the lock order.
	mu rankedMutex[privateRefsRank]
	// refs maps memory-file ranges to their positive counts; pages not in
	// refs have no private pma.
	refs segment.Set[uint64, int32, refsFunctions]
}

func newPrivateRefs() *privateRefs { return &privateRefs{} }

type refsFunctions struct{}

func (refsFunctions) MinKey() uint64    { return 0 }
func (refsFunctions) MaxKey() uint64    { return ^uint64(0) }
func (refsFunctions) ClearValue(*int32) {}
func (refsFunctions) Merge(_ segment.Range[uint64], a int32, _ segment.Range[uint64], b int32) (int32, bool) {
	return a, a == b
}
func (refsFunctions) Split(_ segment.Range[uint64], v int32, _ uint64) (int32, int32) { return v, v }

// newRange records a newly allocated range with a count of 1; the memory
// file's reference from Allocate becomes privateRefs'.
func (r *privateRefs) newRange(fr memmap.FileRange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.refs.Add(segment.Range[uint64](fr), 1) {
		panic(fmt.Sprintf("mm: private range %v already counted", fr))
	}
}

// incRefLocked adds one to the count of every page of fr, which must all
// be counted already. Preconditions: r.mu held.
func (r *privateRefs) incRefLocked(fr memmap.FileRange) {
	sr := segment.Range[uint64](fr)
	for seg := r.refs.LowerBoundSegmentSplitBefore(fr.Start); seg.Ok() && seg.Start() < fr.End; seg = seg.NextSegment() {
		seg = r.refs.Isolate(seg, sr)
		*seg.ValuePtr()++
	}
	r.refs.MergeRange(sr)
	r.refs.MergeAdjacent(sr)
}

// decRef subtracts one from the count of every page of fr, and returns
// pages whose count reaches zero to the memory file.
func (r *privateRefs) decRef(f memmap.File, fr memmap.FileRange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sr := segment.Range[uint64](fr)
	seg := r.refs.LowerBoundSegment(fr.Start)
	for seg.Ok() && seg.Start() < fr.End {
		seg = r.refs.Isolate(seg, sr)
		if *seg.ValuePtr()--; *seg.ValuePtr() == 0 {
			f.DecRef(memmap.FileRange(seg.Range()))
			seg = r.refs.Remove(seg).NextSegment()
			continue
		}
		seg = seg.NextSegment()
	}
	r.refs.MergeRange(sr)
	r.refs.MergeAdjacent(sr)
}

// soleOwner reports whether every page of fr has a count of exactly 1.
func (r *privateRefs) soleOwner(fr memmap.FileRange) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for seg := range r.refs.Segments(segment.Range[uint64](fr)) {
		if seg.Value() != 1 {
			return false
		}
	}
	return true
}

// count returns the count of the page at off (0 if none).
func (r *privateRefs) count(off uint64) int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seg := r.refs.FindSegment(off); seg.Ok() {
		return seg.Value()
	}
	return 0
}

// Backing describes what backs a range of addresses: the pages a platform
// maps there, and with which permissions.
type Backing struct {
	// Range is the range of addresses.
	Range hostarch.AddrRange
	// File and Offset are the pages: Range.Start maps File at Offset.
	File   memmap.File
	Offset uint64
	// Perms are the permissions the platform may map them with.
	Perms hostarch.AccessType
}

// Backings describes the pmas overlapping ar, clipped to it, in address
// order: what the AddressSpace may map there (platforms check their own
// mappings against it).
func (mm *MemoryManager) Backings(ar hostarch.AddrRange) []Backing {
	rt := mm.activeMu.RLock()
	defer mm.activeMu.RUnlock(rt)
	var out []Backing
	for pseg := mm.pmas.LowerBoundSegment(ar.Start); pseg.Ok() && pseg.Start() < ar.End; pseg = pseg.NextSegment() {
		r := hostarch.AddrRange(pseg.Range()).Intersect(ar)
		p := pseg.ValuePtr()
		out = append(out, Backing{Range: r, File: p.file, Offset: pmaRef{pseg}.fileRange(r).Start, Perms: p.effectivePerms})
	}
	return out
}

// updatePMAPermsLocked brings the permissions of the pmas in ar in line
// with their vmas' (after mprotect), splitting pmas at vma boundaries, and
// unmaps from the AddressSpace what lost permissions. Preconditions:
// mappingMu held for writing; vmas cover ar wherever pmas do.
func (mm *MemoryManager) updatePMAPermsLocked(ar hostarch.AddrRange) {
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	reduced := false
	// n counts the pmas overlapping ar (isolating one keeps one there).
	n := 0
	vseg := mm.vmas.LowerBoundSegment(ar.Start)
	for pseg := mm.pmas.LowerBoundSegment(ar.Start); pseg.Ok() && pseg.Start() < ar.End; pseg = pseg.NextSegment() {
		n++
		for vseg.Ok() && vseg.End() <= pseg.Start() {
			vseg = vseg.NextSegment()
		}
		if !vseg.Ok() {
			break
		}
		v := vseg.ValuePtr()
		p := pseg.ValuePtr()
		ne := v.pmaPerms(p.translatePerms, p.needCOW, p.private)
		ne = p.uffdPerms(ne)
		nm := v.maxPerms.Intersect(p.translatePerms)
		if p.needCOW {
			nm = v.maxPerms
		}
		if ne == p.effectivePerms && nm == p.maxPerms {
			continue
		}
		pseg = mm.pmas.Isolate(pseg, addrSegRange(hostarch.AddrRange(vseg.Range()).Intersect(ar)))
		p = pseg.ValuePtr()
		if !ne.SupersetOf(p.effectivePerms) {
			reduced = true
		}
		p.effectivePerms = ne
		p.maxPerms = nm
	}
	if reduced {
		mm.unmapASLocked(ar)
	}
	if n > 1 {
		// With one pma in ar (mprotect of a page, or of a range
		// within one pma) there is no pair to merge inside it.
		mm.pmas.MergeRange(addrSegRange(ar))
	}
	mm.pmas.MergeAdjacent(addrSegRange(ar))
}

// Invalidate implements memmap.MappingSpace: it drops the pmas in ar that
// translate Mappables (and, with opts.InvalidatePrivate, private copies of
// them), so that the next access translates again.
func (mm *MemoryManager) Invalidate(ar hostarch.AddrRange, opts memmap.InvalidateOpts) {
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	if mm.captureInvalidations {
		mm.capturedInvalidations = append(mm.capturedInvalidations, invalidateArgs{ar, opts})
	}
	ctx := context.Background()
	pseg := mm.pmas.LowerBoundSegment(ar.Start)
	if pseg.Ok() && pseg.Start() < ar.End {
		mm.updateHiwaterLocked()
	}
	for pseg.Ok() && pseg.Start() < ar.End {
		p := pseg.ValuePtr()
		if p.private && !opts.InvalidatePrivate {
			pseg = pseg.NextSegment()
			continue
		}
		pseg = mm.pmas.Isolate(pseg, addrSegRange(ar))
		r := hostarch.AddrRange(pseg.Range())
		mm.unmapASLocked(r)
		if pseg.ValuePtr().uffdWP {
			// Write protection outlives the page (uffd_wp.go).
			mm.markProtectedLocked(r)
		}
		mm.releasePMAPages(pseg.ValuePtr(), pmaRef{pseg}.fileRange(r))
		mm.curRSS -= r.Length()
		pseg = mm.pmas.Remove(pseg).NextSegment()
	}
	_ = ctx
}

// newZeroPMA returns a pma of the zero page for addresses from addr in v,
// a private anonymous vma: readable (and executable) as v allows, never
// writable.
func newZeroPMA(v *vma, addr hostarch.Addr) pma {
	tp := hostarch.AccessType{Read: true, Execute: true}
	return pma{
		file:           memmap.ZeroPage,
		off:            uint64(addr),
		translatePerms: tp,
		effectivePerms: v.effectivePerms().Intersect(tp),
		maxPerms:       v.maxPerms.Intersect(tp),
	}
}

// newPrivatePMA returns a pma of v's private memory at offset off of the
// memory file, with every access v's permissions allow.
func (mm *MemoryManager) newPrivatePMA(v *vma, off uint64) pma {
	return pma{
		file:           mm.mf,
		off:            off,
		translatePerms: hostarch.AnyAccess,
		effectivePerms: v.pmaPerms(hostarch.AnyAccess, false, true),
		maxPerms:       v.maxPerms,
		private:        true,
	}
}
