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

// maxFileSize is the largest file size (Linux's MAX_LFS_FILESIZE,
// LLONG_MAX). Sizes beyond it are EFBIG.
const maxFileSize = 1<<63 - 1

// kind is what a File stands for.
type kind int

const (
	// hostKind: a regular host file, cached.
	hostKind kind = iota
	// memfdKind: a memfd with no host file.
	memfdKind
	// anonKind: shared anonymous memory with no host file.
	anonKind
)

// File is a mappable file: a host file's page cache, a memfd, or shared
// anonymous memory (see the package documentation). It implements
// memmap.Mappable and memmap.MappingIdentity, and the memory manager's
// Residency and Puncher. All methods are safe for concurrent use.
type File struct {
	// mf is the memory file that cached pages live in. Immutable.
	mf *pgalloc.MemoryFile

	// kind is what the File stands for. Immutable.
	kind kind

	// name is the name shown in /proc/PID/maps: the host path when the
	// File was made (possibly empty when unknown; MappedName asks the host
	// for the current one), "/memfd:NAME (deleted)" or "/dev/zero
	// (deleted)". Immutable.
	name string

	// dev and ino identify the file in /proc/PID/maps: the host file's
	// st_dev and st_ino, or a shmem-like device and a fresh inode number.
	// Immutable.
	dev, ino uint64

	// table is the Table this File is registered in, or nil. Immutable.
	table *Table

	// direct is true for a directly mapped host file (NewDirectFile),
	// whose Translations name the host file itself (hm) rather than a page
	// cache in mf; its cache stays empty and its size is the host's.
	// Immutable.
	direct bool

	// hm is the memmap.File of a directly mapped host file, nil otherwise.
	// Immutable.
	hm *hostMem

	// noPages is true for a file of hugetlbfs while the host has no huge
	// pages at all (hugetlb.go): every access to its mappings is a bus
	// error, as Linux's fault finds no page to give. Immutable.
	noPages bool

	// refs is the number of references. A File is released when it drops
	// to zero and never used again; it is decremented from 1 to 0 only
	// with table.mu held when table != nil. Atomic.
	refs atomic.Int64

	// mapsMu guards mappings. See the package documentation for the lock
	// order.
	mapsMu lockrank.Mutex[lockrank.MappableTag]

	// mappings records which MappingSpaces map which ranges of the File.
	// Guarded by mapsMu.
	mappings mappingSet

	// dataMu guards the fields below.
	dataMu lockrank.RWMutex[lockrank.FileDataTag]

	// fd is the File's own host descriptor, or -1 for memfds and shared
	// anonymous memory and after release. It may be replaced by a more
	// capable descriptor (Table upgrades a read-only one). Guarded by
	// dataMu: written with it held for writing, used with it held.
	fd int

	// kept is the File's descriptor when it is kept aside, in a keeper's
	// table (keeper.go), rather than in vmspace's; fd is then -1. Only
	// directly mapped host files of a Table keep their descriptors aside.
	// Guarded by dataMu, as fd.
	kept keptFD

	// retired are descriptors the File had before a more capable one
	// replaced them (Table upgrades a read-only one), kept open until
	// release: a platform may be opening one by its path at that moment.
	// Guarded by dataMu.
	retired []hostDesc

	// fdReadable and fdWritable report fd's access mode. Guarded by
	// dataMu.
	fdReadable, fdWritable bool

	// size is the file size in bytes, at most maxFileSize; unused for a
	// directly mapped host file, whose size is the host's. Guarded by
	// dataMu.
	size uint64

	// cache maps page-aligned file ranges to the memory-file pages that
	// hold them. Every page in it holds one memory-file reference owned by
	// the cache. No segment lies wholly past size rounded up to a page;
	// bytes of the last page past size read as zero unless written through
	// a shared mapping. Guarded by dataMu.
	cache cacheSet

	// released is set when the last reference has gone. Guarded by dataMu.
	released bool
}

// Interfaces that File implements. (mm's Residency and Puncher are
// satisfied structurally; the tests check them against copies.)
var (
	_ memmap.Mappable        = (*File)(nil)
	_ memmap.MappingIdentity = (*File)(nil)
)

// nextAnonIno numbers the inodes of memfds and shared anonymous memory.
var nextAnonIno atomic.Uint64

// shmemDev is the device number that /proc/PID/maps shows for memfds and
// shared anonymous memory (00:01, the shmem device on typical Linux
// systems), in the user-space dev_t encoding of stat(2).
var shmemDev = unix.Mkdev(0, 1)

func init() {
	// Start somewhere recognisable, well away from 0 (which /proc/PID/maps
	// shows for anonymous memory).
	nextAnonIno.Store(0x1000)
}

// NewFile returns a new File with one reference for the regular host file
// open at hostFD, which the caller keeps: the File uses its own duplicate.
// The descriptor must be open for reading for the File to be mappable; if
// it is also open for writing, shared mappings may be writable. A
// non-regular file is ENODEV (as mmap(2) of it).
func NewFile(mf *pgalloc.MemoryFile, hostFD int) (*File, error) {
	return newFileOf(mf, hostFD, false)
}

// newFileOf is NewFile, or NewDirectFile if direct.
func newFileOf(mf *pgalloc.MemoryFile, hostFD int, direct bool) (*File, error) {
	if mf == nil {
		return nil, fmt.Errorf("hostfile: nil memory file: %w", unix.EINVAL)
	}
	hf, st, err := ownHostFD(hostFD)
	if err != nil {
		return nil, err
	}
	return newHostFile(mf, hf, st, direct), nil
}

// newHostFile makes a File with one reference from an owned descriptor and
// its stat: a page cache, or a directly mapped host file if direct.
func newHostFile(mf *pgalloc.MemoryFile, hf ownedFD, st *unix.Stat_t, direct bool) *File {
	f := &File{
		mf:         mf,
		kind:       hostKind,
		name:       hf.path,
		dev:        uint64(st.Dev),
		ino:        st.Ino,
		fd:         hf.fd,
		fdReadable: hf.readable,
		fdWritable: hf.writable,
		size:       uint64(st.Size),
		direct:     direct,
	}
	if direct {
		f.hm = &hostMem{f: f}
	}
	f.noPages = hugetlbWithoutPages(hf.fd)
	f.refs.Store(1)
	return f
}

// ownedFD is a host descriptor that a File owns.
type ownedFD struct {
	// fd is the descriptor (close-on-exec, never O_APPEND).
	fd int
	// readable and writable report its access mode.
	readable, writable bool
	// path is the host path, as /proc/self/fd shows it, or "".
	path string
}

// ownHostFD makes a descriptor for the File's own use from the caller's
// hostFD: a dup, or, if hostFD is O_APPEND (under which Linux's pwrite
// ignores the offset), a reopen of it through /proc/self/fd without
// O_APPEND. It returns the descriptor with its fstat. Non-regular files are
// ENODEV.
func ownHostFD(hostFD int) (ownedFD, *unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(hostFD, &st); err != nil {
		return ownedFD{}, nil, fmt.Errorf("hostfile: fstat(%d): %w", hostFD, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return ownedFD{}, nil, fmt.Errorf("hostfile: descriptor %d is not a regular file: %w", hostFD, unix.ENODEV)
	}
	if uint64(st.Size) > maxFileSize {
		return ownedFD{}, nil, fmt.Errorf("hostfile: descriptor %d: size out of range: %w", hostFD, unix.EFBIG)
	}
	flags, err := unix.FcntlInt(uintptr(hostFD), unix.F_GETFL, 0)
	if err != nil {
		return ownedFD{}, nil, fmt.Errorf("hostfile: fcntl(%d, F_GETFL): %w", hostFD, err)
	}
	acc := flags & unix.O_ACCMODE
	o := ownedFD{
		readable: acc == unix.O_RDONLY || acc == unix.O_RDWR,
		writable: acc == unix.O_WRONLY || acc == unix.O_RDWR,
	}
	procPath := fmt.Sprintf("/proc/self/fd/%d", hostFD)
	if p, err := readlink(procPath); err == nil {
		o.path = p
	}
	if flags&unix.O_APPEND != 0 {
		fd, err := unix.Open(procPath, acc|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err != nil {
			return ownedFD{}, nil, fmt.Errorf("hostfile: reopening O_APPEND descriptor %d: %w", hostFD, err)
		}
		o.fd = fd
		// Make sure it is the same file.
		var st2 unix.Stat_t
		if err := unix.Fstat(fd, &st2); err != nil || st2.Dev != st.Dev || st2.Ino != st.Ino {
			unix.Close(fd)
			if err == nil {
				err = unix.ESTALE
			}
			return ownedFD{}, nil, fmt.Errorf("hostfile: reopening O_APPEND descriptor %d: %w", hostFD, err)
		}
		return o, &st, nil
	}
	fd, err := unix.FcntlInt(uintptr(hostFD), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return ownedFD{}, nil, fmt.Errorf("hostfile: dup(%d): %w", hostFD, err)
	}
	o.fd = fd
	return o, &st, nil
}

// readlink returns the target of the symbolic link path.
func readlink(path string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlink(path, buf)
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		if len(buf) >= 1<<16 {
			return "", unix.ENAMETOOLONG
		}
		buf = make([]byte, 2*len(buf))
	}
}

// NewMemfd returns a new memfd-like File of size bytes, with one reference:
// anonymous memory that lives only in mf, zero-filled, named
// "/memfd:NAME (deleted)" in /proc/PID/maps (memfd_create(2)). Sizes beyond
// Linux's maximum file size are EFBIG. No memory is allocated until pages
// are used.
func NewMemfd(mf *pgalloc.MemoryFile, name string, size uint64) (*File, error) {
	return newAnonFile(mf, memfdKind, "/memfd:"+name+" (deleted)", size)
}

// newAnonFile makes a File with no host file, with one reference.
func newAnonFile(mf *pgalloc.MemoryFile, k kind, name string, size uint64) (*File, error) {
	if mf == nil {
		return nil, fmt.Errorf("hostfile: nil memory file: %w", unix.EINVAL)
	}
	if size > maxFileSize {
		return nil, fmt.Errorf("hostfile: size %#x out of range: %w", size, unix.EFBIG)
	}
	f := &File{
		mf:         mf,
		kind:       k,
		name:       name,
		dev:        shmemDev,
		ino:        nextAnonIno.Add(1),
		fd:         -1,
		fdReadable: true,
		fdWritable: true,
		size:       size,
	}
	f.refs.Store(1)
	return f, nil
}

// IsHostFile reports whether f caches a host file (rather than being a
// memfd or shared anonymous memory).
func (f *File) IsHostFile() bool { return f.kind == hostKind }

// Size returns the file size in bytes (for a directly mapped host file,
// the host's now; 0 if it cannot be had).
func (f *File) Size() uint64 {
	f.dataMu.RLock()
	defer f.dataMu.RUnlock()
	if f.direct {
		if f.released {
			return 0
		}
		size, _ := f.hostSizeLocked()
		return size
	}
	return f.size
}

// CanWrite reports whether f can give writable translations and accept
// writes: it is a memfd or shared anonymous memory, or its host descriptor
// is open for writing.
func (f *File) CanWrite() bool {
	f.dataMu.RLock()
	defer f.dataMu.RUnlock()
	return f.fdWritable
}

// MemoryFile returns the memory file that f's pages live in.
func (f *File) MemoryFile() *pgalloc.MemoryFile { return f.mf }

// IncRef implements memmap.MappingIdentity.IncRef. Taking a reference on a
// File that has none left is a programming error: it panics.
func (f *File) IncRef() {
	for {
		n := f.refs.Load()
		if n <= 0 {
			panic(fmt.Sprintf("hostfile: IncRef of released file %q", f.name))
		}
		if f.refs.CompareAndSwap(n, n+1) {
			return
		}
	}
}

// DecRef implements memmap.MappingIdentity.DecRef. When the last reference
// goes, dirty pages are written back to the host file, every cached page is
// returned to the memory file, and the host descriptor is closed. Dropping
// a reference that is not held is a programming error: it panics.
func (f *File) DecRef(ctx context.Context) {
	for {
		n := f.refs.Load()
		if n <= 0 {
			panic(fmt.Sprintf("hostfile: DecRef of released file %q", f.name))
		}
		if n == 1 {
			break
		}
		if f.refs.CompareAndSwap(n, n-1) {
			return
		}
	}
	// Possibly the last reference: go the slow way, under the table's lock
	// so that nobody finds the File in the table while it goes.
	if t := f.table; t != nil {
		t.mu.Lock()
		defer t.mu.Unlock()
	}
	if f.refs.Add(-1) != 0 {
		return
	}
	if t := f.table; t != nil {
		t.removeLocked(f)
	}
	f.release(ctx)
}

// release writes back dirty pages and frees everything f holds.
// Preconditions: the last reference has gone.
func (f *File) release(ctx context.Context) {
	if f.kind == hostKind {
		// Errors cannot be reported; as close(2) after a failed
		// writeback, the data is lost.
		_ = f.writeBack(ctx, memmap.MappableRange{Start: 0, End: pageRoundUpSize(maxFileSize)}, false)
	}
	f.dataMu.Lock()
	dropped := f.dropCacheLocked(memmap.MappableRange{Start: 0, End: cacheMaxKey})
	f.released = true
	if f.direct {
		// Pages that mappings still refer to keep the descriptor.
		f.releaseDirectLocked()
	} else {
		f.closeFDsLocked()
	}
	f.fdReadable, f.fdWritable = false, false
	f.dataMu.Unlock()
	f.decRefPages(dropped)
}

// MappedName implements memmap.MappingIdentity.MappedName: for a host
// file, its current path as the host shows it (with " (deleted)" once
// unlinked, as Linux's /proc/PID/maps), else the name it was made with.
func (f *File) MappedName(ctx context.Context) string {
	if f.kind != hostKind {
		return f.name
	}
	f.dataMu.RLock()
	defer f.dataMu.RUnlock()
	if d := f.descLocked(); d.open() {
		if p, err := readlink(d.path()); err == nil {
			return p
		}
	}
	return f.name
}

// MappingKind implements memmap.Kinded: a host file's kind is
// memmap.KindFile, a memfd's KindMemfd, shared anonymous memory's
// KindSharedAnon.
func (f *File) MappingKind() memmap.Kind {
	switch f.kind {
	case memfdKind:
		return memmap.KindMemfd
	case anonKind:
		return memmap.KindSharedAnon
	}
	return memmap.KindFile
}

// IsShmem implements mm.ShmemIdentity: memfds, shared anonymous memory and
// host files on tmpfs hold shmem pages (Linux's vma_is_shmem).
func (f *File) IsShmem() bool {
	if f.kind != hostKind {
		return true
	}
	f.dataMu.RLock()
	defer f.dataMu.RUnlock()
	d := f.descLocked()
	var st unix.Statfs_t
	return d.open() && unix.Statfs(d.path(), &st) == nil && st.Type == unix.TMPFS_MAGIC
}

// DeviceID implements memmap.MappingIdentity.DeviceID: the host file's
// st_dev, or 00:01 for memfds and shared anonymous memory.
func (f *File) DeviceID() uint64 { return f.dev }

// InodeID implements memmap.MappingIdentity.InodeID: the host file's
// st_ino, or a number unique among memfds and shared anonymous memory.
func (f *File) InodeID() uint64 { return f.ino }

// Msync implements memmap.MappingIdentity.Msync: it writes dirty cached
// pages of mr back to the host file and flushes the host file's data to
// stable storage (msync(MS_SYNC) is vfs_fsync_range in Linux). It does
// nothing for memfds and shared anonymous memory.
func (f *File) Msync(ctx context.Context, mr memmap.MappableRange) error {
	if f.kind != hostKind {
		return nil
	}
	if err := f.Sync(ctx, mr); err != nil {
		return err
	}
	f.dataMu.RLock()
	defer f.dataMu.RUnlock()
	if !f.descLocked().open() {
		return nil
	}
	fd, done, err := f.useFDLocked()
	if err != nil {
		return err
	}
	defer done()
	for {
		err := unix.Fdatasync(fd)
		if err != unix.EINTR {
			if err != nil && err != unix.EINVAL { // EINVAL: no sync support
				return fmt.Errorf("hostfile: fdatasync: %w", err)
			}
			return nil
		}
	}
}

// String describes f for debugging.
func (f *File) String() string {
	return fmt.Sprintf("hostfile.File{%q, dev %#x, ino %d}", f.name, f.dev, f.ino)
}
