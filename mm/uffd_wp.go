package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
)

// Write-protect markers: write protection of pages not populated.
//
// Linux write-protects a page that has no page table entry by leaving a
// marker in its entry: always in memory with a file behind it (shmem,
// private mappings of files, where the page cache may hold the page
// whatever the page tables say), and in private anonymous memory when the
// context asked for UFFD_FEATURE_WP_UNPOPULATED (or WP_ASYNC, which
// implies it). mm keeps such markers in uffdMarkers: UFFDIO_WRITEPROTECT
// sets them on the pma gaps of the range and clears them with the
// protection. An access to a marked page (userfaultCheckLocked, after a
// missing or minor fault, which come first) maps the page with the
// protection kept (a zero page in anonymous memory, the file's page
// otherwise): a read goes on, a write is a write-protect fault (resolved
// at once with UFFD_FEATURE_WP_ASYNC). A fill (COPY, ZEROPAGE, ...)
// replaces the marker as it would replace nothing. Dropping pages
// (MADV_DONTNEED, MADV_REMOVE, a file's truncation) drops the markers of
// anonymous memory, as Linux's zap does, but in memory with a file behind
// it leaves a marker where a protected page was (Linux's
// pte_install_uffd_wp_if_needed). Markers count only while their vma
// stays registered for write protection: registration and its removal
// clear them.

// usesMarkers reports whether write protection of v marks unpopulated
// pages (Linux's userfaultfd_wp_use_markers).
func (v *vma) usesMarkers() bool {
	u := v.uffd
	return u != nil && v.flags.has(vmaUffdWP) && (!v.isPrivateAnon() || u.has(UffdFeatureWPUnpopulated))
}

// wpAsync reports whether v's write protection is asynchronous, which
// PAGEMAP_SCAN may then apply (Linux's userfaultfd_wp_async and
// userfaultfd_wp_use_markers of the vma: UFFD_FEATURE_WP_ASYNC implies
// UFFD_FEATURE_WP_UNPOPULATED).
func (v *vma) wpAsync() bool {
	return v.uffd != nil && v.flags.has(vmaUffdWP) && v.uffd.has(UffdFeatureWPAsync)
}

// setUffdMarkersLocked sets (or, if !wp, clears) the markers of the pma
// gaps of r, a part of vseg's vma. Preconditions: mappingMu held; activeMu
// held for writing.
func (mm *MemoryManager) setUffdMarkersLocked(vseg vmaIterator, r hostarch.AddrRange, wp bool) {
	if !wp {
		mm.clearUffdMarkersLocked(r)
		return
	}
	if !vseg.ValuePtr().usesMarkers() {
		return
	}
	for gap := mm.pmas.LowerBoundGap(r.Start); gap.Ok() && gap.Start() < r.End; gap = gap.NextLargeEnoughGap(1) {
		g := hostarch.AddrRange(gap.Range()).Intersect(r)
		if g.Length() == 0 {
			continue
		}
		mm.uffdMarkers.RemoveRange(addrSegRange(g))
		mm.uffdMarkers.Add(addrSegRange(g), struct{}{})
		mm.uffdMarkers.MergeAdjacent(addrSegRange(g))
	}
}

// clearUffdMarkersLocked clears the markers in r. Preconditions: activeMu
// held for writing.
func (mm *MemoryManager) clearUffdMarkersLocked(r hostarch.AddrRange) {
	if !mm.uffdMarkers.IsEmpty() {
		mm.uffdMarkers.RemoveRange(addrSegRange(r))
	}
}

// markerFreeLocked shrinks r, the range a fault at addr (a page without a
// marker) would allocate, so that it leaves out the marked pages around
// addr: they stay unpopulated and protected, as Linux's fault populates
// only the page it serves. Preconditions: activeMu held for writing.
func (mm *MemoryManager) markerFreeLocked(r hostarch.AddrRange, addr hostarch.Addr) hostarch.AddrRange {
	if mm.uffdMarkers.IsEmpty() {
		return r
	}
	pg := addr.RoundDown()
	if m := mm.uffdMarkers.LowerBoundSegment(pg + hostarch.PageSize); m.Ok() && m.Start() < r.End {
		r.End = max(m.Start(), pg+hostarch.PageSize)
	}
	if m := mm.uffdMarkers.UpperBoundSegment(pg); m.Ok() && m.End() > r.Start && m.End() <= pg {
		r.Start = m.End()
	}
	return r
}

// uffdMarkedLocked reports whether the page at addr, in vseg's vma, has a
// marker that counts. Preconditions: activeMu held.
func (mm *MemoryManager) uffdMarkedLocked(vseg vmaIterator, addr hostarch.Addr) bool {
	return !mm.uffdMarkers.IsEmpty() && vseg.ValuePtr().usesMarkers() && mm.uffdMarkers.FindSegment(addr).Ok()
}

// uffdMarkerFaultLocked serves an access at to the marked page at addr of
// vseg's vma: a zero page replaces the marker (the zero page itself for a
// read, on a kernel that has one), write-protected unless the
// write of a WP_ASYNC context resolves the protection; a write otherwise
// is a write-protect fault. Preconditions: mappingMu held; activeMu held
// for writing; addr has a marker and no pma.
func (mm *MemoryManager) uffdMarkerFaultLocked(vseg vmaIterator, addr hostarch.Addr, at hostarch.AccessType) error {
	v := vseg.ValuePtr()
	pg := addr.RoundDown()
	pr := hostarch.AddrRange{Start: pg, End: pg + hostarch.PageSize}
	async := at.Write && v.uffd.has(UffdFeatureWPAsync)
	if async {
		// Written at once: the fault path makes the page.
		mm.clearUffdMarkersLocked(pr)
		return nil
	}
	var p pma
	if !at.Write && !mm.limits.NoZeroPage {
		// A read maps the zero page, with the protection.
		p = newZeroPMA(v, pg)
	} else {
		mm.prepareAnonVMA(vseg)
		fr, err := mm.allocatePrivate(hostarch.PageSize, false, false)
		if err != nil {
			return errMemoryExhausted
		}
		p = mm.newPrivatePMA(v, fr.Start)
	}
	p.uffdWP = true
	p.effectivePerms = p.uffdPerms(p.effectivePerms)
	mm.pmas.Insert(mm.pmas.FindGap(pg), addrSegRange(pr), p)
	mm.addRSSLocked(hostarch.PageSize)
	mm.clearUffdMarkersLocked(pr)
	if at.Write {
		return &UserfaultError{Addr: addr, Flags: UffdPagefaultFlagWrite | UffdPagefaultFlagWP}
	}
	return nil
}

// uffdFileMarkerFaultLocked is uffdMarkerFaultLocked for a vma with a
// file behind it: the file's page is mapped in place of the marker, for
// reading and write-protected (Linux's fault on a marker keeps the
// protection in the entry it makes), unless the write of a WP_ASYNC
// context resolves the protection. Preconditions: as for
// uffdMarkerFaultLocked.
func (mm *MemoryManager) uffdFileMarkerFaultLocked(ctx context.Context, vseg vmaIterator, addr hostarch.Addr, at hostarch.AccessType) error {
	v := vseg.ValuePtr()
	pg := addr.RoundDown()
	pr := hostarch.AddrRange{Start: pg, End: pg + hostarch.PageSize}
	if at.Write && v.uffd.has(UffdFeatureWPAsync) {
		mm.clearUffdMarkersLocked(pr)
		return nil
	}
	if _, err := mm.fillGapLocked(ctx, vseg, mm.pmas.FindGap(pg), pg, pr, hostarch.Read); err != nil {
		return err
	}
	mm.setUffdWPRangeLocked(vseg, pr, true)
	mm.clearUffdMarkersLocked(pr)
	if at.Write {
		return &UserfaultError{Addr: addr, Flags: UffdPagefaultFlagWrite | UffdPagefaultFlagWP}
	}
	return nil
}

// uffdZapLocked is called before the pages of r, a part of vseg's vma, are
// dropped (MADV_DONTNEED, MADV_REMOVE): anonymous memory loses its
// markers there; memory with a file behind it, registered for write
// protection, gets a marker at each protected page. Preconditions:
// mappingMu held; activeMu not held.
func (mm *MemoryManager) uffdZapLocked(vseg vmaIterator, r hostarch.AddrRange) {
	v := vseg.ValuePtr()
	if v.isPrivateAnon() {
		if v.uffd == nil {
			// Markers count only in registered vmas, and
			// registration clears those left from before.
			return
		}
		mm.activeMu.Lock()
		mm.clearUffdMarkersLocked(r)
		mm.activeMu.Unlock()
		return
	}
	if !v.usesMarkers() {
		return
	}
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	mm.markProtectedLocked(r)
}

// markProtectedLocked sets a marker at each page of r whose pma is
// write-protected, as Linux does when it drops such a page of memory with
// a file behind it. Preconditions: activeMu held for writing.
func (mm *MemoryManager) markProtectedLocked(r hostarch.AddrRange) {
	for pseg := mm.pmas.LowerBoundSegment(r.Start); pseg.Ok() && pseg.Start() < r.End; pseg = pseg.NextSegment() {
		if !pseg.ValuePtr().uffdWP {
			continue
		}
		pr := hostarch.AddrRange(pseg.Range()).Intersect(r)
		mm.uffdMarkers.RemoveRange(addrSegRange(pr))
		mm.uffdMarkers.Add(addrSegRange(pr), struct{}{})
		mm.uffdMarkers.MergeAdjacent(addrSegRange(pr))
	}
}
