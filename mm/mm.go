// Package mm implements MemoryManager, an application's virtual address space
// with Linux's semantics.
//
// An address space is two ordered range sets:
//
//   - vmas (virtual memory areas) record what the application mapped: each
//     vma has permissions, sharing, flags and an optional Mappable with an
//     offset. vmas change only through memory system calls.
//
//   - pmas (platform mapping areas) record which range of which File backs a
//     range of addresses, with the permissions the platform may map it with.
//     pmas are created lazily, by faults and I/O, and are a cache: any pma
//     can be dropped and rebuilt from the vmas, except that private
//     (copied-on-write or anonymous) memory lives only in its pma.
//
// Private memory is allocated from a shared pgalloc.MemoryFile. The pages of
// a private pma may be shared copy-on-write with forked MemoryManagers; a
// privateRefs (shared by all managers forked from one another) counts the
// pmas that refer to each page, so a write to a page whose only sharer is the
// writer takes the page over without copying.
//
// # Where things are
//
//   - mm.go: MemoryManager and its fields; lifecycle.go: New, the user
//     references and the release of everything when the last one goes;
//     fork.go: Fork.
//   - syscalls.go: the entry points of mmap, munmap, mprotect and
//     remap_file_pages, and their checks (the raw arguments are decoded by
//     package linuxabi, which calls these typed methods); the other memory system
//     calls are in files named for them: brk.go, mremap.go, advise.go
//     (madvise), mlock.go (mlock, mlockall), msync.go, mseal.go, numa.go
//     (mbind, get_mempolicy), vmaname.go (PR_SET_VMA_ANON_NAME), mdwe.go,
//     shm.go (shmat, shmdt), aio.go (io_setup, io_destroy), residency.go
//     (mincore's walk); linux.go holds DoMMap (do_mmap: the type of
//     mapping and the file's checks) and the file kinds it maps.
//   - vma.go: vmas and the changes of the vma set; layout.go: the mmap
//     layout and the placement of new mappings; stack.go: the main stack
//     and its growth; guard.go: guard regions; limits.go and commit.go:
//     resource limits and commit accounting.
//   - pma.go: pmas, copy-on-write and private page references; fault.go:
//     page faults; populate.go: populating ranges of pmas; io.go: CopyIn,
//     CopyOut and atomics on application memory; address_space.go: the
//     platform AddressSpace (Activate, Deactivate, mapping pmas into it and
//     unmapping them).
//   - procfs.go, core.go: /proc text and core dumps; save.go, restore.go:
//     checkpoints; invariants.go: CheckInvariants for tests; metadata.go:
//     argv, auxv, the executable and dumpability; special.go: special
//     mappings ([vdso], AIO rings); uffd.go, uffd_fill.go,
//     uffd_events.go: userfaultfd contexts (Userfaultfd), their ioctls,
//     the faults that wait on them and their events.
//
// # Lock order
//
// The lock order is declared once, in code, for every package:
// internal/lockrank's table, from outermost to innermost (mm's short
// names for its ranks are in lockrank.go). A goroutine holding locks may
// take only a lock ranked after all of them. Race builds (as tests run)
// and builds with -tags lockrank check every acquisition against the
// table, across packages, and panic on one out of order; other builds
// compile the checks away. mm's locks and the others' fit in as follows:
//
//	sandbox's fastpath.mu, held by vmspace run's tracer thread or its
//	fast path's server around all they do (lockrank.FastPath)
//	  kernel.ShmRegistry.mu (lockrank.ShmRegistry)
//	    MemoryManager.metadataMu (lockrank.Metadata)
//	      MemoryManager.mappingMu, RW (lockrank.Mapping)
//	        hostfile.Table.mu (lockrank.FileTable)
//	          Mappable locks, other than those taken by Translate
//	          (SpecialMappable.mu, hostfile's File.mapsMu: lockrank.Mappable)
//	            MemoryManager.activeMu, RW (lockrank.Active)
//	              locks taken by Mappable.Translate (hostfile's
//	              File.dataMu: lockrank.FileData)
//	                privateRefs.mu (lockrank.PrivateRefs)
//	                  platform AddressSpace locks (lockrank.Platform)
//	                    AIO manager mutex (lockrank.AIOManager)
//	                      AIO context mutex (lockrank.AIOContext)
//	                        hostfile's hostMem.mu (lockrank.HostMem)
//	                          leaves
//
// The leaves take nothing ranked themselves: mm's aioNr.mu (the
// system-wide AIO event count), MemoryManager.anonVMAMu, taken by faults
// under mappingMu (read) and activeMu to give a vma its anon_vma,
// Commit.mu, taken under mappingMu to charge commitments, and
// Userfaultfd.mu, taken under mappingMu and activeMu to queue userfaults
// and events and wake them; and the memory file's locks, hostfile's
// Shm.mu and keepers.mu.
//
// Locks of one rank are held together only by Fork, which takes the
// child's activeMu (the child is not yet visible to anyone else, so this
// cannot deadlock) and then the parent's, and by Save, which takes those
// of all its managers class by class in the caller's order.
//
// Why this order: mappingMu guards the vmas, which every operation consults
// first; activeMu guards the pmas and the AddressSpace, which faults and I/O
// change under only a read lock of mappingMu, so that page faults of many
// threads proceed together and only system calls that change vmas exclude
// them. Mappables call back into MappingSpace.Invalidate with their own locks
// held, so Invalidate takes only activeMu. The memory file is a leaf: it
// never calls out while holding its locks.
package mm

import (
	"sync/atomic"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
	"github.com/vmspace/vmspace/platform"
)

// MemoryManager is an application's virtual address space.
type MemoryManager struct {
	// p is the platform whose AddressSpaces hold the application's
	// mappings. Immutable.
	p platform.Platform

	// mf is the memory file private memory is allocated from. Immutable.
	mf *pgalloc.MemoryFile

	// privateRefs counts the pmas (of this manager and every manager
	// forked from it or from which it was forked) that refer to each page
	// of private memory. The pointer is immutable; the object has its own
	// mutex.
	privateRefs *privateRefs

	// users is the number of references keeping the address space alive
	// (threads, and transient users such as /proc readers). When it drops
	// to zero, all mappings are released. Accessed atomically.
	users atomic.Int32

	// mappingMu protects the vmas and everything decided by them. It is
	// taken for writing by operations that change vmas and for reading by
	// faults and I/O.
	mappingMu rankedRWMutex[mappingRank]

	// anonVMAMu serializes faults giving vmas their anon_vma
	// (prepareAnonVMA), which hold mappingMu only for reading.
	anonVMAMu rankedMutex[anonVMARank]

	// vmas are the application's mappings. Protected by mappingMu.
	vmas vmaSet

	// layout is where mappings are placed. Protected by mappingMu.
	layout MmapLayout

	// brk is the program break's range: [brk.Start, brk.End) is the heap,
	// brk.End the current break. brk.Start == 0 until BrkSetup.
	// Protected by mappingMu.
	brk hostarch.AddrRange

	// usageAS is the total size of the vmas, the address-space usage
	// RLIMIT_AS limits (VmSize). Invariant: usageAS == vmas.Span().
	// Protected by mappingMu.
	usageAS uint64

	// peakAS is the largest usageAS has been (VmPeak). Protected by
	// mappingMu.
	peakAS uint64

	// lockedAS is the total size of vmas with an mlock mode other than
	// MLockNone (VmLck). Protected by mappingMu.
	lockedAS uint64

	// dataAS is the total size of private, writable, non-stack vmas, which
	// RLIMIT_DATA limits (VmData). Protected by mappingMu.
	dataAS uint64

	// stackAS is the total size of growsdown vmas (VmStk). Protected by
	// mappingMu.
	stackAS uint64

	// execAS is the total size of executable, non-writable, non-stack
	// vmas (VmExe). Protected by mappingMu.
	execAS uint64

	// dataSegment is the program's data segment, which counts against
	// RLIMIT_DATA with the heap. Protected by mappingMu.
	dataSegment hostarch.AddrRange

	// codeSegment is the program's text (Linux's start_code and
	// end_code), which status and statm report. Protected by mappingMu.
	codeSegment hostarch.AddrRange

	// guards are the guard regions (MADV_GUARD_INSTALL). Invariant: every
	// guard region lies within vmas. Protected by mappingMu.
	guards guardSet

	// uffdMarkers are the never-populated pages that userfaultfd write
	// protection covers (UFFD_FEATURE_WP_UNPOPULATED: uffd_wp.go). Only
	// those in vmas registered for write protection count. Protected by
	// activeMu.
	uffdMarkers guardSet

	// defMLockMode is the mlock mode new vmas get: mlockall(MCL_FUTURE)
	// sets it. Protected by mappingMu.
	defMLockMode memmap.MLockMode

	// commit is the commit accounting the accounted vmas are charged to
	// (nil: HostCommit()). Protected by mappingMu.
	commit *Commit

	// sharedAnon makes shared anonymous memory. Protected by mappingMu.
	sharedAnon SharedAnonFactory

	// limits are the process's resource limits and privileges that memory
	// system calls consult. Protected by mappingMu.
	limits Limits

	// mdwe is the process's memory-deny-write-execute state (prctl
	// PR_SET_MDWE), which mmap and mprotect consult. Protected by
	// mappingMu.
	mdwe MDWE

	// activeMu protects pmas, the AddressSpace and the RSS figures. It is
	// sharded so that concurrent readers (I/O, faults) scale.
	activeMu shardedRWMutex

	// lastRead is the pma CopyIn last read through, for reads that take
	// no lock (fastread.go). Its own atomics protect it; it is valid only
	// while activeMu.seq equals its entry's.
	lastRead pmaMemo

	// lastWrite is the pma CopyOut last wrote through, which its locked
	// path then uses without a lookup (fastread.go). As lastRead.
	lastWrite pmaMemo

	// pmas are the cached translations of the vmas. Invariant: every pma
	// lies within a vma. Protected by activeMu; changing the set of pmas
	// also requires mappingMu (read or write), so that the vmas a pma
	// belongs to cannot change meanwhile.
	pmas pmaSet

	// curRSS is the total size of the pmas (our resident set).
	// Invariant: curRSS == pmas.Span(). Protected by activeMu.
	curRSS uint64

	// maxRSS is the largest resident set (touched pages, see
	// residentLocked) seen before the resident set shrank (Linux's
	// hiwater_rss, which update_hiwater_rss raises before every unmap):
	// VmHWM is the larger of it and the present resident set
	// (updateHiwaterLocked). Protected by activeMu.
	maxRSS uint64

	// resMemo, while a reader of many pmas' residency runs
	// (withResidencyMemoLocked), holds their residency read in advance;
	// else nil. Protected by activeMu (held for writing while set).
	resMemo *residencyMemo

	// as is the platform AddressSpace while the manager is active, else
	// nil. Protected by activeMu.
	as platform.AddressSpace

	// active is the number of goroutines that have called Activate and not
	// Deactivate. Changed with activeMu held for writing; read atomically.
	active atomic.Int32

	// unmapAllOnActivate is true if the next Activate must clear the
	// AddressSpace before use, because mappings changed while it was
	// inactive and could not be unmapped then. Protected by activeMu.
	unmapAllOnActivate bool

	// captureInvalidations is true while Fork copies this manager's pmas:
	// invalidations from Mappables are then recorded in
	// capturedInvalidations and applied to the child after the copy.
	// Protected by activeMu.
	captureInvalidations bool

	// capturedInvalidations: see captureInvalidations. Protected by
	// activeMu.
	capturedInvalidations []invalidateArgs

	// faults counts HandleUserFault calls that succeeded. Accessed
	// atomically.
	faults atomic.Uint64

	// aio holds the AIO contexts; it has its own mutex.
	aio aioManager

	// metadataMu protects the metadata below.
	metadataMu rankedMutex[metadataRank]

	// argv, envv are the ranges of the initial stack holding the argument
	// and environment strings. Protected by metadataMu.
	argv, envv hostarch.AddrRange

	// auxv is the ELF auxiliary vector. Protected by metadataMu.
	auxv []AuxEntry

	// executable is the program's file identity, or nil. The manager
	// holds a reference. Protected by metadataMu.
	executable memmap.MappingIdentity

	// dumpability is the process's dumpable state (prctl PR_SET_DUMPABLE).
	// Protected by metadataMu.
	dumpability Dumpability

	// vdsoSigReturn is the address of the vDSO's signal-return trampoline,
	// or 0. Protected by metadataMu.
	vdsoSigReturn uint64
}

// invalidateArgs records one captured Invalidate call.
type invalidateArgs struct {
	ar   hostarch.AddrRange
	opts memmap.InvalidateOpts
}
