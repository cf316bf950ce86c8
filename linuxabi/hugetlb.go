package linuxabi

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

// Anonymous MAP_HUGETLB mappings.
//
// Linux backs them with a new file of its internal hugetlbfs mount, whose
// pages come from the host's pool of huge pages: mmap reserves them (ENOMEM
// when the pool lacks them), unless MAP_NORESERVE, in which case a fault
// that finds no huge page is SIGBUS. vmspace asks the host the same
// question with the same mmap in its own process (probeHugeTLB):
//   - if it fails, the program's mmap fails with its errno;
//   - if the host could reserve the pages, the mapping is anonymous memory
//     in small pages (vmspace does not model huge pages);
//   - if only MAP_NORESERVE let it succeed (the pool has no page to
//     reserve), every access to the mapping is SIGBUS (hugeTLBNoPages), as
//     on Linux.

// probeHugeTLB maps length bytes with prot and flags (those of the
// program's MAP_HUGETLB|MAP_ANONYMOUS call, without the ones that place
// or populate it) in vmspace's own process and unmaps them. It returns
// the host's errno, and whether the host has no huge pages to reserve
// for a MAP_NORESERVE mapping it allowed.
func probeHugeTLB(length, prot, flags uint64) (noPages bool, errno unix.Errno) {
	keep := uint64(MapType | MapAnonymous | MapHugeTLB | MapNoReserve | 0x3f<<MapHugeShift)
	try := func(fl uint64) unix.Errno {
		addr, _, e := unix.Syscall6(unix.SYS_MMAP, 0, uintptr(length), uintptr(prot&7), uintptr(fl), ^uintptr(0), 0)
		if e == 0 {
			unix.Syscall(unix.SYS_MUNMAP, addr, uintptr(length), 0)
		}
		return e
	}
	if e := try(flags & keep); e != 0 {
		return false, e
	}
	if flags&MapNoReserve == 0 {
		return false, 0
	}
	return try(flags&keep&^MapNoReserve) != 0, 0
}

// hugeTLBNoPages is the Mappable (and identity) of an anonymous
// MAP_HUGETLB mapping for which the host has no huge pages: every access
// is a bus error. Its maps entry is Linux's, a deleted /anon_hugepage of
// the hugetlbfs mount's device.
type hugeTLBNoPages struct {
	// dev and ino are the device and inode numbers maps shows.
	// Immutable.
	dev, ino uint64
}

// newHugeTLBNoPages returns the Mappable of a new mapping, numbered as a
// new file of the host's hugetlbfs mount would be.
func newHugeTLBNoPages() hugeTLBNoPages {
	var h hugeTLBNoPages
	fd, err := unix.MemfdCreate("anon_hugepage", unix.MFD_HUGETLB|unix.MFD_CLOEXEC)
	if err != nil {
		return h
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) == nil {
		h.dev, h.ino = st.Dev, st.Ino
	}
	unix.Close(fd)
	return h
}

// AddMapping implements memmap.Mappable.AddMapping.
func (hugeTLBNoPages) AddMapping(context.Context, memmap.MappingSpace, hostarch.AddrRange, uint64, bool) error {
	return nil
}

// RemoveMapping implements memmap.Mappable.RemoveMapping.
func (hugeTLBNoPages) RemoveMapping(context.Context, memmap.MappingSpace, hostarch.AddrRange, uint64, bool) {
}

// CopyMapping implements memmap.Mappable.CopyMapping.
func (hugeTLBNoPages) CopyMapping(context.Context, memmap.MappingSpace, hostarch.AddrRange, hostarch.AddrRange, uint64, bool) error {
	return nil
}

// Translate implements memmap.Mappable.Translate: there is no page.
func (hugeTLBNoPages) Translate(context.Context, memmap.MappableRange, memmap.MappableRange, hostarch.AccessType) ([]memmap.Translation, error) {
	return nil, &memmap.BusError{Err: unix.ENOMEM}
}

// InvalidateUnsavable implements memmap.Mappable.InvalidateUnsavable.
func (hugeTLBNoPages) InvalidateUnsavable(context.Context) error { return nil }

// IncRef implements memmap.MappingIdentity.IncRef.
func (hugeTLBNoPages) IncRef() {}

// DecRef implements memmap.MappingIdentity.DecRef.
func (hugeTLBNoPages) DecRef(context.Context) {}

// MappedName implements memmap.MappingIdentity.MappedName.
func (hugeTLBNoPages) MappedName(context.Context) string { return "/anon_hugepage (deleted)" }

// DeviceID implements memmap.MappingIdentity.DeviceID.
func (h hugeTLBNoPages) DeviceID() uint64 { return h.dev }

// InodeID implements memmap.MappingIdentity.InodeID.
func (h hugeTLBNoPages) InodeID() uint64 { return h.ino }

// Msync implements memmap.MappingIdentity.Msync.
func (hugeTLBNoPages) Msync(context.Context, memmap.MappableRange) error { return nil }
