package segment

import "fmt"

// Key is the type of range bounds.
type Key interface{ ~uint64 | ~uintptr }

// Range is the half-open range [Start, End).
//
// A well-formed range has Start <= End. Its layout matches
// hostarch.AddrRange and memmap.FileRange, so those convert to it directly:
// segment.Range[hostarch.Addr](ar).
type Range[K Key] struct {
	// Start is the first key in the range.
	Start K
	// End is one past the last key in the range.
	End K
}

// Length returns End - Start.
func (r Range[K]) Length() K { return r.End - r.Start }

// WellFormed reports whether Start <= End.
func (r Range[K]) WellFormed() bool { return r.Start <= r.End }

// Contains reports whether r contains x.
func (r Range[K]) Contains(x K) bool { return r.Start <= x && x < r.End }

// Overlaps reports whether r.Start < o.End and o.Start < r.End, as
// hostarch.AddrRange.Overlaps does. For non-empty ranges this means they
// share a key; an empty range counts as overlapping a range it lies strictly
// inside.
func (r Range[K]) Overlaps(o Range[K]) bool { return r.Start < o.End && o.Start < r.End }

// IsSupersetOf reports whether r contains every key of o. Every range is a
// superset of an empty range that lies within it (including at its End).
func (r Range[K]) IsSupersetOf(o Range[K]) bool { return r.Start <= o.Start && o.End <= r.End }

// Intersect returns the intersection of r and o. If they do not overlap the
// result is empty (Start == End).
func (r Range[K]) Intersect(o Range[K]) Range[K] {
	if r.Start < o.Start {
		r.Start = o.Start
	}
	if r.End > o.End {
		r.End = o.End
	}
	if r.End < r.Start {
		r.End = r.Start
	}
	return r
}

// CanSplitAt reports whether x lies strictly inside r (Start < x < End), so
// that splitting r at x leaves two non-empty ranges.
func (r Range[K]) CanSplitAt(x K) bool { return r.Start < x && x < r.End }

// String formats r as [start, end) in hexadecimal.
func (r Range[K]) String() string {
	return fmt.Sprintf("[%#x, %#x)", uint64(r.Start), uint64(r.End))
}

// Functions customises a Set. Implementations are zero-size structs; the Set
// calls their methods on the zero value.
type Functions[K Key, V any] interface {
	// MinKey returns the smallest key the set may contain. The first gap
	// starts here.
	MinKey() K

	// MaxKey returns the exclusive upper bound of keys the set may contain.
	// The last gap ends here. MaxKey() must be greater than MinKey().
	MaxKey() K

	// ClearValue is called on a value that is leaving the set (Remove,
	// RemoveAll, RemoveRange, and the second segment of a merge), so that
	// it can drop references.
	ClearValue(*V)

	// Merge merges the values of two adjacent segments, r1 immediately
	// before r2 (r1.End == r2.Start). It returns the merged value for
	// [r1.Start, r2.End) and true, or false if the segments must stay
	// separate; when it returns false the set keeps v1 and v2 unchanged.
	Merge(r1 Range[K], v1 V, r2 Range[K], v2 V) (V, bool)

	// Split splits value v of segment r at split (r.Start < split < r.End),
	// returning the values for [r.Start, split) and [split, r.End).
	Split(r Range[K], v V, split K) (V, V)
}
