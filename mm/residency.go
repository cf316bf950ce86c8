package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/safemem"
	"golang.org/x/sys/unix"
)

// Residency is implemented by Mappables that know which of their pages are
// in memory (a page cache, a shm segment): mincore reports their residency
// whether or not this address space has touched the pages, as Linux does
// for file and shared-memory mappings.
type Residency interface {
	// Resident sets out[i] to 1 if page i of mr is in memory, else 0.
	// len(out) == mr.Length() / page size.
	Resident(mr memmap.MappableRange, out []byte)
}

// PageOuter is implemented by Mappables whose pages MADV_PAGEOUT can
// reclaim (a page cache, shared memory).
type PageOuter interface {
	// PageOut drops from memory the pages of mr that are clean (what the
	// host file holds, or, without one, never written) and held by one
	// mapping only, that of the caller, which has a pma over mr: Linux
	// reclaims such pages without swap, and keeps dirty ones.
	PageOut(ctx context.Context, mr memmap.MappableRange)
}

// pageOutLocked is MADV_PAGEOUT over r, within vseg's vma: like Linux
// (without swap, which is all it can do then), it reclaims the file and
// shared-memory pages that only this address space maps and that are
// clean; private memory stays.
// Preconditions: mappingMu held; activeMu not held (PageOut invalidates
// the pmas of the pages it drops).
func (mm *MemoryManager) pageOutLocked(ctx context.Context, vseg vmaIterator, r hostarch.AddrRange) {
	v := vseg.ValuePtr()
	po, ok := v.mappable.(PageOuter)
	if v.mappable == nil || !ok {
		return
	}
	// Only pages this address space maps are considered, as Linux walks
	// only the present page table entries.
	var mrs []memmap.MappableRange
	var ars []hostarch.AddrRange
	rt := mm.activeMu.RLock()
	for pseg := mm.pmas.LowerBoundSegment(r.Start); pseg.Ok() && pseg.Start() < r.End; pseg = pseg.NextSegment() {
		if !pseg.ValuePtr().private {
			ar := hostarch.AddrRange(pseg.Range()).Intersect(r)
			mrs = append(mrs, mappableRangeOf(vseg, ar))
			ars = append(ars, ar)
		}
	}
	mm.activeMu.RUnlock(rt)
	mm.unmapForPageOutLocked(po, ars)
	for _, mr := range mrs {
		po.PageOut(ctx, mr)
	}
}

// lazyFreeLocked is MADV_FREE over r, within a private anonymous vma: as
// Linux marks lazily free every page this address space maps there and
// cleans its page table entries (a fork sharing a page keeps its own,
// dirty ones), it marks the private pmas of r lazyFree and takes away
// their write access, so that a write is seen. Preconditions: mappingMu
// held; activeMu not held.
func (mm *MemoryManager) lazyFreeLocked(r hostarch.AddrRange) {
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	var unmap []hostarch.AddrRange
	for pseg := mm.pmas.LowerBoundSegment(r.Start); pseg.Ok() && pseg.Start() < r.End; pseg = pseg.NextSegment() {
		if !pseg.ValuePtr().private {
			continue
		}
		pseg = mm.pmas.Isolate(pseg, addrSegRange(r))
		p := pseg.ValuePtr()
		p.lazyFree = true
		p.needCOW = true
		if p.effectivePerms.Write {
			p.effectivePerms.Write = false
			unmap = append(unmap, hostarch.AddrRange(pseg.Range()))
		}
	}
	for _, u := range unmap {
		mm.unmapASLocked(u)
	}
	mm.pmas.MergeAdjacent(addrSegRange(r))
}

// discardLazyFreeLocked is MADV_PAGEOUT's part for private memory: the
// lazily freed pages of r that only this address space still maps are
// discarded, as Linux's reclaim drops lazily freed folios whose page table
// entry is clean (other private pages stay: without swap they cannot go).
// Preconditions: mappingMu held; activeMu not held.
func (mm *MemoryManager) discardLazyFreeLocked(ctx context.Context, r hostarch.AddrRange) {
	rt := mm.activeMu.RLock()
	runs := mm.soleOwnedRunsLocked(r)
	mm.activeMu.RUnlock(rt)
	for _, run := range runs {
		mm.dropPagesLocked(ctx, run)
	}
}

// soleOwnedRunsLocked returns the runs of addresses in r whose pmas are
// private and lazyFree and whose pages privateRefs counts once (no fork
// maps them). Preconditions: activeMu held.
func (mm *MemoryManager) soleOwnedRunsLocked(r hostarch.AddrRange) []hostarch.AddrRange {
	var runs []hostarch.AddrRange
	for pseg := mm.pmas.LowerBoundSegment(r.Start); pseg.Ok() && pseg.Start() < r.End; pseg = pseg.NextSegment() {
		if p := pseg.ValuePtr(); !p.private || !p.lazyFree {
			continue
		}
		pr := hostarch.AddrRange(pseg.Range()).Intersect(r)
		for a := pr.Start; a < pr.End; a += hostarch.PageSize {
			if mm.privateRefs.count(pmaRef{pseg}.fileRange(hostarch.AddrRange{Start: a, End: a + hostarch.PageSize}).Start) != 1 {
				continue
			}
			if n := len(runs); n > 0 && runs[n-1].End == a {
				runs[n-1].End = a + hostarch.PageSize
			} else {
				runs = append(runs, hostarch.AddrRange{Start: a, End: a + hostarch.PageSize})
			}
		}
	}
	return runs
}

// touchLocked commits host memory for the pages of the pmas covering r, as
// an application access would: pages a program has touched are resident.
// Preconditions: activeMu held for writing; pmas cover r.
func (mm *MemoryManager) touchLocked(r hostarch.AddrRange, at hostarch.AccessType) {
	for pseg := mm.pmas.LowerBoundSegment(r.Start); pseg.Ok() && pseg.Start() < r.End; pseg = pseg.NextSegment() {
		if _, err := mm.internalMappingsLocked(pseg); err != nil {
			return
		}
		p := pseg.ValuePtr()
		advice := unix.MADV_POPULATE_READ
		if at.Write && p.effectivePerms.Write {
			advice = unix.MADV_POPULATE_WRITE
		}
		sub := hostarch.AddrRange(pseg.Range()).Intersect(r)
		for b := range internalMappingsOf(pseg, sub).All {
			_ = unix.Madvise(b.ToSlice(), advice)
		}
	}
}

// MInCore implements mincore(2): one byte per page of [addr, addr+length),
// 1 if the page is resident. EINVAL for an unaligned addr; ENOMEM if the
// range is not wholly mapped, with the bytes of the pages before the first
// hole (which Linux writes out before it fails).
func (mm *MemoryManager) MInCore(ctx context.Context, addr hostarch.Addr, length uint64) ([]byte, error) {
	if !addr.IsPageAligned() {
		return nil, unix.EINVAL
	}
	la, ok := hostarch.PageRoundUp(length)
	end := addr + hostarch.Addr(la)
	if !ok || end < addr || end > mm.p.MaxUserAddress() {
		return nil, unix.ENOMEM
	}
	ar := hostarch.AddrRange{Start: addr, End: end}
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	// The range must be mapped: like Linux, report the pages up to the
	// first hole with ENOMEM.
	var hole error
	for a := ar.Start; a < ar.End; {
		vseg := mm.vmas.FindSegment(a)
		if !vseg.Ok() {
			if a == ar.Start {
				return nil, unix.ENOMEM
			}
			hole = unix.ENOMEM
			ar.End = a
			break
		}
		a = vseg.End()
	}
	out := make([]byte, ar.Length()>>hostarch.PageShift)
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	for vseg := mm.vmas.FindSegment(ar.Start); vseg.Ok() && vseg.Start() < ar.End; vseg = vseg.NextSegment() {
		vr := hostarch.AddrRange(vseg.Range()).Intersect(ar)
		v := vseg.ValuePtr()
		vout := out[(vr.Start-ar.Start)>>hostarch.PageShift : (vr.End-ar.Start)>>hostarch.PageShift]
		res, hasRes := v.mappable.(Residency)
		if hasRes && v.mappable != nil {
			// File and shared memory: the page cache's residency, as
			// Linux's mincore reports for pages without a PTE.
			res.Resident(mappableRangeOf(vseg, vr), vout)
			if !v.private() {
				continue
			}
		}
		for pseg := mm.pmas.LowerBoundSegment(vr.Start); pseg.Ok() && pseg.Start() < vr.End; pseg = pseg.NextSegment() {
			pr := hostarch.AddrRange(pseg.Range()).Intersect(vr)
			pout := vout[(pr.Start-vr.Start)>>hostarch.PageShift : (pr.End-vr.Start)>>hostarch.PageShift]
			if pseg.ValuePtr().isZero() {
				// Mapped to the zero page: present, as Linux's
				// mincore says of any page table entry.
				for i := range pout {
					pout[i] = 1
				}
				continue
			}
			if _, err := mm.internalMappingsLocked(pseg); err != nil {
				continue
			}
			if pseg.ValuePtr().private || !hasRes {
				i := 0
				for b := range internalMappingsOf(pseg, pr).All {
					n := b.Len() >> hostarch.PageShift
					hostMincore(b, pout[i:i+n])
					i += n
				}
			}
		}
	}
	return out, hole
}

// hostMincore reports the host residency of the pages of b (a host
// mapping) into vec, one byte (0 or 1) per page.
func hostMincore(b safemem.Block, vec []byte) {
	if testHookResidencyQuery != nil {
		testHookResidencyQuery()
	}
	if err := safemem.Mincore(b, vec); err != nil {
		clear(vec)
		return
	}
	for i := range vec {
		vec[i] &= 1
	}
}
