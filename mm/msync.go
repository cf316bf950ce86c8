package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"golang.org/x/sys/unix"
)

// MSyncOpts are msync(2)'s flags.
type MSyncOpts struct {
	Sync       bool
	Async      bool
	Invalidate bool
}

// MSync implements msync(2): it writes back shared file mappings in the
// range (with Sync), with Linux's validation: ENOMEM if part of the range is
// unmapped, EBUSY for MS_INVALIDATE on locked memory.
func (mm *MemoryManager) MSync(ctx context.Context, addr hostarch.Addr, length uint64, opts MSyncOpts) error {
	if !addr.IsPageAligned() || (opts.Sync && opts.Async) {
		return unix.EINVAL
	}
	// The length rounds up modulo 2^64, as Linux's does: a length that
	// wraps to 0 syncs nothing.
	la, _ := hostarch.PageRoundUp(length)
	end := addr + hostarch.Addr(la)
	if end < addr {
		return unix.ENOMEM
	}
	if end == addr {
		return nil
	}
	onlyAsync := opts.Async && !opts.Invalidate
	var unmapped error
	start := addr
	mm.mappingMu.RLock()
	for {
		vseg := mm.vmas.LowerBoundSegment(start)
		if !vseg.Ok() {
			mm.mappingMu.RUnlock()
			return unix.ENOMEM
		}
		if start < vseg.Start() {
			if onlyAsync {
				mm.mappingMu.RUnlock()
				return unix.ENOMEM
			}
			start = vseg.Start()
			if start >= end {
				mm.mappingMu.RUnlock()
				return unix.ENOMEM
			}
			unmapped = unix.ENOMEM
		}
		v := vseg.ValuePtr()
		if opts.Invalidate && v.locked() {
			mm.mappingMu.RUnlock()
			return unix.EBUSY
		}
		r := hostarch.AddrRange{Start: start, End: min(vseg.End(), end)}
		start = vseg.End()
		if opts.Sync && v.id != nil && !v.private() {
			id := v.id
			mr := mappableRangeOf(vseg, r)
			id.IncRef()
			mm.mappingMu.RUnlock()
			err := id.Msync(ctx, mr)
			id.DecRef(ctx)
			if err != nil || start >= end {
				if err != nil {
					return err
				}
				return unmapped
			}
			mm.mappingMu.RLock()
			continue
		}
		if start >= end {
			mm.mappingMu.RUnlock()
			return unmapped
		}
	}
}
