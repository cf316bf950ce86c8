package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

// MLock implements mlock(2) (mode MLockEager) and mlock2(2) with
// MLOCK_ONFAULT (MLockLazy), and munlock(2) (MLockNone).
func (mm *MemoryManager) MLock(ctx context.Context, addr hostarch.Addr, length uint64, mode memmap.MLockMode) error {
	if mode != memmap.MLockNone && !mm.Limits().CapIPCLock && mm.Limits().MemLock.Cur == 0 {
		return unix.EPERM
	}
	// Linux rounds the start down and the length up to cover it.
	la := length + addr.PageOffset()
	la, _ = hostarch.PageRoundUp(la)
	start := addr.RoundDown()

	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	if mode != memmap.MLockNone && !mm.limits.CapIPCLock {
		locked := mm.lockedAS>>hostarch.PageShift + la>>hostarch.PageShift
		limit := mm.limits.MemLock.Cur >> hostarch.PageShift
		if locked > limit {
			locked -= mm.lockedSizeInLocked(start, la) >> hostarch.PageShift
		}
		if locked > limit {
			return unix.ENOMEM
		}
	}
	end := start + hostarch.Addr(la)
	if end < start {
		return unix.EINVAL
	}
	if end == start {
		return nil
	}
	ar := hostarch.AddrRange{Start: start, End: end}
	if !mm.vmas.FindSegment(start).Ok() {
		return unix.ENOMEM
	}
	nstart := start
	var err error
	for nstart < end {
		vseg := mm.vmas.LowerBoundSegment(nstart)
		if !vseg.Ok() || vseg.Start() > nstart {
			err = unix.ENOMEM // a hole
			break
		}
		r := hostarch.AddrRange{Start: nstart, End: min(vseg.End(), end)}
		if !vseg.ValuePtr().flags.has(vmaUnlockable) {
			if _, err = mm.modifyVMALocked(ctx, vseg, r, false, func(nv *vma) { nv.mlockMode = mode }); err != nil {
				break
			}
		}
		nstart = r.End
	}
	if err != nil {
		return err
	}
	if mode == memmap.MLockEager {
		// Like Linux's __mm_populate, stop at an inaccessible vma and
		// report it (mlock's ENOMEM): the locks stay applied.
		if !mm.populateLocked(ctx, ar, false) {
			return unix.ENOMEM
		}
	}
	return nil
}

// lockedSizeInLocked returns the bytes of locked vmas in [start,
// start+length). Preconditions: mappingMu held.
func (mm *MemoryManager) lockedSizeInLocked(start hostarch.Addr, length uint64) uint64 {
	end := start + hostarch.Addr(length)
	if end < start {
		end = ^hostarch.Addr(0)
	}
	ar := hostarch.AddrRange{Start: start, End: end}
	var n uint64
	for vseg := range mm.vmas.Segments(addrSegRange(ar)) {
		if vseg.ValuePtr().locked() {
			n += hostarch.AddrRange(vseg.Range()).Intersect(ar).Length()
		}
	}
	return n
}

// MLockAllOpts are mlockall(2)'s flags.
type MLockAllOpts struct {
	Current bool
	Future  bool
	OnFault bool
}

// MLockAll implements mlockall(2).
func (mm *MemoryManager) MLockAll(ctx context.Context, opts MLockAllOpts) error {
	if !opts.Current && !opts.Future {
		return unix.EINVAL
	}
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	if !mm.canDoMLockLocked() {
		return unix.EPERM
	}
	if opts.Current && !mm.limits.CapIPCLock && mm.usageAS>>hostarch.PageShift > mm.limits.MemLock.Cur>>hostarch.PageShift {
		return unix.ENOMEM
	}
	mode := memmap.MLockEager
	if opts.OnFault {
		mode = memmap.MLockLazy
	}
	mm.defMLockMode = memmap.MLockNone
	if opts.Future {
		mm.defMLockMode = mode
	}
	if opts.Current {
		mm.setAllMLockLocked(ctx, mode)
		if mode == memmap.MLockEager {
			mm.populateLocked(ctx, hostarch.AddrRange{Start: 0, End: mm.layout.MaxAddr}, true)
		}
	}
	return nil
}

// MUnlockAll implements munlockall(2).
func (mm *MemoryManager) MUnlockAll(ctx context.Context) error {
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	mm.defMLockMode = memmap.MLockNone
	mm.setAllMLockLocked(ctx, memmap.MLockNone)
	return nil
}

// setAllMLockLocked sets the mlock mode of every vma (special mappings
// excepted). Preconditions: mappingMu held for writing.
func (mm *MemoryManager) setAllMLockLocked(ctx context.Context, mode memmap.MLockMode) {
	for vseg := mm.vmas.FirstSegment(); vseg.Ok(); {
		v := vseg.ValuePtr()
		if v.flags.has(vmaUnlockable) || v.mlockMode == mode {
			vseg = vseg.NextSegment()
			continue
		}
		// Like mlock_fixup: the changed vma merges with its neighbours;
		// unchanged ones stay as they are.
		r := hostarch.AddrRange(vseg.Range())
		vseg, _ = mm.modifyVMALocked(ctx, vseg, r, false, func(nv *vma) { nv.mlockMode = mode })
		vseg = mm.vmas.LowerBoundSegment(r.End)
	}
}

// canDoMLockLocked is Linux's can_do_mlock: a process may lock memory if it
// has CAP_IPC_LOCK or a non-zero RLIMIT_MEMLOCK. Preconditions: mappingMu
// held.
func (mm *MemoryManager) canDoMLockLocked() bool {
	return mm.limits.CapIPCLock || mm.limits.MemLock.Cur != 0
}

// mlockFutureOKLocked is Linux's mlock_future_ok: locking length more bytes
// keeps within RLIMIT_MEMLOCK. Preconditions: mappingMu held.
func (mm *MemoryManager) mlockFutureOKLocked(length uint64) bool {
	if mm.limits.CapIPCLock {
		return true
	}
	locked := mm.lockedAS + length
	return locked >= mm.lockedAS && locked <= mm.limits.MemLock.Cur
}
