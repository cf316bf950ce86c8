// Package pgalloc provides MemoryFile, the memory that private (anonymous and
// copied-on-write) pages of every address space are allocated from: one
// memfd, shared by all memory managers, with page allocation, per-page
// reference counts and cached internal mappings.
//
// # Allocation
//
// Allocate hands out page-granular ranges of the memfd, first fit from the
// bottom of the file or from the top (AllocOpts.Dir), optionally aligned to
// huge pages. Free space is the gaps of one segment.Set (MemoryFile.used)
// whose segments are the pages that are not free; allocation is a gap search
// in that set. The file grows, in 64 MiB steps, only when no free range
// fits; past 1 GiB, only when no freed memory is waiting to be released
// either (held pages, below, are not waited for). The memfd itself is
// given its maximum size once, sparse, so that growing is only a number.
//
// # Reference counts and release
//
// Every allocated page has a reference count, held in the same set.
// Allocate returns pages with one reference; IncRef and DecRef take and drop
// references on any page-aligned sub-range of what was allocated. A page
// whose count reaches zero is not reusable at once: its host memory is first
// returned with fallocate(FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE), which
// also makes it read as zero, and only then does it become free. Releases
// are batched and, unless Options.DisableAsyncRelease is set, done by a
// releaser goroutine; WaitReleased waits for it.
//
// # Reuse of freed pages
//
// A freed page may instead be kept committed, unreleased, in a reuse cache
// of bounded size (Options.ReuseLimit), for the next Allocate with
// Populate: that caller wants committed pages, and zeroing one that is
// already committed and mapped is far cheaper than committing a new one.
// Ordinary allocations never take cached pages, so that for lazily
// allocated memory host commitment still means that the page was touched.
// A small populating allocation that finds the cache empty commits a whole
// 2 MiB batch and caches the surplus, so that one-page allocations (a
// copy-on-write break each) share one commitment; only where a batch fits
// in the file as it is (it never grows the file or waits for releases),
// and if the batch cannot be committed, the allocation commits just its
// own pages. Pages whose commitment failed are released, never cached.
// One with AllocOpts.Overwrite, which writes every byte itself, takes
// cached pages without zeroing them.
// Cached pages unused for two trim periods (2 s each), or that stand in the
// way of an allocation, are released; WaitReleased releases them all.
// reuse.go has the details.
//
// A page the host kernel may still hold a reference to when it is freed
// (Expose: a pipe holding it after vmsplice) is never cached: it is
// released, which leaves the holder the page and its contents, as Linux's
// does, and gives the file a new one; cached, it would show the holder
// what the page's next owner writes there.
//
// # Held pages (shootdown)
//
// With Options.HoldFreed, a page whose count reaches zero is held instead:
// neither released nor reusable, its contents untouched, until the owner
// calls ReleaseHeld. A platform whose host mappings of the file can outlive
// the memory manager's unmapping of them (vmspace run defers its host
// munmaps, and other threads of the process run meanwhile) sets it, and
// calls ReleaseHeld once every host mapping that existed when the pages were
// freed is gone: a write through a stale mapping then lands in a page that
// nobody else has, and is erased by the release. This is Linux's rule that
// a page is freed only after the TLB shootdown of every mapping of it.
//
// # Internal mappings
//
// MapInternal returns mappings of file ranges in this process. The file is
// mapped MAP_SHARED read-write in 64 MiB chunks (small ones, since
// RLIMIT_AS may bound vmspace's address space), each on first use, kept
// until Close. When vmspace's address space has no room for a whole chunk
// (mmap fails with ENOMEM: a hard RLIMIT_AS that the Go runtime's own
// reservations nearly fill), that chunk is mapped instead in 2 MiB windows,
// each on first use, so that only what is used takes address space (with
// Options.Windowed, every chunk is); when
// even a window does not fit, MapInternal fails with ErrAddressSpace
// (ENOMEM). The chunk table is an immutable slice behind an atomic pointer,
// and windows are atomic pointers set once, so that MapInternal takes no
// lock and makes no system call once the mapping exists.
//
// # Locks
//
// MemoryFile.mu guards the allocation state (the used set, the list of
// pages awaiting release, the file size and the usage counters). mapMu
// serialises the creation of chunk mappings. Neither is ever held while
// taking the other. Both are leaves in the system's lock order
// (internal/lockrank, checked in race builds): they come after every
// memory manager and platform lock, and the memory file never calls out
// of the package while holding them. The system calls that return memory (fallocate) and populate
// it (madvise) run without mu held.
package pgalloc

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/internal/lockrank"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/segment"
)

const (
	// chunkShift is log2(chunkSize).
	chunkShift = 26
	// chunkSize is the size of one internal mapping of the file, and the
	// unit in which the file grows. A range that lies in one chunk maps to
	// one Block.
	chunkSize = 1 << chunkShift
	// chunkMask masks an offset's position within its chunk.
	chunkMask = chunkSize - 1

	// defaultGrowFreely is the file size below which the file grows
	// rather than waits for memory being released (see findFreeLocked).
	defaultGrowFreely = 1 << 30

	// maxFileSize bounds the file (and the keys of the used set): 4 TiB.
	// Allocation fails with ErrLimit when no free range below it fits.
	maxFileSize = 1 << 42
)

var (
	// ErrLimit is returned, possibly wrapped, by Allocate when the
	// allocation would take the memory file past Options.Limit (or past
	// its maximum size). Callers report it as ENOMEM; it wraps unix.ENOMEM,
	// so errors.Is(err, unix.ENOMEM) holds too.
	ErrLimit = fmt.Errorf("pgalloc: memory file limit reached: %w", unix.ENOMEM)

	// ErrClosed is returned by operations on a MemoryFile after Close.
	ErrClosed = fmt.Errorf("pgalloc: memory file closed: %w", unix.EBADF)
)

// Options configure a MemoryFile.
type Options struct {
	// Limit caps the bytes that may be allocated (hold a reference) at once;
	// 0 means no limit other than the file's maximum size (4 TiB). An
	// Allocate that would exceed it fails with ErrLimit. Pages freed but
	// not yet released do not count against it.
	Limit uint64

	// DisableAsyncRelease makes DecRef return the host memory of pages it
	// frees before returning, instead of leaving that to the releaser
	// goroutine. Tests use it for determinism; it makes DecRef slower.
	DisableAsyncRelease bool

	// Name names the memfd (as shown in /proc/PID/fd); "vmspace-memory" if
	// empty.
	Name string

	// HoldFreed makes pages whose count reaches zero wait, held, until
	// the next ReleaseHeld, instead of being released at once (see the
	// package documentation).
	HoldFreed bool

	// ReuseLimit caps the bytes of freed pages kept committed for reuse by
	// populating allocations (see the package documentation); 0 means
	// DefaultReuseLimit, or no cache with DisableAsyncRelease (whose
	// DecRef then releases what it frees, for tests' determinism).
	// NoReuse turns the reuse cache off.
	ReuseLimit uint64
	NoReuse    bool

	// MapBudget caps the bytes of vmspace's address space that the
	// internal mappings of the file (MapInternal) may take; 0 means no
	// cap but the host's (RLIMIT_AS, vm.max_map_count). A mapping past
	// it fails as the host's mmap would then, with ENOMEM (see the
	// package documentation).
	MapBudget uint64

	// Windowed maps every chunk in windows, so that the internal mappings
	// take only the address space of the 2 MiB windows used: for a process
	// whose address space is bounded (a hard RLIMIT_AS) and must keep room
	// for others (the Go runtime's heap arenas).
	Windowed bool
}

// Direction says where Allocate looks for free space.
type Direction int

const (
	// BottomUp allocates the lowest free range that fits.
	BottomUp Direction = iota
	// TopDown allocates the highest free range that fits in the file as it
	// is, growing the file only if none does.
	TopDown
)

// String names the direction.
func (d Direction) String() string {
	switch d {
	case BottomUp:
		return "BottomUp"
	case TopDown:
		return "TopDown"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

// AllocOpts qualify one Allocate.
type AllocOpts struct {
	// Huge asks for a range that starts at a huge-page-aligned offset, so
	// that it can be mapped with huge pages at a huge-aligned address.
	Huge bool
	// Dir is where to look for free space.
	Dir Direction
	// Populate commits host memory for the whole range now, in one batch
	// (fallocate, then madvise(MADV_POPULATE_WRITE) on the internal
	// mapping), so that later writes through the internal mapping take no
	// host fault per page. Mappings of the file in other address spaces
	// still take one (cheaper, minor) fault per page.
	//
	// With a reuse cache, a populating allocation smaller than
	// commitBatch that finds no cached pages commits a whole batch, if
	// one fits in the file as it is, and caches what it does not take
	// (see reuse.go), so that small ones (copy-on-write breaks of one
	// page) share one commitment. A batch that cannot be committed is
	// given up for the asked length alone.
	Populate bool
	// Overwrite, with Populate, says that the caller writes every byte of
	// the range before it reads it or lets anyone else see it: pages
	// taken from the reuse cache are then not zeroed first. The pages
	// may hold what other address spaces left in them until then.
	Overwrite bool
}

// refCount is the value of a segment of MemoryFile.used: the number of
// references on each page of the segment. Zero means the pages are freed and
// waiting for their host memory to be released.
type refCount uint64

// usedFuncs are the segment.Functions of MemoryFile.used. Adjacent segments
// with equal counts merge.
type usedFuncs struct{}

func (usedFuncs) MinKey() uint64       { return 0 }
func (usedFuncs) MaxKey() uint64       { return maxFileSize }
func (usedFuncs) ClearValue(*refCount) {}
func (usedFuncs) Split(_ segment.Range[uint64], v refCount, _ uint64) (refCount, refCount) {
	return v, v
}
func (usedFuncs) Merge(_ segment.Range[uint64], v1 refCount, _ segment.Range[uint64], v2 refCount) (refCount, bool) {
	return v1, v1 == v2
}

// usedSet is the type of MemoryFile.used.
type usedSet = segment.Set[uint64, refCount, usedFuncs]

// exposedFuncs are the segment.Functions of MemoryFile.exposed, whose
// segments merge whenever they touch.
type exposedFuncs struct{}

func (exposedFuncs) MinKey() uint64       { return 0 }
func (exposedFuncs) MaxKey() uint64       { return maxFileSize }
func (exposedFuncs) ClearValue(*struct{}) {}
func (exposedFuncs) Split(_ segment.Range[uint64], v struct{}, _ uint64) (struct{}, struct{}) {
	return v, v
}
func (exposedFuncs) Merge(segment.Range[uint64], struct{}, segment.Range[uint64], struct{}) (struct{}, bool) {
	return struct{}{}, true
}

// exposedSet is the type of MemoryFile.exposed.
type exposedSet = segment.Set[uint64, struct{}, exposedFuncs]

// chunkTable is an immutable table of internal mappings: element i maps
// file offsets [i*chunkSize, (i+1)*chunkSize), or is nil if nothing of
// that chunk is mapped yet.
type chunkTable []*chunkMap

// MemoryFile is a memfd from which pages are allocated, with per-page
// reference counts. It implements memmap.File. All methods are safe for
// concurrent use.
type MemoryFile struct {
	// fd is the memfd. Immutable; closed by Close.
	fd int

	// limit is Options.Limit (0: none). Immutable.
	limit uint64

	// async is !Options.DisableAsyncRelease. Immutable.
	async bool

	// hold is Options.HoldFreed. Immutable.
	hold bool

	// reuseLimit is the reuse cache's capacity in bytes (0: no cache).
	// Immutable.
	reuseLimit uint64

	// chunks is the current chunkTable; never nil. Loaded without a lock;
	// replaced (never modified) with mapMu held. Every mapped chunk lies
	// wholly below the file size.
	chunks atomic.Pointer[chunkTable]

	// mapMu serialises the replacement of chunks, so that each chunk is
	// mapped once.
	mapMu lockrank.Mutex[lockrank.MemoryFileMapTag]

	// mapClosed is set by Close, after which no chunk is mapped. Guarded
	// by mapMu.
	mapClosed bool

	// mapBudget is Options.MapBudget (0: none). Immutable.
	mapBudget uint64

	// windowed is Options.Windowed. Immutable.
	windowed bool

	// mapped is the address space the internal mappings take, in bytes.
	// Guarded by mapMu.
	mapped uint64

	// allocated is the number of bytes with a reference (refs > 0 in used).
	// Written with mu held; read atomically without it.
	allocated atomic.Uint64

	// size is the file size in bytes, a multiple of chunkSize that only
	// grows. Written with mu held; read atomically without it.
	size atomic.Uint64

	// noPopulateWrite is set once madvise(MADV_POPULATE_WRITE) has been
	// found unsupported (Linux < 5.14); populate then uses fallocate only.
	noPopulateWrite atomic.Bool

	// mu guards the fields below.
	mu lockrank.Mutex[lockrank.MemoryFileTag]

	// used holds every page that is not free: allocated pages with their
	// reference counts (> 0), and freed pages awaiting release (0). Its
	// gaps below size are the free space. Guarded by mu.
	used usedSet

	// pending are ranges freed (count 0 in used) whose release has not yet
	// started. Disjoint, unordered. Guarded by mu.
	pending []memmap.FileRange

	// held are ranges freed (count 0 in used) with Options.HoldFreed,
	// waiting for ReleaseHeld to join pending; heldBytes is their total
	// size. Disjoint from each other and from pending, unordered. Guarded
	// by mu.
	held      []memmap.FileRange
	heldBytes uint64

	// cache holds freed pages (count 0 in used) kept committed for reuse,
	// each with the trim tick it was cached in; cacheBytes is their total
	// size. Disjoint from each other, from pending and from held,
	// unordered. Guarded by mu.
	cache      []cachedRange
	cacheBytes uint64

	// exposed are allocated pages whose host memory the host kernel may
	// hold references to besides the file's own (Expose); freed, they
	// are released, never cached (cacheOrQueueLocked). Guarded by mu.
	exposed exposedSet

	// trimTick counts the runs of trim; trimTimer is the timer of its next
	// run, nil when none is due (the cache is empty). Guarded by mu.
	trimTick  uint64
	trimTimer *time.Timer

	// growFreely is the file size up to which the file grows rather than
	// waits for memory being released (defaultGrowFreely). Immutable after
	// New (tests in the package may set it before the file is used).
	growFreely uint64

	// presized is true if the memfd was given its maximum size at New, so
	// that growing the file only moves size: a ftruncate takes the
	// memfd's inode lock, which a hole punch holds for as long as it runs
	// (tens of milliseconds for hundreds of MiB), so growing by ftruncate
	// waited for every release in progress. Without it (a RLIMIT_FSIZE
	// below maxFileSize), the file grows by ftruncate. Immutable.
	presized bool

	// releasing is the number of batches being released: taken from
	// pending but not yet removed from used. Guarded by mu.
	releasing int

	// released is signalled, with mu, whenever a release batch finishes or
	// the file is closed. Its L is &mu.
	released sync.Cond

	// closed is set by Close. Guarded by mu.
	closed bool

	// kick wakes the releaser goroutine (capacity 1; sends never block).
	// Nil if !async. Immutable.
	kick chan struct{}

	// stop is closed by Close to stop the releaser. Nil if !async.
	// Immutable.
	stop chan struct{}

	// releaserDone is closed when the releaser goroutine exits. Nil if
	// !async. Immutable.
	releaserDone chan struct{}
}

// The memory file is a memmap.File.
var _ memmap.File = (*MemoryFile)(nil)

// New creates a MemoryFile backed by a new memfd.
func New(opts Options) (*MemoryFile, error) {
	name := opts.Name
	if name == "" {
		name = "vmspace-memory"
	}
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("pgalloc: memfd_create: %w", err)
	}
	// A sparse memfd costs nothing for its size; see presized.
	presized := unix.Ftruncate(fd, maxFileSize) == nil
	if !presized {
		if err := unix.Ftruncate(fd, chunkSize); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("pgalloc: ftruncate: %w", err)
		}
	}
	f := &MemoryFile{
		fd:    fd,
		limit: opts.Limit,
		async: !opts.DisableAsyncRelease,
		hold:  opts.HoldFreed,

		mapBudget: opts.MapBudget,
		windowed:  opts.Windowed,

		growFreely: defaultGrowFreely,
		presized:   presized,
	}
	if !opts.NoReuse {
		f.reuseLimit = opts.ReuseLimit
		if f.reuseLimit == 0 && !opts.DisableAsyncRelease {
			f.reuseLimit = DefaultReuseLimit
		}
	}
	f.size.Store(chunkSize)
	f.chunks.Store(&chunkTable{})
	f.released.L = &f.mu
	if f.async {
		f.kick = make(chan struct{}, 1)
		f.stop = make(chan struct{})
		f.releaserDone = make(chan struct{})
		go f.releaser()
	}
	return f, nil
}

// Close releases everything the MemoryFile holds: it stops the releaser
// goroutine, unmaps the internal mappings and closes the memfd. Every
// MemoryFile must be closed; until then it keeps all three. Allocations
// still referenced die with the file; no mapping obtained from MapInternal
// may be used afterwards, and the caller must make sure that no other
// method is running. After Close, Allocate, MapInternal and the other
// methods with an error result return ErrClosed, and IncRef and DecRef do
// nothing. Closing twice is harmless.
func (f *MemoryFile) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	f.released.Broadcast()
	f.mu.Unlock()

	if f.async {
		close(f.stop)
		<-f.releaserDone
	}
	// Wait for synchronous releases that may still be running.
	f.mu.Lock()
	for f.releasing > 0 {
		f.released.Wait()
	}
	f.pending = nil
	f.held, f.heldBytes = nil, 0
	f.cache, f.cacheBytes = nil, 0
	if f.trimTimer != nil {
		f.trimTimer.Stop()
		f.trimTimer = nil
	}
	f.used.RemoveAll()
	f.allocated.Store(0)
	f.mu.Unlock()

	f.mapMu.Lock()
	errs := unmapAll(*f.chunks.Load())
	f.chunks.Store(&chunkTable{})
	f.mapped = 0
	f.mapClosed = true
	f.mapMu.Unlock()
	if err := unix.Close(f.fd); err != nil {
		errs = append(errs, fmt.Errorf("pgalloc: close: %w", err))
	}
	return errors.Join(errs...)
}

// Destroy is Close, ignoring errors.
func (f *MemoryFile) Destroy() { _ = f.Close() }

// FD implements memmap.File.FD: the memfd that platforms map file ranges
// from.
func (f *MemoryFile) FD() int { return f.fd }

// UsageAllocated returns the number of bytes that hold at least one
// reference.
func (f *MemoryFile) UsageAllocated() uint64 { return f.allocated.Load() }

// TotalSize returns the size of the file in bytes (sparse: most of it
// usually holds no host memory).
func (f *MemoryFile) TotalSize() uint64 { return f.size.Load() }

// UsageCommitted returns the number of bytes of host memory the file holds,
// from the memfd's fstat st_blocks (512-byte units; shmem counts every page
// it has allocated, whether or not it has been written). This includes
// pages freed but not yet released. It returns 0 after Close.
func (f *MemoryFile) UsageCommitted() uint64 {
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if closed {
		return 0
	}
	var st unix.Stat_t
	if err := unix.Fstat(f.fd, &st); err != nil {
		return 0
	}
	return uint64(st.Blocks) * 512
}

// String describes f for debugging.
func (f *MemoryFile) String() string {
	return fmt.Sprintf("MemoryFile{fd %d, size %#x, allocated %#x}", f.fd, f.TotalSize(), f.UsageAllocated())
}

// checkPageRange reports whether fr is well-formed, page-aligned and within
// the file's key space.
func checkPageRange(fr memmap.FileRange) bool {
	return fr.Start <= fr.End && fr.End <= maxFileSize &&
		hostarch.IsPageAligned(fr.Start) && hostarch.IsPageAligned(fr.End)
}
