package mm

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/vmspace/vmspace/hostarch"
	"golang.org/x/sys/unix"
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
	return mm.mapASOnceLocked(ar, precommit)
}

// mapASEvictingLocked is mapASLocked that, when the host refuses a
// mapping, drops the address space's host mappings and tries again.
// Preconditions: mappingMu held (for reading or writing); activeMu held
// for writing; mm.as != nil; pmas cover ar.
func (mm *MemoryManager) mapASEvictingLocked(ar hostarch.AddrRange, precommit bool) error {
	err := mm.mapASOnceLocked(ar, precommit)
	if err == nil || !errors.Is(err, unix.ENOMEM) {
		return err
	}
	// The host refused a mapping (ENOMEM: past its vm.max_map_count,
	// since the memory file's pieces never merge into one host mapping
	// as an anonymous region's pages do in Linux; or short of memory).
	// The host mappings are only a cache of the pmas: drop them all
	// (faults make them again) and try once more, so that a program with
	// more scattered touched pages than the host allows mappings still
	// progresses instead of failing, or retrying, the same access.
	mm.evictASLocked()
	return mm.mapASOnceLocked(ar, precommit)
}

// evictASLocked removes every host mapping of the address space: the
// ranges of its vmas (not the whole user range, where the host may have
// mappings of its own, such as its vDSO). Preconditions: mappingMu held
// (for reading or writing); activeMu held for writing; mm.as != nil.
func (mm *MemoryManager) evictASLocked() {
	for vseg := mm.vmas.FirstSegment(); vseg.Ok(); vseg = vseg.NextSegment() {
		mm.unmapASLocked(hostarch.AddrRange(vseg.Range()))
	}
}

// mapASOnceLocked is mapASLocked without the retry.
func (mm *MemoryManager) mapASOnceLocked(ar hostarch.AddrRange, precommit bool) error {
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
