// Package memmap defines the interfaces between a memory manager and the
// things it maps: Mappables (what a vma refers to: a file, a shm segment, a
// special mapping), MappingIdentities (what /proc/PID/maps names), Files
// (memory the platform can map, such as the memory file) and the
// Translations that connect them.
package memmap

import (
	"context"
	"errors"
	"fmt"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/safemem"
)

// FileRange is the half-open range of offsets [Start, End) into a File. Its
// layout matches segment.Range[uint64].
type FileRange struct {
	Start uint64
	End   uint64
}

// Length returns End - Start.
func (fr FileRange) Length() uint64 { return fr.End - fr.Start }

// WellFormed reports whether Start <= End.
func (fr FileRange) WellFormed() bool { return fr.Start <= fr.End }

// Contains reports whether fr contains off.
func (fr FileRange) Contains(off uint64) bool { return fr.Start <= off && off < fr.End }

// Overlaps reports whether fr and o share an offset.
func (fr FileRange) Overlaps(o FileRange) bool { return fr.Start < o.End && o.Start < fr.End }

// IsSupersetOf reports whether fr contains all of o.
func (fr FileRange) IsSupersetOf(o FileRange) bool { return fr.Start <= o.Start && o.End <= fr.End }

// Intersect returns the overlap of fr and o (empty if none).
func (fr FileRange) Intersect(o FileRange) FileRange {
	if fr.Start < o.Start {
		fr.Start = o.Start
	}
	if fr.End > o.End {
		fr.End = o.End
	}
	if fr.End < fr.Start {
		fr.End = fr.Start
	}
	return fr
}

// String formats fr as [start, end).
func (fr FileRange) String() string { return fmt.Sprintf("[%#x, %#x)", fr.Start, fr.End) }

// MappableRange is the half-open range of offsets [Start, End) into a
// Mappable. Its layout matches segment.Range[uint64].
type MappableRange struct {
	Start uint64
	End   uint64
}

// Length returns End - Start.
func (mr MappableRange) Length() uint64 { return mr.End - mr.Start }

// WellFormed reports whether Start <= End.
func (mr MappableRange) WellFormed() bool { return mr.Start <= mr.End }

// Contains reports whether mr contains off.
func (mr MappableRange) Contains(off uint64) bool { return mr.Start <= off && off < mr.End }

// Overlaps reports whether mr and o share an offset.
func (mr MappableRange) Overlaps(o MappableRange) bool { return mr.Start < o.End && o.Start < mr.End }

// IsSupersetOf reports whether mr contains all of o.
func (mr MappableRange) IsSupersetOf(o MappableRange) bool {
	return mr.Start <= o.Start && o.End <= mr.End
}

// Intersect returns the overlap of mr and o (empty if none).
func (mr MappableRange) Intersect(o MappableRange) MappableRange {
	if mr.Start < o.Start {
		mr.Start = o.Start
	}
	if mr.End > o.End {
		mr.End = o.End
	}
	if mr.End < mr.Start {
		mr.End = mr.Start
	}
	return mr
}

// String formats mr as [start, end).
func (mr MappableRange) String() string { return fmt.Sprintf("[%#x, %#x)", mr.Start, mr.End) }

// File is memory that the platform can map into an address space and the
// memory manager can access internally: the memory file, or a host file's
// page cache living in it.
//
// Reference counts are per page range: IncRef and DecRef may name any
// page-aligned sub-range of what was allocated, and a page is freed when its
// own count reaches zero.
type File interface {
	// IncRef takes a reference on every page of fr, which must already hold
	// at least one reference.
	IncRef(fr FileRange)

	// DecRef drops a reference on every page of fr.
	DecRef(fr FileRange)

	// MapInternal returns a mapping of fr in the caller's (host) address
	// space, usable for access at. The mapping stays valid while the caller
	// holds a reference on fr.
	MapInternal(fr FileRange, at hostarch.AccessType) (safemem.BlockSeq, error)

	// FD returns the host file descriptor that platforms map File ranges
	// from.
	FD() int
}

// Translation says that the Mappable range Source is backed by File at
// Offset, and may be mapped with at most Perms.
type Translation struct {
	// Source is the translated Mappable range.
	Source MappableRange
	// File is the memory backing Source.
	File File
	// Offset is Source.Start's offset in File.
	Offset uint64
	// Perms are the accesses this Translation allows. Writes to a private
	// mapping of a Mappable whose Translation lacks Write must copy.
	Perms hostarch.AccessType
}

// FileRange returns the range of File backing Source.
func (t Translation) FileRange() FileRange {
	return FileRange{t.Offset, t.Offset + t.Source.Length()}
}

// MappingSpace is an address space that maps Mappables; Mappables use it to
// invalidate translations that are no longer valid (a truncated file, for
// example).
type MappingSpace interface {
	// Invalidate drops cached translations of ar, which the MappingSpace
	// must re-Translate on the next access. Invalidate is called with
	// Mappable locks held and must not call back into the Mappable.
	Invalidate(ar hostarch.AddrRange, opts InvalidateOpts)
}

// InvalidateOpts qualifies MappingSpace.Invalidate.
type InvalidateOpts struct {
	// InvalidatePrivate is true if private (copied-on-write) pages must be
	// dropped too, as when a file is truncated: Linux discards them and a
	// later access faults with SIGBUS.
	InvalidatePrivate bool
}

// Mappable is what a vma maps: a source of Translations, told which address
// spaces map which of its ranges.
//
// Lock order: the mapping mutex of a MemoryManager is taken before any
// Mappable lock except those Translate takes, which come after the active
// mutex (see mm/mm.go).
type Mappable interface {
	// AddMapping records that ms maps offsets [offset, offset+ar.Length())
	// of the Mappable at ar. writable is true for a shared writable mapping.
	AddMapping(ctx context.Context, ms MappingSpace, ar hostarch.AddrRange, offset uint64, writable bool) error

	// RemoveMapping undoes AddMapping for the same arguments.
	RemoveMapping(ctx context.Context, ms MappingSpace, ar hostarch.AddrRange, offset uint64, writable bool)

	// CopyMapping is AddMapping for a mapping that duplicates the one at
	// srcAR (mremap, fork); Mappables that track per-mapping state copy it.
	CopyMapping(ctx context.Context, ms MappingSpace, srcAR, dstAR hostarch.AddrRange, offset uint64, writable bool) error

	// Translate returns Translations covering at least required, and as much
	// of optional (a superset of required) as is cheap, for access at.
	//
	// If required cannot be translated wholly, Translate returns the
	// Translations it could make (covering a prefix of required) and an
	// error. A *BusError says the access is past end-of-file.
	Translate(ctx context.Context, required, optional MappableRange, at hostarch.AccessType) ([]Translation, error)

	// InvalidateUnsavable drops what cannot be checkpointed.
	InvalidateUnsavable(ctx context.Context) error
}

// MappingIdentity is the identity of what a vma maps, as /proc/PID/maps
// shows it, and the owner of its reference for the life of the vma.
type MappingIdentity interface {
	// IncRef takes a reference.
	IncRef()
	// DecRef drops a reference.
	DecRef(ctx context.Context)
	// MappedName returns the path shown in /proc/PID/maps.
	MappedName(ctx context.Context) string
	// DeviceID returns the device number shown in /proc/PID/maps.
	DeviceID() uint64
	// InodeID returns the inode number shown in /proc/PID/maps.
	InodeID() uint64
	// Msync writes back dirty data of mr to stable storage.
	Msync(ctx context.Context, mr MappableRange) error
}

// Kind is what memory a MappingIdentity stands for, where Linux's behaviour
// depends on it (core dumps, checkpoints), so that a memory manager need not
// tell kinds apart by their names.
type Kind int

const (
	// KindFile is a file's contents, the kind of identities that do not
	// implement Kinded.
	KindFile Kind = iota
	// KindMemfd is a memfd (memfd_create(2)).
	KindMemfd
	// KindSharedAnon is shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS,
	// or a shared mapping of /dev/zero).
	KindSharedAnon
	// KindSysVShm is a System V shared memory segment.
	KindSysVShm
)

// Shmem reports whether k is memory with no file behind it (Linux's shmem):
// its pages live only in memory, and a page never written reads as zeros.
func (k Kind) Shmem() bool { return k != KindFile }

// String returns k's name.
func (k Kind) String() string {
	switch k {
	case KindFile:
		return "file"
	case KindMemfd:
		return "memfd"
	case KindSharedAnon:
		return "shared anonymous"
	case KindSysVShm:
		return "System V shm"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Kinded is implemented by MappingIdentities that are not files.
type Kinded interface {
	MappingKind() Kind
}

// KindOf returns the kind of id: its MappingKind if it implements Kinded,
// else KindFile.
func KindOf(id MappingIdentity) Kind {
	if k, ok := id.(Kinded); ok {
		return k.MappingKind()
	}
	return KindFile
}

// Linked is implemented by MappingIdentities that can tell whether their
// file still has a name in a directory (its link count, st_nlink, is not
// 0). Linux treats a shared mapping of a file with no name left as
// anonymous shared memory in core dumps, and /proc/PID/maps marks it
// " (deleted)"; that mark is for display, and a linked file's own name
// may end in it.
type Linked interface {
	Unlinked() bool
}

// Unlinked reports whether id is a file with no name left: its Unlinked
// if it implements Linked; memory with no file behind it (Kind.Shmem)
// has none; other identities are taken as named.
func Unlinked(id MappingIdentity) bool {
	if l, ok := id.(Linked); ok {
		return l.Unlinked()
	}
	return KindOf(id).Shmem()
}

// BusError is returned by Translate for an access that must fault with
// SIGBUS, such as one wholly past end-of-file.
type BusError struct {
	Err error
}

// Error implements error.
func (b *BusError) Error() string { return "BusError: " + b.Err.Error() }

// Unwrap returns the underlying error.
func (b *BusError) Unwrap() error { return b.Err }

// IsBusError reports whether err is or wraps a *BusError.
func IsBusError(err error) bool {
	var be *BusError
	return errors.As(err, &be)
}

// MLockMode is a vma's mlock state.
type MLockMode int

const (
	// MLockNone: not locked.
	MLockNone MLockMode = iota
	// MLockEager: locked, and populated when locked (mlock, MAP_LOCKED).
	MLockEager
	// MLockLazy: locked, populated as faulted (mlock2(MLOCK_ONFAULT)).
	MLockLazy
)

// String names the mode.
func (m MLockMode) String() string {
	switch m {
	case MLockNone:
		return "none"
	case MLockEager:
		return "eager"
	case MLockLazy:
		return "lazy"
	}
	return fmt.Sprintf("MLockMode(%d)", int(m))
}

// MMapOpts are the options of one mapping.
type MMapOpts struct {
	// Length is the mapping's length in bytes. It is rounded up to a page;
	// zero is EINVAL.
	Length uint64
	// MappingIdentity names the mapping in /proc/PID/maps; nil for
	// anonymous memory. The new vma takes its own reference.
	MappingIdentity MappingIdentity
	// Mappable backs the mapping; nil for private anonymous memory.
	Mappable Mappable
	// Offset is the mapping's offset into Mappable, page-aligned.
	Offset uint64
	// Addr is the requested address (a hint unless Fixed).
	Addr hostarch.Addr
	// Fixed: place the mapping exactly at Addr.
	Fixed bool
	// Unmap: with Fixed, replace whatever is mapped at the range
	// (MAP_FIXED); without it, an occupied range is EEXIST
	// (MAP_FIXED_NOREPLACE).
	Unmap bool
	// Map32Bit: place the mapping in the low 2 GiB (MAP_32BIT).
	Map32Bit bool
	// Perms are the mapping's initial permissions.
	Perms hostarch.AccessType
	// MaxPerms bound what mprotect may grant later (a read-only file's
	// shared mapping can never become writable).
	MaxPerms hostarch.AccessType
	// Private: copy-on-write mapping (MAP_PRIVATE) rather than shared.
	Private bool
	// GrowsDown: the vma grows down on faults below it (MAP_GROWSDOWN).
	GrowsDown bool
	// Stack: MAP_STACK (no effect beyond marking, as Linux).
	Stack bool
	// PlatformEffect asks that the mapping be populated at once.
	PlatformEffect MMapPlatformEffect
	// MLockMode is the mapping's mlock mode (MAP_LOCKED is MLockEager).
	MLockMode MLockMode
	// NoReserve: MAP_NORESERVE (accepted; vmspace never overcommits less).
	NoReserve bool
	// Hint is a name shown in /proc/PID/maps for special mappings, such
	// as "[vdso]", when MappingIdentity is nil.
	Hint string
	// Force skips RLIMIT_AS and RLIMIT_DATA checks (for kernel-made
	// mappings such as the AIO ring).
	Force bool
	// SharedAnonymous is true for shared anonymous memory
	// (MAP_SHARED|MAP_ANONYMOUS): Mappable is its shared-memory object,
	// and /proc/PID/maps names it like anonymous memory.
	SharedAnonymous bool
	// SentryOwnedContent is true if the application cannot write the
	// content except through this mapping.
	SentryOwnedContent bool
}

// MMapPlatformEffect says how eagerly a new mapping is populated.
type MMapPlatformEffect int

const (
	// MMapPlatformEffectDefault: populate lazily, on faults.
	MMapPlatformEffectDefault MMapPlatformEffect = iota
	// MMapPopulate: populate now (MAP_POPULATE), as for writes if the
	// mapping is writable and private, else as for reads.
	MMapPopulate
	// MMapCommit: populate and commit host memory now.
	MMapCommit
)
