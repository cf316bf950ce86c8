package mm

import (
	"context"
	"strings"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

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
			// Linux refuses a file or shared mapping; a special
			// mapping ([vdso]) has no file.
			if (v.mappable != nil && v.kind() != VMASpecial) || !v.private() || v.flags.has(vmaZeroFile) {
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
			switch {
			case adv != AdvPageOut:
			case v.flags.has(vmaDroppable):
				// Reclaim frees droppable pages without swap, as it
				// frees lazily freed ones (a fork never shares them:
				// droppable memory is wiped on fork); a later access
				// finds a fresh zero page.
				mm.dropPagesLocked(ctx, r)
			default:
				mm.pageOutLocked(ctx, vseg, r)
				mm.discardLazyFreeLocked(ctx, r)
			}
			return nil
		case AdvDontNeed:
			if v.locked() || v.pfnMap() {
				return unix.EINVAL
			}
			mm.uffdRemoveLocked(v, r)
			mm.uffdZapLocked(vseg, r)
			mm.dropPagesLocked(ctx, r)
			return nil
		case AdvDontNeedLocked:
			// MADV_DONTNEED that locked vmas allow.
			if v.pfnMap() {
				return unix.EINVAL
			}
			mm.uffdRemoveLocked(v, r)
			mm.uffdZapLocked(vseg, r)
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
			// pressure (or MADV_PAGEOUT); until then they keep
			// their contents.
			mm.uffdRemoveLocked(v, r)
			mm.lazyFreeLocked(r)
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
			mm.uffdRemoveLocked(v, r)
			mm.uffdZapLocked(vseg, r)
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
			// The whole vma is marked as possibly holding guard
			// pages (VM_MAYBE_GUARD, VmFlags gu), without a split.
			v.flags |= vmaMaybeGuard
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
// which Linux maps VM_PFNMAP: madvise may not drop or reclaim its pages
// (the memory manager's own, or a host's through MapHostSpecial).
func (v *vma) pfnMap() bool {
	if !v.flags.has(vmaDontExpand) {
		return false
	}
	switch m := v.mappable.(type) {
	case *SpecialMappable:
		return strings.HasPrefix(m.name, "[vvar")
	case PFNMapper:
		return m.PFNMap()
	}
	return false
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
