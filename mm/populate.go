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
