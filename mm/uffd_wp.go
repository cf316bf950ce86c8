package mm

import (
	"github.com/vmspace/vmspace/hostarch"
)

// UFFD_FEATURE_WP_UNPOPULATED: write protection of pages never populated.
//
// Linux write-protects a page that has no page table entry by leaving a
// marker in its entry when the context asked for
// UFFD_FEATURE_WP_UNPOPULATED (or WP_ASYNC, which implies it), in private
// anonymous memory. mm keeps such markers in uffdMarkers: UFFDIO_WRITEPROTECT
// sets them on the pma gaps of the range and clears them with the
// protection (MADV_DONTNEED drops a protected page without leaving a
// marker, as Linux's zap of anonymous memory does). An access
// to a marked page (userfaultCheckLocked, after a missing fault, which
// comes first) makes a zero page that keeps the protection: a read goes
// on, a write is a write-protect fault (resolved at once with
// UFFD_FEATURE_WP_ASYNC). A fill (COPY, ZEROPAGE, ...) replaces the
// marker as it would replace nothing. Markers count only while their vma
// stays registered for write protection: registration and its removal
// clear them.

// usesMarkers reports whether write protection of v, registered with u,
// marks unpopulated pages.
func (v *vma) usesMarkers() bool {
	u := v.uffd
	return u != nil && v.flags.has(vmaUffdWP) && v.isPrivateAnon() && u.has(UffdFeatureWPUnpopulated)
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
// vseg's vma: a zero page replaces the marker, write-protected unless the
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
	mm.prepareAnonVMA(vseg)
	fr, err := mm.allocatePrivate(hostarch.PageSize, false, false)
	if err != nil {
		return errMemoryExhausted
	}
	p := mm.newPrivatePMA(v, fr.Start)
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
