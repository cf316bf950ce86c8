package mm

import (
	"context"
	"strings"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

// checkRange validates the (addr, length) of madvise, mseal and
// PR_SET_VMA_ANON_NAME: addr page-aligned, and the rounded length neither
// wrapping to zero nor overflowing (EINVAL). An empty range is reported as
// ok with empty == true.
func checkRange(addr hostarch.Addr, length uint64) (ar hostarch.AddrRange, empty bool, err error) {
	if !addr.IsPageAligned() {
		return ar, false, unix.EINVAL
	}
	la, ok := hostarch.PageRoundUp(length)
	if length != 0 && (!ok || la == 0) {
		return ar, false, unix.EINVAL
	}
	end := addr + hostarch.Addr(la)
	if end < addr {
		return ar, false, unix.EINVAL
	}
	return hostarch.AddrRange{Start: addr, End: end}, end == addr, nil
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

// Advice is an madvise(2) advice.
type Advice int

// The madvise advices (Linux's MADV_* values).
const (
	AdvNormal         Advice = unix.MADV_NORMAL
	AdvRandom         Advice = unix.MADV_RANDOM
	AdvSequential     Advice = unix.MADV_SEQUENTIAL
	AdvWillNeed       Advice = unix.MADV_WILLNEED
	AdvDontNeed       Advice = unix.MADV_DONTNEED
	AdvFree           Advice = unix.MADV_FREE
	AdvRemove         Advice = unix.MADV_REMOVE
	AdvDontFork       Advice = unix.MADV_DONTFORK
	AdvDoFork         Advice = unix.MADV_DOFORK
	AdvMergeable      Advice = unix.MADV_MERGEABLE
	AdvUnmergeable    Advice = unix.MADV_UNMERGEABLE
	AdvHugePage       Advice = unix.MADV_HUGEPAGE
	AdvNoHugePage     Advice = unix.MADV_NOHUGEPAGE
	AdvDontDump       Advice = unix.MADV_DONTDUMP
	AdvDoDump         Advice = unix.MADV_DODUMP
	AdvWipeOnFork     Advice = unix.MADV_WIPEONFORK
	AdvKeepOnFork     Advice = unix.MADV_KEEPONFORK
	AdvCold           Advice = unix.MADV_COLD
	AdvPageOut        Advice = unix.MADV_PAGEOUT
	AdvPopulateRead   Advice = unix.MADV_POPULATE_READ
	AdvPopulateWrite  Advice = unix.MADV_POPULATE_WRITE
	AdvDontNeedLocked Advice = 24
	AdvCollapse       Advice = 25
	AdvGuardInstall   Advice = 102
	AdvGuardRemove    Advice = 103
)

// isDiscard reports whether a advice discards data, which seals forbid on
// read-only private memory (Linux's is_madv_discard).
func (a Advice) isDiscard() bool {
	switch a {
	case AdvFree, AdvDontNeed, AdvDontNeedLocked, AdvRemove, AdvDontFork, AdvWipeOnFork, AdvGuardInstall:
		return true
	}
	return false
}

func (a Advice) valid() bool {
	switch a {
	case AdvNormal, AdvRandom, AdvSequential, AdvWillNeed, AdvDontNeed, AdvFree, AdvRemove,
		AdvDontFork, AdvDoFork, AdvMergeable, AdvUnmergeable, AdvHugePage, AdvNoHugePage,
		AdvDontDump, AdvDoDump, AdvWipeOnFork, AdvKeepOnFork, AdvCold, AdvPageOut,
		AdvPopulateRead, AdvPopulateWrite, AdvGuardInstall, AdvGuardRemove, AdvDontNeedLocked,
		AdvCollapse:
		return true
	}
	return false
}

// Puncher is implemented by Mappables that can free a range of their
// contents (MADV_REMOVE: fallocate(PUNCH_HOLE) of shared memory).
type Puncher interface {
	Punch(ctx context.Context, mr memmap.MappableRange) error
}

// MAdvise implements madvise(2).
func (mm *MemoryManager) MAdvise(ctx context.Context, addr hostarch.Addr, length uint64, adv Advice) error {
	if !adv.valid() {
		return unix.EINVAL
	}
	ar, empty, err := checkRange(addr, length)
	if err != nil || empty {
		return err
	}
	if adv == AdvPopulateRead || adv == AdvPopulateWrite {
		return mm.madvisePopulate(ctx, ar, adv == AdvPopulateWrite)
	}
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	err = mm.walkVMAsLocked(ar, func(vseg vmaIterator, r hostarch.AddrRange) error {
		v := vseg.ValuePtr()
		if adv.isDiscard() && v.flags.has(vmaSealed) && v.mappable == nil && !v.realPerms.Write {
			return unix.EPERM
		}
		setFlags := func(set, clear vmaFlags) error {
			_, err := mm.modifyVMALocked(ctx, vseg, r, false, func(nv *vma) { nv.flags = nv.flags&^clear | set })
			return err
		}
		switch adv {
		case AdvNormal:
			return setFlags(0, vmaSeqRead|vmaRandRead)
		case AdvRandom:
			return setFlags(vmaRandRead, vmaSeqRead)
		case AdvSequential:
			return setFlags(vmaSeqRead, vmaRandRead)
		case AdvDontFork:
			return setFlags(vmaDontFork, 0)
		case AdvDoFork:
			return setFlags(0, vmaDontFork)
		case AdvWipeOnFork:
			if v.mappable != nil || !v.private() || v.flags.has(vmaZeroFile) {
				return unix.EINVAL
			}
			return setFlags(vmaWipeOnFork, 0)
		case AdvKeepOnFork:
			if v.flags.has(vmaDroppable) {
				return unix.EINVAL
			}
			return setFlags(0, vmaWipeOnFork)
		case AdvDontDump:
			return setFlags(vmaDontDump, 0)
		case AdvDoDump:
			if v.flags.has(vmaDontExpand | vmaDroppable) {
				return unix.EINVAL
			}
			return setFlags(0, vmaDontDump)
		case AdvMergeable:
			if !v.private() || v.flags.has(vmaDontExpand) {
				return nil // KSM ignores shared and special mappings
			}
			return setFlags(vmaMergeable, 0)
		case AdvUnmergeable:
			return setFlags(0, vmaMergeable)
		case AdvHugePage:
			return setFlags(vmaHugePage, vmaNoHugePage)
		case AdvNoHugePage:
			return setFlags(vmaNoHugePage, vmaHugePage)
		case AdvWillNeed:
			return nil
		case AdvCold, AdvPageOut:
			if v.locked() || v.pfnMap() {
				return unix.EINVAL
			}
			return nil
		case AdvDontNeed:
			if v.locked() || v.pfnMap() {
				return unix.EINVAL
			}
			mm.dropPagesLocked(ctx, r)
			return nil
		case AdvDontNeedLocked:
			// MADV_DONTNEED that locked vmas allow.
			if v.pfnMap() {
				return unix.EINVAL
			}
			mm.dropPagesLocked(ctx, r)
			return nil
		case AdvCollapse:
			if !v.collapsible(hostarch.AddrRange(vseg.Range())) {
				return unix.EINVAL
			}
			// Collapsing into huge pages changes nothing the
			// program can see.
			return nil
		case AdvFree:
			if v.mappable != nil || v.locked() {
				return unix.EINVAL
			}
			// Linux frees MADV_FREE pages lazily, under memory
			// pressure; until then they keep their contents.
			return nil
		case AdvRemove:
			if v.locked() {
				return unix.EINVAL
			}
			if v.flags.has(vmaZeroFile) {
				// A private mapping of a file.
				return unix.EACCES
			}
			p, ok := v.mappable.(Puncher)
			if v.mappable == nil || !ok {
				return unix.EINVAL
			}
			if v.private() || !v.maxPerms.Write {
				return unix.EACCES
			}

			mm.dropPagesLocked(ctx, r)
			return p.Punch(ctx, mappableRangeOf(vseg, r))
		case AdvGuardInstall:
			if v.locked() || v.flags.has(vmaDontExpand) {
				return unix.EINVAL
			}
			// Linux 6.18's madvise_guard_install prepares the vma's
			// anon_vma (page tables no longer empty): fork copies
			// them, and merges see it.
			mm.prepareAnonVMA(vseg)
			mm.dropPagesLocked(ctx, r)
			// Part of r may be guarded already.
			mm.guards.RemoveRange(addrSegRange(r))
			mm.guards.Add(addrSegRange(r), struct{}{})
			mm.guards.MergeAdjacent(addrSegRange(r))
			return nil
		case AdvGuardRemove:
			if v.flags.has(vmaDontExpand) {
				return unix.EINVAL
			}
			mm.guards.RemoveRange(addrSegRange(r))
			return nil
		}
		return unix.EINVAL
	})
	return err
}

// pfnMap reports whether v is the vDSO's data ([vvar], [vvar_vclock]),
// which Linux maps VM_PFNMAP: madvise may not drop or reclaim its pages.
func (v *vma) pfnMap() bool {
	sm, ok := v.mappable.(*SpecialMappable)
	return ok && v.flags.has(vmaDontExpand) && strings.HasPrefix(sm.name, "[vvar")
}

// collapsible reports whether MADV_COLLAPSE may collapse v, whose range is
// vr, into transparent huge pages (Linux's thp_vma_allowable_order for a
// forced collapse): anonymous memory not marked MADV_NOHUGEPAGE (nor
// MAP_STACK), not special, and holding at least one 2 MiB-aligned huge
// page.
func (v *vma) collapsible(vr hostarch.AddrRange) bool {
	if v.flags.has(vmaNoHugePage) || v.flags.has(vmaDontExpand) || !(v.isPrivateAnon() || v.flags.has(vmaAnonShared)) {
		return false
	}
	top := vr.End &^ (hugePageSize - 1)
	return top >= hugePageSize && top-hugePageSize >= vr.Start
}

// dropPagesLocked removes the pmas of r: private anonymous memory reads
// back as zero, private file mappings as the file again. Preconditions:
// mappingMu held for writing.
func (mm *MemoryManager) dropPagesLocked(ctx context.Context, r hostarch.AddrRange) {
	mm.removePMAsIfAnyLocked(ctx, r)
}

// madvisePopulate implements MADV_POPULATE_READ and MADV_POPULATE_WRITE:
// fault in every page as a read or write would, without the application
// taking signals: ENOMEM at a hole, EFAULT where an access would fault,
// EINVAL for special mappings.
func (mm *MemoryManager) madvisePopulate(ctx context.Context, ar hostarch.AddrRange, write bool) error {
	at := hostarch.Read
	if write {
		at = hostarch.Write
	}
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	for addr := ar.Start; addr < ar.End; {
		vseg := mm.vmas.FindSegment(addr)
		if !vseg.Ok() {
			return unix.ENOMEM
		}
		v := vseg.ValuePtr()
		if !v.realPerms.SupersetOf(at) {
			// Incompatible mapping or permissions (the requested
			// permission itself: write does not imply read here).
			return unix.EINVAL
		}
		r := hostarch.AddrRange{Start: addr, End: min(vseg.End(), ar.End)}
		guard := mm.firstGuardLocked(r)
		r.End = guard
		var err error
		if r.Length() > 0 {
			mm.activeMu.Lock()
			err = mm.populateRangeLocked(ctx, vseg, r, at)
			mm.activeMu.Unlock()
		}
		if err == nil && guard < min(vseg.End(), ar.End) {
			// Pages before a guard region are populated; the guard
			// faults (EFAULT), as in Linux.
			return unix.EFAULT
		}
		if err != nil {
			if errorIsNoMem(err) {
				return unix.ENOMEM
			}
			return unix.EFAULT
		}
		addr = r.End
	}
	return nil
}

func errorIsNoMem(err error) bool {
	ae := accessErrorFor(0, err)
	return ae.Signal == unix.SIGBUS && ae.Cause == errMemoryExhausted
}

// MLock implements mlock(2) (mode MLockEager) and mlock2(2) with
// MLOCK_ONFAULT (MLockLazy), and munlock(2) (MLockNone).
func (mm *MemoryManager) MLock(ctx context.Context, addr hostarch.Addr, length uint64, mode memmap.MLockMode) error {
	if mode != memmap.MLockNone && !mm.Limits().CapIPCLock && mm.Limits().MemLock.Cur == 0 {
		return unix.EPERM
	}
	// Linux rounds the start down and the length up to cover it.
	la := length + addr.PageOffset()
	la, _ = hostarch.PageRoundUp(la)
	start := addr.RoundDown()

	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	if mode != memmap.MLockNone && !mm.limits.CapIPCLock {
		locked := mm.lockedAS>>hostarch.PageShift + la>>hostarch.PageShift
		limit := mm.limits.MemLock.Cur >> hostarch.PageShift
		if locked > limit {
			locked -= mm.lockedSizeInLocked(start, la) >> hostarch.PageShift
		}
		if locked > limit {
			return unix.ENOMEM
		}
	}
	end := start + hostarch.Addr(la)
	if end < start {
		return unix.EINVAL
	}
	if end == start {
		return nil
	}
	ar := hostarch.AddrRange{Start: start, End: end}
	if !mm.vmas.FindSegment(start).Ok() {
		return unix.ENOMEM
	}
	nstart := start
	var err error
	for nstart < end {
		vseg := mm.vmas.LowerBoundSegment(nstart)
		if !vseg.Ok() || vseg.Start() > nstart {
			err = unix.ENOMEM // a hole
			break
		}
		r := hostarch.AddrRange{Start: nstart, End: min(vseg.End(), end)}
		if !vseg.ValuePtr().flags.has(vmaUnlockable) {
			if _, err = mm.modifyVMALocked(ctx, vseg, r, false, func(nv *vma) { nv.mlockMode = mode }); err != nil {
				break
			}
		}
		nstart = r.End
	}
	if err != nil {
		return err
	}
	if mode == memmap.MLockEager {
		// Like Linux's __mm_populate, stop at an inaccessible vma and
		// report it (mlock's ENOMEM): the locks stay applied.
		if !mm.populateLocked(ctx, ar, false) {
			return unix.ENOMEM
		}
	}
	return nil
}

// lockedSizeInLocked returns the bytes of locked vmas in [start,
// start+length). Preconditions: mappingMu held.
func (mm *MemoryManager) lockedSizeInLocked(start hostarch.Addr, length uint64) uint64 {
	end := start + hostarch.Addr(length)
	if end < start {
		end = ^hostarch.Addr(0)
	}
	ar := hostarch.AddrRange{Start: start, End: end}
	var n uint64
	for vseg := range mm.vmas.Segments(addrSegRange(ar)) {
		if vseg.ValuePtr().locked() {
			n += hostarch.AddrRange(vseg.Range()).Intersect(ar).Length()
		}
	}
	return n
}

// MLockAllOpts are mlockall(2)'s flags.
type MLockAllOpts struct {
	Current bool
	Future  bool
	OnFault bool
}

// MLockAll implements mlockall(2).
func (mm *MemoryManager) MLockAll(ctx context.Context, opts MLockAllOpts) error {
	if !opts.Current && !opts.Future {
		return unix.EINVAL
	}
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	if !mm.canDoMLockLocked() {
		return unix.EPERM
	}
	if opts.Current && !mm.limits.CapIPCLock && mm.usageAS>>hostarch.PageShift > mm.limits.MemLock.Cur>>hostarch.PageShift {
		return unix.ENOMEM
	}
	mode := memmap.MLockEager
	if opts.OnFault {
		mode = memmap.MLockLazy
	}
	mm.defMLockMode = memmap.MLockNone
	if opts.Future {
		mm.defMLockMode = mode
	}
	if opts.Current {
		mm.setAllMLockLocked(ctx, mode)
		if mode == memmap.MLockEager {
			mm.populateLocked(ctx, hostarch.AddrRange{Start: 0, End: mm.layout.MaxAddr}, true)
		}
	}
	return nil
}

// MUnlockAll implements munlockall(2).
func (mm *MemoryManager) MUnlockAll(ctx context.Context) error {
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	mm.defMLockMode = memmap.MLockNone
	mm.setAllMLockLocked(ctx, memmap.MLockNone)
	return nil
}

// setAllMLockLocked sets the mlock mode of every vma (special mappings
// excepted). Preconditions: mappingMu held for writing.
func (mm *MemoryManager) setAllMLockLocked(ctx context.Context, mode memmap.MLockMode) {
	for vseg := mm.vmas.FirstSegment(); vseg.Ok(); {
		v := vseg.ValuePtr()
		if v.flags.has(vmaUnlockable) || v.mlockMode == mode {
			vseg = vseg.NextSegment()
			continue
		}
		// Like mlock_fixup: the changed vma merges with its neighbours;
		// unchanged ones stay as they are.
		r := hostarch.AddrRange(vseg.Range())
		vseg, _ = mm.modifyVMALocked(ctx, vseg, r, false, func(nv *vma) { nv.mlockMode = mode })
		vseg = mm.vmas.LowerBoundSegment(r.End)
	}
}

// MSyncOpts are msync(2)'s flags.
type MSyncOpts struct {
	Sync       bool
	Async      bool
	Invalidate bool
}

// MSync implements msync(2): it writes back shared file mappings in the
// range (with Sync), with Linux's validation: ENOMEM if part of the range is
// unmapped, EBUSY for MS_INVALIDATE on locked memory.
func (mm *MemoryManager) MSync(ctx context.Context, addr hostarch.Addr, length uint64, opts MSyncOpts) error {
	if !addr.IsPageAligned() || (opts.Sync && opts.Async) {
		return unix.EINVAL
	}
	// The length rounds up modulo 2^64, as Linux's does: a length that
	// wraps to 0 syncs nothing.
	la, _ := hostarch.PageRoundUp(length)
	end := addr + hostarch.Addr(la)
	if end < addr {
		return unix.ENOMEM
	}
	if end == addr {
		return nil
	}
	onlyAsync := opts.Async && !opts.Invalidate
	var unmapped error
	start := addr
	mm.mappingMu.RLock()
	for {
		vseg := mm.vmas.LowerBoundSegment(start)
		if !vseg.Ok() {
			mm.mappingMu.RUnlock()
			return unix.ENOMEM
		}
		if start < vseg.Start() {
			if onlyAsync {
				mm.mappingMu.RUnlock()
				return unix.ENOMEM
			}
			start = vseg.Start()
			if start >= end {
				mm.mappingMu.RUnlock()
				return unix.ENOMEM
			}
			unmapped = unix.ENOMEM
		}
		v := vseg.ValuePtr()
		if opts.Invalidate && v.locked() {
			mm.mappingMu.RUnlock()
			return unix.EBUSY
		}
		r := hostarch.AddrRange{Start: start, End: min(vseg.End(), end)}
		start = vseg.End()
		if opts.Sync && v.id != nil && !v.private() {
			id := v.id
			mr := mappableRangeOf(vseg, r)
			id.IncRef()
			mm.mappingMu.RUnlock()
			err := id.Msync(ctx, mr)
			id.DecRef(ctx)
			if err != nil || start >= end {
				if err != nil {
					return err
				}
				return unmapped
			}
			mm.mappingMu.RLock()
			continue
		}
		if start >= end {
			mm.mappingMu.RUnlock()
			return unmapped
		}
	}
}

// MSeal implements mseal(2) (Linux 6.10): vmas in the range become sealed;
// afterwards munmap, mprotect, mremap and mmap over them fail with EPERM, as
// do discarding madvises of read-only private memory.
func (mm *MemoryManager) MSeal(ctx context.Context, addr hostarch.Addr, length uint64, flags uint64) error {
	if flags != 0 {
		return unix.EINVAL
	}
	ar, empty, err := checkRange(addr, length)
	if err != nil || empty {
		return err
	}
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	// Check first, so an error seals nothing.
	return mm.changeMappedRangeLocked(ctx, ar, unix.ENOMEM, func(nv *vma) { nv.flags |= vmaSealed })
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

// maxAnonNameLen is ANON_VMA_NAME_MAX_LEN, including the terminating NUL.
const maxAnonNameLen = 80

// SetVMAName implements prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME): it names
// the anonymous memory in the range ("" clears the name). File mappings
// are EBADF, bad names EINVAL.
func (mm *MemoryManager) SetVMAName(ctx context.Context, addr hostarch.Addr, length uint64, name string) error {
	if len(name) >= maxAnonNameLen {
		return unix.EINVAL
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < ' ' || c > '~' || c == '\\' || c == '`' || c == '$' || c == '[' || c == ']' {
			return unix.EINVAL
		}
	}
	ar, empty, err := checkRange(addr, length)
	if err != nil || empty {
		return err
	}
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	err = mm.walkVMAsLocked(ar, func(vseg vmaIterator, r hostarch.AddrRange) error {
		v := vseg.ValuePtr()
		if v.id != nil && !v.flags.has(vmaShm|vmaAnonShared) {
			return unix.EBADF
		}
		if v.id == nil && v.name != "" && !v.flags.has(vmaAnonName) {
			// A special mapping ([vdso], ...).
			return unix.EBADF
		}
		_, err := mm.modifyVMALocked(ctx, vseg, r, false, func(nv *vma) {
			nv.name = name
			if name == "" {
				nv.flags &^= vmaAnonName
			} else {
				nv.flags |= vmaAnonName
			}
		})
		return err
	})
	return err
}

// NUMA memory policies (MPOL_*).
const (
	MPolDefault    = 0
	MPolPreferred  = 1
	MPolBind       = 2
	MPolInterleave = 3
	MPolLocal      = 4
)

// SetNumaPolicy implements mbind(2) for the policy and node mask of a
// single-node machine: every vma in the range records them.
func (mm *MemoryManager) SetNumaPolicy(ctx context.Context, addr hostarch.Addr, length uint64, policy int32, nodemask uint64) error {
	if policy < MPolDefault || policy > MPolLocal {
		return unix.EINVAL
	}
	ar, empty, err := checkRange(addr, length)
	if err != nil || empty {
		return err
	}
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	return mm.changeMappedRangeLocked(ctx, ar, unix.EFAULT, func(nv *vma) { nv.numaPolicy, nv.numaNodemask = policy, nodemask })
}

// NumaPolicy returns the policy and node mask of the vma containing addr
// (get_mempolicy with MPOL_F_ADDR); EFAULT if addr is unmapped.
func (mm *MemoryManager) NumaPolicy(addr hostarch.Addr) (int32, uint64, error) {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	vseg := mm.vmas.FindSegment(addr)
	if !vseg.Ok() {
		return 0, 0, unix.EFAULT
	}
	v := vseg.ValuePtr()
	return v.numaPolicy, v.numaNodemask, nil
}
