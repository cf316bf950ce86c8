package mm

import (
	"context"
	"sync/atomic"

	"github.com/vmspace/vmspace/hostarch"
)

// Activate makes the platform AddressSpace available for the application
// to run in, creating it on first use. Each Activate needs a matching
// Deactivate.
func (mm *MemoryManager) Activate(ctx context.Context) error {
	for {
		a := mm.active.Load()
		if a == 0 {
			break
		}
		if mm.active.CompareAndSwap(a, a+1) {
			return nil
		}
	}
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	if a := mm.active.Load(); a != 0 {
		mm.active.Add(1)
		return nil
	}
	if mm.as == nil {
		// Making an AddressSpace may block for a long time (starting a
		// stub process).
		as, err := mm.p.NewAddressSpace()
		if err != nil {
			return err
		}
		mm.as = as
		mm.unmapAllOnActivate = false
	} else if mm.unmapAllOnActivate {
		mm.unmapASLocked(hostarch.AddrRange{Start: 0, End: mm.p.MaxUserAddress()})
		mm.unmapAllOnActivate = false
	}
	mm.active.Store(1)
	return nil
}

// Deactivate undoes one Activate. The AddressSpace is kept (and kept up to
// date) until the last user goes.
func (mm *MemoryManager) Deactivate() {
	for {
		a := mm.active.Load()
		if a <= 0 {
			panic("mm: Deactivate without Activate")
		}
		if a > 1 {
			if mm.active.CompareAndSwap(a, a-1) {
				return
			}
			continue
		}
		mm.activeMu.Lock()
		if mm.active.CompareAndSwap(1, 0) {
			mm.activeMu.Unlock()
			return
		}
		mm.activeMu.Unlock()
	}
}

// mapASLocked maps the pmas overlapping ar into the AddressSpace, and with
// precommit has the host commit ar's pages (only ar's) at once.
// Preconditions: activeMu held (for reading or writing); mm.as != nil;
// pmas cover ar.
func (mm *MemoryManager) mapASLocked(ar hostarch.AddrRange, precommit bool) error {
	unit := mm.p.MapUnit()
	for pseg := mm.pmas.LowerBoundSegment(ar.Start); pseg.Ok() && pseg.Start() < ar.End; pseg = pseg.NextSegment() {
		p := pseg.ValuePtr()
		mr := hostarch.AddrRange(pseg.Range())
		want := mappedValue(p.effectivePerms)
		if unit == 0 && !precommit && atomic.LoadUint32(&p.mapped) == want {
			// Already mapped as it should be (a spurious fault).
			continue
		}
		if unit != 0 {
			start := hostarch.Addr(uint64(ar.Start) &^ (unit - 1))
			end := hostarch.Addr(uint64(ar.End+hostarch.Addr(unit)-1) &^ (unit - 1))
			if end < ar.End {
				end = ar.End
			}
			mr = mr.Intersect(hostarch.AddrRange{Start: start, End: end})
		}
		if !p.effectivePerms.Any() {
			continue
		}
		// With precommit, only ar's pages are committed, as Linux
		// populates only the range asked for: committing the rest of the
		// pma (up to a huge page around ar) would make those pages
		// resident, for mincore and smaps as for the host's memory.
		cr := mr
		if precommit {
			cr = mr.Intersect(ar)
		}
		for _, r := range [3]hostarch.AddrRange{{Start: mr.Start, End: cr.Start}, cr, {Start: cr.End, End: mr.End}} {
			if r.Length() == 0 {
				continue
			}
			if err := mm.as.MapFile(r.Start, p.file, pmaRef{pseg}.fileRange(r), p.effectivePerms, precommit && r == cr); err != nil {
				return err
			}
		}
		if unit == 0 {
			atomic.StoreUint32(&p.mapped, want)
		}
	}
	return nil
}

// unmapASLocked removes ar from the AddressSpace, and records that the
// pmas overlapping it are no longer (wholly) mapped. Before the first
// Activate there is no AddressSpace: the next Activate clears it instead.
// Preconditions: activeMu held for writing.
func (mm *MemoryManager) unmapASLocked(ar hostarch.AddrRange) {
	if mm.as == nil {
		mm.unmapAllOnActivate = true
		return
	}
	mm.as.Unmap(ar.Start, ar.Length())
	for pseg := mm.pmas.LowerBoundSegment(ar.Start); pseg.Ok() && pseg.Start() < ar.End; pseg = pseg.NextSegment() {
		atomic.StoreUint32(&pseg.ValuePtr().mapped, 0)
	}
}
