package mm

import "github.com/vmspace/vmspace/hostarch"

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
