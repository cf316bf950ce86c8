package mm

import (
	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/segment"
)

// guardSet records guard regions (MADV_GUARD_INSTALL): pages that fault
// with SIGSEGV whatever their vma allows, without splitting vmas.
type guardSet = segment.Set[hostarch.Addr, struct{}, guardFunctions]

type guardFunctions struct{}

func (guardFunctions) MinKey() hostarch.Addr { return 0 }

func (guardFunctions) MaxKey() hostarch.Addr { return ^hostarch.Addr(0) }

func (guardFunctions) ClearValue(*struct{}) {}

func (guardFunctions) Merge(addrSegRange, struct{}, addrSegRange, struct{}) (struct{}, bool) {
	return struct{}{}, true
}

func (guardFunctions) Split(addrSegRange, struct{}, hostarch.Addr) (struct{}, struct{}) {
	return struct{}{}, struct{}{}
}

// isGuardLocked reports whether addr is in a guard region. Preconditions:
// mappingMu held.
func (mm *MemoryManager) isGuardLocked(addr hostarch.Addr) bool {
	if mm.guards.IsEmpty() {
		return false
	}
	return mm.guards.FindSegment(addr).Ok()
}

// firstGuardLocked returns the start of the first guard region in ar, or
// ar.End. Preconditions: mappingMu held.
func (mm *MemoryManager) firstGuardLocked(ar hostarch.AddrRange) hostarch.Addr {
	if mm.guards.IsEmpty() {
		return ar.End
	}
	g := mm.guards.LowerBoundSegment(ar.Start)
	if g.Ok() && g.Start() < ar.End {
		return max(g.Start(), ar.Start)
	}
	return ar.End
}

// guardFreeLocked clips r, which contains addr (not in a guard region), to
// the part around addr that no guard region interrupts. Preconditions:
// mappingMu held.
func (mm *MemoryManager) guardFreeLocked(r hostarch.AddrRange, addr hostarch.Addr) hostarch.AddrRange {
	if mm.guards.IsEmpty() {
		return r
	}
	if g := mm.guards.LowerBoundSegment(addr); g.Ok() && g.Start() < r.End {
		r.End = max(g.Start(), addr)
	}
	if g := mm.guards.UpperBoundSegment(addr); g.Ok() && g.End() > r.Start && g.End() <= addr {
		r.Start = g.End()
	}
	return r
}
