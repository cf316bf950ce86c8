package mm

import (
	"context"
	"errors"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

// MMap creates a mapping as mmap(2) does, after the system-call layer has
// checked the flags and the file (see MMapSys for the whole system call).
// It returns the mapping's address.
//
// Checks are made in Linux's order (do_mmap, mmap_region): zero length
// EINVAL; length overflow ENOMEM; offset overflow EOVERFLOW; map count
// ENOMEM; placement (ENOMEM, EINVAL, EPERM); MAP_FIXED_NOREPLACE EEXIST;
// mlock EPERM/EAGAIN; the file's checks; MDWE EACCES; seals EPERM;
// RLIMIT_AS and RLIMIT_DATA ENOMEM.
func (mm *MemoryManager) MMap(ctx context.Context, opts memmap.MMapOpts) (hostarch.Addr, error) {
	var pl placement
	if opts.Mappable == nil && opts.Private && !opts.Fixed && opts.Length%hugePageSize == 0 {
		pl.thp = true
	}
	return mm.mmapPlaced(ctx, opts, nil, 0, pl)
}

// mmap is MMap with extra vma flags and an optional configure step, called where Linux checks
// the file (after placement and mlock checks, before replacing anything):
// it may fail, or fill in opts.Mappable and opts.MappingIdentity.
func (mm *MemoryManager) mmap(ctx context.Context, opts memmap.MMapOpts, configure func(*memmap.MMapOpts) error, extra vmaFlags) (hostarch.Addr, error) {
	return mm.mmapPlaced(ctx, opts, configure, extra, placement{})
}

// mmapPlaced is mmap placing the mapping as pl says (without MAP_FIXED).
func (mm *MemoryManager) mmapPlaced(ctx context.Context, opts memmap.MMapOpts, configure func(*memmap.MMapOpts) error, extra vmaFlags, pl placement) (hostarch.Addr, error) {
	if opts.Length == 0 {
		return 0, unix.EINVAL
	}
	length, ok := hostarch.PageRoundUp(opts.Length)
	if !ok || length == 0 {
		return 0, unix.ENOMEM
	}
	opts.Length = length
	if opts.Mappable != nil || configure != nil {
		if !hostarch.IsPageAligned(opts.Offset) {
			return 0, unix.EINVAL
		}
		// Linux checks in pages: pgoff + pages wrapping.
		if pg := opts.Offset >> hostarch.PageShift; pg+length>>hostarch.PageShift < pg {
			return 0, unix.EOVERFLOW
		}
	}

	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	if mm.vmas.Len() > mm.limits.MaxMapCount {
		return 0, unix.ENOMEM
	}
	addr, err := mm.findMMapAddrLocked(opts, pl)
	if err != nil {
		return 0, err
	}
	ar := hostarch.AddrRange{Start: addr, End: addr + hostarch.Addr(length)}
	if opts.Fixed && !opts.Unmap && !mm.vmas.IsEmptyRange(addrSegRange(ar)) {
		return 0, unix.EEXIST
	}
	mode := opts.MLockMode
	if mode != memmap.MLockNone && !mm.canDoMLockLocked() {
		return 0, unix.EPERM
	}
	if mode == memmap.MLockNone || mm.defMLockMode == memmap.MLockLazy {
		// mlockall(MCL_FUTURE) locks new mappings; its MCL_ONFAULT
		// (def_flags' VM_LOCKONFAULT) makes MAP_LOCKED lazy too.
		mode = mm.defMLockMode
	}
	if mode != memmap.MLockNone && !mm.mlockFutureOKLocked(length) {
		return 0, unix.EAGAIN
	}
	if extra&vmaUnlockable != 0 {
		// Special and droppable mappings are never locked (Linux's
		// mmap_region drops VM_LOCKED for VM_SPECIAL), though the limit
		// was checked.
		mode = memmap.MLockNone
	}
	opts.Addr = addr
	var late lateError
	if configure != nil {
		if err := configure(&opts); errors.As(err, &late) {
			// Fails below.
		} else if err != nil {
			return 0, err
		}
		if opts.MappingIdentity != nil {
			// configure's reference is ours to drop; the vma takes its
			// own.
			defer opts.MappingIdentity.DecRef(ctx)
		}
	}
	// MDWE is checked where Linux's mmap_region checks it: after the
	// file's checks, before anything is replaced or limits are counted.
	// (The main stack of an exec is set up without it, as Linux's
	// setup_arg_pages.)
	if extra&vmaStackMain == 0 && mm.denyWriteExecLocked(opts.Perms, opts.Perms) {
		return 0, unix.EACCES
	}
	v := vma{
		mappable:  opts.Mappable,
		off:       opts.Offset,
		realPerms: opts.Perms,
		maxPerms:  opts.MaxPerms,
		mlockMode: mode,
		id:        opts.MappingIdentity,
		name:      opts.Hint,
	}
	if opts.Mappable == nil {
		v.off = uint64(addr)
	}
	if opts.Private {
		v.flags |= vmaPrivate
	}
	if opts.GrowsDown {
		v.flags |= vmaGrowsDown
	}
	if opts.Stack {
		v.flags |= vmaNoHugePage
	}
	if opts.SharedAnonymous {
		v.flags |= vmaAnonShared
	}
	if opts.NoReserve {
		v.flags |= vmaNoReserve
	}
	v.flags |= extra
	if err := mm.mapRegionLocked(ctx, ar, &v, opts.Force, late.errno); err != nil {
		return 0, err
	}

	// Populate as asked; failures do not fail the mmap.
	if mode == memmap.MLockEager || opts.PlatformEffect != memmap.MMapPlatformEffectDefault {
		mm.populateLocked(ctx, ar, true)
	}
	return addr, nil
}

// mapRegionLocked replaces whatever is mapped in ar by a new vma v (Linux's
// mmap_region): it checks seals and split limits of what it replaces, and
// RLIMIT_AS and RLIMIT_DATA, then removes the old vmas and inserts v, taking
// a reference on v.id and registering the mapping with v.mappable. A late
// errno (see lateError) fails the mapping once the old vmas are gone.
// Preconditions: mappingMu held for writing; ar page-aligned and non-empty.
func (mm *MemoryManager) mapRegionLocked(ctx context.Context, ar hostarch.AddrRange, v *vma, force bool, late unix.Errno) error {
	replaced := uint64(0)
	if !mm.vmas.IsEmptyRange(addrSegRange(ar)) {
		if err := mm.checkUnmapLocked(ar); err != nil {
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
			if replaced > 0 {
				// Linux split the vmas it was going to replace
				// before checking the limits, and leaves them split.
				mm.vmas.SplitAt(ar.Start)
				mm.vmas.SplitAt(ar.End)
			}
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

// checkUnmapLocked returns the error unmapping ar would fail with: ENOMEM
// if it must split a vma in the middle while at the map count, EPERM if a
// vma in ar is sealed. Preconditions: mappingMu held; ar page-aligned.
func (mm *MemoryManager) checkUnmapLocked(ar hostarch.AddrRange) error {
	if vseg := mm.vmas.LowerBoundSegment(ar.Start); vseg.Ok() && vseg.Start() < ar.Start && vseg.End() > ar.End &&
		mm.vmas.Len() >= mm.limits.MaxMapCount {
		return unix.ENOMEM
	}
	if mm.sealedInLocked(ar) {
		return unix.EPERM
	}
	return nil
}

// mayExpandLocked is Linux's may_expand_vm: adding v's length bytes while
// replacing replaced bytes (at most length) of existing vmas must keep the
// address space within RLIMIT_AS and, for data mappings, the data within
// RLIMIT_DATA. Like Linux it compares even when nothing is added, so a
// replacement fails while usage is over a lowered limit. Preconditions:
// mappingMu held.
func (mm *MemoryManager) mayExpandLocked(v *vma, length, replaced uint64) error {
	pages := (length - replaced) >> hostarch.PageShift
	if !mm.asOKLocked(pages) || (v.isData() && !mm.dataOKLocked(pages)) {
		return unix.ENOMEM
	}
	return nil
}

// asOKLocked reports whether pages more pages keep VmSize within
// RLIMIT_AS.
func (mm *MemoryManager) asOKLocked(pages uint64) bool {
	return mm.usageAS>>hostarch.PageShift+pages <= mm.limits.AS.Cur>>hostarch.PageShift
}

// dataOKLocked reports whether pages more data pages keep VmData within
// RLIMIT_DATA (a soft limit of 0 is not enforced below the hard limit, as
// Linux's exception for valgrind).
func (mm *MemoryManager) dataOKLocked(pages uint64) bool {
	dataPages := mm.dataAS>>hostarch.PageShift + pages
	if dataPages <= mm.limits.Data.Cur>>hostarch.PageShift {
		return true
	}
	return mm.limits.Data.Cur == 0 && dataPages <= mm.limits.Data.Max>>hostarch.PageShift
}

// placement is what decides where a new mapping goes besides its length.
type placement struct {
	// above4G is MAP_ABOVE4G: search only above 4 GiB.
	above4G bool
	// thp says the mapping is one Linux aligns for transparent huge pages
	// (thp_get_unmapped_area): private anonymous memory placed without a
	// hint whose length is a multiple of 2 MiB, or a private /dev/zero
	// mapping; thpOff is the file offset the alignment follows.
	thp    bool
	thpOff uint64
	// file says the mapping is a file's (private /dev/zero), which Linux
	// aligns even with a hint.
	file bool
}

// hugePageSize is the PMD size that THP placement aligns to.
const hugePageSize = 2 << 20

// findMMapAddrLocked chooses the address of a new mapping, as Linux's
// __get_unmapped_area on x86-64. Preconditions: mappingMu held;
// opts.Length is page-aligned and non-zero.
func (mm *MemoryManager) findMMapAddrLocked(opts memmap.MMapOpts, pl placement) (hostarch.Addr, error) {
	length := opts.Length
	l := &mm.layout
	if length > uint64(hostarch.MaxUserAddress) {
		return 0, unix.ENOMEM
	}
	if opts.Fixed {
		if opts.Addr > ^hostarch.Addr(maxErrno) {
			// Linux returns the address as chosen, and an address
			// that reads as an error value is that error.
			return 0, unix.Errno(-uint64(opts.Addr))
		}
		if length > uint64(l.MaxAddr) || uint64(opts.Addr) > uint64(l.MaxAddr)-length {
			return 0, unix.ENOMEM
		}
		if !opts.Addr.IsPageAligned() {
			return 0, unix.EINVAL
		}
		if opts.Addr < mm.limits.MinMmapAddr && !mm.limits.CapSysRawIO {
			return 0, unix.EPERM
		}
		return opts.Addr, nil
	}
	// Linux rounds the hint down first, and up to the lowest mappable
	// address if it is below, privileged or not (round_hint_to_min); a
	// hint below one page is no hint.
	hint := opts.Addr.RoundDown()
	if minAddr := mm.mmapMinAddrLocked(); hint != 0 && hint < minAddr {
		hint = minAddr
	}
	// Anonymous memory is aligned only without a hint; a file (private
	// /dev/zero) is aligned unless its hint is free.
	if pl.thp && (hint == 0 || pl.file) {
		if a, ok := mm.thpPlaceLocked(hint, length, opts.Map32Bit, pl); ok {
			return a, nil
		}
	}
	return mm.unmappedAreaLocked(hint, length, opts.Map32Bit, pl.above4G)
}

// maxErrno is Linux's MAX_ERRNO: the top 4095 values of an address are
// error values.
const maxErrno = 4095

// thpPlaceLocked is Linux's __thp_get_unmapped_area: it searches room for
// length plus 2 MiB and places the mapping at the first 2 MiB boundary in
// it that matches the file offset (the upper one when the room starts at
// one and placement is top-down), unless the hint was free. ok is false
// when Linux falls back to unaligned placement. Preconditions: mappingMu
// held.
func (mm *MemoryManager) thpPlaceLocked(hint hostarch.Addr, length uint64, map32 bool, pl placement) (hostarch.Addr, bool) {
	off := pl.thpOff
	offEnd := off + length
	offAlign := (off + hugePageSize - 1) &^ (hugePageSize - 1)
	if offAlign < off || offEnd <= offAlign || offEnd-offAlign < hugePageSize {
		return 0, false
	}
	lenPad := length + hugePageSize
	if lenPad < length || off+lenPad < off {
		return 0, false
	}
	ret, err := mm.unmappedAreaLocked(hint, lenPad, map32, pl.above4G)
	if err != nil {
		return 0, false
	}
	if ret == hint {
		return hint, true
	}
	sub := hostarch.Addr(off-uint64(ret)) & (hugePageSize - 1)
	if mm.layout.DefaultDirection == MmapTopDown && sub == 0 {
		return ret + hugePageSize, true
	}
	return ret + sub, true
}

// unmappedAreaLocked chooses where length bytes go without MAP_FIXED, as
// x86-64's arch_get_unmapped_area(_topdown): at the (rounded) hint if it is
// free, else in the first gap from the top (top-down layout) or the bottom;
// MAP_32BIT searches bottom-up in [1 GiB, 2 GiB), MAP_ABOVE4G above 4 GiB.
// Preconditions: mappingMu held; length page-aligned, non-zero.
func (mm *MemoryManager) unmappedAreaLocked(hint hostarch.Addr, length uint64, map32, above4G bool) (hostarch.Addr, error) {
	l := &mm.layout
	if length > uint64(l.MaxAddr) {
		return 0, unix.ENOMEM
	}
	// Linux's vm_unmapped_area keeps above mmap_min_addr, privileged or
	// not.
	minAddr := max(l.MinAddr, mm.mmapMinAddrLocked())
	if map32 {
		// (MAP_ABOVE4G counts only in top-down searches.)
		if length > uint64(map32End) {
			return 0, unix.ENOMEM
		}
		if hint != 0 && uint64(hint) <= uint64(map32End)-length && mm.fitsLocked(hostarch.AddrRange{Start: hint, End: hint + hostarch.Addr(length)}) {
			return hint, nil
		}
		if a, ok := mm.findGapLocked(hostarch.AddrRange{Start: max(map32Start, minAddr), End: map32End}, length, false); ok {
			return a, nil
		}
		return 0, unix.ENOMEM
	}
	if hint != 0 {
		if end, ok := hint.AddLength(length); ok && end <= l.MaxAddr && hint >= minAddr && mm.fitsLocked(hostarch.AddrRange{Start: hint, End: end}) {
			return hint, nil
		}
	}
	if above4G {
		minAddr = max(minAddr, 4<<30)
	}
	if l.DefaultDirection == MmapTopDown {
		if a, ok := mm.findGapLocked(hostarch.AddrRange{Start: minAddr, End: l.TopDownBase}, length, true); ok {
			return a, nil
		}
	}
	if a, ok := mm.findGapLocked(hostarch.AddrRange{Start: max(l.BottomUpBase, minAddr), End: l.MaxAddr}, length, false); ok {
		return a, nil
	}
	return 0, unix.ENOMEM
}

// fitsLocked reports whether ar is free and keeps the stack guard gap below
// a growsdown vma above it. Preconditions: mappingMu held.
func (mm *MemoryManager) fitsLocked(ar hostarch.AddrRange) bool {
	next := mm.vmas.LowerBoundSegment(ar.Start)
	if !next.Ok() {
		return true
	}
	return ar.End <= startGap(next)
}

// startGap returns the lowest address a mapping below vseg may end at: its
// start, less the guard gap for a growsdown vma (Linux's vm_start_gap).
func startGap(vseg vmaIterator) hostarch.Addr {
	s := vseg.Start()
	if vseg.ValuePtr().growsDown() {
		if s > stackGuardGap {
			return s - stackGuardGap
		}
		return 0
	}
	return s
}

// findGapLocked finds length free bytes in bounds, highest first if
// topDown, respecting stack guard gaps. Preconditions: mappingMu held.
func (mm *MemoryManager) findGapLocked(bounds hostarch.AddrRange, length uint64, topDown bool) (hostarch.Addr, bool) {
	for bounds.Start < bounds.End && bounds.Length() >= length {
		var a hostarch.Addr
		var ok bool
		sb := addrSegRange(bounds)
		if topDown {
			a, ok = mm.vmas.FindHighestGap(sb, hostarch.Addr(length), hostarch.PageSize)
		} else {
			a, ok = mm.vmas.FindLowestGap(sb, hostarch.Addr(length), hostarch.PageSize)
		}
		if !ok {
			return 0, false
		}
		end := a + hostarch.Addr(length)
		next := mm.vmas.LowerBoundSegment(end)
		if !next.Ok() || end <= startGap(next) {
			return a, true
		}
		// Too close below a stack: the part of this gap within the guard
		// gap is unusable.
		if topDown {
			g := startGap(next)
			if g < bounds.End {
				bounds.End = g
			} else {
				bounds.End = a
			}
		} else {
			bounds.Start = next.End()
		}
	}
	return 0, false
}

// MUnmap removes the mappings in [addr, addr+length), as munmap(2).
func (mm *MemoryManager) MUnmap(ctx context.Context, addr hostarch.Addr, length uint64) error {
	ar, err := mm.unmapRange(addr, length)
	if err != nil {
		return err
	}
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	if mm.vmas.IsEmptyRange(addrSegRange(ar)) {
		return nil
	}
	if err := mm.checkUnmapLocked(ar); err != nil {
		return err
	}
	mm.removeVMAsLocked(ctx, ar)
	return nil
}

// unmapRange validates munmap's arguments: addr page-aligned, length
// non-zero, and the range within the user address space; EINVAL otherwise.
func (mm *MemoryManager) unmapRange(addr hostarch.Addr, length uint64) (hostarch.AddrRange, error) {
	maxAddr := mm.p.MaxUserAddress()
	if !addr.IsPageAligned() || addr > maxAddr || length > uint64(maxAddr-addr) {
		return hostarch.AddrRange{}, unix.EINVAL
	}
	la, ok := hostarch.PageRoundUp(length)
	if !ok || la == 0 {
		return hostarch.AddrRange{}, unix.EINVAL
	}
	return hostarch.AddrRange{Start: addr, End: addr + hostarch.Addr(la)}, nil
}

// MProtectOpts are mprotect's PROT_GROWSDOWN and PROT_GROWSUP.
type MProtectOpts struct {
	GrowsDown bool
	GrowsUp   bool
}

// MProtect changes the permissions of [addr, addr+length) to perms, as
// mprotect(2). Like Linux it changes vmas in address order and stops at the
// first failure, leaving earlier vmas changed.
func (mm *MemoryManager) MProtect(ctx context.Context, addr hostarch.Addr, length uint64, perms hostarch.AccessType, opts MProtectOpts) error {
	if opts.GrowsDown && opts.GrowsUp {
		return unix.EINVAL
	}
	if !addr.IsPageAligned() {
		return unix.EINVAL
	}
	if length == 0 {
		return nil
	}
	la, ok := hostarch.PageRoundUp(length)
	end := addr + hostarch.Addr(la)
	if !ok || end <= addr {
		return unix.ENOMEM
	}
	start := addr

	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	vseg := mm.vmas.LowerBoundSegment(start)
	if !vseg.Ok() || vseg.Start() >= end {
		return unix.ENOMEM
	}
	if opts.GrowsDown {
		start = vseg.Start()
		if !vseg.ValuePtr().growsDown() {
			return unix.EINVAL
		}
	} else {
		if vseg.Start() > start {
			return unix.ENOMEM
		}
		if opts.GrowsUp {
			return unix.EINVAL
		}
	}
	nstart := start
	var err error
	var populate []hostarch.AddrRange
	for nstart < end {
		vseg = mm.vmas.LowerBoundSegment(nstart)
		if !vseg.Ok() || vseg.Start() > nstart {
			// A hole: Linux stops here with ENOMEM.
			err = unix.ENOMEM
			break
		}
		v := vseg.ValuePtr()
		if !v.maxPerms.SupersetOf(perms) {
			err = unix.EACCES
			break
		}
		if mm.denyWriteExecLocked(v.realPerms, perms) {
			err = unix.EACCES
			break
		}
		segEnd := min(vseg.End(), end)
		r := hostarch.AddrRange{Start: nstart, End: segEnd}
		if nv := (vma{realPerms: perms, flags: v.flags}); nv.isData() && !v.isData() {
			// Turning into data: like mprotect_fixup, fail only when
			// RLIMIT_DATA refuses what RLIMIT_AS allows.
			pages := r.Length() >> hostarch.PageShift
			if mm.asOKLocked(pages) && !mm.dataOKLocked(pages) {
				err = unix.ENOMEM
				break
			}
		}
		if perms.Write && v.private() && !v.realPerms.Write && v.locked() {
			// A locked vma turning writable is populated
			// (mprotect_fixup), even if its mlock failed to.
			populate = append(populate, r)
		}
		account := perms.Write && v.private() && !v.flags.has(vmaAccount) && !v.realPerms.Write && !v.flags.has(vmaNoReserve)
		if account && !v.flags.has(vmaSealed) && !mm.enoughMemoryLocked(r.Length()) {
			// A private mapping turning writable commits its
			// memory (mprotect_fixup).
			err = unix.ENOMEM
			break
		}
		// Dropping write gives the commitment back only for anonymous
		// memory never faulted (no anon_vma yet), as mprotect_fixup.
		unaccount := !perms.Write && v.flags.has(vmaAccount) && v.isPrivateAnon() && !v.written()
		if _, err = mm.modifyVMALocked(ctx, vseg, r, true, func(nv *vma) {
			nv.realPerms = perms
			if account {
				nv.flags |= vmaAccount
			}
			if unaccount {
				nv.flags &^= vmaAccount
			}
		}); err != nil {
			break
		}
		nstart = segEnd
	}
	// The vmas of [start, nstart) changed: update their pmas at once.
	if changed := (hostarch.AddrRange{Start: start, End: nstart}); changed.Length() > 0 {
		mm.updatePMAPermsLocked(changed)
	}
	for _, r := range populate {
		if r.End <= nstart {
			mm.populateLocked(ctx, r, true)
		}
	}
	return err
}

// modifyVMALocked applies change to the part r of vseg's vma, as Linux's
// vma_modify: if checkSeal, sealed vmas refuse (EPERM); an unchanged vma is
// left alone; otherwise the vma is split at r's bounds (ENOMEM at the map
// count), changed, and merged with its neighbours where nothing differs.
// Callers that change permissions bring the pmas in line afterwards. It
// returns the segment now covering r.Start. Preconditions: mappingMu held for writing; r lies
// within vseg.
func (mm *MemoryManager) modifyVMALocked(ctx context.Context, vseg vmaIterator, r hostarch.AddrRange, checkSeal bool, change func(*vma)) (vmaIterator, error) {
	old := vseg.Value()
	if checkSeal && old.flags.has(vmaSealed) {
		return vseg, unix.EPERM
	}
	nv := old
	change(&nv)
	if vmaEqual(&old, &nv) {
		return vseg, nil
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
	// where nothing differs; unchanged vmas are left as they are.
	mm.vmas.MergeAdjacent(addrSegRange(r))
	return mm.vmas.FindSegment(r.Start), nil
}

// vmaEqual reports whether two vmas have the same attributes.
func vmaEqual(a, b *vma) bool {
	return a.mappable == b.mappable && a.off == b.off && a.realPerms == b.realPerms &&
		a.maxPerms == b.maxPerms && a.flags == b.flags && a.mlockMode == b.mlockMode &&
		a.numaPolicy == b.numaPolicy && a.numaNodemask == b.numaNodemask && a.id == b.id && a.name == b.name
}

// updatePMAPermsLocked brings the permissions of the pmas in ar in line
// with their vmas' (after mprotect), splitting pmas at vma boundaries, and
// unmaps from the AddressSpace what lost permissions. Preconditions:
// mappingMu held for writing; vmas cover ar wherever pmas do.
func (mm *MemoryManager) updatePMAPermsLocked(ar hostarch.AddrRange) {
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	reduced := false
	vseg := mm.vmas.LowerBoundSegment(ar.Start)
	for pseg := mm.pmas.LowerBoundSegment(ar.Start); pseg.Ok() && pseg.Start() < ar.End; pseg = pseg.NextSegment() {
		for vseg.Ok() && vseg.End() <= pseg.Start() {
			vseg = vseg.NextSegment()
		}
		if !vseg.Ok() {
			break
		}
		v := vseg.ValuePtr()
		p := pseg.ValuePtr()
		ne := v.pmaPerms(p.translatePerms, p.needCOW, p.private)
		nm := v.maxPerms.Intersect(p.translatePerms)
		if p.needCOW {
			nm = v.maxPerms
		}
		if ne == p.effectivePerms && nm == p.maxPerms {
			continue
		}
		pseg = mm.pmas.Isolate(pseg, addrSegRange(hostarch.AddrRange(vseg.Range()).Intersect(ar)))
		p = pseg.ValuePtr()
		if !ne.SupersetOf(p.effectivePerms) {
			reduced = true
		}
		p.effectivePerms = ne
		p.maxPerms = nm
	}
	if reduced {
		mm.unmapASLocked(ar)
	}
	mm.pmas.MergeRange(addrSegRange(ar))
	mm.pmas.MergeAdjacent(addrSegRange(ar))
}

// canDoMLockLocked is Linux's can_do_mlock: a process may lock memory if it
// has CAP_IPC_LOCK or a non-zero RLIMIT_MEMLOCK. Preconditions: mappingMu
// held.
func (mm *MemoryManager) canDoMLockLocked() bool {
	return mm.limits.CapIPCLock || mm.limits.MemLock.Cur != 0
}

// mlockFutureOKLocked is Linux's mlock_future_ok: locking length more bytes
// keeps within RLIMIT_MEMLOCK. Preconditions: mappingMu held.
func (mm *MemoryManager) mlockFutureOKLocked(length uint64) bool {
	if mm.limits.CapIPCLock {
		return true
	}
	locked := mm.lockedAS + length
	return locked >= mm.lockedAS && locked <= mm.limits.MemLock.Cur
}

// populateLocked faults in every page of ar, as MAP_POPULATE and mlock do:
// for writing in private writable vmas, else for reading; lazily locked
// vmas are skipped. An inaccessible (PROT_NONE) vma or an error stops it
// with false, unless ignoreErrors (Linux's mm_populate, used by mmap, brk,
// mremap and mlockall), which skips to the next vma. Preconditions:
// mappingMu held for writing.
func (mm *MemoryManager) populateLocked(ctx context.Context, ar hostarch.AddrRange, ignoreErrors bool) bool {
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	for vseg := mm.vmas.LowerBoundSegment(ar.Start); vseg.Ok() && vseg.Start() < ar.End; vseg = vseg.NextSegment() {
		v := vseg.ValuePtr()
		if v.mlockMode == memmap.MLockLazy {
			continue
		}
		eff := v.effectivePerms()
		if !eff.Any() {
			if ignoreErrors {
				continue
			}
			return false
		}
		at := hostarch.Read
		if v.private() && eff.Write {
			at = hostarch.Write
		}
		r := hostarch.AddrRange(vseg.Range()).Intersect(ar)
		guard := mm.firstGuardLocked(r)
		full := r.End
		r.End = guard
		if r.Length() > 0 {
			if err := mm.populateRangeLocked(ctx, vseg, r, at); err != nil && !ignoreErrors {
				return false
			}
		}
		if guard < full && !ignoreErrors {
			// A guard region faults: like any fault, it stops mlock.
			return false
		}
		vseg = mm.vmas.FindSegment(r.Start)
	}
	return true
}

// populateChunk is how much populateRangeLocked populates between checks
// of its context's cancellation (a fatal signal, in Linux's terms).
const populateChunk = 64 << 20

// populateRangeLocked creates pmas for r within vseg and marks its pages
// accessed. If ctx can be cancelled, it goes populateChunk-aligned chunk by
// chunk and stops with ctx's error once it is. Preconditions: mappingMu
// held; activeMu held for writing.
func (mm *MemoryManager) populateRangeLocked(ctx context.Context, vseg vmaIterator, r hostarch.AddrRange, at hostarch.AccessType) error {
	if ctx.Done() != nil {
		for c := r.Start; c < r.End; {
			if err := ctx.Err(); err != nil {
				return err
			}
			e := (c + populateChunk) &^ (populateChunk - 1)
			if e <= c || e > r.End {
				e = r.End
			}
			if err := mm.populateOnceLocked(ctx, mm.vmas.FindSegment(c), hostarch.AddrRange{Start: c, End: e}, at); err != nil {
				return err
			}
			c = e
		}
		return nil
	}
	return mm.populateOnceLocked(ctx, vseg, r, at)
}

// populateOnceLocked is populateRangeLocked without cancellation.
func (mm *MemoryManager) populateOnceLocked(ctx context.Context, vseg vmaIterator, r hostarch.AddrRange, at hostarch.AccessType) error {
	if _, err := mm.getPMAsLocked(ctx, vseg, r, at); err != nil {
		return err
	}
	mm.touchLocked(r, at)
	if mm.as != nil {
		return mm.mapASLocked(r, true)
	}
	return nil
}

// MInCoreSys is the whole mincore(2) system call, writing the vector to
// vec in the address space, in Linux's order: addr page-aligned (EINVAL);
// the range within user addresses (ENOMEM) and then the vector (EFAULT),
// both as x86-64's access_ok; then vma by vma, so that the vector's fault (EFAULT) for
// mapped pages comes before a hole after them (ENOMEM).
func (mm *MemoryManager) MInCoreSys(ctx context.Context, addr hostarch.Addr, length uint64, vec hostarch.Addr) error {
	if !addr.IsPageAligned() {
		return unix.EINVAL
	}
	if !accessOK(addr, length, hostarch.MaxUserAddress) {
		return unix.ENOMEM
	}
	pages := length>>hostarch.PageShift + boolToUint64(length&hostarch.PageMask != 0)
	if !accessOK(vec, pages, hostarch.MaxUserAddress) {
		return unix.EFAULT
	}
	if length == 0 {
		return nil
	}
	out, err := mm.MInCore(ctx, addr, length)
	if len(out) > 0 {
		if _, cerr := mm.CopyOut(ctx, vec, out, IOOpts{}); cerr != nil {
			return unix.EFAULT
		}
	}
	return err
}

// accessOK is x86-64's access_ok for a length that is not a small
// constant: addr+length must not wrap nor pass top (TASK_SIZE, whatever
// part of the top the platform keeps for itself).
func accessOK(addr hostarch.Addr, length uint64, top hostarch.Addr) bool {
	sum := uint64(addr) + length
	return sum >= uint64(addr) && sum <= uint64(top)
}

func boolToUint64(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// RemapFilePages is remap_file_pages(2), which Linux emulates with mmap:
// prot must be 0; [start, start+size) (both rounded down to pages) must lie
// in contiguous shared writable mappings of one file with equal
// attributes (EINVAL otherwise), and is mapped again, with those
// attributes, at file page pgoff, populated (flags may only carry
// MAP_NONBLOCK, which skips that).
func (mm *MemoryManager) RemapFilePages(ctx context.Context, start hostarch.Addr, size, prot, pgoff, flags uint64) error {
	if prot != 0 {
		return unix.EINVAL
	}
	start = start.RoundDown()
	size &^= hostarch.PageSize - 1
	end := start + hostarch.Addr(size)
	if end <= start {
		return unix.EINVAL
	}
	if pgoff+size>>hostarch.PageShift < pgoff {
		return unix.EINVAL
	}
	mm.mappingMu.Lock()
	vseg := mm.vmas.FindSegment(start)
	if !vseg.Ok() || !vseg.ValuePtr().canWriteMappable() {
		mm.mappingMu.Unlock()
		return unix.EINVAL
	}
	v := vseg.Value()
	for prev := vseg; prev.End() < end; {
		next := prev.NextSegment()
		if !next.Ok() || next.Start() != prev.End() {
			mm.mappingMu.Unlock()
			return unix.EINVAL
		}
		n := next.ValuePtr()
		if n.mappable != v.mappable || n.flags != v.flags || n.realPerms != v.realPerms ||
			n.maxPerms != v.maxPerms || n.mlockMode != v.mlockMode {
			mm.mappingMu.Unlock()
			return unix.EINVAL
		}
		prev = next
	}
	if v.id != nil {
		v.id.IncRef()
		defer v.id.DecRef(ctx)
	}
	mm.mappingMu.Unlock()

	opts := memmap.MMapOpts{
		Length:          size,
		Addr:            start,
		Offset:          pgoff << hostarch.PageShift,
		Fixed:           true,
		Unmap:           true,
		Perms:           v.realPerms,
		MaxPerms:        v.maxPerms,
		SharedAnonymous: v.flags.has(vmaAnonShared),
		NoReserve:       v.flags.has(vmaNoReserve),
	}
	if flags&MapNonBlock == 0 {
		opts.PlatformEffect = memmap.MMapPopulate
	}
	if v.locked() {
		opts.MLockMode = memmap.MLockEager
	}
	_, err := mm.mmap(ctx, opts, func(o *memmap.MMapOpts) error {
		// Linux's file_mmap_ok.
		if pgoff > (maxLFSFileSize-size)>>hostarch.PageShift {
			return unix.EOVERFLOW
		}
		o.Mappable = v.mappable
		if v.id != nil {
			v.id.IncRef()
			o.MappingIdentity = v.id
		}
		return nil
	}, 0)
	return err
}
