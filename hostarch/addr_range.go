package hostarch

import "fmt"

// AddrRange is the half-open range of addresses [Start, End).
//
// A well-formed range has Start <= End. Its layout matches segment.Range[Addr]
// so the two convert to each other directly.
type AddrRange struct {
	Start Addr
	End   Addr
}

// WellFormed reports whether Start <= End.
func (r AddrRange) WellFormed() bool { return r.Start <= r.End }

// Length returns End - Start.
func (r AddrRange) Length() uint64 { return uint64(r.End - r.Start) }

// Size is Length as an Addr-width value.
func (r AddrRange) Size() Addr { return r.End - r.Start }

// Contains reports whether r contains x.
func (r AddrRange) Contains(x Addr) bool { return r.Start <= x && x < r.End }

// Overlaps reports whether r and r2 share at least one address.
func (r AddrRange) Overlaps(r2 AddrRange) bool {
	return r.Start < r2.End && r2.Start < r.End
}

// IsSupersetOf reports whether r contains every address of r2.
func (r AddrRange) IsSupersetOf(r2 AddrRange) bool {
	return r.Start <= r2.Start && r2.End <= r.End
}

// Intersect returns the intersection of r and r2; it is empty (Start == End)
// when they do not overlap.
func (r AddrRange) Intersect(r2 AddrRange) AddrRange {
	if r.Start < r2.Start {
		r.Start = r2.Start
	}
	if r.End > r2.End {
		r.End = r2.End
	}
	if r.End < r.Start {
		r.End = r.Start
	}
	return r
}

// CanSplitAt reports whether x lies strictly inside r.
func (r AddrRange) CanSplitAt(x Addr) bool { return r.Start < x && x < r.End }

// IsPageAligned reports whether both ends of r are page-aligned.
func (r AddrRange) IsPageAligned() bool {
	return r.Start.IsPageAligned() && r.End.IsPageAligned()
}

// RoundOut returns the smallest page-aligned range containing r, and false if
// rounding End up overflows.
func (r AddrRange) RoundOut() (AddrRange, bool) {
	end, ok := r.End.RoundUp()
	return AddrRange{r.Start.RoundDown(), end}, ok
}

// NumPages returns the number of pages r spans once rounded out.
func (r AddrRange) NumPages() uint64 {
	ro, ok := r.RoundOut()
	if !ok {
		return (uint64(^Addr(0)-r.Start.RoundDown()) + 1) >> PageShift
	}
	return ro.Length() >> PageShift
}

// String formats r as [start, end).
func (r AddrRange) String() string {
	return fmt.Sprintf("[%#x, %#x)", uintptr(r.Start), uintptr(r.End))
}
