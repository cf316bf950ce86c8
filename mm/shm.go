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

// AttachShm implements shmat(2) (without SHM_RND): it maps seg at addr
// (0: anywhere), read-only if readOnly (SHM_RDONLY), executable too if exec
// (SHM_EXEC), and returns the address. EINVAL for an unaligned addr, or one
// overlapping a mapping unless remap (SHM_REMAP: the attachment replaces
// what it overlaps, as a MAP_FIXED mmap).
func (mm *MemoryManager) AttachShm(ctx context.Context, seg ShmSegment, addr hostarch.Addr, readOnly, exec, remap bool) (hostarch.Addr, error) {
	if !addr.IsPageAligned() {
		return 0, unix.EINVAL
	}
	size := seg.Size()
	perms := hostarch.ReadWrite
	if readOnly {
		perms = hostarch.Read
	}
	perms.Execute = exec
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
	if addr != 0 && !remap {
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

// DetachShm implements shmdt(2), as Linux's do_shmdt: the attachment is
// the first vma at or above addr that maps a segment at the offset its
// distance from addr gives (a fragment left by munmap or mprotect counts);
// it and every other such fragment of the same segment within the
// segment's size are unmapped. It returns the segment's Mappable (that
// of the attachment's vma), or EINVAL if there is none.
func (mm *MemoryManager) DetachShm(ctx context.Context, addr hostarch.Addr) (memmap.Mappable, error) {
	if !addr.IsPageAligned() {
		return nil, unix.EINVAL
	}
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	isFragment := func(vs vmaIterator) bool {
		v := vs.ValuePtr()
		return v.flags.has(vmaShm) && v.off == uint64(vs.Start()-addr)
	}
	vseg := mm.vmas.LowerBoundSegment(addr)
	for vseg.Ok() && !isFragment(vseg) {
		vseg = vseg.NextSegment()
	}
	if !vseg.Ok() {
		return nil, unix.EINVAL
	}
	m := vseg.ValuePtr().mappable
	size := uint64(vseg.End() - vseg.Start())
	if s, ok := m.(interface{ Size() uint64 }); ok {
		size = s.Size()
	}
	size, _ = hostarch.PageRoundUp(size)
	rs := []hostarch.AddrRange{hostarch.AddrRange(vseg.Range())}
	for vs := vseg.NextSegment(); vs.Ok() && uint64(vs.End()-addr) <= size; vs = vs.NextSegment() {
		if isFragment(vs) && vs.ValuePtr().mappable == m {
			rs = append(rs, hostarch.AddrRange(vs.Range()))
		}
	}
	for _, r := range rs {
		mm.removeVMAsLocked(ctx, r)
	}
	return m, nil
}
