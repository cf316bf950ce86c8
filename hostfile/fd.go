package hostfile

import (
	"context"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/internal/lockrank"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
)

// FD is an open file: a File and an access mode, as a file description is
// in Linux. It satisfies mm.MappableFile (Readable, Writable,
// ConfigureMMap). An FD holds one reference on its File until Close.
type FD struct {
	// file is the open File. Immutable.
	file *File

	// readable and writable are the open mode. Immutable.
	readable, writable bool

	// transfer is set for an FD made by NewSharedAnon: its reference
	// moves to the first ConfigureMMap instead of staying with the FD.
	// Immutable.
	transfer bool

	// closed is set once the FD's reference has been dropped (by Close) or
	// handed over (by a transferring ConfigureMMap). Atomic.
	closed atomic.Bool
}

// NewFD returns an open file for f with the given mode, holding its own
// reference on f (the caller keeps its own). Asking for a mode f cannot
// provide (writing a File whose host descriptor is read-only) is EACCES.
func NewFD(f *File, readable, writable bool) (*FD, error) {
	f.dataMu.RLock()
	ok := (!readable || f.fdReadable) && (!writable || f.fdWritable) && !f.released
	f.dataMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("hostfile: opening %q with read=%v write=%v: %w", f.name, readable, writable, unix.EACCES)
	}
	f.IncRef()
	return &FD{file: f, readable: readable, writable: writable}, nil
}

// File returns the FD's File. The caller must not use it after Close
// without a reference of its own.
func (fd *FD) File() *File { return fd.file }

// Readable reports whether the FD was opened for reading.
func (fd *FD) Readable() bool { return fd.readable }

// Writable reports whether the FD was opened for writing.
func (fd *FD) Writable() bool { return fd.writable }

// ConfigureMMap sets opts.Mappable and opts.MappingIdentity to the FD's
// File, with a reference that the caller drops (mm.MappableFile). A closed
// FD is EBADF.
func (fd *FD) ConfigureMMap(ctx context.Context, opts *memmap.MMapOpts) error {
	// A transferring FD hands its own reference over the first time.
	handedOver := fd.transfer && fd.closed.CompareAndSwap(false, true)
	if !handedOver {
		if fd.closed.Load() {
			return fmt.Errorf("hostfile: ConfigureMMap of a closed file: %w", unix.EBADF)
		}
		fd.file.IncRef()
	}
	opts.Mappable = fd.file
	opts.MappingIdentity = fd.file
	return nil
}

// ReadAt is File.ReadAt for an FD open for reading (else EBADF).
func (fd *FD) ReadAt(p []byte, off int64) (int, error) {
	if !fd.readable || fd.closed.Load() {
		return 0, fmt.Errorf("hostfile: read of a file not open for reading: %w", unix.EBADF)
	}
	return fd.file.ReadAt(p, off)
}

// WriteAt is File.WriteAt for an FD open for writing (else EBADF).
func (fd *FD) WriteAt(p []byte, off int64) (int, error) {
	if !fd.writable || fd.closed.Load() {
		return 0, fmt.Errorf("hostfile: write to a file not open for writing: %w", unix.EBADF)
	}
	return fd.file.WriteAt(p, off)
}

// Truncate is File.Truncate for an FD open for writing (else EINVAL, as
// Linux's ftruncate).
func (fd *FD) Truncate(ctx context.Context, size int64) error {
	if fd.closed.Load() {
		return fmt.Errorf("hostfile: ftruncate of a closed file: %w", unix.EBADF)
	}
	if !fd.writable {
		return fmt.Errorf("hostfile: ftruncate of a file not open for writing: %w", unix.EINVAL)
	}
	return fd.file.Truncate(ctx, size)
}

// Sync writes back the File's dirty pages and flushes the host file, as
// fsync(2).
func (fd *FD) Sync(ctx context.Context) error {
	if fd.closed.Load() {
		return fmt.Errorf("hostfile: fsync of a closed file: %w", unix.EBADF)
	}
	return fd.file.Msync(ctx, memmap.MappableRange{Start: 0, End: cacheMaxKey})
}

// Close drops the FD's reference on its File; mappings keep theirs. Closing
// twice is EBADF.
func (fd *FD) Close(ctx context.Context) error {
	if !fd.closed.CompareAndSwap(false, true) {
		if fd.transfer {
			// The reference went to a mapping.
			return nil
		}
		return fmt.Errorf("hostfile: close of a closed file: %w", unix.EBADF)
	}
	fd.file.DecRef(ctx)
	return nil
}

// NewSharedAnon returns the memory behind a MAP_SHARED|MAP_ANONYMOUS
// mapping of size bytes (Linux's shmem_zero_setup): a zero-filled File named
// "/dev/zero (deleted)" in /proc/PID/maps, open read-write. The FD's
// reference moves to the first ConfigureMMap, so the memory manager, which
// never closes what its SharedAnonFactory returns, does not leak it; an FD
// that is never configured holds no memory and need not be closed.
func NewSharedAnon(ctx context.Context, mf *pgalloc.MemoryFile, size uint64) (*FD, error) {
	f, err := newAnonFile(mf, anonKind, "/dev/zero (deleted)", size)
	if err != nil {
		return nil, err
	}
	return &FD{file: f, readable: true, writable: true, transfer: true}, nil
}

// SharedAnonFactory returns a constructor of shared anonymous memory in mf,
// for mm.MemoryManager.SetSharedAnonFactory. Go's function types are not
// covariant, so the caller adapts the result type:
//
//	mk := hostfile.SharedAnonFactory(mf)
//	m.SetSharedAnonFactory(func(ctx context.Context, n uint64) (mm.MappableFile, error) {
//		return mk(ctx, n)
//	})
func SharedAnonFactory(mf *pgalloc.MemoryFile) func(ctx context.Context, size uint64) (*FD, error) {
	return func(ctx context.Context, size uint64) (*FD, error) {
		return NewSharedAnon(ctx, mf, size)
	}
}

// OpenFile opens the host file at path with open(2)'s flags and perm and
// returns an FD of a new File for it (not shared with other opens: see
// Table for that). Errors of open(2) are returned as they are; a file that
// is not regular is ENODEV, as mmap(2) of it would be.
func OpenFile(mf *pgalloc.MemoryFile, path string, flags int, perm uint32) (*FD, error) {
	hostFD, err := openHost(path, flags, perm)
	if err != nil {
		return nil, err
	}
	defer unix.Close(hostFD)
	f, err := NewFile(mf, hostFD)
	if err != nil {
		return nil, err
	}
	defer f.DecRef(context.Background())
	r, w := accessMode(flags)
	return NewFD(f, r, w)
}

// openHost opens path on the host, close-on-exec.
func openHost(path string, flags int, perm uint32) (int, error) {
	for {
		fd, err := unix.Open(path, flags|unix.O_CLOEXEC, perm)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("hostfile: open(%q): %w", path, err)
		}
		return fd, nil
	}
}

// accessMode returns the read and write access of open flags.
func accessMode(flags int) (readable, writable bool) {
	acc := flags & unix.O_ACCMODE
	return acc == unix.O_RDONLY || acc == unix.O_RDWR, acc == unix.O_WRONLY || acc == unix.O_RDWR
}

// fileKey identifies a host inode.
type fileKey struct {
	dev, ino uint64
}

// Table gives every descriptor of one host inode the same File, so that all
// mappings and I/O through vmspace share one page cache, as Linux's page
// cache is per inode. Files leave the table when their last reference goes.
type Table struct {
	// mf is the memory file of every File in the table. Immutable.
	mf *pgalloc.MemoryFile

	// mu guards files. It comes before every File lock (see the package
	// documentation).
	mu lockrank.Mutex[lockrank.FileTableTag]

	// files maps host inodes to their Files, each with at least one
	// reference. Guarded by mu.
	files map[fileKey]*File

	// direct is true for a NewDirectTable: its Files map host files
	// directly. Immutable.
	direct bool

	// mappedHook, if set, is told when a directly mapped File gets its
	// first mapping and when its last one goes (SetMappedHook). Atomic.
	mappedHook atomic.Pointer[MappedHook]
}

// MappedHook is called with a directly mapped host file's st_dev, st_ino
// and a path through which vmspace reaches it, with mapped true when the
// File gets its first mapping and false when its last mapping goes. It is
// called with the File's mapping lock held: it must not call back into
// the File or its Table.
type MappedHook func(dev, ino uint64, path string, mapped bool)

// SetMappedHook makes t call fn (nil: nothing) when one of its directly
// mapped Files gets its first mapping or loses its last one.
func (t *Table) SetMappedHook(fn MappedHook) {
	if fn == nil {
		t.mappedHook.Store(nil)
		return
	}
	t.mappedHook.Store(&fn)
}

// mappedChanged calls f's Table's MappedHook, if any, for a directly
// mapped f whose mappings became non-empty (mapped) or empty.
// Preconditions: f.mapsMu held.
func (f *File) mappedChanged(mapped bool) {
	if !f.direct || f.table == nil {
		return
	}
	fn := f.table.mappedHook.Load()
	if fn == nil {
		return
	}
	path := ""
	if f.hm != nil {
		path = f.hm.Path()
	}
	(*fn)(f.dev, f.ino, path, mapped)
}

// NewTable returns an empty Table whose Files cache pages in mf.
func NewTable(mf *pgalloc.MemoryFile) *Table {
	return &Table{mf: mf, files: make(map[fileKey]*File)}
}

// Len returns the number of Files in the table.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.files)
}

// File returns the File of the regular host file open at hostFD (which the
// caller keeps), with a new reference: the existing one for its inode, or a
// new one using a duplicate of hostFD. If the existing File cannot write
// and hostFD can, the File takes a duplicate of hostFD to write with from
// now on.
func (t *Table) File(hostFD int) (*File, error) {
	var st unix.Stat_t
	if err := unix.Fstat(hostFD, &st); err != nil {
		return nil, fmt.Errorf("hostfile: fstat(%d): %w", hostFD, err)
	}
	key := fileKey{dev: uint64(st.Dev), ino: st.Ino}
	t.mu.Lock()
	defer t.mu.Unlock()
	if f, ok := t.files[key]; ok {
		f.IncRef()
		if err := f.upgrade(hostFD); err != nil {
			t.decRefLocked(f)
			return nil, err
		}
		return f, nil
	}
	hf, st2, err := ownHostFD(hostFD)
	if err != nil {
		return nil, err
	}
	f := newHostFile(t.mf, hf, st2, t.direct)
	if t.direct {
		f.keepAside()
	}
	f.table = t
	t.files[fileKey{dev: uint64(st2.Dev), ino: st2.Ino}] = f
	return f, nil
}

// decRefLocked drops a reference on f, a File of t that holds another.
// Preconditions: t.mu held.
func (t *Table) decRefLocked(f *File) {
	if f.refs.Add(-1) == 0 {
		// Not possible while the caller's other reference exists; be
		// safe anyway.
		t.removeLocked(f)
		f.release(context.Background())
	}
}

// removeLocked removes f from t. Preconditions: t.mu held.
func (t *Table) removeLocked(f *File) {
	key := fileKey{dev: f.dev, ino: f.ino}
	if t.files[key] == f {
		delete(t.files, key)
	}
}

// upgrade gives f a descriptor that can read and write if it lacks one and
// hostFD has it. Errors leave f as it was.
func (f *File) upgrade(hostFD int) error {
	flags, err := unix.FcntlInt(uintptr(hostFD), unix.F_GETFL, 0)
	if err != nil {
		return fmt.Errorf("hostfile: fcntl(%d, F_GETFL): %w", hostFD, err)
	}
	if flags&unix.O_ACCMODE != unix.O_RDWR {
		return nil
	}
	f.dataMu.RLock()
	need := !(f.fdReadable && f.fdWritable)
	f.dataMu.RUnlock()
	if !need {
		return nil
	}
	hf, _, err := ownHostFD(hostFD)
	if err != nil {
		return err
	}
	nd := hostDesc{fd: hf.fd}
	if f.table != nil && f.table.direct {
		nd = aside(hf.fd)
	}
	f.dataMu.Lock()
	defer f.dataMu.Unlock()
	if f.released || (f.fdReadable && f.fdWritable) {
		nd.close()
		return nil
	}
	if f.descLocked().open() {
		f.retired = append(f.retired, f.descLocked())
	}
	f.fd, f.kept, f.fdReadable, f.fdWritable = nd.fd, nd.kept, hf.readable, hf.writable
	return nil
}

// Import returns an FD for the regular host file open at hostFD (which the
// caller keeps), with hostFD's access mode, sharing the table's File for
// its inode.
func (t *Table) Import(hostFD int) (*FD, error) {
	flags, err := unix.FcntlInt(uintptr(hostFD), unix.F_GETFL, 0)
	if err != nil {
		return nil, fmt.Errorf("hostfile: fcntl(%d, F_GETFL): %w", hostFD, err)
	}
	f, err := t.File(hostFD)
	if err != nil {
		return nil, err
	}
	defer f.DecRef(context.Background())
	r, w := accessMode(flags)
	return NewFD(f, r, w)
}

// Open opens the host file at path with open(2)'s flags and perm, and
// returns an FD sharing the table's File for its inode. O_TRUNC truncates
// through the File, so that its cache and mappings follow.
func (t *Table) Open(path string, flags int, perm uint32) (*FD, error) {
	hostFD, err := openHost(path, flags&^unix.O_TRUNC, perm)
	if err != nil {
		return nil, err
	}
	defer unix.Close(hostFD)
	fd, err := t.Import(hostFD)
	if err != nil {
		return nil, err
	}
	if flags&unix.O_TRUNC != 0 && fd.writable {
		if err := fd.file.Truncate(context.Background(), 0); err != nil {
			fd.Close(context.Background())
			return nil, err
		}
	}
	return fd, nil
}
