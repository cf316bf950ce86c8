package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
)

// BrkSetup sets the program break's start (and current value) to addr, as
// exec does after loading the program, removing any previous heap.
func (mm *MemoryManager) BrkSetup(ctx context.Context, addr hostarch.Addr) {
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	if mm.brk.Start != 0 {
		if old, ok := mm.heapRangeLocked(); ok && old.Length() != 0 {
			mm.removeVMAsLocked(ctx, old)
		}
	}
	mm.brk = hostarch.AddrRange{Start: addr, End: addr}
}

// SetDataSegment records the program's data segment [start, end), which
// counts against RLIMIT_DATA together with the heap (Linux's start_data and
// end_data).
func (mm *MemoryManager) SetDataSegment(ar hostarch.AddrRange) {
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	mm.dataSegment = ar
}

// heapRangeLocked returns the page-aligned range the heap occupies.
func (mm *MemoryManager) heapRangeLocked() (hostarch.AddrRange, bool) {
	start, ok1 := mm.brk.Start.RoundUp()
	end, ok2 := mm.brk.End.RoundUp()
	return hostarch.AddrRange{Start: start, End: end}, ok1 && ok2 && start <= end
}

// Brk implements brk(2): it moves the program break to addr if it can and
// returns the break after the call. Like Linux, failure is not an error:
// the old break is returned.
func (mm *MemoryManager) Brk(ctx context.Context, addr hostarch.Addr) (hostarch.Addr, error) {
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	orig := mm.brk.End
	if addr < mm.brk.Start {
		return orig, nil
	}
	// RLIMIT_DATA covers the heap and the data segment (check_data_rlimit).
	if lim := mm.limits.Data.Cur; lim != RLimInfinity {
		if uint64(addr-mm.brk.Start)+mm.dataSegment.Length() > lim {
			return orig, nil
		}
	}
	newBrk, ok := addr.RoundUp()
	if !ok {
		return orig, nil
	}
	oldBrk := mm.brk.End.MustRoundUp()
	if newBrk == oldBrk {
		mm.brk.End = addr
		return addr, nil
	}
	if addr <= mm.brk.End {
		// Shrinking is always allowed, unless the heap is sealed.
		ar := hostarch.AddrRange{Start: newBrk, End: oldBrk}
		vseg := mm.vmas.LowerBoundSegment(newBrk)
		if !vseg.Ok() || vseg.Start() >= oldBrk {
			return orig, nil
		}
		if err := mm.prepareUnmapLocked(ar); err != nil {
			return orig, nil
		}
		mm.uffdUnmapLocked(ar)
		mm.removeVMAsLocked(ctx, ar)
		mm.brk.End = addr
		return addr, nil
	}
	// Growing: the new range must be free, with a page (and a stack's
	// guard gap) to spare below the next mapping.
	ar := hostarch.AddrRange{Start: oldBrk, End: newBrk}
	if newBrk > mm.layout.MaxAddr {
		return orig, nil
	}
	v := vma{
		realPerms: hostarch.ReadWrite,
		maxPerms:  hostarch.AnyAccess,
		flags:     vmaPrivate | vmaAccount,
		off:       uint64(oldBrk),
		mlockMode: mm.defMLockMode,
	}
	if v.locked() && !mm.mlockFutureOKLocked(ar.Length()) {
		return orig, nil
	}
	gap := mm.vmas.FindGap(oldBrk)
	if !gap.Ok() {
		return orig, nil
	}
	if next := gap.NextSegment(); next.Ok() && newBrk+hostarch.PageSize > startGap(next) {
		return orig, nil
	}
	if err := mm.mayExpandLocked(&v, ar.Length(), 0); err != nil {
		return orig, nil
	}
	if mm.vmas.Len() > mm.limits.MaxMapCount {
		return orig, nil
	}
	// enoughMemoryLocked and the commitment of accountVMA, at once.
	if !mm.commitLocked().charge(ar.Length()>>hostarch.PageShift, mm.usageAS, mm.limits.CapSysAdmin) {
		return orig, nil
	}
	mm.accountVMAUsage(&v, ar.Length(), +1)
	mm.vmas.Insert(gap, addrSegRange(ar), v)
	mm.brk.End = addr
	if v.mlockMode == memmap.MLockEager {
		mm.populateLocked(ctx, ar, true)
	}
	return addr, nil
}

// BrkRange returns the heap's range [start, current break).
func (mm *MemoryManager) BrkRange() hostarch.AddrRange {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	return mm.brk
}
