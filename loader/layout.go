package loader

import (
	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
)

// Linux's x86-64 layout constants.
const (
	// DefaultMapWindow is Linux's DEFAULT_MAP_WINDOW (TASK_SIZE_LOW): the
	// top of the 47-bit user address space, which is TASK_SIZE for the
	// layout, STACK_TOP, and the base of ELF_ET_DYN_BASE.
	DefaultMapWindow hostarch.Addr = 1<<47 - hostarch.PageSize

	// taskSizeSlack: a platform whose MaxUserAddress is within this of
	// DefaultMapWindow (the ptrace platform keeps two pages) keeps Linux's
	// TASK_SIZE for the layout; see taskSizeFor.
	taskSizeSlack hostarch.Addr = 1 << 20

	// stackGuardGap is Linux's default stack_guard_gap (256 pages).
	stackGuardGap uint64 = 256 * hostarch.PageSize

	// minGap is the least room mmap_base leaves for the stack (128 MiB).
	minGap uint64 = 128 << 20

	// stackExpand is how much setup_arg_pages grows the stack beyond the
	// argument pages (128 KiB), within RLIMIT_STACK.
	stackExpand uint64 = 128 << 10

	// maxArgStrlen is MAX_ARG_STRLEN: the longest argument or environment
	// string, NUL included (32 pages).
	maxArgStrlen = 32 * hostarch.PageSize

	// argMax is ARG_MAX: the argument space allowed even with a small
	// stack limit (32 pages).
	argMax uint64 = 32 * hostarch.PageSize

	// stkLim is _STK_LIM (8 MiB); 3/4 of it bounds the argument space.
	stkLim uint64 = 8 << 20
)

// taskSizeFor returns the TASK_SIZE the layout is computed for, given the
// highest address the platform can map: Linux's 47-bit TASK_SIZE if the
// platform reaches (nearly) that far, else the platform's limit.
func taskSizeFor(maxAddr hostarch.Addr) hostarch.Addr {
	if maxAddr+taskSizeSlack >= DefaultMapWindow {
		return DefaultMapWindow
	}
	return maxAddr.RoundDown()
}

// stackTopFor returns STACK_TOP: TASK_SIZE, or the platform's limit if
// lower.
func stackTopFor(taskSize, maxAddr hostarch.Addr) hostarch.Addr {
	return min(taskSize, maxAddr).RoundDown()
}

// etDynBase is ELF_ET_DYN_BASE on x86-64: 2/3 of TASK_SIZE (not
// page-aligned; the load bias is aligned by the segments' alignment).
func etDynBase(taskSize hostarch.Addr) hostarch.Addr {
	return taskSize / 3 * 2
}

// pageAlign rounds x up to a page, saturating at the last page.
func pageAlign(x uint64) uint64 {
	r, ok := hostarch.PageRoundUp(x)
	if !ok {
		return x &^ (hostarch.PageSize - 1)
	}
	return r
}

// mmapBase is Linux's mmap_base without randomization: TASK_SIZE less the
// stack limit and the guard gap, clamped to [128 MiB, 5/6 TASK_SIZE],
// rounded up to a page.
func mmapBase(taskSize hostarch.Addr, rlimStack uint64) hostarch.Addr {
	return mmapBaseRnd(taskSize, rlimStack, 0, 0)
}

// mmapBaseRnd is Linux's mmap_base: the gap below TASK_SIZE is the stack
// limit plus the guard gap and stackRandom (how far the stack's top may
// be randomized down), clamped to [128 MiB, 5/6 TASK_SIZE]; mmap_base is
// that far below TASK_SIZE, less rnd, rounded up to a page.
func mmapBaseRnd(taskSize hostarch.Addr, rlimStack, stackRandom, rnd uint64) hostarch.Addr {
	gap := rlimStack
	if pad := stackGuardGap + stackRandom; gap+pad > gap {
		gap += pad
	}
	gapMax := uint64(taskSize) / 6 * 5
	gap = max(gap, minGap)
	gap = min(gap, gapMax)
	return hostarch.Addr(pageAlign(uint64(taskSize) - gap - rnd))
}

// Layout returns the mmap layout exec gives a program (Linux's
// arch_pick_mmap_layout without randomization) in a manager whose current
// layout is cur: top-down below mmap_base, or bottom-up from TASK_SIZE/3
// if legacy. MinAddr and MaxAddr stay as they are.
func Layout(cur mm.MmapLayout, rlimStack uint64, legacy bool) mm.MmapLayout {
	return layout(cur, rlimStack, legacy, nil)
}

// layout is Layout with r's randomization: both bases move down (the
// legacy one up) by the same arch_mmap_rnd, and mmap_base leaves room
// for the randomized stack.
func layout(cur mm.MmapLayout, rlimStack uint64, legacy bool, r *randomizer) mm.MmapLayout {
	ts := taskSizeFor(cur.MaxAddr)
	rnd := r.mmapRnd()
	l := mm.MmapLayout{
		MinAddr:          cur.MinAddr,
		MaxAddr:          cur.MaxAddr,
		BottomUpBase:     hostarch.Addr(pageAlign(uint64(ts/3)) + rnd),
		TopDownBase:      min(mmapBaseRnd(ts, rlimStack, r.stackMaxRandom(), rnd), cur.MaxAddr),
		DefaultDirection: mm.MmapTopDown,
	}
	if legacy {
		l.DefaultDirection = mm.MmapBottomUp
	}
	return l
}
