package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

// ShmSegment is a System V shared memory segment that shmat(2) can attach.
type ShmSegment interface {
	MappableFile
	// Size returns the segment's size in bytes.
	Size() uint64
}

// AttachShm implements shmat(2) (without SHM_RND and SHM_REMAP): it maps
// seg at addr (0: anywhere), read-only if readOnly, and returns the
// address. EINVAL for an unaligned addr or one overlapping a mapping.
func (mm *MemoryManager) AttachShm(ctx context.Context, seg ShmSegment, addr hostarch.Addr, readOnly bool) (hostarch.Addr, error) {
	if !addr.IsPageAligned() {
		return 0, unix.EINVAL
	}
	size := seg.Size()
	perms := hostarch.ReadWrite
	if readOnly {
		perms = hostarch.Read
	}
	opts := memmap.MMapOpts{
		Length:   size,
		Addr:     addr,
		Fixed:    addr != 0,
		Unmap:    addr != 0,
		Perms:    perms,
		MaxPerms: hostarch.AnyAccess,
	}
	if readOnly {
		opts.MaxPerms.Write = false
	}
	if addr != 0 {
		end, ok := addr.AddLength(size)
		if !ok {
			return 0, unix.EINVAL
		}
		mm.mappingMu.RLock()
		busy := !mm.vmas.IsEmptyRange(addrSegRange(hostarch.AddrRange{Start: addr, End: end}))
		mm.mappingMu.RUnlock()
		if busy {
			return 0, unix.EINVAL
		}
	}
	return mm.mmap(ctx, opts, func(o *memmap.MMapOpts) error {
		return seg.ConfigureMMap(ctx, o)
	}, vmaShm)
}

// DetachShm implements shmdt(2): it unmaps the segment attached at addr
// (every vma of it within its size). EINVAL if none is attached there.
func (mm *MemoryManager) DetachShm(ctx context.Context, addr hostarch.Addr) error {
	if !addr.IsPageAligned() {
		return unix.EINVAL
	}
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	vseg := mm.vmas.FindSegment(addr)
	if !vseg.Ok() || vseg.Start() != addr || !vseg.ValuePtr().flags.has(vmaShm) || vseg.ValuePtr().off != 0 {
		return unix.EINVAL
	}
	m := vseg.ValuePtr().mappable
	var size uint64
	if s, ok := m.(interface{ Size() uint64 }); ok {
		size = s.Size()
	} else {
		size = uint64(vseg.End() - vseg.Start())
	}
	end, ok := addr.AddLength(size)
	if !ok {
		end = mm.layout.MaxAddr
	}
	var rs []hostarch.AddrRange
	for vs := vseg; vs.Ok() && vs.Start() < end; vs = vs.NextSegment() {
		v := vs.ValuePtr()
		if v.mappable == m && v.flags.has(vmaShm) && v.off == uint64(vs.Start()-addr) {
			rs = append(rs, hostarch.AddrRange(vs.Range()).Intersect(hostarch.AddrRange{Start: addr, End: end}))
		}
	}
	for _, r := range rs {
		mm.removeVMAsLocked(ctx, r)
	}
	return nil
}
