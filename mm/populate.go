package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
)

// populateLocked faults in every page of ar, as MAP_POPULATE and mlock do:
// for writing in private writable vmas, else for reading; lazily locked
// vmas are skipped. An inaccessible (PROT_NONE) vma or an error stops it
// with false, unless ignoreErrors (Linux's mm_populate, used by mmap, brk,
// mremap and mlockall), which skips to the next vma. Preconditions:
// mappingMu held for writing.
func (mm *MemoryManager) populateLocked(ctx context.Context, ar hostarch.AddrRange, ignoreErrors bool) bool {
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	for vseg := mm.vmas.LowerBoundSegment(ar.Start); vseg.Ok() && vseg.Start() < ar.End; vseg = vseg.NextSegment() {
		v := vseg.ValuePtr()
		if v.mlockMode == memmap.MLockLazy {
			continue
		}
		eff := v.effectivePerms()
		if !eff.Any() {
			if ignoreErrors {
				continue
			}
			return false
		}
		at := hostarch.Read
		if v.private() && eff.Write {
			at = hostarch.Write
		}
		r := hostarch.AddrRange(vseg.Range()).Intersect(ar)
		guard := mm.firstGuardLocked(r)
		full := r.End
		r.End = guard
		if r.Length() > 0 {
			if err := mm.populateRangeLocked(ctx, vseg, r, at); err != nil && !ignoreErrors {
				return false
			}
		}
		if guard < full && !ignoreErrors {
			// A guard region faults: like any fault, it stops mlock.
			return false
		}
		vseg = mm.vmas.FindSegment(r.Start)
	}
	return true
}

// populateChunk is how much populateRangeLocked populates between checks
// of its context's cancellation (a fatal signal, in Linux's terms).
const populateChunk = 64 << 20

// populateRangeLocked creates pmas for r within vseg and marks its pages
// accessed. If ctx can be cancelled, it goes populateChunk-aligned chunk by
// chunk and stops with ctx's error once it is. Preconditions: mappingMu
// held; activeMu held for writing.
func (mm *MemoryManager) populateRangeLocked(ctx context.Context, vseg vmaIterator, r hostarch.AddrRange, at hostarch.AccessType) error {
	if ctx.Done() != nil {
		for c := r.Start; c < r.End; {
			if err := ctx.Err(); err != nil {
				return err
			}
			e := (c + populateChunk) &^ (populateChunk - 1)
			if e <= c || e > r.End {
				e = r.End
			}
			if err := mm.populateOnceLocked(ctx, mm.vmas.FindSegment(c), hostarch.AddrRange{Start: c, End: e}, at); err != nil {
				return err
			}
			c = e
		}
		return nil
	}
	return mm.populateOnceLocked(ctx, vseg, r, at)
}

// populateOnceLocked is populateRangeLocked without cancellation.
func (mm *MemoryManager) populateOnceLocked(ctx context.Context, vseg vmaIterator, r hostarch.AddrRange, at hostarch.AccessType) error {
	if _, err := mm.getPMAsLocked(ctx, vseg, r, at); err != nil {
		return err
	}
	mm.touchLocked(r, at)
	if mm.as != nil {
		return mm.mapASEvictingLocked(r, true)
	}
	return nil
}

// MapAhead gets pmas for the accessible parts of [addr, addr+length) for
// access at, as faults there would, and maps them into the AddressSpace
// without committing or touching any page: an embedder whose program is
// about to use memory (a heap just grown, a new stack) maps it ahead so
// that the program's first accesses fault only in the host. Unlike
// MADV_POPULATE_READ/WRITE nothing becomes resident: a page is resident
// once the program, or the host kernel on its behalf, touches it, as on
// Linux, so RSS, mincore and smaps are those of the program's accesses.
// It faults nothing the program could not (no guard pages, no ranges
// registered with a userfaultfd, no vma that lacks at), counts no fault,
// and reports no error: where it fails, the program's own access will
// fault and be served.
func (mm *MemoryManager) MapAhead(ctx context.Context, addr hostarch.Addr, length uint64, at hostarch.AccessType) {
	ar, ok := addr.ToRange(length)
	if !ok || length == 0 || ar.End > mm.p.MaxUserAddress() {
		return
	}
	ar = hostarch.AddrRange{Start: ar.Start.RoundDown(), End: ar.End.MustRoundUp()}
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	for vseg := mm.vmas.LowerBoundSegment(ar.Start); vseg.Ok() && vseg.Start() < ar.End; vseg = vseg.NextSegment() {
		v := vseg.ValuePtr()
		if v.uffd != nil || !v.effectivePerms().SupersetOf(at) {
			continue
		}
		r := hostarch.AddrRange(vseg.Range()).Intersect(ar)
		r.End = mm.firstGuardLocked(r)
		if r.Length() == 0 {
			continue
		}
		if _, err := mm.getPMAsLocked(ctx, vseg, r, at); err != nil {
			return
		}
		if mm.as != nil && mm.mapASEvictingLocked(r, false) != nil {
			return
		}
		// getPMAsLocked may have changed the vmas (anon_vma).
		vseg = mm.vmas.FindSegment(r.Start)
	}
}
