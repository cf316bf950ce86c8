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

// ConfigureMMap implements MappableFile.ConfigureMMap; DoMMap maps a
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

// SetSharedAnonFactory sets how shared anonymous memory is made; without
// one, MAP_SHARED|MAP_ANONYMOUS fails with ENODEV.
func (mm *MemoryManager) SetSharedAnonFactory(f SharedAnonFactory) {
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	mm.sharedAnon = f
}

// MapType is the kind of memory an mmap(2) call asks for (Linux's
// MAP_TYPE bits).
type MapType int

// The types of mapping.
const (
	// MapTypeInvalid is a MAP_TYPE Linux does not know (or
	// MAP_SHARED_VALIDATE of anonymous memory, MAP_DROPPABLE of a file):
	// EINVAL where Linux checks it.
	MapTypeInvalid MapType = iota
	MapTypeShared
	// MapTypeSharedValidate is MAP_SHARED_VALIDATE: as MapTypeShared,
	// but flags Linux does not know fail (DoMMapOpts.UnknownFlags).
	MapTypeSharedValidate
	MapTypePrivate
	// MapTypeDroppable is MAP_DROPPABLE: private anonymous memory that is
	// never locked, reserved, inherited or dumped.
	MapTypeDroppable
)

// DoMMapOpts is an mmap(2) call as its system-call layer (package
// linuxabi) decodes it: the flags as fields, the descriptor as a file.
type DoMMapOpts struct {
	Addr   hostarch.Addr
	Length uint64
	// Offset is the file offset in bytes (page-aligned: the system-call
	// layer checked it).
	Offset uint64
	Perms  hostarch.AccessType
	// File is the mapped file, or nil for anonymous memory
	// (MAP_ANONYMOUS).
	File MappableFile
	Type MapType
	// UnknownFlags says flags were given that MAP_SHARED_VALIDATE refuses
	// (Linux's LEGACY_MAP_MASK): a MapTypeSharedValidate file mapping
	// fails with EOPNOTSUPP at the file's checks.
	UnknownFlags bool
	// Fixed is MAP_FIXED, NoReplace MAP_FIXED_NOREPLACE (which wins if
	// both are given).
	Fixed, NoReplace bool
	// Map32Bit, Above4G, GrowsDown, Stack and NoReserve are MAP_32BIT,
	// MAP_ABOVE4G, MAP_GROWSDOWN, MAP_STACK and MAP_NORESERVE (which is
	// honoured unless overcommit is never allowed).
	Map32Bit, Above4G, GrowsDown, Stack, NoReserve bool
	// Locked is MAP_LOCKED; Populate is MAP_POPULATE without
	// MAP_NONBLOCK.
	Locked, Populate bool
}

// DoMMap makes the mapping an mmap(2) call asks for, as Linux's do_mmap:
// the checks that depend on the file and the type of mapping come in
// Linux's order (see MMap for the rest).
func (mm *MemoryManager) DoMMap(ctx context.Context, a DoMMapOpts) (hostarch.Addr, error) {
	file, perms, typ := a.File, a.Perms, a.Type
	opts := memmap.MMapOpts{
		Length:    a.Length,
		Addr:      a.Addr,
		Offset:    a.Offset,
		Fixed:     a.Fixed || a.NoReplace,
		Unmap:     a.Fixed && !a.NoReplace,
		Map32Bit:  a.Map32Bit,
		Perms:     perms,
		MaxPerms:  hostarch.AnyAccess,
		GrowsDown: a.GrowsDown,
		Stack:     a.Stack,
		NoReserve: a.NoReserve && mm.Commit().Policy().Mode != OvercommitNever,
	}
	if a.Locked {
		opts.MLockMode = memmap.MLockEager
	}
	if a.Populate {
		opts.PlatformEffect = memmap.MMapPopulate
	}
	var configure func(*memmap.MMapOpts) error
	var extra vmaFlags
	pl := placement{above4G: a.Above4G}
	if file != nil {
		_, zero := file.(ZeroFile)
		if zero && typ == MapTypePrivate {
			// Private /dev/zero: anonymous memory that Linux still
			// sees as a file mapping, placed by
			// thp_get_unmapped_area with the file offset.
			extra |= vmaZeroFile
			pl.thp, pl.thpOff, pl.file = true, a.Offset, true
		}
		configure = func(o *memmap.MMapOpts) error {
			// Linux's file_mmap_ok: the mapping must end within
			// the file's largest size.
			maxSize := fileMaxSize(file)
			if o.Length > maxSize || o.Offset>>hostarch.PageShift > (maxSize-o.Length)>>hostarch.PageShift {
				return unix.EOVERFLOW
			}
			switch typ {
			case MapTypeShared, MapTypeSharedValidate:
				if typ == MapTypeSharedValidate && a.UnknownFlags {
					return unix.EOPNOTSUPP
				}
				if perms.Write && !file.Writable() {
					return unix.EACCES
				}
				if !file.Writable() {
					o.MaxPerms.Write = false
				}
			case MapTypePrivate:
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
		case MapTypeShared:
			configure = func(o *memmap.MMapOpts) error {
				if o.GrowsDown {
					return unix.EINVAL
				}
				return mm.sharedAnonLocked(ctx, o)
			}
		case MapTypePrivate:
			opts.Private = true
			opts.Offset = 0
			// Linux aligns larger anonymous mappings placed
			// without a hint for transparent huge pages.
			pl.thp = opts.Length%hugePageSize == 0
		case MapTypeDroppable:
			// Linux's do_mmap: private anonymous memory that is never
			// locked, reserved, inherited or dumped.
			opts.Private = true
			opts.Offset = 0
			opts.NoReserve = true
			pl.thp = opts.Length%hugePageSize == 0
			extra = vmaDroppable | vmaWipeOnFork | vmaDontDump
			configure = func(o *memmap.MMapOpts) error {
				if a.Locked || o.GrowsDown {
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
