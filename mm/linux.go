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

	// legacyMapMask are the flags MAP_SHARED_VALIDATE accepts.
	legacyMapMask = MapShared | MapPrivate | MapFixed | MapAnonymous | MapDenyWrite |
		MapExecutable | MapUninitialized | MapGrowsDown | MapLocked | MapNoReserve |
		MapPopulate | MapNonBlock | MapStack | MapHugeTLB | Map32Bit
)

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
		// No huge page pool: as Linux with none reserved.
		if anon {
			return 0, unix.ENOMEM
		}
		return 0, unix.EINVAL
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
		NoReserve: flags&MapNoReserve != 0,
	}
	if flags&MapLocked != 0 {
		opts.MLockMode = memmap.MLockEager
	}
	if flags&(MapPopulate|MapNonBlock) == MapPopulate {
		opts.PlatformEffect = memmap.MMapPopulate
	}
	typ := flags & MapType
	var configure func(*memmap.MMapOpts) error
	if !anon {
		configure = func(o *memmap.MMapOpts) error {
			// Linux's file_mmap_ok: the mapping must end within
			// MAX_LFS_FILESIZE.
			if o.Length > maxLFSFileSize || o.Offset>>hostarch.PageShift > (maxLFSFileSize-o.Length)>>hostarch.PageShift {
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
			if o.GrowsDown {
				return unix.EINVAL
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
				f := mm.sharedAnon // mmap holds mappingMu
				if f == nil {
					return unix.ENODEV
				}
				o.Offset = 0
				mf, err := f(ctx, o.Length)
				if err != nil {
					return err
				}
				o.SharedAnonymous = true
				return mf.ConfigureMMap(ctx, o)
			}
		case MapPrivate:
			opts.Private = true
			opts.Offset = 0
		default:
			configure = func(*memmap.MMapOpts) error { return unix.EINVAL }
		}
	}
	return mm.mmap(ctx, opts, configure, 0)
}
