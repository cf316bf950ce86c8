// Package hostarch describes the host architecture's view of memory:
// addresses, address ranges, access types and page arithmetic.
//
// vmspace targets x86-64 Linux. Every operation that could overflow reports it
// with an (value, ok) result; nothing in this package wraps silently.
package hostarch

import "fmt"

const (
	// PageShift is log2(PageSize).
	PageShift = 12
	// PageSize is the size of a base page in bytes.
	PageSize = 1 << PageShift
	// PageMask masks the offset of an address within its page.
	PageMask = PageSize - 1

	// HugePageShift is log2(HugePageSize).
	HugePageShift = 21
	// HugePageSize is the size of a PMD-level huge page in bytes.
	HugePageSize = 1 << HugePageShift
	// HugePageMask masks the offset of an address within its huge page.
	HugePageMask = HugePageSize - 1

	// MaxUserAddress is the exclusive upper bound of user addresses with
	// 4-level paging on x86-64 (47-bit user space), less the guard page
	// Linux reserves below it (TASK_SIZE_MAX = 2^47 - 4096).
	MaxUserAddress Addr = (1 << 47) - PageSize
)

// Addr is a virtual address in an application's address space.
type Addr uintptr

// String formats the address in hex, as /proc/PID/maps does.
func (a Addr) String() string { return fmt.Sprintf("%#x", uintptr(a)) }

// AddLength returns a+length and whether the sum did not overflow.
func (a Addr) AddLength(length uint64) (Addr, bool) {
	end := a + Addr(length)
	if uint64(Addr(length)) != length || end < a {
		return 0, false
	}
	return end, true
}

// ToRange returns [a, a+length) and whether it is representable.
func (a Addr) ToRange(length uint64) (AddrRange, bool) {
	end, ok := a.AddLength(length)
	return AddrRange{a, end}, ok
}

// RoundDown returns a rounded down to a page boundary.
func (a Addr) RoundDown() Addr { return a &^ PageMask }

// RoundUp returns a rounded up to a page boundary, and false if that
// overflows.
func (a Addr) RoundUp() (Addr, bool) {
	r := (a + PageMask) &^ PageMask
	return r, r >= a
}

// MustRoundUp is RoundUp for values known not to overflow; it panics
// otherwise, which would be a programming error.
func (a Addr) MustRoundUp() Addr {
	r, ok := a.RoundUp()
	if !ok {
		panic(fmt.Sprintf("hostarch: RoundUp(%v) overflows", a))
	}
	return r
}

// HugeRoundDown returns a rounded down to a huge page boundary.
func (a Addr) HugeRoundDown() Addr { return a &^ HugePageMask }

// HugeRoundUp returns a rounded up to a huge page boundary, and false if that
// overflows.
func (a Addr) HugeRoundUp() (Addr, bool) {
	r := (a + HugePageMask) &^ HugePageMask
	return r, r >= a
}

// PageOffset returns the offset of a within its page.
func (a Addr) PageOffset() uint64 { return uint64(a & PageMask) }

// IsPageAligned reports whether a is page-aligned.
func (a Addr) IsPageAligned() bool { return a&PageMask == 0 }

// IsHugePageAligned reports whether a is huge-page-aligned.
func (a Addr) IsHugePageAligned() bool { return a&HugePageMask == 0 }

// PageRoundDown rounds x down to a page boundary.
func PageRoundDown[T ~uint64 | ~uintptr | ~uint32 | ~int64 | ~int](x T) T { return x &^ PageMask }

// PageRoundUp rounds x up to a page boundary and reports whether that did
// not overflow.
func PageRoundUp[T ~uint64 | ~uintptr | ~uint32 | ~int64 | ~int](x T) (T, bool) {
	r := (x + PageMask) &^ PageMask
	return r, r >= x
}

// HugePageRoundDown rounds x down to a huge page boundary.
func HugePageRoundDown[T ~uint64 | ~uintptr](x T) T { return x &^ HugePageMask }

// HugePageRoundUp rounds x up to a huge page boundary and reports whether
// that did not overflow.
func HugePageRoundUp[T ~uint64 | ~uintptr](x T) (T, bool) {
	r := (x + HugePageMask) &^ HugePageMask
	return r, r >= x
}

// IsPageAligned reports whether x is a multiple of PageSize.
func IsPageAligned[T ~uint64 | ~uintptr | ~uint32 | ~int64 | ~int](x T) bool { return x&PageMask == 0 }
