package hostfile

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/internal/lockrank"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
	"golang.org/x/sys/unix"
)

// Linux's System V shared memory limits (x86-64 defaults).
const (
	shmMin = 1
	shmMax = ^uint64(0) - (1 << 24)
)

// Shm is a System V shared memory segment (shmget with IPC_PRIVATE): a
// memfd whose identity lives until it is removed (IPC_RMID) and no longer
// attached. It implements mm's ShmSegment (Size, Readable, Writable,
// ConfigureMMap) structurally.
type Shm struct {
	size uint64
	file *File
	fd   *FD

	// mu protects removed and attached.
	mu lockrank.Mutex[lockrank.ShmTag]
	// removed is true after IPC_RMID.
	removed bool
	// attached counts bytes mapped (AddMapping less RemoveMapping), so
	// that split attachments are counted right.
	attached uint64
}

// NewShm makes a segment of size bytes (shmget): EINVAL for sizes Linux
// refuses, ENOMEM if the memory file is exhausted.
func NewShm(mf *pgalloc.MemoryFile, size uint64) (*Shm, error) {
	if size < shmMin || size > shmMax {
		return nil, unix.EINVAL
	}
	rounded, ok := hostarch.PageRoundUp(size)
	if !ok {
		return nil, unix.EINVAL
	}
	f, err := NewMemfd(mf, "SYSV00000000", rounded)
	if err != nil {
		return nil, unix.ENOMEM
	}
	fd, err := NewFD(f, true, true)
	f.DecRef(context.Background())
	if err != nil {
		return nil, err
	}
	return &Shm{size: size, file: f, fd: fd}, nil
}

// Size implements mm.ShmSegment.
func (s *Shm) Size() uint64 { return s.size }

// Readable implements mm.MappableFile.
func (s *Shm) Readable() bool { return true }

// Writable implements mm.MappableFile.
func (s *Shm) Writable() bool { return true }

// ConfigureMMap implements mm.MappableFile: the segment's mappings go
// through a counting wrapper of its memfd.
func (s *Shm) ConfigureMMap(ctx context.Context, opts *memmap.MMapOpts) error {
	s.mu.Lock()
	fd := s.fd
	s.mu.Unlock()
	if fd == nil {
		return unix.EINVAL
	}
	if err := fd.ConfigureMMap(ctx, opts); err != nil {
		return err
	}
	f, ok := opts.Mappable.(*File)
	if !ok {
		return unix.ENODEV
	}
	opts.Mappable = shmMappable{f, s}
	opts.MappingIdentity = shmIdentity{opts.MappingIdentity}
	return nil
}

// Gone reports whether the segment was removed and is attached nowhere,
// so its id is invalid.
func (s *Shm) Gone() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.removed && s.attached == 0
}

// Remove marks the segment removed; its memory goes with the last
// attachment (or now, if there is none).
func (s *Shm) Remove(ctx context.Context) {
	s.mu.Lock()
	s.removed = true
	s.mu.Unlock()
	s.maybeFree(ctx)
}

// maybeFree drops the segment's own reference once it is gone.
func (s *Shm) maybeFree(ctx context.Context) {
	s.mu.Lock()
	free := s.removed && s.attached == 0 && s.fd != nil
	fd := s.fd
	if free {
		s.fd = nil
	}
	s.mu.Unlock()
	if free {
		fd.Close(ctx)
	}
}

// shmMappable counts a segment's attachments.
type shmMappable struct {
	*File
	s *Shm
}

func (m shmMappable) AddMapping(ctx context.Context, ms memmap.MappingSpace, ar hostarch.AddrRange, off uint64, w bool) error {
	if err := m.File.AddMapping(ctx, ms, ar, off, w); err != nil {
		return err
	}
	m.s.mu.Lock()
	m.s.attached += ar.Length()
	m.s.mu.Unlock()
	return nil
}

func (m shmMappable) RemoveMapping(ctx context.Context, ms memmap.MappingSpace, ar hostarch.AddrRange, off uint64, w bool) {
	m.File.RemoveMapping(ctx, ms, ar, off, w)
	m.s.mu.Lock()
	m.s.attached -= ar.Length()
	m.s.mu.Unlock()
	m.s.maybeFree(ctx)
}

func (m shmMappable) CopyMapping(ctx context.Context, ms memmap.MappingSpace, src, dst hostarch.AddrRange, off uint64, w bool) error {
	if err := m.File.CopyMapping(ctx, ms, src, dst, off, w); err != nil {
		return err
	}
	m.s.mu.Lock()
	m.s.attached += dst.Length()
	m.s.mu.Unlock()
	return nil
}

// Size lets mm.DetachShm find the segment's size through the vma.
func (m shmMappable) Size() uint64 { return m.s.size }

// shmIdentity names a segment as Linux does.
type shmIdentity struct{ memmap.MappingIdentity }

func (shmIdentity) MappedName(context.Context) string { return "/SYSV00000000 (deleted)" }

// MappingKind implements memmap.Kinded (the memfd behind the segment would
// say KindMemfd).
func (shmIdentity) MappingKind() memmap.Kind { return memmap.KindSysVShm }

// The methods below let a checkpoint save and rebuild segments.

// File returns the segment's memfd.
func (s *Shm) File() *File { return s.file }

// Removed reports whether IPC_RMID was done on the segment.
func (s *Shm) Removed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.removed
}

// Mappable returns the Mappable that the segment's attachments map.
func (s *Shm) Mappable() memmap.Mappable { return shmMappable{s.file, s} }

// Identity returns the MappingIdentity of the segment's attachments (the
// memfd, named as Linux names SysV segments); it holds no reference of its
// own.
func (s *Shm) Identity() memmap.MappingIdentity { return shmIdentity{s.file} }

// ShmOf returns the segment whose attachments map m, if m is one.
func ShmOf(m memmap.Mappable) (*Shm, bool) {
	sm, ok := m.(shmMappable)
	if !ok {
		return nil, false
	}
	return sm.s, true
}

// Release drops the segment's own reference to its memory, as if it had
// been removed and detached everywhere, without marking it removed: for a
// checkpoint that releases everything before restoring it.
func (s *Shm) Release(ctx context.Context) {
	s.mu.Lock()
	fd := s.fd
	s.fd = nil
	s.mu.Unlock()
	if fd != nil {
		fd.Close(ctx)
	}
}

// RestoreShm rebuilds a segment of size bytes on f, a memfd holding its
// contents, in the given removal state. The segment takes its own
// reference on f unless removed.
func RestoreShm(size uint64, f *File, removed bool) (*Shm, error) {
	s := &Shm{size: size, file: f, removed: removed}
	if !removed {
		fd, err := NewFD(f, true, true)
		if err != nil {
			return nil, err
		}
		s.fd = fd
	}
	return s, nil
}
