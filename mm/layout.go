package mm

import (
	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

// MmapDirection is the direction in which mappings without a fixed address
// are placed.
type MmapDirection int

const (
	// MmapTopDown places new mappings below TopDownBase, highest first
	// (Linux's default on x86-64).
	MmapTopDown MmapDirection = iota
	// MmapBottomUp places new mappings above BottomUpBase, lowest first
	// (the legacy layout).
	MmapBottomUp
)

// MmapLayout says where mappings are placed.
type MmapLayout struct {
	// MinAddr and MaxAddr bound every mapping: [MinAddr, MaxAddr).
	MinAddr hostarch.Addr
	MaxAddr hostarch.Addr
	// BottomUpBase is where bottom-up placement starts (TASK_UNMAPPED_BASE).
	BottomUpBase hostarch.Addr
	// TopDownBase is the exclusive top of top-down placement (mmap_base):
	// below the stack and its gap.
	TopDownBase hostarch.Addr
	// DefaultDirection is how mappings without a fixed address are placed.
	DefaultDirection MmapDirection
}

// Linux's x86-64 layout constants.
const (
	// stackGuardGap is Linux's default stack_guard_gap: 256 pages kept free
	// below a growsdown vma.
	stackGuardGap hostarch.Addr = 256 * hostarch.PageSize
	// minGap and maxGap bound the gap between the stack top and mmap_base
	// (mmap_base's clamp of RLIMIT_STACK).
	minGap hostarch.Addr = 128 << 20
	// map32Start and map32End bound MAP_32BIT placement on x86-64.
	map32Start hostarch.Addr = 0x40000000
	map32End   hostarch.Addr = 0x80000000
)

// DefaultMmapLayout returns Linux's x86-64 layout without randomization for
// the user range [minAddr, maxAddr) and a stack limit of stackLimit bytes
// (RLIMIT_STACK's soft value): mmap_base lies below the top by the stack
// limit plus the guard gap, clamped to [128 MiB, 5/6 of the range], as
// Linux's mmap_base() computes it.
func DefaultMmapLayout(minAddr, maxAddr, minMmapAddr hostarch.Addr, stackLimit uint64) MmapLayout {
	if minAddr < minMmapAddr {
		minAddr = minMmapAddr
	}
	gap := stackLimit
	if pad := uint64(stackGuardGap); gap+pad > gap {
		gap += pad
	}
	gapMax := uint64(maxAddr) / 6 * 5
	if gap < uint64(minGap) {
		gap = uint64(minGap)
	} else if gap > gapMax {
		gap = gapMax
	}
	top := maxAddr
	if uint64(top) > gap && top-hostarch.Addr(gap) > minAddr {
		top -= hostarch.Addr(gap)
	}
	bottom := (maxAddr / 3).RoundDown()
	if bottom < minAddr {
		bottom = minAddr
	}
	return MmapLayout{
		MinAddr:          minAddr,
		MaxAddr:          maxAddr,
		BottomUpBase:     bottom,
		TopDownBase:      top.RoundDown(),
		DefaultDirection: MmapTopDown,
	}
}

// SetMmapLayout replaces the manager's layout (as exec does).
func (mm *MemoryManager) SetMmapLayout(l MmapLayout) {
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	mm.layout = l
}

// MmapLayout returns the manager's layout.
func (mm *MemoryManager) MmapLayout() MmapLayout {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	return mm.layout
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
