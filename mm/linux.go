package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

// MappableFile is an open file that mmap(2) can map.
type MappableFile interface {
	// Readable and Writable report the file's open mode.
	Readable() bool
	Writable() bool
	// ConfigureMMap sets opts.Mappable and opts.MappingIdentity (with a
	// reference the caller drops) or fails (ENODEV if the file cannot be
	// mapped).
	ConfigureMMap(ctx context.Context, opts *memmap.MMapOpts) error
}

// SharedAnonFactory makes the memory behind a MAP_SHARED|MAP_ANONYMOUS
// mapping of size bytes (Linux's shmem_zero_setup).
type SharedAnonFactory func(ctx context.Context, size uint64) (MappableFile, error)

// Linux's mmap flags.
const (
	MapShared         = 0x01
	MapPrivate        = 0x02
	MapSharedValidate = 0x03
	MapDroppable      = 0x08
	MapType           = 0x0f
	MapFixed          = 0x10
	MapAnonymous      = 0x20
	Map32Bit          = 0x40
	MapGrowsDown      = 0x100
	MapDenyWrite      = 0x800
	MapExecutable     = 0x1000
	MapLocked         = 0x2000
	MapNoReserve      = 0x4000
	MapPopulate       = 0x8000
	MapNonBlock       = 0x10000
	MapStack          = 0x20000
	MapHugeTLB        = 0x40000
	MapSync           = 0x80000
	MapFixedNoReplace = 0x100000
	MapUninitialized  = 0x4000000
	MapAbove4G        = 0x80
	MapHuge2MB        = 21 << 26
	MapHuge1GB        = 30 << 26

	// legacyMapMask are the flags MAP_SHARED_VALIDATE accepts (Linux's
	// LEGACY_MAP_MASK: MAP_FIXED_NOREPLACE and MAP_SYNC are not among
	// them).
	legacyMapMask = MapShared | MapPrivate | MapFixed | MapAnonymous | MapDenyWrite |
		MapExecutable | MapUninitialized | MapGrowsDown | MapLocked | MapNoReserve |
		MapPopulate | MapNonBlock | MapStack | MapHugeTLB | Map32Bit | MapAbove4G |
		MapHuge2MB | MapHuge1GB
)

// UnmappableFile is an open file without an mmap operation (a pipe, a
// directory, /dev/null and most devices; R and W are its open mode): mmap
// checks its arguments as for any file, then fails with ENODEV where Linux
// finds no f_op->mmap. Socket says it is a socket, whose mmap fails later,
// once the place is chosen and the limits checked (sock_mmap).
type UnmappableFile struct {
	R, W, Socket bool
	// NoExecMount says the file is on a noexec mount (pipes and sockets
	// are): mapping it executable is EPERM before ENODEV.
	NoExecMount bool
}

// NoExec reports whether the file's mount forbids execution.
func (f UnmappableFile) NoExec() bool { return f.NoExecMount }

// hugeTLBFile is the hugetlbfs file behind MAP_HUGETLB|MAP_ANONYMOUS;
// there are no huge pages to reserve.
type hugeTLBFile struct{}

func (hugeTLBFile) Readable() bool { return true }
func (hugeTLBFile) Writable() bool { return true }
func (hugeTLBFile) ConfigureMMap(_ context.Context, o *memmap.MMapOpts) error {
	if o.Offset&(hugePageSize-1) != 0 {
		return unix.EINVAL
	}
	return unix.ENOMEM
}

// mapHugeShift is MAP_HUGE_SHIFT: where MAP_HUGETLB's page size log sits.
const mapHugeShift = 26

// Readable implements MappableFile.Readable.
func (f UnmappableFile) Readable() bool { return f.R }

// Writable implements MappableFile.Writable.
func (f UnmappableFile) Writable() bool { return f.W }

// ConfigureMMap implements MappableFile.ConfigureMMap: a socket's mmap
// fails late (see lateError).
func (f UnmappableFile) ConfigureMMap(context.Context, *memmap.MMapOpts) error {
	if f.Socket {
		return lateError{unix.ENODEV}
	}
	return unix.ENODEV
}

// ZeroFile is /dev/zero opened with mode R, W: its mappings are anonymous
// memory (shared anonymous memory if shared), but mmap checks them as a
// file's, and a private one stays a file mapping to madvise (Linux keeps
// vm_file): MADV_WIPEONFORK is EINVAL and MADV_REMOVE EACCES there, and it
// never merges with anonymous vmas.
type ZeroFile struct {
	R, W bool
}

// Readable implements MappableFile.Readable.
func (f ZeroFile) Readable() bool { return f.R }

// Writable implements MappableFile.Writable.
func (f ZeroFile) Writable() bool { return f.W }

// ConfigureMMap implements MappableFile.ConfigureMMap; MMapSys maps a
// ZeroFile itself.
func (f ZeroFile) ConfigureMMap(context.Context, *memmap.MMapOpts) error { return unix.ENODEV }

// fileMaxSize is Linux's file_mmap_size_max: how far into file a mapping
// may reach (0 for no limit).
func fileMaxSize(file MappableFile) uint64 {
	switch f := file.(type) {
	case ZeroFile:
		return 1<<64 - 1
	case UnmappableFile:
		if f.Socket {
			return maxLFSFileSize
		}
		return 1<<64 - 1
	}
	return maxLFSFileSize
}

// maxLFSFileSize is Linux's MAX_LFS_FILESIZE on 64-bit.
const maxLFSFileSize = 1<<63 - 1

// Linux's protection bits.
const (
	ProtRead      = 0x1
	ProtWrite     = 0x2
	ProtExec      = 0x4
	ProtSem       = 0x8
	ProtGrowsDown = 0x01000000
	ProtGrowsUp   = 0x02000000
)

// SetSharedAnonFactory sets how shared anonymous memory is made; without
// one, MAP_SHARED|MAP_ANONYMOUS fails with ENODEV.
func (mm *MemoryManager) SetSharedAnonFactory(f SharedAnonFactory) {
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	mm.sharedAnon = f
}

// MMapSys is the whole mmap(2) system call on x86-64, with Linux's argument
// checks in Linux's order. file is the mapped file, or nil: with
// MAP_ANONYMOUS clear, nil means fd was not an open file (EBADF).
func (mm *MemoryManager) MMapSys(ctx context.Context, addr hostarch.Addr, length uint64, prot, flags int, file MappableFile, offset uint64) (hostarch.Addr, error) {
	if offset&hostarch.PageMask != 0 {
		return 0, unix.EINVAL
	}
	anon := flags&MapAnonymous != 0
	if !anon && file == nil {
		return 0, unix.EBADF
	}
	if flags&MapHugeTLB != 0 {
		if !anon {
			// Not a hugetlbfs file.
			return 0, unix.EINVAL
		}
		// Linux maps a new hugetlbfs file of the 2 MiB page size
		// (the only one), checked as a file mapping; with no huge
		// pages to reserve, it fails where hugetlbfs reserves them.
		if sz := flags >> mapHugeShift & 0x3f; sz != 0 && sz != 21 {
			return 0, unix.EINVAL
		}
		length = (length + hugePageSize - 1) &^ (hugePageSize - 1)
		if flags&(MapFixed|MapFixedNoReplace) != 0 && length != 0 && length <= uint64(hostarch.MaxUserAddress) &&
			addr&(hugePageSize-1) != 0 {
			return 0, unix.EINVAL
		}
		anon, file = false, hugeTLBFile{}
	}
	perms := hostarch.AccessTypeFromProt(prot)
	opts := memmap.MMapOpts{
		Length:    length,
		Addr:      addr,
		Offset:    offset,
		Fixed:     flags&(MapFixed|MapFixedNoReplace) != 0,
		Unmap:     flags&(MapFixed|MapFixedNoReplace) == MapFixed,
		Map32Bit:  flags&Map32Bit != 0,
		Perms:     perms,
		MaxPerms:  hostarch.AnyAccess,
		GrowsDown: flags&MapGrowsDown != 0,
		Stack:     flags&MapStack != 0,
		// MAP_NORESERVE is honoured unless overcommit is never allowed.
		NoReserve: flags&MapNoReserve != 0 && mm.Commit().Policy().Mode != OvercommitNever,
	}
	if flags&MapLocked != 0 {
		opts.MLockMode = memmap.MLockEager
	}
	if flags&(MapPopulate|MapNonBlock) == MapPopulate {
		opts.PlatformEffect = memmap.MMapPopulate
	}
	typ := flags & MapType
	var configure func(*memmap.MMapOpts) error
	var extra vmaFlags
	pl := placement{above4G: flags&MapAbove4G != 0}
	if !anon {
		_, zero := file.(ZeroFile)
		if zero && typ == MapPrivate {
			// Private /dev/zero: anonymous memory that Linux still
			// sees as a file mapping, placed by
			// thp_get_unmapped_area with the file offset.
			extra |= vmaZeroFile
			pl.thp, pl.thpOff, pl.file = true, offset, true
		}
		configure = func(o *memmap.MMapOpts) error {
			// Linux's file_mmap_ok: the mapping must end within
			// the file's largest size.
			maxSize := fileMaxSize(file)
			if o.Length > maxSize || o.Offset>>hostarch.PageShift > (maxSize-o.Length)>>hostarch.PageShift {
				return unix.EOVERFLOW
			}
			switch typ {
			case MapShared, MapSharedValidate:
				if typ == MapSharedValidate && flags&^legacyMapMask != 0 {
					return unix.EOPNOTSUPP
				}
				if perms.Write && !file.Writable() {
					return unix.EACCES
				}
				if !file.Writable() {
					o.MaxPerms.Write = false
				}
			case MapPrivate:
				o.Private = true
			default:
				return unix.EINVAL
			}
			if !file.Readable() {
				return unix.EACCES
			}
			if ne, ok := file.(interface{ NoExec() bool }); ok && ne.NoExec() {
				// A file on a noexec mount (pipes and sockets
				// are): no execution now or later.
				if o.Perms.Execute {
					return unix.EPERM
				}
				o.MaxPerms.Execute = false
			}
			if u, ok := file.(UnmappableFile); ok && !u.Socket {
				// No f_op->mmap.
				return unix.ENODEV
			}
			if o.GrowsDown {
				return unix.EINVAL
			}
			if zero {
				if o.Private {
					o.Offset = 0
					return nil
				}
				return mm.sharedAnonLocked(ctx, o)
			}
			return file.ConfigureMMap(ctx, o)
		}
	} else {
		switch typ {
		case MapShared:
			configure = func(o *memmap.MMapOpts) error {
				if o.GrowsDown {
					return unix.EINVAL
				}
				return mm.sharedAnonLocked(ctx, o)
			}
		case MapPrivate:
			opts.Private = true
			opts.Offset = 0
			// Linux aligns larger anonymous mappings placed
			// without a hint for transparent huge pages.
			pl.thp = opts.Length%hugePageSize == 0
		case MapDroppable:
			// Linux's do_mmap: private anonymous memory that is never
			// locked, reserved, inherited or dumped.
			opts.Private = true
			opts.Offset = 0
			opts.NoReserve = true
			pl.thp = opts.Length%hugePageSize == 0
			extra = vmaDroppable | vmaWipeOnFork | vmaDontDump
			configure = func(o *memmap.MMapOpts) error {
				if flags&MapLocked != 0 || o.GrowsDown {
					return unix.EINVAL
				}
				return nil
			}
		default:
			configure = func(*memmap.MMapOpts) error { return unix.EINVAL }
		}
	}
	return mm.mmapPlaced(ctx, opts, configure, extra, pl)
}

// sharedAnonLocked makes o a mapping of new shared anonymous memory of
// o.Length bytes (Linux's shmem_zero_setup). Preconditions: mappingMu held.
func (mm *MemoryManager) sharedAnonLocked(ctx context.Context, o *memmap.MMapOpts) error {
	f := mm.sharedAnon
	if f == nil {
		return unix.ENODEV
	}
	if !o.NoReserve && o.MaxPerms.Write && !mm.enoughMemoryLocked(o.Length) {
		// shmem_acct_size: the new shared memory is committed whole
		// (not for read-only /dev/zero, which Linux does not share),
		// once what it replaces is gone.
		return lateError{unix.ENOMEM}
	}
	o.Offset = 0
	mf, err := f(ctx, o.Length)
	if err != nil {
		return err
	}
	o.SharedAnonymous = true
	maxWrite := o.MaxPerms.Write
	if err := mf.ConfigureMMap(ctx, o); err != nil {
		return err
	}
	if !maxWrite {
		// Read-only /dev/zero: the shared memory may never be
		// written through this mapping.
		o.MaxPerms.Write = false
	}
	return nil
}
