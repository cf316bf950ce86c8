package mm

import (
	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
)

// PageOutUnmapper is implemented by PageOuters that need the caller's own
// mappings of a range gone before PageOut: a directly mapped host file,
// whose pages the host kernel reclaims only when no process maps them, the
// program's stub included.
type PageOutUnmapper interface {
	// PageOutUnmapsFirst reports whether the memory manager must remove
	// its pmas of the range (and so unmap it from the AddressSpace)
	// before PageOut.
	PageOutUnmapsFirst() bool
}

// UnmapFlusher is implemented by platform.AddressSpaces whose Unmap may
// leave the host's mapping in place for a while (the sandbox's, which
// defers its munmaps to the program's next run): FlushUnmaps makes every
// deferred unmap now, so that the host no longer maps the pages when it
// returns (as far as it can: an address space none of whose tasks can
// take a call now keeps them deferred).
type UnmapFlusher interface {
	FlushUnmaps()
}

// unmapForPageOutLocked removes this address space's shared pmas over ars,
// unmapping them from the AddressSpace at once (UnmapFlusher), if po asks
// for it: as Linux's reclaim unmaps a page it takes from the page table
// entries that map it. A later access faults them in again.
// Preconditions: mappingMu held; activeMu not held.
func (mm *MemoryManager) unmapForPageOutLocked(po PageOuter, ars []hostarch.AddrRange) {
	if u, ok := po.(PageOutUnmapper); !ok || !u.PageOutUnmapsFirst() || len(ars) == 0 {
		return
	}
	for _, ar := range ars {
		mm.Invalidate(ar, memmap.InvalidateOpts{})
	}
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	if f, ok := mm.as.(UnmapFlusher); ok {
		f.FlushUnmaps()
	}
}
