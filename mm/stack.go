package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

// MapStack maps the main thread's stack as exec does: private anonymous
// memory at exactly ar (which must be free: EEXIST otherwise, as
// MAP_FIXED_NOREPLACE), growing down on faults below it, with permissions
// perms (read-write, plus execute for an executable stack) and any maximum
// permissions, named [stack] in /proc/PID/maps. ar must be page-aligned and
// non-empty (EINVAL).
func (mm *MemoryManager) MapStack(ctx context.Context, ar hostarch.AddrRange, perms hostarch.AccessType) error {
	if !ar.WellFormed() || ar.Length() == 0 || !ar.IsPageAligned() {
		return unix.EINVAL
	}
	_, err := mm.mmap(ctx, memmap.MMapOpts{
		Length:    ar.Length(),
		Addr:      ar.Start,
		Fixed:     true,
		Private:   true,
		GrowsDown: true,
		Perms:     perms,
		MaxPerms:  hostarch.AnyAccess,
	}, nil, vmaStackMain)
	return err
}

// growStackLocked extends the growsdown vma above addr down to addr's page,
// as Linux's expand_downwards, or returns the SIGSEGV the application gets.
// Preconditions: mappingMu held for writing.
func (mm *MemoryManager) growStackLocked(ctx context.Context, addr hostarch.Addr) error {
	next := mm.vmas.LowerBoundSegment(addr)
	if !next.Ok() || next.Start() <= addr || !next.ValuePtr().growsDown() {
		return segv(addr, errNoVMA)
	}
	newStart := addr.RoundDown()
	if newStart < mm.mmapMinAddrLocked() {
		// expand_downwards: not below mmap_min_addr, privileged or not.
		return segv(addr, errStackLimit)
	}
	if prev := next.PrevSegment(); prev.Ok() {
		pv := prev.ValuePtr()
		if newStart < prev.End() {
			return segv(addr, errStackLimit)
		}
		if !pv.growsDown() && pv.effectivePerms().Any() && newStart-prev.End() < stackGuardGap {
			return segv(addr, errStackLimit)
		}
	}
	// Like Linux's expand_downwards, the vma gets its anon_vma before the
	// growth is checked against the limits: an attempt that fails there
	// still leaves one (and from then on fork copies the vma's pages).
	mm.prepareAnonVMA(next)
	v := next.ValuePtr()
	grow := uint64(next.Start() - newStart)
	if uint64(next.End()-newStart) > mm.limits.Stack.Cur {
		return segv(addr, errStackLimit)
	}
	if err := mm.mayExpandLocked(v, grow, 0); err != nil {
		return segv(addr, errStackLimit)
	}
	if v.locked() && !mm.mlockFutureOKLocked(grow) {
		return segv(addr, errStackLimit)
	}
	if v.mappable != nil {
		// Growing a file mapping would need a new AddMapping; Linux only
		// grows anonymous stacks in practice.
		return segv(addr, errStackLimit)
	}
	if !mm.enoughMemoryLocked(grow) {
		return segv(addr, errStackLimit)
	}
	mm.accountVMA(v, grow, +1)
	v.off -= grow
	next.SetStartUnchecked(newStart)
	return nil
}
