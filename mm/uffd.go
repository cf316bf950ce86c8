package mm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

// Userfaultfd: Linux's userfaultfd(2) for managed memory.
//
// A Userfaultfd is one userfaultfd context (the object behind a descriptor
// made by userfaultfd(2) or /dev/userfaultfd's USERFAULTFD_IOC_NEW) of the
// address space it was made in. Its methods are the ioctls, with Linux's
// checks and errnos in Linux's order: API (UFFDIO_API) first, without which
// every other one fails with EINVAL; Register and Unregister attach the
// context to the vmas of a range (vma.uffd, and the vma flags
// vmaUffdMissing, vmaUffdWP, vmaUffdMinor, which smaps shows as um, uw, ui);
// Copy, ZeroPage, Move, Continue and Poison fill pages of registered
// ranges; WriteProtect sets and clears the write protection of pages; Wake
// wakes the threads waiting on a range. Release is the close of its last
// descriptor.
//
// A fault in a registered range does not allocate: HandleUserFault returns
// a *UserfaultError whose Fault is a pending Userfault, and queues the
// UFFD_EVENT_PAGEFAULT message; the embedder keeps the faulting thread
// waiting until Fault.Woken and then lets it retry the access (which maps
// what the resolution installed, or faults again). A missing fault is a
// fault on a page of private anonymous memory that has none (a pma gap) in
// a vma registered for missing faults; a write-protect fault is a write to
// a page write-protected by UFFDIO_WRITEPROTECT or UFFDIO_COPY_MODE_WP (a
// pma with uffdWP) in a vma registered for them. Accesses other than a
// thread's own (I/O by the embedder, MADV_POPULATE) never wait: they fail
// with EFAULT, as Linux's do for a context made with UFFD_USER_MODE_ONLY.
// An embedder whose host kernel accesses the buffers of system calls
// itself finds with KernelUserfault where such an access would wait on a
// context made without UFFD_USER_MODE_ONLY, and raises that fault as the
// thread's own (HandleUserFault) before it lets the call run.
//
// Events (UFFD_EVENT_FORK, REMAP, REMOVE, UNMAP) are queued on the context
// when the operation that causes them happens (Fork, mremap, madvise,
// munmap, mmap over a range, brk), for the contexts whose features asked
// for them. The embedder takes messages with Messages and delivers them to
// the program; a FORK message names the child's new context.
//
// # What is not Linux's
//
//   - Faults wait only for private anonymous memory: ranges of shared
//     memory (memfds, shared anonymous memory) can be registered with
//     Linux's checks, but their faults (missing, minor) are served
//     without waiting, and Copy, ZeroPage and Continue there write
//     through the file whether or not its page cache holds the page.
//   - Event-causing operations do not wait here for the message to be
//     read, and the ioctls never fail with EAGAIN for a pending event:
//     the embedder, which delivers the messages, keeps the thread waiting
//     and fails the ioctls meanwhile (sandbox/uffd.go).
//   - Pages not mapped are write-protected by markers (uffd_wp.go), as
//     Linux's: mremap and fork carry them along where the registration
//     stays (UFFD_EVENT_REMAP, UFFD_EVENT_FORK). A fork's child does not
//     copy the pmas of memory with a file behind it: its protected pages
//     are markers there, where Linux's child has them mapped (pagemap
//     shows them swapped, not present, with the same bit 57).
//
// # Locking
//
// Userfaultfd.mu is a leaf ranked after activeMu: faults queue their
// message and waiter under mappingMu (read) and activeMu, and the
// operations that install pages wake waiters under the same locks, so a
// fault is either seen resolved or woken.

// The userfaultfd UAPI (linux/userfaultfd.h).
const (
	// UffdAPI is the only API version (uffdio_api.api).
	UffdAPI = 0xAA

	// UFFDIO_API features.
	UffdFeaturePagefaultFlagWP   = 1 << 0
	UffdFeatureEventFork         = 1 << 1
	UffdFeatureEventRemap        = 1 << 2
	UffdFeatureEventRemove       = 1 << 3
	UffdFeatureMissingHugetlbfs  = 1 << 4
	UffdFeatureMissingShmem      = 1 << 5
	UffdFeatureEventUnmap        = 1 << 6
	UffdFeatureSigbus            = 1 << 7
	UffdFeatureThreadID          = 1 << 8
	UffdFeatureMinorHugetlbfs    = 1 << 9
	UffdFeatureMinorShmem        = 1 << 10
	UffdFeatureExactAddress      = 1 << 11
	UffdFeatureWPHugetlbfsShmem  = 1 << 12
	UffdFeatureWPUnpopulated     = 1 << 13
	UffdFeaturePoison            = 1 << 14
	UffdFeatureWPAsync           = 1 << 15
	UffdFeatureMove              = 1 << 16
	UffdAPIFeatures              = 1<<17 - 1
	uffdFeatureInitialized       = 1 << 31
	UffdioRegisterModeMissing    = 1 << 0
	UffdioRegisterModeWP         = 1 << 1
	UffdioRegisterModeMinor      = 1 << 2
	UffdioCopyModeDontWake       = 1 << 0
	UffdioCopyModeWP             = 1 << 1
	UffdioZeropageModeDontWake   = 1 << 0
	UffdioWriteprotectModeWP     = 1 << 0
	UffdioWriteprotectModeDontWk = 1 << 1
	UffdioContinueModeDontWake   = 1 << 0
	UffdioContinueModeWP         = 1 << 1
	UffdioPoisonModeDontWake     = 1 << 0
	UffdioMoveModeDontWake       = 1 << 0
	UffdioMoveModeAllowSrcHoles  = 1 << 1

	// ioctl numbers (_UFFDIO_*), the bits of the ioctl masks.
	UffdioRegisterNr     = 0x00
	UffdioUnregisterNr   = 0x01
	UffdioWakeNr         = 0x02
	UffdioCopyNr         = 0x03
	UffdioZeropageNr     = 0x04
	UffdioMoveNr         = 0x05
	UffdioWriteprotectNr = 0x06
	UffdioContinueNr     = 0x07
	UffdioPoisonNr       = 0x08
	UffdioAPINr          = 0x3F

	// UffdAPIIoctls is uffdio_api.ioctls.
	UffdAPIIoctls = 1<<UffdioRegisterNr | 1<<UffdioUnregisterNr | 1<<UffdioAPINr
	// UffdAPIRangeIoctls are the range ioctls a registration allows.
	UffdAPIRangeIoctls = 1<<UffdioWakeNr | 1<<UffdioCopyNr | 1<<UffdioZeropageNr | 1<<UffdioMoveNr |
		1<<UffdioWriteprotectNr | 1<<UffdioContinueNr | 1<<UffdioPoisonNr

	// Message events.
	UffdEventPagefault = 0x12
	UffdEventFork      = 0x13
	UffdEventRemap     = 0x14
	UffdEventRemove    = 0x15
	UffdEventUnmap     = 0x16

	// Page fault message flags.
	UffdPagefaultFlagWrite = 1 << 0
	UffdPagefaultFlagWP    = 1 << 1
	UffdPagefaultFlagMinor = 1 << 2

	// UffdUserModeOnly is userfaultfd(2)'s UFFD_USER_MODE_ONLY flag.
	UffdUserModeOnly = 1

	// UffdMsgSize is sizeof(struct uffd_msg).
	UffdMsgSize = 32
)

// vmaUffdFlags are the registration flags of a vma.
const vmaUffdFlags = vmaUffdMissing | vmaUffdWP | vmaUffdMinor

// Userfaultfd is a userfaultfd context: see the comment at the top of
// uffd.go.
type Userfaultfd struct {
	// mm is the address space the context registers ranges of.
	// Immutable.
	mm *MemoryManager

	// flags are userfaultfd(2)'s flags other than O_CLOEXEC and
	// O_NONBLOCK (UffdUserModeOnly). Immutable.
	flags int

	// features are the features UFFDIO_API enabled, with
	// uffdFeatureInitialized once it succeeded (set once, by
	// compare-and-swap). Accessed atomically.
	features atomic.Uint64

	// mu protects the fields below.
	mu rankedMutex[uffdRank]

	// released is true once Release ran: registrations are gone and
	// nothing waits any more. Protected by mu.
	released bool

	// waiting are the faults not woken yet, oldest first. Protected by
	// mu.
	waiting []*Userfault

	// msgs are the messages the embedder has not taken yet, in order.
	// Protected by mu.
	msgs []UffdMsg
}

// NewUserfaultfd returns a new context of mm, as userfaultfd(2) makes with
// flags (only UffdUserModeOnly matters here; the descriptor's O_CLOEXEC and
// O_NONBLOCK are the embedder's). Other bits are EINVAL.
func NewUserfaultfd(mm *MemoryManager, flags int) (*Userfaultfd, error) {
	if flags&^(unix.O_CLOEXEC|unix.O_NONBLOCK|UffdUserModeOnly) != 0 {
		return nil, unix.EINVAL
	}
	return &Userfaultfd{mm: mm, flags: flags & UffdUserModeOnly}, nil
}

// MemoryManager returns the address space of u.
func (u *Userfaultfd) MemoryManager() *MemoryManager { return u.mm }

// Initialized reports whether UFFDIO_API succeeded on u.
func (u *Userfaultfd) Initialized() bool { return u.features.Load()&uffdFeatureInitialized != 0 }

// Features returns the features UFFDIO_API enabled.
func (u *Userfaultfd) Features() uint64 { return u.features.Load() &^ uffdFeatureInitialized }

func (u *Userfaultfd) has(feature uint64) bool { return u.features.Load()&feature != 0 }

// API is UFFDIO_API: it enables features (of UffdAPIFeatures) on u and
// returns what the kernel writes back: every feature and UffdAPIIoctls, or
// zeros on an error. EINVAL for another api, an unknown feature, or a
// second successful call; EPERM for UFFD_FEATURE_EVENT_FORK without
// CAP_SYS_PTRACE (ptraceCap).
func (u *Userfaultfd) API(api, features uint64, ptraceCap bool) (outFeatures, outIoctls uint64, err error) {
	if api != UffdAPI {
		return 0, 0, unix.EINVAL
	}
	if features&UffdFeatureEventFork != 0 && !ptraceCap {
		return 0, 0, unix.EPERM
	}
	if features&UffdFeatureWPAsync != 0 {
		features |= UffdFeatureWPUnpopulated
	}
	if features&^UffdAPIFeatures != 0 {
		return 0, 0, unix.EINVAL
	}
	if !u.features.CompareAndSwap(0, features|uffdFeatureInitialized) {
		return 0, 0, unix.EINVAL
	}
	return UffdAPIFeatures, UffdAPIIoctls, nil
}

// rangeOf is the common start of the range ioctls: EINVAL before
// UFFDIO_API, then validate_range.
func (u *Userfaultfd) rangeOf(start, length uint64) (hostarch.AddrRange, error) {
	if !u.Initialized() {
		return hostarch.AddrRange{}, unix.EINVAL
	}
	return u.mm.validateUffdRange(start, length)
}

// validateUffdRange is Linux's validate_range: start page-aligned, and
// validate_unaligned_range; else EINVAL.
func (mm *MemoryManager) validateUffdRange(start, length uint64) (hostarch.AddrRange, error) {
	if start%hostarch.PageSize != 0 {
		return hostarch.AddrRange{}, unix.EINVAL
	}
	return mm.validateUnalignedUffdRange(start, length)
}

// validateUnalignedUffdRange is Linux's validate_unaligned_range: length
// page-aligned and non-zero, the range below TASK_SIZE; else EINVAL.
func (mm *MemoryManager) validateUnalignedUffdRange(start, length uint64) (hostarch.AddrRange, error) {
	top := uint64(mm.p.MaxUserAddress())
	if length%hostarch.PageSize != 0 || length == 0 || start >= top || length > top-start {
		return hostarch.AddrRange{}, unix.EINVAL
	}
	return hostarch.AddrRange{Start: hostarch.Addr(start), End: hostarch.Addr(start + length)}, nil
}

// ShmemIdentity is implemented by the identities of files whose pages are
// shmem's (hostfile.File: memfds, shared anonymous memory, tmpfs files).
type ShmemIdentity interface {
	IsShmem() bool
}

// isShmem reports whether v maps shmem (Linux's vma_is_shmem): memfds,
// shared anonymous memory and tmpfs files (System V segments are not:
// their vm_ops are shm's).
func (v *vma) isShmem() bool {
	switch v.kind() {
	case VMAMemfd, VMASharedAnonymous:
		return true
	case VMAFile:
		si, ok := v.id.(ShmemIdentity)
		return ok && si.IsShmem()
	}
	return false
}

// canUserfault is Linux's vma_can_userfault for registration flags f.
func (v *vma) canUserfault(f vmaFlags, wpAsync bool) bool {
	if v.flags.has(vmaDontExpand) || v.pfnMap() || v.flags.has(vmaDroppable) {
		// VM_SPECIAL mappings, and droppable memory.
		return false
	}
	f &= vmaUffdFlags
	if f.has(vmaUffdMinor) && !v.isShmem() {
		return false
	}
	if wpAsync && f == vmaUffdWP {
		return true
	}
	return v.isPrivateAnon() || v.isShmem()
}

// registerFlags converts UFFDIO_REGISTER's mode to vma flags; EINVAL for
// none or an unknown one.
func registerFlags(mode uint64) (vmaFlags, error) {
	if mode == 0 || mode&^(UffdioRegisterModeMissing|UffdioRegisterModeWP|UffdioRegisterModeMinor) != 0 {
		return 0, unix.EINVAL
	}
	var f vmaFlags
	if mode&UffdioRegisterModeMissing != 0 {
		f |= vmaUffdMissing
	}
	if mode&UffdioRegisterModeWP != 0 {
		f |= vmaUffdWP
	}
	if mode&UffdioRegisterModeMinor != 0 {
		f |= vmaUffdMinor
	}
	return f, nil
}

// Register is UFFDIO_REGISTER of [start, start+length) with mode. It
// returns the range ioctls the registration allows. Errors, in Linux's
// order: EINVAL before UFFDIO_API, for a bad mode or range, when no vma
// overlaps the range, or one that cannot be registered; EPERM for a vma
// without VM_MAYWRITE; EBUSY for a vma registered with another context;
// ENOMEM when splitting would exceed the map count.
func (u *Userfaultfd) Register(ctx context.Context, start, length, mode uint64) (uint64, error) {
	if !u.Initialized() {
		return 0, unix.EINVAL
	}
	f, err := registerFlags(mode)
	if err != nil {
		return 0, err
	}
	mm := u.mm
	ar, err := mm.validateUffdRange(start, length)
	if err != nil {
		return 0, err
	}
	wpAsync := u.has(UffdFeatureWPAsync)
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	first := mm.vmas.LowerBoundSegment(ar.Start)
	if !first.Ok() || first.Start() >= ar.End {
		return 0, unix.EINVAL
	}
	for vseg := first; vseg.Ok() && vseg.Start() < ar.End; vseg = vseg.NextSegment() {
		v := vseg.ValuePtr()
		if !v.canUserfault(f, wpAsync) {
			return 0, unix.EINVAL
		}
		if !v.maxPerms.Write {
			return 0, unix.EPERM
		}
		if v.uffd != nil && v.uffd != u {
			return 0, unix.EBUSY
		}
	}
	err = mm.eachUffdVMALocked(ar, func(vseg vmaIterator, r hostarch.AddrRange) (bool, error) {
		v := vseg.ValuePtr()
		if v.uffd == u && v.flags&f == f {
			return false, nil
		}
		if !v.flags.has(vmaUffdWP) {
			// Markers left by an earlier registration (in memory
			// since unmapped and mapped again) do not count.
			mm.activeMu.Lock()
			mm.clearUffdMarkersLocked(r)
			mm.activeMu.Unlock()
		}
		if v.isShmem() && f.has(vmaUffdMissing|vmaUffdMinor) {
			// The embedder may have mapped shmem pages the program
			// never touched (vmspace run maps small file mappings at
			// once); drop the file's pmas, so that the pages fault
			// as on Linux, where a new mapping has no page table
			// entries. The file keeps the data.
			mm.Invalidate(r, memmap.InvalidateOpts{})
		}
		_, err := mm.modifyVMALocked(ctx, vseg, r, false, func(nv *vma) {
			nv.uffd = u
			nv.flags = nv.flags&^vmaUffdFlags | f
		})
		return true, err
	})
	if err != nil {
		return 0, err
	}
	ioctls := uint64(UffdAPIRangeIoctls)
	if mode&UffdioRegisterModeWP == 0 {
		ioctls &^= 1 << UffdioWriteprotectNr
	}
	if mode&UffdioRegisterModeMinor == 0 {
		ioctls &^= 1 << UffdioContinueNr
	}
	return ioctls, nil
}

// Unregister is UFFDIO_UNREGISTER of [start, start+length): the vmas there
// lose their registration (with any context: Linux does not check which)
// and their pages' write protection, and the faults waiting there are
// woken. EINVAL before UFFDIO_API, for a bad range, when no vma overlaps
// it or one that could never be registered; ENOMEM at the map count.
func (u *Userfaultfd) Unregister(ctx context.Context, start, length uint64) error {
	mm := u.mm
	ar, err := u.rangeOf(start, length)
	if err != nil {
		return err
	}
	wpAsync := u.has(UffdFeatureWPAsync)
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	first := mm.vmas.LowerBoundSegment(ar.Start)
	if !first.Ok() || first.Start() >= ar.End {
		return unix.EINVAL
	}
	for vseg := first; vseg.Ok() && vseg.Start() < ar.End; vseg = vseg.NextSegment() {
		v := vseg.ValuePtr()
		if !v.canUserfault(v.flags, wpAsync) {
			return unix.EINVAL
		}
	}
	return mm.eachUffdVMALocked(ar, func(vseg vmaIterator, r hostarch.AddrRange) (bool, error) {
		if vseg.ValuePtr().uffd == nil {
			return false, nil
		}
		return true, mm.clearUffdLocked(ctx, vseg, r)
	})
}

// eachUffdVMALocked calls visit on the part r of each vma overlapping ar,
// in order, until it fails; visit reports whether it changed the vmas
// (which it may split and merge). Preconditions: mappingMu held for
// writing.
func (mm *MemoryManager) eachUffdVMALocked(ar hostarch.AddrRange, visit func(vseg vmaIterator, r hostarch.AddrRange) (bool, error)) error {
	for a := ar.Start; a < ar.End; {
		vseg := mm.vmas.LowerBoundSegment(a)
		if !vseg.Ok() || vseg.Start() >= ar.End {
			return nil
		}
		r := hostarch.AddrRange(vseg.Range()).Intersect(ar)
		end := vseg.End()
		changed, err := visit(vseg, r)
		if err != nil {
			return err
		}
		if changed {
			end = r.End
		}
		a = end
	}
	return nil
}

// clearUffdLocked removes the registration of the part r of vseg's vma
// (Linux's userfaultfd_clear_vma), waking the faults waiting in r.
// Preconditions: mappingMu held for writing; vseg's vma is registered.
func (mm *MemoryManager) clearUffdLocked(ctx context.Context, vseg vmaIterator, r hostarch.AddrRange) error {
	v := vseg.ValuePtr()
	u := v.uffd
	if v.flags.has(vmaUffdMissing) {
		u.wake(r)
	}
	if v.flags.has(vmaUffdWP) {
		mm.activeMu.Lock()
		mm.setUffdWPLocked(vseg, r, false)
		mm.clearUffdMarkersLocked(r)
		mm.activeMu.Unlock()
	}
	_, err := mm.modifyVMALocked(ctx, vseg, r, false, func(nv *vma) {
		nv.uffd = nil
		nv.flags &^= vmaUffdFlags
	})
	return err
}

// Release is the close of u's last descriptor (Linux's
// userfaultfd_release): every vma registered with u loses its registration
// and its pages' write protection, and every waiting fault is woken.
// Later faults no longer involve u. Release may be called more than once.
func (u *Userfaultfd) Release(ctx context.Context) {
	u.mu.Lock()
	if u.released {
		u.mu.Unlock()
		return
	}
	u.released = true
	u.mu.Unlock()
	mm := u.mm
	mm.mappingMu.Lock()
	for a := hostarch.Addr(0); ; {
		vseg := mm.vmas.LowerBoundSegment(a)
		if !vseg.Ok() {
			break
		}
		if vseg.ValuePtr().uffd != u {
			a = vseg.End()
			continue
		}
		r := hostarch.AddrRange(vseg.Range())
		// Splitting is not needed (the whole vma), so this cannot fail.
		_ = mm.clearUffdLocked(ctx, vseg, r)
		a = r.End
	}
	mm.mappingMu.Unlock()
	u.wake(hostarch.AddrRange{})
	u.mu.Lock()
	u.msgs = nil
	u.mu.Unlock()
}

// Released reports whether Release ran.
func (u *Userfaultfd) Released() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.released
}

// Wake is UFFDIO_WAKE: it wakes the faults waiting in [start,
// start+length). EINVAL before UFFDIO_API or for a bad range.
func (u *Userfaultfd) Wake(start, length uint64) error {
	ar, err := u.rangeOf(start, length)
	if err != nil {
		return err
	}
	u.wake(ar)
	return nil
}

// wake wakes the waiting faults whose address lies in ar (all if ar is
// empty).
func (u *Userfaultfd) wake(ar hostarch.AddrRange) {
	u.mu.Lock()
	defer u.mu.Unlock()
	kept := u.waiting[:0]
	for _, f := range u.waiting {
		if ar.Length() == 0 || ar.Contains(f.addr) {
			f.woken.Store(true)
			continue
		}
		kept = append(kept, f)
	}
	clear(u.waiting[len(kept):])
	u.waiting = kept
}

// Waiting returns how many faults wait on u (pending and read, /proc's
// fdinfo "total").
func (u *Userfaultfd) Waiting() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.waiting)
}

// Messages returns the messages queued on u since the last call, in order,
// and forgets them.
func (u *Userfaultfd) Messages() []UffdMsg {
	u.mu.Lock()
	defer u.mu.Unlock()
	m := u.msgs
	u.msgs = nil
	return m
}

// HasMessages reports whether messages are queued on u.
func (u *Userfaultfd) HasMessages() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.msgs) > 0
}

// queue appends m to u's messages, unless u is released.
func (u *Userfaultfd) queue(m UffdMsg) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.released {
		u.msgs = append(u.msgs, m)
	}
}

// UffdMsg is one struct uffd_msg. Which fields matter depends on Event.
type UffdMsg struct {
	// Event is the UFFD_EVENT_*.
	Event uint8
	// Flags, Address and PTID describe a page fault.
	Flags, Address uint64
	PTID           uint32
	// Child is the child's context of a fork event; the embedder gives
	// it a descriptor, whose number the message carries.
	Child *Userfaultfd
	// From, To and Len describe a remap event.
	From, To, Len uint64
	// Start and End describe a remove or unmap event.
	Start, End uint64
}

// Marshal returns m as the kernel writes it; ufd is the descriptor number
// of a fork event's child context.
func (m *UffdMsg) Marshal(ufd int32) [UffdMsgSize]byte {
	var b [UffdMsgSize]byte
	b[0] = m.Event
	le := binary.LittleEndian
	switch m.Event {
	case UffdEventPagefault:
		le.PutUint64(b[8:], m.Flags)
		le.PutUint64(b[16:], m.Address)
		le.PutUint32(b[24:], m.PTID)
	case UffdEventFork:
		le.PutUint32(b[8:], uint32(ufd))
	case UffdEventRemap:
		le.PutUint64(b[8:], m.From)
		le.PutUint64(b[16:], m.To)
		le.PutUint64(b[24:], m.Len)
	case UffdEventRemove, UffdEventUnmap:
		le.PutUint64(b[8:], m.Start)
		le.PutUint64(b[16:], m.End)
	}
	return b
}

// Userfault is a fault waiting on a userfaultfd.
type Userfault struct {
	// u is the context the fault waits on. Immutable.
	u *Userfaultfd
	// addr is the address its message reports, which wakes compare.
	// Immutable.
	addr hostarch.Addr
	// woken is set when a resolution or wake covers addr (or the context
	// is released). Accessed atomically.
	woken atomic.Bool
}

// Woken reports whether the faulting thread may retry its access.
func (f *Userfault) Woken() bool { return f.woken.Load() }

// Context returns the context the fault waits on.
func (f *Userfault) Context() *Userfaultfd { return f.u }

// Cancel stops f waiting (its thread is gone).
func (f *Userfault) Cancel() {
	u := f.u
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, g := range u.waiting {
		if g == f {
			u.waiting = append(u.waiting[:i], u.waiting[i+1:]...)
			return
		}
	}
}

// UserfaultError reports an access to a page that its vma's userfaultfd
// must resolve first. It unwraps to EFAULT, what a system call gets for
// such a buffer.
type UserfaultError struct {
	// Addr is the accessed address.
	Addr hostarch.Addr
	// Flags are the message's reason flags: UffdPagefaultFlagWP for a
	// write-protect fault, UffdPagefaultFlagMinor for a minor one, none
	// for a missing one, and UffdPagefaultFlagWrite for a write.
	Flags uint64
	// Fault is the waiting fault, set only by HandleUserFault (a
	// thread's own access).
	Fault *Userfault
}

// Error implements error.
func (e *UserfaultError) Error() string {
	return fmt.Sprintf("userfault at %v (flags %#x)", e.Addr, e.Flags)
}

// Unwrap returns EFAULT.
func (e *UserfaultError) Unwrap() error { return unix.EFAULT }

var errPoisoned = errors.New("poisoned page (UFFDIO_POISON)")

// userfaultCheckLocked decides whether an access at (page addr, in vseg's
// vma, whose pma is pseg if Ok) is a userfault or a poisoned page; a
// write-protect fault in a context with UFFD_FEATURE_WP_ASYNC is resolved
// on the spot (the page loses its protection). A missing fault is an
// access to a page without a pma, of private anonymous memory or, in shmem,
// one its file does not hold (not Resident); a minor fault one to a page
// without a pma that the shmem file holds. Fills (ctx from fillCtx) never
// fault. Preconditions: mappingMu held (read); activeMu held for writing.
func (mm *MemoryManager) userfaultCheckLocked(ctx context.Context, vseg vmaIterator, pseg pmaIterator, addr hostarch.Addr, at hostarch.AccessType) error {
	v := vseg.ValuePtr()
	var flags uint64
	if at.Write {
		flags = UffdPagefaultFlagWrite
	}
	if pseg.Ok() {
		p := pseg.ValuePtr()
		if p.poison {
			return &AccessError{Addr: addr, Signal: unix.SIGBUS, Cause: errPoisoned}
		}
		if p.uffdWP && at.Write && v.flags.has(vmaUffdWP) {
			if v.uffd.has(UffdFeatureWPAsync) {
				pg := addr.RoundDown()
				mm.setUffdWPLocked(vseg, hostarch.AddrRange{Start: pg, End: pg + hostarch.PageSize}, false)
				return nil
			}
			return &UserfaultError{Addr: addr, Flags: flags | UffdPagefaultFlagWP}
		}
		return nil
	}
	if ctx.Value(fillKey{}) != nil {
		return nil
	}
	if v.isPrivateAnon() {
		if v.flags.has(vmaUffdMissing) {
			return &UserfaultError{Addr: addr, Flags: flags}
		}
		if mm.uffdMarkedLocked(vseg, addr) {
			// WP_UNPOPULATED (uffd_wp.go).
			return mm.uffdMarkerFaultLocked(vseg, addr, at)
		}
		return nil
	}
	if v.flags.has(vmaUffdMissing | vmaUffdMinor) {
		in, ok := shmemHolds(vseg, addr)
		switch {
		case !ok:
		case !in && v.flags.has(vmaUffdMissing):
			return &UserfaultError{Addr: addr, Flags: flags}
		case in && v.flags.has(vmaUffdMinor):
			return &UserfaultError{Addr: addr, Flags: flags | UffdPagefaultFlagMinor}
		}
	}
	if mm.uffdMarkedLocked(vseg, addr) {
		return mm.uffdFileMarkerFaultLocked(ctx, vseg, addr, at)
	}
	return nil
}

// shmemHolds reports whether the shmem file mapped by vseg's vma holds the
// page at addr (in, and ok if that can be told).
func shmemHolds(vseg vmaIterator, addr hostarch.Addr) (in, ok bool) {
	v := vseg.ValuePtr()
	res, isRes := v.mappable.(Residency)
	if !isRes || !v.isShmem() {
		return false, false
	}
	var out [1]byte
	pg := addr.RoundDown()
	res.Resident(mappableRangeOf(vseg, hostarch.AddrRange{Start: pg, End: pg + hostarch.PageSize}), out[:])
	return out[0] != 0, true
}

// fillKey marks the context of a fill's own page access.
type fillKey struct{}

// faultThreadKey is the context key of WithFaultingThread.
type faultThreadKey struct{}

// WithFaultingThread returns ctx saying that the thread faulting is tid
// (in the process's PID namespace): UFFD_FEATURE_THREAD_ID reports it.
func WithFaultingThread(ctx context.Context, tid int32) context.Context {
	return context.WithValue(ctx, faultThreadKey{}, tid)
}

// userfaultLocked makes uerr, found by a thread's access at addr in vseg's
// vma, a waiting fault with its message queued (Linux's handle_userfault),
// or the SIGBUS of UFFD_FEATURE_SIGBUS. A released context lets the access
// retry at once. Preconditions: mappingMu held (read); activeMu held for
// writing.
func (mm *MemoryManager) userfaultLocked(ctx context.Context, vseg vmaIterator, addr hostarch.Addr, uerr *UserfaultError) error {
	u := vseg.ValuePtr().uffd
	if u.has(UffdFeatureSigbus) {
		return &AccessError{Addr: addr, Signal: unix.SIGBUS, Cause: uerr}
	}
	msgAddr := addr.RoundDown()
	if u.has(UffdFeatureExactAddress) {
		msgAddr = addr
	}
	f := &Userfault{u: u, addr: msgAddr}
	m := UffdMsg{Event: UffdEventPagefault, Flags: uerr.Flags, Address: uint64(msgAddr)}
	if tid, ok := ctx.Value(faultThreadKey{}).(int32); ok && u.has(UffdFeatureThreadID) {
		m.PTID = uint32(tid)
	}
	u.mu.Lock()
	if u.released {
		f.woken.Store(true)
	} else {
		u.waiting = append(u.waiting, f)
		u.msgs = append(u.msgs, m)
	}
	u.mu.Unlock()
	uerr.Fault = f
	return uerr
}

// setUffdWPLocked sets (or clears) the userfaultfd write protection of the
// pages in r, a part of vseg's vma, that have pmas, and brings their
// permissions and the AddressSpace in line. In private anonymous memory
// whose never-populated pages are not protected (no
// UFFD_FEATURE_WP_UNPOPULATED), only the pages the program touched are:
// a pma may hold more pages than the program populated on Linux.
// Preconditions: mappingMu held; activeMu held for writing.
func (mm *MemoryManager) setUffdWPLocked(vseg vmaIterator, r hostarch.AddrRange, wp bool) {
	v := vseg.ValuePtr()
	if !wp || !v.isPrivateAnon() || v.usesMarkers() {
		mm.setUffdWPRangeLocked(vseg, r, wp)
		return
	}
	var touched []hostarch.AddrRange
	for pseg := mm.pmas.LowerBoundSegment(r.Start); pseg.Ok() && pseg.Start() < r.End; pseg = pseg.NextSegment() {
		touched = append(touched, mm.residentRunsLocked(pseg, hostarch.AddrRange(pseg.Range()).Intersect(r))...)
	}
	for _, tr := range touched {
		mm.setUffdWPRangeLocked(vseg, tr, true)
	}
}

// setUffdWPRangeLocked is setUffdWPLocked for every page of r that has a
// pma.
func (mm *MemoryManager) setUffdWPRangeLocked(vseg vmaIterator, r hostarch.AddrRange, wp bool) {
	v := vseg.ValuePtr()
	reduced := false
	for pseg := mm.pmas.LowerBoundSegment(r.Start); pseg.Ok() && pseg.Start() < r.End; pseg = pseg.NextSegment() {
		if pseg.ValuePtr().uffdWP == wp || pseg.ValuePtr().poison {
			continue
		}
		pseg = mm.pmas.Isolate(pseg, addrSegRange(r))
		p := pseg.ValuePtr()
		p.uffdWP = wp
		if wp {
			if p.effectivePerms.Write {
				p.effectivePerms.Write = false
				reduced = true
			}
		} else {
			p.effectivePerms = v.pmaPerms(p.translatePerms, p.needCOW, p.private)
		}
	}
	if reduced {
		mm.unmapASLocked(r)
	}
	mm.pmas.MergeRange(addrSegRange(r))
	mm.pmas.MergeAdjacent(addrSegRange(r))
}

// uffdPerms returns the permissions a pma may be mapped with given at,
// what its vma grants: without Write while userfaultfd write-protects it,
// nothing for a poison marker.
func (p *pma) uffdPerms(at hostarch.AccessType) hostarch.AccessType {
	if p.poison {
		return hostarch.NoAccess
	}
	if p.uffdWP {
		at.Write = false
	}
	return at
}
