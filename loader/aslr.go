package loader

import (
	"crypto/rand"
	"encoding/binary"
	"io"

	"github.com/vmspace/vmspace/hostarch"
)

// ASLR says how Load randomizes the layout, as Linux does for a process
// with PF_RANDOMIZE (kernel.randomize_va_space 1 or 2, and no
// ADDR_NO_RANDOMIZE personality).
type ASLR struct {
	// Brk also randomizes the program break (randomize_va_space 2).
	Brk bool
	// MmapRndBits is vm.mmap_rnd_bits, the bits of page-granular
	// randomness of mmap_base and of a PIE's load address; 0 means 28,
	// x86-64's default (and the least Linux allows there).
	MmapRndBits uint
	// Rand is where the random numbers come from; nil means
	// crypto/rand.
	Rand io.Reader
	// VDSOAt, if not 0, is where the caller would like the block of
	// VDSOSize bytes that Options.VDSO maps (top-down, right below the
	// interpreter, or below mmap_base for a static ET_EXEC program) to
	// land: if one of Linux's draws of the mmap randomization puts it
	// there, that draw is taken instead of a random one. VDSOAt must
	// itself be random with at least the randomization's entropy (the
	// host's vDSO of a fresh exec is), so that the layout stays as
	// random as Linux's.
	VDSOAt   hostarch.Addr
	VDSOSize uint64
}

// Linux's x86-64 randomization ranges.
const (
	// defaultMmapRndBits is CONFIG_ARCH_MMAP_RND_BITS's x86-64 default.
	defaultMmapRndBits = 28
	// maxMmapRndBits is ARCH_MMAP_RND_BITS_MAX on x86-64 (47-bit
	// addresses less the page shift, less 3).
	maxMmapRndBits = 32
	// stackRndMask is STACK_RND_MASK for 64-bit tasks: 22 bits of pages
	// (16 GiB) below STACK_TOP.
	stackRndMask uint64 = 0x3fffff
	// alignStackRange is arch_align_stack's range: up to 8 KiB below
	// the stack pointer, then 16-byte aligned.
	alignStackRange uint64 = 8192
	// brkRndRange is arch_randomize_brk's range on x86-64: the break
	// starts up to 1 GiB above its place.
	brkRndRange uint64 = 1 << 30
)

// randomizer draws the random numbers of one Load (nil: no
// randomization, every draw 0).
type randomizer struct {
	a *ASLR
	// err is the first error reading a.Rand.
	err error
	// mmapSet says that mmapRnd returns mmapFixed rather than a draw
	// (ASLR.VDSOAt).
	mmapSet   bool
	mmapFixed uint64
}

// long returns a random 64-bit number (get_random_long).
func (r *randomizer) long() uint64 {
	if r == nil || r.a == nil {
		return 0
	}
	src := r.a.Rand
	if src == nil {
		src = rand.Reader
	}
	var b [8]byte
	if _, err := io.ReadFull(src, b[:]); err != nil {
		if r.err == nil {
			r.err = err
		}
		return 0
	}
	return binary.LittleEndian.Uint64(b[:])
}

// on reports whether the layout is randomized.
func (r *randomizer) on() bool { return r != nil && r.a != nil }

// mmapRnd is arch_mmap_rnd: mmap_rnd_bits bits of pages.
func (r *randomizer) mmapRnd() uint64 {
	if !r.on() {
		return 0
	}
	if r.mmapSet {
		return r.mmapFixed
	}
	return (r.long() & (1<<r.mmapBits() - 1)) << hostarch.PageShift
}

// mmapBits is the number of bits of page-granular mmap randomization.
func (r *randomizer) mmapBits() uint {
	bits := r.a.MmapRndBits
	if bits == 0 {
		bits = defaultMmapRndBits
	}
	return min(bits, maxMmapRndBits)
}

// placeVDSO makes mmapRnd the draw that puts the vDSO block at
// ASLR.VDSOAt, if there is one: with the top-down mappings above it
// spanning above bytes (page-aligned) below mmap_base, for a task size
// ts and stack limit rlimStack.
func (r *randomizer) placeVDSO(ts hostarch.Addr, rlimStack, above uint64) {
	if !r.on() || r.a.VDSOAt == 0 || r.a.VDSOSize == 0 {
		return
	}
	base := uint64(mmapBaseRnd(ts, rlimStack, r.stackMaxRandom(), 0))
	want := uint64(r.a.VDSOAt)
	if want%hostarch.PageSize != 0 || r.a.VDSOSize%hostarch.PageSize != 0 || want+r.a.VDSOSize < want {
		return
	}
	end := want + r.a.VDSOSize + above
	if end < want || end > base {
		return
	}
	rnd := base - end
	if rnd>>hostarch.PageShift >= 1<<r.mmapBits() {
		return
	}
	r.mmapSet, r.mmapFixed = true, rnd
}

// stackMaxRandom is stack_maxrandom_size: how far below STACK_TOP the
// randomized stack may start, which mmap_base leaves room for.
func (r *randomizer) stackMaxRandom() uint64 {
	if !r.on() {
		return 0
	}
	return stackRndMask << hostarch.PageShift
}

// stackTop is randomize_stack_top followed by setup_arg_pages's
// arch_align_stack and PAGE_ALIGN: top less up to 16 GiB of pages, and
// one page lower about half the time.
func (r *randomizer) stackTop(top hostarch.Addr) hostarch.Addr {
	if !r.on() {
		return top
	}
	top -= hostarch.Addr((r.long() & stackRndMask) << hostarch.PageShift)
	return hostarch.Addr(pageAlign(uint64(r.alignStack(top))))
}

// alignStack is arch_align_stack: sp less up to 8 KiB, 16-byte aligned.
func (r *randomizer) alignStack(sp hostarch.Addr) hostarch.Addr {
	if r.on() {
		sp -= hostarch.Addr(r.long() % alignStackRange)
	}
	return sp &^ 15
}

// brk is arch_randomize_brk (randomize_page over 1 GiB): brk, page
// aligned, plus a random number of pages below 1 GiB.
func (r *randomizer) brk(brk hostarch.Addr) hostarch.Addr {
	rng := brkRndRange
	start := uint64(brk)
	if a := pageAlign(start); a != start {
		rng -= a - start
		start = a
	}
	if start > ^uint64(0)-rng {
		rng = ^uint64(0) - start
	}
	rng >>= hostarch.PageShift
	if rng == 0 {
		return hostarch.Addr(start)
	}
	return hostarch.Addr(start + (r.long()%rng)<<hostarch.PageShift)
}
