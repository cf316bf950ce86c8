package mm

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/segment"
	"golang.org/x/sys/unix"
)

// vma is one virtual memory area: a range of addresses the application
// mapped, with uniform attributes. A vma's range is its key in
// MemoryManager.vmas; all fields are protected by mappingMu (the vma set's
// lock).
//
// The fields are ordered to leave no padding but the byte after
// anonChained: a vma is 104 bytes, so a leaf of the vma set (16 values
// inline, segment's leafCap) fits the Go allocator's 2048-byte size class
// rather than 2304 (TestSetValueSizes). Keep it so when adding a field, or say
// what it costs a vma.
type vma struct {
	// mappable is what the vma maps, or nil for private anonymous memory.
	mappable memmap.Mappable

	// off is the offset into mappable of the vma's start. For private
	// anonymous memory, it is the address the memory had when first mapped
	// (Linux's anonymous vm_pgoff, in bytes), which mremap preserves; it
	// decides which neighbours a vma can merge with.
	off uint64

	// realPerms are the permissions the application asked for (mmap,
	// mprotect); the hardware grants realPerms.Effective().
	realPerms hostarch.AccessType

	// maxPerms bound realPerms: mprotect to more is EACCES.
	maxPerms hostarch.AccessType

	// anonChained reports that the vma's anon_vma_chain is not singular:
	// it was inherited by fork from a vma that had an anon_vma, so its
	// pages may still be shared with ("uncowed") parents, and Linux never
	// lets it merge with a vma that has no anon_vma. Protected by
	// mappingMu.
	anonChained bool

	// flags holds the boolean attributes (vmaFlags bits).
	flags vmaFlags

	// numaPolicy is the mbind(2) policy (MPOL_*).
	numaPolicy int32

	// mlockMode is the vma's mlock state.
	mlockMode memmap.MLockMode

	// numaNodemask is the mbind(2) node mask (see numaPolicy).
	numaNodemask uint64

	// id names the mapping in /proc/PID/maps; the vma holds a reference.
	// nil for anonymous memory.
	id memmap.MappingIdentity

	// anonVMA is the identity of the vma's anon_vma (Linux's
	// vma->anon_vma), 0 while it has none. A vma gets one when a private
	// page of it is first written, or (Limits.NoZeroPage) when private
	// anonymous memory of it is first faulted in at all; it reuses an
	// adjacent compatible vma's (prepareAnonVMA). Only then does fork copy
	// the vma's pages; until then private pages allocated by reads are
	// mapped without write, like Linux's zero page, so that the first write
	// comes through a fault and prepares it, as does a fault below a
	// growsdown vma, even one refused (growStackLocked). Splits and mremap
	// keep it, but MREMAP_DONTUNMAP of a whole vma drops the old vma's
	// (dontUnmapCompleteLocked); vmas with different ones never merge
	// (Merge). Set atomically by
	// faults, which hold mappingMu only for reading, under anonVMAMu;
	// read atomically, or plainly with mappingMu held for writing.
	anonVMA uint64

	// uffd is the userfaultfd context the vma is registered with (Linux's
	// vm_userfaultfd_ctx), nil if none; flags then has at least one of
	// vmaUffdMissing, vmaUffdWP and vmaUffdMinor (uffd.go).
	uffd *Userfaultfd

	// name is a special mapping's name ("[heap]", "[vdso]", ...) when id is
	// nil, or the anonymous name set with PR_SET_VMA_ANON_NAME when
	// flags has vmaAnonName.
	name string
}

// vmaFlags are a vma's boolean attributes.
type vmaFlags uint32

const (
	// vmaPrivate: copy-on-write mapping (MAP_PRIVATE).
	vmaPrivate vmaFlags = 1 << iota
	// vmaGrowsDown: grows down on faults below (MAP_GROWSDOWN), VmFlags gd.
	vmaGrowsDown
	// vmaDontFork: not inherited by fork (MADV_DONTFORK), VmFlags dc.
	vmaDontFork
	// vmaWipeOnFork: zero-filled in the child (MADV_WIPEONFORK), wf.
	vmaWipeOnFork
	// vmaDontDump: excluded from core dumps (MADV_DONTDUMP), dd.
	vmaDontDump
	// vmaHugePage: MADV_HUGEPAGE, hg.
	vmaHugePage
	// vmaNoHugePage: MADV_NOHUGEPAGE or MAP_STACK, nh.
	vmaNoHugePage
	// vmaSealed: mseal(2)ed, sl.
	vmaSealed
	// vmaSeqRead: MADV_SEQUENTIAL, sr.
	vmaSeqRead
	// vmaRandRead: MADV_RANDOM, rr.
	vmaRandRead
	// vmaMergeable: MADV_MERGEABLE, mg.
	vmaMergeable
	// vmaAnonName: name is an anonymous name ([anon:NAME]).
	vmaAnonName
	// vmaDontExpand: mremap may not grow it (special mappings).
	vmaDontExpand
	// vmaShm: a System V shm attachment (shmdt finds it).
	vmaShm
	// vmaAnonShared: shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS),
	// which can be named like private anonymous memory.
	vmaAnonShared
	// vmaStackMain: the initial thread's stack, named [stack].
	vmaStackMain
	// vmaNoReserve: MAP_NORESERVE (VmFlags nr); such a vma does not merge
	// with an accounted one.
	vmaNoReserve
	// vmaZeroFile: private /dev/zero, anonymous memory that Linux keeps as
	// a mapping of the file (vm_file set): MADV_WIPEONFORK refuses it,
	// MADV_REMOVE finds no shared mapping, and it never merges with plain
	// anonymous vmas.
	vmaZeroFile
	// vmaAccount: the vma's pages are committed (Linux's VM_ACCOUNT,
	// VmFlags ac): private writable when made (or made writable by
	// mprotect), unless MAP_NORESERVE exempted it.
	vmaAccount
	// vmaDroppable: MAP_DROPPABLE (VmFlags dp): private anonymous memory
	// that is never locked, and keeps MADV_WIPEONFORK and MADV_DONTDUMP.
	// Linux may drop its pages under memory pressure; vmspace keeps them
	// (which Linux also may).
	vmaDroppable
	// vmaUffdMissing, vmaUffdWP, vmaUffdMinor: registered with uffd for
	// missing, write-protect and minor faults (VmFlags um, uw, ui).
	vmaUffdMissing
	vmaUffdWP
	vmaUffdMinor
	// vmaMaybeGuard: MADV_GUARD_INSTALL was used in the vma (Linux's
	// VM_MAYBE_GUARD, VmFlags gu). Sticky: merges ignore it and keep it
	// if either side has it.
	vmaMaybeGuard
)

// vmaUnlockable are the flags of vmas that mlock and mlockall leave
// unlocked (Linux's mlock_fixup skips special and droppable vmas).
const vmaUnlockable = vmaDontExpand | vmaDroppable

// has reports whether f has any of the flags b.
func (f vmaFlags) has(b vmaFlags) bool { return f&b != 0 }

func (v *vma) private() bool   { return v.flags.has(vmaPrivate) }
func (v *vma) growsDown() bool { return v.flags.has(vmaGrowsDown) }

// effectivePerms returns the access the hardware grants.
func (v *vma) effectivePerms() hostarch.AccessType { return v.realPerms.Effective() }

// written reports whether v has an anon_vma: a private page of it has
// been written (or, with Limits.NoZeroPage, faulted in).
func (v *vma) written() bool { return atomic.LoadUint64(&v.anonVMA) != 0 }

// lastAnonVMA is the last anon_vma identity handed out. Identities are
// compared only between the vmas of one manager; a single counter keeps
// them distinct across managers and restores. Accessed atomically.
var lastAnonVMA atomic.Uint64

// newAnonVMA returns a fresh anon_vma identity.
func newAnonVMA() uint64 { return lastAnonVMA.Add(1) }

// noteAnonVMA makes future identities larger than id (restore).
func noteAnonVMA(id uint64) {
	for {
		cur := lastAnonVMA.Load()
		if cur >= id || lastAnonVMA.CompareAndSwap(cur, id) {
			return
		}
	}
}

// prepareAnonVMA gives the vma at vseg an anon_vma if it has none, like
// Linux's anon_vma_prepare: the next vma's, else the previous one's, when
// that neighbour is compatible (reusableAnonVMA), else a fresh one.
// Preconditions: mappingMu held (for reading suffices).
func (mm *MemoryManager) prepareAnonVMA(vseg vmaIterator) {
	v := vseg.ValuePtr()
	if v.written() {
		return
	}
	mm.anonVMAMu.Lock()
	defer mm.anonVMAMu.Unlock()
	if v.written() {
		return
	}
	id := uint64(0)
	if next := vseg.NextSegment(); next.Ok() {
		id = reusableAnonVMA(next, vseg, next)
	}
	if prev := vseg.PrevSegment(); id == 0 && prev.Ok() {
		id = reusableAnonVMA(prev, prev, vseg)
	}
	if id == 0 {
		id = newAnonVMA()
	}
	atomic.StoreUint64(&v.anonVMA, id)
}

// reusableAnonVMA returns old's anon_vma if a (below) and b (above) are
// compatible and old's anon_vma_chain is singular, else 0 (Linux's
// reusable_anon_vma and anon_vma_compatible: adjacent, the same file and
// contiguous offsets, the same NUMA policy, and the same flags but for
// the access ones).
func reusableAnonVMA(old, a, b vmaIterator) uint64 {
	av, bv := a.ValuePtr(), b.ValuePtr()
	if a.End() != b.Start() ||
		av.mappable != bv.mappable ||
		av.id != bv.id ||
		av.off+uint64(a.Range().Length()) != bv.off ||
		av.numaPolicy != bv.numaPolicy ||
		av.numaNodemask != bv.numaNodemask ||
		av.flags&^vmaMaybeGuard != bv.flags&^vmaMaybeGuard ||
		av.maxPerms != bv.maxPerms ||
		av.mlockMode != bv.mlockMode {
		return 0
	}
	ov := old.ValuePtr()
	if ov.anonChained {
		return 0
	}
	return atomic.LoadUint64(&ov.anonVMA)
}

// mergeableAnonVMA reports whether vmas with anon_vmas a1 and a2 (chains
// c1, c2) may merge, like Linux's is_mergeable_anon_vma: the same
// anon_vma, or none on one side and a singular chain on the other.
func mergeableAnonVMA(a1 uint64, c1 bool, a2 uint64, c2 bool) bool {
	switch {
	case a1 == 0 && a2 == 0:
		return true
	case a1 == 0:
		return !c2
	case a2 == 0:
		return !c1
	}
	return a1 == a2
}

// pmaPerms returns the permissions a pma with translation permissions tp
// gets in v: the vma's effective permissions within tp, without write
// while it needs copy-on-write, or while it is private anonymous memory of
// a vma never written (a read maps it like Linux's zero page).
func (v *vma) pmaPerms(tp hostarch.AccessType, needCOW, private bool) hostarch.AccessType {
	at := v.effectivePerms().Intersect(tp)
	if needCOW || (private && v.mappable == nil && !v.written()) {
		at.Write = false
	}
	return at
}

// VMAKind is what a vma maps, as core dumps and /proc/PID/maps tell
// mappings apart.
type VMAKind int

const (
	// VMAAnonymous is private anonymous memory: the heap, stacks,
	// MAP_PRIVATE|MAP_ANONYMOUS and private mappings of /dev/zero.
	VMAAnonymous VMAKind = iota
	// VMAFile is a mapping of a file's contents (private or shared).
	VMAFile
	// VMAMemfd is a mapping of a memfd.
	VMAMemfd
	// VMASharedAnonymous is shared anonymous memory
	// (MAP_SHARED|MAP_ANONYMOUS, shared /dev/zero).
	VMASharedAnonymous
	// VMASysVShm is a System V shared memory attachment (shmat).
	VMASysVShm
	// VMAAIORing is an AIO context's ring (io_setup).
	VMAAIORing
	// VMASpecial is a special mapping without a file, like [vdso].
	VMASpecial
)

// String returns k's name.
func (k VMAKind) String() string {
	switch k {
	case VMAAnonymous:
		return "anonymous"
	case VMAFile:
		return "file"
	case VMAMemfd:
		return "memfd"
	case VMASharedAnonymous:
		return "shared anonymous"
	case VMASysVShm:
		return "System V shm"
	case VMAAIORing:
		return "AIO ring"
	case VMASpecial:
		return "special"
	}
	return fmt.Sprintf("VMAKind(%d)", int(k))
}

// Shmem reports whether k is memory with no file contents behind it
// (Linux's shmem, the AIO ring's pages, special mappings): pages never
// written read as zeros.
func (k VMAKind) Shmem() bool { return k != VMAAnonymous && k != VMAFile }

// kind returns what v maps.
func (v *vma) kind() VMAKind {
	if v.mappable == nil {
		return VMAAnonymous
	}
	if sm, ok := v.mappable.(*SpecialMappable); ok {
		if sm.aioRing {
			return VMAAIORing
		}
		return VMASpecial
	}
	switch {
	case v.flags.has(vmaShm):
		return VMASysVShm
	case v.flags.has(vmaAnonShared):
		return VMASharedAnonymous
	case v.id == nil:
		// A Mappable without an identity maps no file.
		return VMASpecial
	}
	switch memmap.KindOf(v.id) {
	case memmap.KindMemfd:
		return VMAMemfd
	case memmap.KindSharedAnon:
		return VMASharedAnonymous
	case memmap.KindSysVShm:
		return VMASysVShm
	}
	return VMAFile
}

// isPrivateAnon reports whether v is private anonymous memory.
func (v *vma) isPrivateAnon() bool { return v.mappable == nil }

// canWriteMappable reports whether writes through v reach its
// Mappable (a shared writable mapping).
func (v *vma) canWriteMappable() bool {
	return !v.private() && v.maxPerms.Write
}

// isData reports whether v counts toward VmData and RLIMIT_DATA: private,
// writable and not a stack (Linux's is_data_mapping).
func (v *vma) isData() bool {
	return v.realPerms.Write && v.private() && !v.growsDown()
}

// isExec reports whether v counts toward VmExe (executable, not writable,
// not a stack).
func (v *vma) isExec() bool {
	return v.realPerms.Execute && !v.realPerms.Write && !v.growsDown()
}

// locked reports whether v is mlocked.
func (v *vma) locked() bool { return v.mlockMode != memmap.MLockNone }

type vmaSetFunctions struct{}

type (
	vmaSet         = segment.Set[hostarch.Addr, vma, vmaSetFunctions]
	vmaIterator    = segment.Iterator[hostarch.Addr, vma, vmaSetFunctions]
	vmaGapIterator = segment.GapIterator[hostarch.Addr, vma, vmaSetFunctions]
	addrSegRange   = segment.Range[hostarch.Addr]
)

func (vmaSetFunctions) MinKey() hostarch.Addr { return 0 }
func (vmaSetFunctions) MaxKey() hostarch.Addr { return ^hostarch.Addr(0) }
func (vmaSetFunctions) ClearValue(v *vma) {
	// References are dropped by the code that removes vmas (it has a
	// context); ClearValue only forgets them.
	*v = vma{}
}

// Merge merges two adjacent vmas when nothing observable differs: the same
// attributes, and contiguous offsets into the same Mappable (or, for
// anonymous memory, contiguous anonymous offsets).
func (vmaSetFunctions) Merge(r1 addrSegRange, v1 vma, r2 addrSegRange, v2 vma) (vma, bool) {
	if !mergeableAnonVMA(v1.anonVMA, v1.anonChained, v2.anonVMA, v2.anonChained) {
		return vma{}, false
	}
	if v1.anonVMA == 0 {
		v1.anonVMA, v1.anonChained = v2.anonVMA, v2.anonChained
	} else {
		v1.anonChained = v1.anonChained || v2.anonChained
	}
	if v1.mappable != v2.mappable ||
		v1.off+uint64(r1.Length()) != v2.off ||
		v1.realPerms != v2.realPerms ||
		v1.maxPerms != v2.maxPerms ||
		v1.flags&^vmaMaybeGuard != v2.flags&^vmaMaybeGuard ||
		v1.mlockMode != v2.mlockMode ||
		v1.numaPolicy != v2.numaPolicy ||
		v1.numaNodemask != v2.numaNodemask ||
		v1.id != v2.id ||
		v1.uffd != v2.uffd ||
		v1.name != v2.name {
		return vma{}, false
	}
	v1.flags |= v2.flags & vmaMaybeGuard
	if v2.id != nil {
		// The merged vma keeps v1's reference; drop v2's.
		v2.id.DecRef(context.Background())
	}
	return v1, true
}

// Split splits a vma; the second half takes its own reference on id.
func (vmaSetFunctions) Split(r addrSegRange, v vma, split hostarch.Addr) (vma, vma) {
	v2 := v
	v2.off += uint64(split - r.Start)
	if v2.id != nil {
		v2.id.IncRef()
	}
	return v, v2
}

// mappableRangeOf returns the Mappable range that ar maps in vseg.
func mappableRangeOf(vseg vmaIterator, ar hostarch.AddrRange) memmap.MappableRange {
	v := vseg.ValuePtr()
	start := v.off + uint64(ar.Start-vseg.Start())
	return memmap.MappableRange{Start: start, End: start + ar.Length()}
}

// accountVMA adds (sign +1) or removes (sign -1) v's size of length bytes
// from the manager's usage figures. Preconditions: mappingMu held for
// writing.
func (mm *MemoryManager) accountVMA(v *vma, length uint64, sign int) {
	mm.accountVMAUsage(v, length, sign)
	if v.flags.has(vmaAccount) {
		mm.commitLocked().add(length>>hostarch.PageShift, sign)
	}
}

// accountVMAUsage is accountVMA without the commitment (which the caller
// makes). Preconditions: mappingMu held for writing.
func (mm *MemoryManager) accountVMAUsage(v *vma, length uint64, sign int) {
	d := length
	add := func(x *uint64) {
		if sign > 0 {
			*x += d
		} else {
			*x -= d
		}
	}
	add(&mm.usageAS)
	if v.locked() {
		add(&mm.lockedAS)
	}
	if v.isData() {
		add(&mm.dataAS)
	}
	if v.growsDown() {
		add(&mm.stackAS)
	}
	if v.isExec() {
		add(&mm.execAS)
	}
	if mm.usageAS > mm.peakAS {
		mm.peakAS = mm.usageAS
	}
}

// setVMAValueLocked replaces vseg's value by nv, keeping the accounting
// true. Preconditions: mappingMu held for writing.
func (mm *MemoryManager) setVMAValueLocked(vseg vmaIterator, nv vma) {
	if ov := vseg.ValuePtr(); ov.locked() != nv.locked() || ov.isData() != nv.isData() ||
		ov.growsDown() != nv.growsDown() || ov.isExec() != nv.isExec() || ov.flags.has(vmaAccount) != nv.flags.has(vmaAccount) {
		l := uint64(vseg.Range().Length())
		mm.accountVMAUsage(ov, l, -1)
		mm.accountVMAUsage(&nv, l, +1)
		// The commitment changes only with vmaAccount (not with the
		// usage counters: mprotect of an accounted vma keeps it).
		if oa := ov.flags.has(vmaAccount); oa != nv.flags.has(vmaAccount) {
			sign := +1
			if oa {
				sign = -1
			}
			mm.commitLocked().add(l>>hostarch.PageShift, sign)
		}
	}
	vseg.SetValue(nv)
}

// removeVMAsLocked removes all vmas in ar (splitting those that straddle
// its bounds) and their pmas, and returns the gap left. Preconditions:
// mappingMu held for writing; ar is page-aligned; the caller has checked
// the map count and seals.
func (mm *MemoryManager) removeVMAsLocked(ctx context.Context, ar hostarch.AddrRange) vmaGapIterator {
	vseg, vgap := mm.vmas.Find(ar.Start)
	if vgap.Ok() {
		vseg = vgap.NextSegment()
	}
	if !vseg.Ok() || vseg.Start() >= ar.End {
		return mm.vmas.FindGap(ar.Start)
	}
	mm.removePMAsIfAnyLocked(ctx, ar)
	mm.guards.RemoveRange(segment.Range[hostarch.Addr](ar))
	for vseg.Ok() && vseg.Start() < ar.End {
		vseg = mm.vmas.Isolate(vseg, addrSegRange(ar))
		vr := hostarch.AddrRange(vseg.Range())
		v := vseg.ValuePtr()
		mm.accountVMA(v, vr.Length(), -1)
		if v.mappable != nil {
			v.mappable.RemoveMapping(ctx, mm, vr, v.off, v.canWriteMappable())
		}
		if v.id != nil {
			v.id.DecRef(ctx)
		}
		vgap = mm.vmas.Remove(vseg)
		vseg = vgap.NextSegment()
	}
	return vgap
}

// removePMAsIfAnyLocked removes the pmas in ar, taking activeMu for
// writing only if there are any: no pma can appear meanwhile, because
// making pmas needs mappingMu, which the caller holds for writing.
// Preconditions: mappingMu held for writing.
func (mm *MemoryManager) removePMAsIfAnyLocked(ctx context.Context, ar hostarch.AddrRange) {
	rt := mm.activeMu.RLock()
	pseg := mm.pmas.LowerBoundSegment(ar.Start)
	any := pseg.Ok() && pseg.Start() < ar.End
	mm.activeMu.RUnlock(rt)
	if !any {
		return
	}
	mm.activeMu.Lock()
	mm.removePMAsLocked(ctx, ar)
	mm.activeMu.Unlock()
}

// removeAllVMAsLocked removes every vma. Preconditions: mappingMu held for
// writing; no pmas remain.
func (mm *MemoryManager) removeAllVMAsLocked(ctx context.Context) {
	for vseg := mm.vmas.FirstSegment(); vseg.Ok(); vseg = vseg.NextSegment() {
		v := vseg.ValuePtr()
		if v.mappable != nil {
			v.mappable.RemoveMapping(ctx, mm, hostarch.AddrRange(vseg.Range()), v.off, v.canWriteMappable())
		}
		if v.id != nil {
			v.id.DecRef(ctx)
			v.id = nil
		}
		if v.flags.has(vmaAccount) {
			mm.commitLocked().add(uint64(vseg.Range().Length())>>hostarch.PageShift, -1)
		}
	}
	mm.vmas.RemoveAll()
	mm.guards.RemoveAll()
	mm.usageAS, mm.lockedAS, mm.dataAS, mm.stackAS, mm.execAS = 0, 0, 0, 0, 0
}

// vmaSizeInLocked returns the total size of vmas within ar. Preconditions:
// mappingMu held.
func (mm *MemoryManager) vmaSizeInLocked(ar hostarch.AddrRange) uint64 {
	return uint64(mm.vmas.SpanRange(addrSegRange(ar)))
}

// mapRegionLocked replaces whatever is mapped in ar by a new vma v (Linux's
// mmap_region): it checks seals and split limits of what it replaces,
// splitting it at ar's bounds (prepareUnmapLocked), and RLIMIT_AS and RLIMIT_DATA, then removes the old vmas and inserts v, taking
// a reference on v.id and registering the mapping with v.mappable. A late
// errno (see lateError) fails the mapping once the old vmas are gone.
// Preconditions: mappingMu held for writing; ar page-aligned and non-empty.
func (mm *MemoryManager) mapRegionLocked(ctx context.Context, ar hostarch.AddrRange, v *vma, force bool, late unix.Errno) error {
	replaced := uint64(0)
	if !mm.vmas.IsEmptyRange(addrSegRange(ar)) {
		if err := mm.prepareUnmapLocked(ar); err != nil {
			return err
		}
		replaced = mm.vmaSizeInLocked(ar)
	}
	accountable := mm.accountableLocked(v)
	if !force || late != 0 {
		err := mm.mayExpandLocked(v, ar.Length(), replaced)
		if err == nil && accountable && !mm.enoughMemoryLocked(ar.Length()-mm.accountedInLocked(ar)) {
			// Commit accounting (mmap_region's accountable_mapping).
			err = unix.ENOMEM
		}
		if err != nil {
			// The vmas it was going to replace stay split, as
			// Linux leaves them.
			return err
		}
	}
	if late != 0 {
		if replaced > 0 {
			mm.removeVMAsLocked(ctx, ar)
		}
		return late
	}
	if accountable {
		v.flags |= vmaAccount
	}
	if v.mappable != nil {
		if err := v.mappable.AddMapping(ctx, mm, ar, v.off, v.canWriteMappable()); err != nil {
			return err
		}
	}
	if v.id != nil {
		v.id.IncRef()
	}
	if replaced > 0 {
		mm.uffdUnmapLocked(ar)
	}
	gap := mm.removeVMAsLocked(ctx, ar)
	mm.accountVMA(v, ar.Length(), +1)
	mm.vmas.Insert(gap, addrSegRange(ar), *v)
	return nil
}

// lateError is what a configure step returns for a mapping whose making
// fails once its place is prepared (a socket's mmap, ENODEV; shared
// anonymous memory that cannot be committed, ENOMEM): mmap then fails with
// errno after the limit checks and after removing what a MAP_FIXED mapping
// replaces, as Linux's mmap_region leaves it.
type lateError struct{ errno unix.Errno }

func (e lateError) Error() string { return "mm: the mapping fails late: " + e.errno.Error() }

// accountedInLocked returns how many bytes of accounted vmas lie in ar.
// Preconditions: mappingMu held.
func (mm *MemoryManager) accountedInLocked(ar hostarch.AddrRange) uint64 {
	var n uint64
	for vseg := range mm.vmas.Segments(addrSegRange(ar)) {
		if vseg.ValuePtr().flags.has(vmaAccount) {
			n += hostarch.AddrRange(vseg.Range()).Intersect(ar).Length()
		}
	}
	return n
}

// prepareUnmapLocked checks that ar may be unmapped and splits the vmas
// crossing its bounds, as Linux's vms_gather_munmap_vmas (munmap, and what
// mmap MAP_FIXED, mremap MREMAP_FIXED and brk replace or remove), in its
// order: ENOMEM if the first vma must be split in the middle while at the
// map count; EPERM, with nothing split, if that vma is sealed; then the
// first vma is split at ar.Start, and the vmas of ar are visited in order:
// the first sealed one fails the call with EPERM, leaving that split; the
// vma crossing ar.End is split there when it is reached. Preconditions:
// mappingMu held for writing; ar page-aligned; a vma overlaps ar.
func (mm *MemoryManager) prepareUnmapLocked(ar hostarch.AddrRange) error {
	vseg := mm.vmas.LowerBoundSegment(ar.Start)
	if vseg.Start() < ar.Start {
		if vseg.End() > ar.End && mm.vmas.Len() >= mm.limits.MaxMapCount {
			return unix.ENOMEM
		}
		if vseg.ValuePtr().flags.has(vmaSealed) {
			return unix.EPERM
		}
		_, vseg = mm.vmas.Split(vseg, ar.Start)
	}
	for ; vseg.Ok() && vseg.Start() < ar.End; vseg = vseg.NextSegment() {
		if vseg.ValuePtr().flags.has(vmaSealed) {
			return unix.EPERM
		}
		if vseg.End() > ar.End {
			vseg, _ = mm.vmas.Split(vseg, ar.End)
		}
	}
	return nil
}

// modifyVMALocked applies change to the part r of vseg's vma, as Linux's
// vma_modify: if checkSeal, sealed vmas refuse (EPERM); an unchanged vma is
// left alone; otherwise the vma is split at r's bounds (ENOMEM at the map
// count), changed, and merged with its neighbours where nothing differs.
// Callers that change permissions bring the pmas in line afterwards. It
// returns the segment now covering r.Start. Preconditions: mappingMu held for writing; r lies
// within vseg.
func (mm *MemoryManager) modifyVMALocked(ctx context.Context, vseg vmaIterator, r hostarch.AddrRange, checkSeal bool, change func(*vma)) (vmaIterator, error) {
	var m vmaMerges
	vseg, err := mm.modifyVMAMergingLaterLocked(ctx, vseg, r, checkSeal, change, &m)
	if err != nil || m.pending.Length() == 0 {
		return vseg, err
	}
	mm.flushVMAMergesLocked(&m)
	return mm.vmas.FindSegment(r.Start), nil
}

// vmaMerges collects the ranges that a walk of modifyVMAMergingLaterLocked
// changed, so that they merge with their neighbours in one
// segment.Set.MergeRange (one compaction per leaf of the set) rather than
// one merge per change: mprotect over thousands of alternating vmas merges
// them all back at once. The zero value has nothing pending.
type vmaMerges struct {
	// pending is the span from the first to the last changed range not yet
	// merged; between two changed ranges it holds at most one unchanged
	// vma, so that every adjacent pair of vmas in it has a changed one.
	pending hostarch.AddrRange
}

// modifyVMAMergingLaterLocked is modifyVMALocked, except that the changed
// vma is added to m instead of being merged with its neighbours; the
// caller merges with flushVMAMergesLocked. Before a split, what m holds is
// merged first, so that the map count a split checks is what merging at
// once would leave (as Linux, which merges each vma as it goes).
func (mm *MemoryManager) modifyVMAMergingLaterLocked(ctx context.Context, vseg vmaIterator, r hostarch.AddrRange, checkSeal bool, change func(*vma), m *vmaMerges) (vmaIterator, error) {
	old := vseg.Value()
	if checkSeal && old.flags.has(vmaSealed) {
		return vseg, unix.EPERM
	}
	// change works on the vma in the set (a pointer to a local copy would
	// move the copy to the heap, an allocation per call); the old value
	// goes back until the splits below are done.
	p := vseg.ValuePtr()
	change(p)
	nv := *p
	*p = old
	if vmaEqual(&old, &nv) {
		return vseg, nil
	}
	if (vseg.Start() < r.Start || vseg.End() > r.End) && m.pending.Length() != 0 {
		mm.flushVMAMergesLocked(m)
		vseg = mm.vmas.FindSegment(r.Start)
	}
	if vseg.Start() < r.Start {
		if mm.vmas.Len() >= mm.limits.MaxMapCount {
			return vseg, unix.ENOMEM
		}
		_, vseg = mm.vmas.Split(vseg, r.Start)
	}
	if vseg.End() > r.End {
		if mm.vmas.Len() >= mm.limits.MaxMapCount {
			return vseg, unix.ENOMEM
		}
		vseg, _ = mm.vmas.Split(vseg, r.End)
	}
	// The split's second half took its own id reference; nv shares the
	// one vseg holds now.
	nv.id = vseg.ValuePtr().id
	nv.off = vseg.ValuePtr().off
	mm.setVMAValueLocked(vseg, nv)
	// Like Linux's vma_modify, the changed vma merges with its neighbours
	// where nothing differs; unchanged vmas are left as they are (merged
	// only with a changed neighbour).
	if m.pending.Length() != 0 && m.pending.End != r.Start {
		if between := mm.vmas.FindSegment(m.pending.End); !between.Ok() || between.Start() != m.pending.End || between.End() != r.Start {
			mm.flushVMAMergesLocked(m)
			vseg = mm.vmas.FindSegment(r.Start)
		}
	}
	if m.pending.Length() == 0 {
		m.pending.Start = r.Start
	}
	m.pending.End = r.End
	return vseg, nil
}

// flushVMAMergesLocked merges what m holds with its neighbours, and empties
// m. Iterators into the vma set are invalid afterwards.
func (mm *MemoryManager) flushVMAMergesLocked(m *vmaMerges) {
	r := m.pending
	m.pending = hostarch.AddrRange{}
	if r.Length() == 0 {
		return
	}
	// One byte beyond each end reaches the neighbours (if adjacent), as
	// MergeAdjacent does.
	sr := addrSegRange(r)
	if sr.Start > 0 {
		sr.Start--
	}
	if sr.End < ^hostarch.Addr(0) {
		sr.End++
	}
	mm.vmas.MergeRange(sr)
}

// vmaEqual reports whether two vmas have the same attributes.
func vmaEqual(a, b *vma) bool {
	return a.mappable == b.mappable && a.off == b.off && a.realPerms == b.realPerms &&
		a.maxPerms == b.maxPerms && a.flags&^vmaMaybeGuard == b.flags&^vmaMaybeGuard && a.mlockMode == b.mlockMode &&
		a.numaPolicy == b.numaPolicy && a.numaNodemask == b.numaNodemask && a.id == b.id && a.name == b.name && a.uffd == b.uffd
}

// changeMappedRangeLocked applies change to the vmas of ar, which must be
// wholly mapped (else holeErr, and nothing changes), splitting them at ar's
// bounds and merging afterwards. Seals do not stop it. Preconditions:
// mappingMu held for writing.
func (mm *MemoryManager) changeMappedRangeLocked(ctx context.Context, ar hostarch.AddrRange, holeErr error, change func(*vma)) error {
	for a := ar.Start; a < ar.End; {
		vseg := mm.vmas.FindSegment(a)
		if !vseg.Ok() {
			return holeErr
		}
		a = vseg.End()
	}
	for addr := ar.Start; addr < ar.End; {
		vseg := mm.vmas.FindSegment(addr)
		r := hostarch.AddrRange(vseg.Range()).Intersect(ar)
		if _, err := mm.modifyVMALocked(ctx, vseg, r, false, change); err != nil {
			return err
		}
		addr = r.End
	}
	return nil
}

// walkVMAsLocked calls visit on each part of a vma within ar, in order, as
// Linux's madvise_walk_vmas: it stops at the first error; unmapped parts
// make the result ENOMEM once the rest is done. visit returns the segment
// covering the end of what it handled (it may split and merge vmas).
// Preconditions: mappingMu held for writing.
func (mm *MemoryManager) walkVMAsLocked(ar hostarch.AddrRange, visit func(vseg vmaIterator, r hostarch.AddrRange) error) error {
	var unmapped error
	start := ar.Start
	for start < ar.End {
		vseg := mm.vmas.LowerBoundSegment(start)
		if !vseg.Ok() {
			return unix.ENOMEM
		}
		if start < vseg.Start() {
			unmapped = unix.ENOMEM
			start = vseg.Start()
			if start >= ar.End {
				break
			}
		}
		r := hostarch.AddrRange{Start: start, End: min(vseg.End(), ar.End)}
		if err := visit(vseg, r); err != nil {
			return err
		}
		start = r.End
	}
	return unmapped
}
