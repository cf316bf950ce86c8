package linuxabi

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// Files gives mmap the file behind a descriptor.
type Files interface {
	// MMapFile returns the file open as descriptor fd, and a function to
	// call once the mapping is made (or nil), or an error (EBADF for a
	// descriptor that is not open). A file without an mmap of its own is
	// an mm.UnmappableFile, /dev/zero an mm.ZeroFile.
	MMapFile(ctx context.Context, fd int32) (mm.MappableFile, func(), error)
}

// MMapFD is mmap(2): x86-64's sys_mmap checks the offset, then the
// descriptor (MAP_ANONYMOUS ignores it), then maps as MMap.
func MMapFD(ctx context.Context, m *mm.MemoryManager, files Files, addr, length, prot, flags, fd, off uint64) (hostarch.Addr, error) {
	if off&hostarch.PageMask != 0 {
		return 0, unix.EINVAL
	}
	var file mm.MappableFile
	if flags&MapAnonymous == 0 {
		f, done, err := files.MMapFile(ctx, int32(fd))
		if err != nil {
			return 0, err
		}
		if done != nil {
			defer done()
		}
		file = f
	}
	return MMap(ctx, m, addr, length, prot, flags, file, off)
}

// MMap is mmap(2) with its descriptor's file already found (nil: the
// descriptor is not open), as Linux's ksys_mmap_pgoff once it has the
// file: MAP_HUGETLB's checks, then the flags decoded for mm.DoMMap.
func MMap(ctx context.Context, m *mm.MemoryManager, addr, length, prot, flags uint64, file mm.MappableFile, off uint64) (hostarch.Addr, error) {
	if off&hostarch.PageMask != 0 {
		return 0, unix.EINVAL
	}
	anon := flags&MapAnonymous != 0
	if anon {
		file = nil
	} else if file == nil {
		return 0, unix.EBADF
	}
	if flags&MapHugeTLB != 0 {
		if !anon {
			// Not a hugetlbfs file.
			return 0, unix.EINVAL
		}
		// Linux maps a new hugetlbfs file of the page size asked
		// (MAP_HUGE_2MB, MAP_HUGE_1GB; 0 is the default, 2 MiB),
		// checked as a file mapping; a size the host's kernel has no
		// pool for is EINVAL, and with no huge pages to reserve, it
		// fails where hugetlbfs reserves them.
		size := uint64(hugePageSize)
		if sz := flags >> MapHugeShift & 0x3f; sz != 0 && sz != 21 {
			if !hostfile.HasHugePageSize(sz) {
				return 0, unix.EINVAL
			}
			size = 1 << sz
		}
		length = (length + size - 1) &^ (size - 1)
		if flags&(MapFixed|MapFixedNoReplace) != 0 && length != 0 && length <= uint64(hostarch.MaxUserAddress) &&
			addr&(size-1) != 0 {
			return 0, unix.EINVAL
		}
		noPages, errno := probeHugeTLB(length, prot, flags)
		switch {
		case errno != 0 || noPages:
			file = hugeTLBFile{errno: errno}
		default:
			file = nil // anonymous memory (hugetlb.go)
		}
	}
	typ := mm.MapTypeInvalid
	switch flags & MapType {
	case MapShared:
		typ = mm.MapTypeShared
	case MapSharedValidate:
		if file != nil {
			typ = mm.MapTypeSharedValidate
		}
	case MapPrivate:
		typ = mm.MapTypePrivate
	case MapDroppable:
		if file == nil {
			typ = mm.MapTypeDroppable
		}
	}
	return m.DoMMap(ctx, mm.DoMMapOpts{
		Addr:         hostarch.Addr(addr),
		Length:       length,
		Offset:       off,
		Perms:        hostarch.AccessTypeFromProt(int(prot & 7)),
		File:         file,
		Type:         typ,
		UnknownFlags: flags&^legacyMapMask != 0,
		Fixed:        flags&MapFixed != 0,
		NoReplace:    flags&MapFixedNoReplace != 0,
		Map32Bit:     flags&Map32Bit != 0,
		Above4G:      flags&MapAbove4G != 0,
		GrowsDown:    flags&MapGrowsDown != 0,
		Stack:        flags&MapStack != 0,
		NoReserve:    flags&MapNoReserve != 0,
		Locked:       flags&MapLocked != 0,
		Populate:     flags&(MapPopulate|MapNonBlock) == MapPopulate,
	})
}

// hugePageSize is the default huge page size (x86-64's PMD size), the
// one every x86-64 kernel has.
const hugePageSize = 2 << 20

// hugeTLBFile is the hugetlbfs file behind MAP_HUGETLB|MAP_ANONYMOUS when
// the host has no huge pages for it (hugetlb.go): errno is the host's
// mmap's, or 0 for a MAP_NORESERVE mapping whose accesses fault.
type hugeTLBFile struct {
	errno unix.Errno
}

// Readable implements mm.MappableFile.Readable.
func (hugeTLBFile) Readable() bool { return true }

// Writable implements mm.MappableFile.Writable.
func (hugeTLBFile) Writable() bool { return true }

// ConfigureMMap implements mm.MappableFile.ConfigureMMap: an offset that
// is not a huge page's is EINVAL, then the host's errno, else a mapping
// without pages.
func (h hugeTLBFile) ConfigureMMap(_ context.Context, o *memmap.MMapOpts) error {
	if o.Offset&(hugePageSize-1) != 0 {
		return unix.EINVAL
	}
	if h.errno != 0 {
		return h.errno
	}
	m := newHugeTLBNoPages()
	o.Mappable = m
	o.MappingIdentity = m
	return nil
}
