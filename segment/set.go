package segment

import (
	"errors"
	"fmt"
	"iter"
	"strings"
)

// Set is an ordered set of non-overlapping, non-empty ranges (segments),
// each with a value of type V. Keys lie in [F.MinKey(), F.MaxKey()). The
// spaces between segments, and before the first and after the last, are
// gaps; a set with n segments always has n+1 gaps, some possibly empty.
//
// The zero value is an empty set. A Set must not be copied once it has had
// segments (copies would share nodes, even when empty); use ExportSlices and
// ImportSortedSlices to clone one. A Set is not safe for concurrent
// mutation; concurrent reads are safe when nothing mutates.
type Set[K Key, V any, F Functions[K, V]] struct {
	// root is the root of the tree, or nil when the tree is a single leaf
	// (first) or empty.
	root *inner[K, V, F]
	// first and last are the first and last leaves, nil if the set is
	// empty.
	first, last *leaf[K, V, F]
	// len is the number of segments.
	len int
	// spare is a list of empty leaves, linked by next, kept from removals
	// for later insertions to reuse (see takeLeaf); nspare is its length,
	// at most maxSpareLeaves.
	spare  *leaf[K, V, F]
	nspare int
}

// Iterator points at a segment of a Set, or is terminal (!Ok()). Any
// mutation of the set invalidates all iterators except those returned by the
// mutation; changing a segment's range or value through an iterator is not
// a mutation in this sense. The zero Iterator is terminal; of a terminal
// iterator's methods only Ok, PrevGap and NextGap (which return terminal
// gaps) may be called. Iterators are comparable: two valid iterators into
// one set are equal iff they point at the same segment.
type Iterator[K Key, V any, F Functions[K, V]] struct {
	// l is the leaf holding the segment, or nil for a terminal iterator.
	l *leaf[K, V, F]
	// i is the index of the segment in l.
	i int
}

// emptySetGap is GapIterator.i for the only gap of an empty set, whose l is
// nil.
const emptySetGap = -1

// GapIterator points at a gap of a Set: the space between two adjacent
// segments, before the first segment (from MinKey) or after the last (to
// MaxKey). Gaps may be empty. The zero GapIterator is terminal (!Ok()); of
// a terminal gap's methods only Ok may be called. Invalidation and
// comparison are as for Iterator.
type GapIterator[K Key, V any, F Functions[K, V]] struct {
	// l is the leaf owning the gap: the gap is before l's entry i, or, for
	// the last gap of the set, i == l.n and l is the last leaf. l is nil
	// for a terminal iterator (i == 0) and for the gap of an empty set (i
	// == emptySetGap).
	l *leaf[K, V, F]
	// i is the gap's index in l, as above.
	i int
}

func minKey[K Key, V any, F Functions[K, V]]() K {
	var f F
	return f.MinKey()
}

func maxKey[K Key, V any, F Functions[K, V]]() K {
	var f F
	return f.MaxKey()
}

// Ok reports whether it points at a segment.
func (it Iterator[K, V, F]) Ok() bool { return it.l != nil }

// Range returns the segment's range.
func (it Iterator[K, V, F]) Range() Range[K] { return it.l.rng(it.i) }

// Start returns the segment's start.
func (it Iterator[K, V, F]) Start() K { return it.l.starts[it.i] }

// End returns the segment's end.
func (it Iterator[K, V, F]) End() K { return it.l.ends[it.i] }

// SetRangeUnchecked changes the segment's range. The caller guarantees that r
// is non-empty, within [MinKey, MaxKey), and does not overlap or reorder
// with the neighbouring segments. It does not invalidate iterators.
func (it Iterator[K, V, F]) SetRangeUnchecked(r Range[K]) {
	l := it.l
	l.setRng(it.i, r)
	l.fix()
	if it.i == l.n-1 {
		l.fixNext()
	}
}

// SetRange changes the segment's range. It panics if r is empty or
// malformed, leaves [MinKey, MaxKey), or overlaps a neighbouring segment.
// It does not invalidate iterators.
func (it Iterator[K, V, F]) SetRange(r Range[K]) {
	if r.Start >= r.End {
		panic(fmt.Sprintf("segment: SetRange(%v): empty or malformed range", r))
	}
	lo, hi := it.PrevGap().Start(), it.NextGap().End()
	if r.Start < lo || r.End > hi {
		panic(fmt.Sprintf("segment: SetRange(%v): outside the space [%#x, %#x) between neighbours", r, uint64(lo), uint64(hi)))
	}
	it.SetRangeUnchecked(r)
}

// SetStartUnchecked is SetRangeUnchecked(Range{k, it.End()}).
func (it Iterator[K, V, F]) SetStartUnchecked(k K) { it.SetRangeUnchecked(Range[K]{k, it.End()}) }

// SetStart is SetRange(Range{k, it.End()}); it panics likewise.
func (it Iterator[K, V, F]) SetStart(k K) { it.SetRange(Range[K]{k, it.End()}) }

// SetEndUnchecked is SetRangeUnchecked(Range{it.Start(), k}).
func (it Iterator[K, V, F]) SetEndUnchecked(k K) { it.SetRangeUnchecked(Range[K]{it.Start(), k}) }

// SetEnd is SetRange(Range{it.Start(), k}); it panics likewise.
func (it Iterator[K, V, F]) SetEnd(k K) { it.SetRange(Range[K]{it.Start(), k}) }

// Value returns a copy of the segment's value.
func (it Iterator[K, V, F]) Value() V { return it.l.vals[it.i] }

// ValuePtr returns a pointer to the segment's value, valid until the next
// mutation of the set (other than through the pointer or the iterator).
func (it Iterator[K, V, F]) ValuePtr() *V { return &it.l.vals[it.i] }

// SetValue replaces the segment's value. ClearValue is not called on the old
// value.
func (it Iterator[K, V, F]) SetValue(v V) { it.l.vals[it.i] = v }

// PrevSegment returns the segment before it, or a terminal iterator.
func (it Iterator[K, V, F]) PrevSegment() Iterator[K, V, F] {
	if it.i > 0 {
		return Iterator[K, V, F]{it.l, it.i - 1}
	}
	if p := it.l.prev; p != nil {
		return Iterator[K, V, F]{p, p.n - 1}
	}
	return Iterator[K, V, F]{}
}

// NextSegment returns the segment after it, or a terminal iterator.
func (it Iterator[K, V, F]) NextSegment() Iterator[K, V, F] {
	if it.i+1 < it.l.n {
		return Iterator[K, V, F]{it.l, it.i + 1}
	}
	if n := it.l.next; n != nil {
		return Iterator[K, V, F]{n, 0}
	}
	return Iterator[K, V, F]{}
}

// PrevGap returns the gap just before it (possibly empty). It is Ok if it
// is.
func (it Iterator[K, V, F]) PrevGap() GapIterator[K, V, F] {
	return GapIterator[K, V, F]{it.l, it.i}
}

// NextGap returns the gap just after it (possibly empty). It is Ok if it
// is.
func (it Iterator[K, V, F]) NextGap() GapIterator[K, V, F] {
	if it.l == nil {
		return GapIterator[K, V, F]{}
	}
	return gapAt(it.l, it.i+1)
}

// PrevNonEmpty returns the previous segment if it is adjacent to it (the gap
// between them is empty), else the previous gap if it is non-empty. At most
// one of the results is Ok; both are terminal when it is the first segment
// and starts at MinKey.
func (it Iterator[K, V, F]) PrevNonEmpty() (Iterator[K, V, F], GapIterator[K, V, F]) {
	g := it.PrevGap()
	if !g.IsEmpty() {
		return Iterator[K, V, F]{}, g
	}
	return it.PrevSegment(), GapIterator[K, V, F]{}
}

// NextNonEmpty returns the next segment if it is adjacent to it, else the
// next gap if it is non-empty. At most one of the results is Ok; both are
// terminal when it is the last segment and ends at MaxKey.
func (it Iterator[K, V, F]) NextNonEmpty() (Iterator[K, V, F], GapIterator[K, V, F]) {
	g := it.NextGap()
	if !g.IsEmpty() {
		return Iterator[K, V, F]{}, g
	}
	return it.NextSegment(), GapIterator[K, V, F]{}
}

// Ok reports whether g points at a gap.
func (g GapIterator[K, V, F]) Ok() bool { return g.l != nil || g.i == emptySetGap }

// Range returns the gap's range.
func (g GapIterator[K, V, F]) Range() Range[K] { return Range[K]{g.Start(), g.End()} }

// Start returns the gap's start: the end of the previous segment, or MinKey.
func (g GapIterator[K, V, F]) Start() K {
	if g.l == nil {
		return minKey[K, V, F]()
	}
	return g.l.gapStart(g.i)
}

// End returns the gap's end: the start of the next segment, or MaxKey.
func (g GapIterator[K, V, F]) End() K {
	if g.l == nil || g.i == g.l.n {
		return maxKey[K, V, F]()
	}
	return g.l.starts[g.i]
}

// IsEmpty reports whether the gap has length 0.
func (g GapIterator[K, V, F]) IsEmpty() bool { return g.Start() == g.End() }

// PrevSegment returns the segment before g, or a terminal iterator.
func (g GapIterator[K, V, F]) PrevSegment() Iterator[K, V, F] {
	if g.l == nil {
		return Iterator[K, V, F]{}
	}
	if g.i > 0 {
		return Iterator[K, V, F]{g.l, g.i - 1}
	}
	if p := g.l.prev; p != nil {
		return Iterator[K, V, F]{p, p.n - 1}
	}
	return Iterator[K, V, F]{}
}

// NextSegment returns the segment after g, or a terminal iterator.
func (g GapIterator[K, V, F]) NextSegment() Iterator[K, V, F] {
	if g.l == nil || g.i == g.l.n {
		return Iterator[K, V, F]{}
	}
	return Iterator[K, V, F]{g.l, g.i}
}

// PrevGap returns the gap before g (across one segment), or a terminal
// iterator.
func (g GapIterator[K, V, F]) PrevGap() GapIterator[K, V, F] {
	seg := g.PrevSegment()
	if !seg.Ok() {
		return GapIterator[K, V, F]{}
	}
	return seg.PrevGap()
}

// NextGap returns the gap after g (across one segment), or a terminal
// iterator.
func (g GapIterator[K, V, F]) NextGap() GapIterator[K, V, F] {
	seg := g.NextSegment()
	if !seg.Ok() {
		return GapIterator[K, V, F]{}
	}
	return seg.NextGap()
}

// NextLargeEnoughGap returns the first gap after g whose length is at least
// minSize, or a terminal iterator. It takes O(log n) time.
func (g GapIterator[K, V, F]) NextLargeEnoughGap(minSize K) GapIterator[K, V, F] {
	if g.l == nil || g.i == g.l.n {
		return GapIterator[K, V, F]{}
	}
	return nextLargeGap(g.l, g.i, minSize)
}

// PrevLargeEnoughGap returns the last gap before g whose length is at least
// minSize, or a terminal iterator. It takes O(log n) time.
func (g GapIterator[K, V, F]) PrevLargeEnoughGap(minSize K) GapIterator[K, V, F] {
	if g.l == nil {
		return GapIterator[K, V, F]{}
	}
	return prevLargeGap(g.l, g.i, minSize)
}

// IsEmpty reports whether the set has no segments.
func (s *Set[K, V, F]) IsEmpty() bool { return s.len == 0 }

// IsEmptyRange reports whether no segment overlaps r. An empty r overlaps
// nothing.
func (s *Set[K, V, F]) IsEmptyRange(r Range[K]) bool {
	if r.Start >= r.End {
		return true
	}
	seg := s.LowerBoundSegment(r.Start)
	return !seg.Ok() || seg.Start() >= r.End
}

// Span returns the total length of all segments. It takes O(n) time.
func (s *Set[K, V, F]) Span() K {
	var n K
	for l := s.first; l != nil; l = l.next {
		for i := 0; i < l.n; i++ {
			n += l.ends[i] - l.starts[i]
		}
	}
	return n
}

// SpanRange returns the total length of the parts of segments that lie
// within r.
func (s *Set[K, V, F]) SpanRange(r Range[K]) K {
	var n K
	for seg := range s.Segments(r) {
		n += seg.Range().Intersect(r).Length()
	}
	return n
}

// Len returns the number of segments.
func (s *Set[K, V, F]) Len() int { return s.len }

// FirstSegment returns the first segment, or a terminal iterator if the set
// is empty.
func (s *Set[K, V, F]) FirstSegment() Iterator[K, V, F] {
	if s.first == nil {
		return Iterator[K, V, F]{}
	}
	return Iterator[K, V, F]{s.first, 0}
}

// LastSegment returns the last segment, or a terminal iterator if the set is
// empty.
func (s *Set[K, V, F]) LastSegment() Iterator[K, V, F] {
	if s.last == nil {
		return Iterator[K, V, F]{}
	}
	return Iterator[K, V, F]{s.last, s.last.n - 1}
}

// FirstGap returns the first gap, [MinKey, first segment's start). It is
// always Ok.
func (s *Set[K, V, F]) FirstGap() GapIterator[K, V, F] {
	if s.first == nil {
		return GapIterator[K, V, F]{nil, emptySetGap}
	}
	return GapIterator[K, V, F]{s.first, 0}
}

// LastGap returns the last gap, [last segment's end, MaxKey). It is always
// Ok.
func (s *Set[K, V, F]) LastGap() GapIterator[K, V, F] {
	if s.last == nil {
		return GapIterator[K, V, F]{nil, emptySetGap}
	}
	return GapIterator[K, V, F]{s.last, s.last.n}
}

// Find returns the segment containing key, or else the gap containing key.
// Exactly one of the results is Ok, except that both are terminal when key
// is outside [MinKey, MaxKey).
func (s *Set[K, V, F]) Find(key K) (Iterator[K, V, F], GapIterator[K, V, F]) {
	if key < minKey[K, V, F]() || key >= maxKey[K, V, F]() {
		return Iterator[K, V, F]{}, GapIterator[K, V, F]{}
	}
	l, i := s.search(key)
	if l == nil {
		return Iterator[K, V, F]{}, GapIterator[K, V, F]{nil, emptySetGap}
	}
	if i > 0 && key < l.ends[i-1] {
		return Iterator[K, V, F]{l, i - 1}, GapIterator[K, V, F]{}
	}
	return Iterator[K, V, F]{}, gapAt(l, i)
}

// FindSegment returns the segment containing key, or a terminal iterator.
func (s *Set[K, V, F]) FindSegment(key K) Iterator[K, V, F] {
	l, i := s.search(key)
	if i > 0 && key < l.ends[i-1] {
		return Iterator[K, V, F]{l, i - 1}
	}
	return Iterator[K, V, F]{}
}

// FindGap returns the gap containing key, or a terminal iterator if a
// segment contains key or key is outside [MinKey, MaxKey). Empty gaps
// contain no key.
func (s *Set[K, V, F]) FindGap(key K) GapIterator[K, V, F] {
	_, g := s.Find(key)
	return g
}

// LowerBoundSegment returns the first segment with End > min: the segment
// containing min, or else the first segment after min. It is terminal if
// there is none.
func (s *Set[K, V, F]) LowerBoundSegment(min K) Iterator[K, V, F] {
	l, i := s.search(min)
	if l == nil {
		return Iterator[K, V, F]{}
	}
	if i > 0 && min < l.ends[i-1] {
		return Iterator[K, V, F]{l, i - 1}
	}
	if i < l.n {
		return Iterator[K, V, F]{l, i}
	}
	if l.next != nil {
		return Iterator[K, V, F]{l.next, 0}
	}
	return Iterator[K, V, F]{}
}

// UpperBoundSegment returns the last segment with Start <= max: the segment
// containing max, or else the last segment before max. It is terminal if
// there is none.
func (s *Set[K, V, F]) UpperBoundSegment(max K) Iterator[K, V, F] {
	l, i := s.search(max)
	if i == 0 {
		return Iterator[K, V, F]{}
	}
	return Iterator[K, V, F]{l, i - 1}
}

// LowerBoundGap returns the first gap, in order and counting empty gaps,
// with End > min: the gap containing min, or else the first gap after min.
// It is terminal if min >= MaxKey.
func (s *Set[K, V, F]) LowerBoundGap(min K) GapIterator[K, V, F] {
	if min >= maxKey[K, V, F]() {
		return GapIterator[K, V, F]{}
	}
	l, i := s.search(min)
	if l == nil {
		return GapIterator[K, V, F]{nil, emptySetGap}
	}
	// The gap before entry i is the first to end after min.
	return gapAt(l, i)
}

// UpperBoundGap returns the last gap, in order and counting empty gaps, with
// Start <= max: the gap containing max, or else the last gap before max. It
// is terminal if max < MinKey.
func (s *Set[K, V, F]) UpperBoundGap(max K) GapIterator[K, V, F] {
	if max < minKey[K, V, F]() {
		return GapIterator[K, V, F]{}
	}
	l, i := s.search(max)
	if l == nil {
		return GapIterator[K, V, F]{nil, emptySetGap}
	}
	// Every segment before entry i-1 ends before max; so does entry i-1 if
	// its end is at most max, in which case the gap after it is the one.
	if i > 0 && l.ends[i-1] > max {
		i--
	}
	return gapAt(l, i)
}

// LowerBoundSegmentSplitBefore is LowerBoundSegment(min), except that if the
// segment found contains min strictly inside, it is split at min and the
// part starting at min is returned.
func (s *Set[K, V, F]) LowerBoundSegmentSplitBefore(min K) Iterator[K, V, F] {
	seg := s.LowerBoundSegment(min)
	if seg.Ok() && seg.Range().CanSplitAt(min) {
		_, seg = s.Split(seg, min)
	}
	return seg
}

// UpperBoundSegmentSplitAfter returns the last segment with Start < max
// (that is, the last segment overlapping [MinKey, max)), split at max if it
// extends past max, so that the result ends at or before max. It is terminal
// if there is none. Unlike UpperBoundSegment(max) it never returns a segment
// starting exactly at max, which would have nothing before max to keep.
func (s *Set[K, V, F]) UpperBoundSegmentSplitAfter(max K) Iterator[K, V, F] {
	if max == 0 {
		return Iterator[K, V, F]{}
	}
	seg := s.UpperBoundSegment(max - 1)
	if seg.Ok() && seg.Range().CanSplitAt(max) {
		seg, _ = s.Split(seg, max)
	}
	return seg
}

// Add inserts r with value v if r lies wholly in one gap, merging it with
// adjacent segments where Functions.Merge allows, and reports whether it
// did. It returns false, changing nothing, if r overlaps a segment or leaves
// [MinKey, MaxKey). It panics if r is empty or malformed.
func (s *Set[K, V, F]) Add(r Range[K], v V) bool {
	g := s.gapFor(r)
	if !g.Ok() {
		return false
	}
	s.Insert(g, r, v)
	return true
}

// AddWithoutMerging is Add without merging.
func (s *Set[K, V, F]) AddWithoutMerging(r Range[K], v V) bool {
	g := s.gapFor(r)
	if !g.Ok() {
		return false
	}
	s.InsertWithoutMergingUnchecked(g, r, v)
	return true
}

// gapFor returns the gap wholly containing r, or a terminal iterator. It
// panics if r is empty or malformed.
func (s *Set[K, V, F]) gapFor(r Range[K]) GapIterator[K, V, F] {
	if r.Start >= r.End {
		panic(fmt.Sprintf("segment: adding empty or malformed range %v", r))
	}
	g := s.FindGap(r.Start)
	if !g.Ok() || r.End > g.End() {
		return GapIterator[K, V, F]{}
	}
	return g
}

// checkInsert panics unless r is non-empty and lies within gap.
func checkInsert[K Key, V any, F Functions[K, V]](gap GapIterator[K, V, F], r Range[K]) {
	if !gap.Ok() {
		panic("segment: insert into a terminal gap")
	}
	if r.Start >= r.End {
		panic(fmt.Sprintf("segment: inserting empty or malformed range %v", r))
	}
	if gr := gap.Range(); !gr.IsSupersetOf(r) {
		panic(fmt.Sprintf("segment: inserting %v into gap %v", r, gr))
	}
}

// Insert inserts r with value v into gap, which must contain r, merging with
// the neighbouring segments where they are adjacent to r and
// Functions.Merge allows (first with the previous segment, then with the
// next). It returns the segment that contains r, merged or not. If both
// merges happen, ClearValue is called on the old value of the next segment,
// which is absorbed. It panics if gap is terminal or r is empty, malformed or
// not within gap.
func (s *Set[K, V, F]) Insert(gap GapIterator[K, V, F], r Range[K], v V) Iterator[K, V, F] {
	checkInsert(gap, r)
	var f F
	prev, next := gap.PrevSegment(), gap.NextSegment()
	if prev.Ok() && prev.End() == r.Start {
		if mv, ok := f.Merge(prev.Range(), prev.Value(), r, v); ok {
			if next.Ok() && next.Start() == r.End {
				if mv2, ok := f.Merge(Range[K]{prev.Start(), r.End}, mv, next.Range(), next.Value()); ok {
					// prev absorbs r and next.
					end := next.End()
					prev = s.Remove(next).PrevSegment()
					prev.l.vals[prev.i] = mv2
					prev.SetEndUnchecked(end)
					return prev
				}
			}
			prev.l.vals[prev.i] = mv
			prev.SetEndUnchecked(r.End)
			return prev
		}
	}
	if next.Ok() && next.Start() == r.End {
		if mv, ok := f.Merge(r, v, next.Range(), next.Value()); ok {
			next.l.vals[next.i] = mv
			next.SetStartUnchecked(r.Start)
			return next
		}
	}
	return s.InsertWithoutMergingUnchecked(gap, r, v)
}

// InsertWithoutMerging inserts r with value v into gap, which must contain
// r, as a new segment, and returns it. It panics if gap is terminal or r is
// empty, malformed or not within gap.
func (s *Set[K, V, F]) InsertWithoutMerging(gap GapIterator[K, V, F], r Range[K], v V) Iterator[K, V, F] {
	checkInsert(gap, r)
	return s.InsertWithoutMergingUnchecked(gap, r, v)
}

// InsertWithoutMergingUnchecked is InsertWithoutMerging without checking
// its preconditions: the caller guarantees that gap is Ok and r is
// non-empty and lies within gap.
func (s *Set[K, V, F]) InsertWithoutMergingUnchecked(gap GapIterator[K, V, F], r Range[K], v V) Iterator[K, V, F] {
	l, i := gap.l, gap.i
	if i == 0 && l != nil && l.prev != nil && l.prev.n < leafCap {
		// Prefer appending to the previous leaf to shifting l.
		l = l.prev
		i = l.n
	}
	return s.insertAt(l, i, r, v)
}

// Remove removes seg, calling ClearValue on its value, and returns the gap
// that replaced it. It panics if seg is terminal.
func (s *Set[K, V, F]) Remove(seg Iterator[K, V, F]) GapIterator[K, V, F] {
	if !seg.Ok() {
		panic("segment: Remove of a terminal iterator")
	}
	return s.removeAt(seg.l, seg.i)
}

// RemoveAll removes every segment, calling ClearValue on each value.
func (s *Set[K, V, F]) RemoveAll() {
	var f F
	for l := s.first; l != nil; l = l.next {
		for i := 0; i < l.n; i++ {
			f.ClearValue(&l.vals[i])
		}
	}
	*s = Set[K, V, F]{}
}

// RemoveRange removes every part of every segment that lies within r,
// splitting segments that straddle r's bounds and calling ClearValue on the
// values removed. It returns the gap that now contains r, that is
// LowerBoundGap(r.Start) after the removal (terminal if r.Start >= MaxKey).
// If r is empty it removes nothing and returns FindGap(r.Start) (terminal if
// a segment contains r.Start). It panics if r is malformed.
func (s *Set[K, V, F]) RemoveRange(r Range[K]) GapIterator[K, V, F] {
	if r.Start > r.End {
		panic(fmt.Sprintf("segment: RemoveRange(%v): malformed range", r))
	}
	if r.Start == r.End {
		return s.FindGap(r.Start)
	}
	seg := s.LowerBoundSegment(r.Start)
	if !seg.Ok() || seg.Start() >= r.End {
		return s.LowerBoundGap(r.Start)
	}
	seg = s.Isolate(seg, r)
	var g GapIterator[K, V, F]
	for {
		g = s.Remove(seg)
		seg = g.NextSegment()
		if !seg.Ok() || seg.Start() >= r.End {
			return g
		}
		seg = s.Isolate(seg, r)
	}
}

// RemoveFullRange is RemoveRange for an r that splits no segment: every
// segment overlapping r must lie wholly within it. It panics if one does not,
// or if r is malformed.
func (s *Set[K, V, F]) RemoveFullRange(r Range[K]) GapIterator[K, V, F] {
	if r.Start > r.End {
		panic(fmt.Sprintf("segment: RemoveFullRange(%v): malformed range", r))
	}
	for seg := range s.Segments(r) {
		if !r.IsSupersetOf(seg.Range()) {
			panic(fmt.Sprintf("segment: RemoveFullRange(%v) would split segment %v", r, seg.Range()))
		}
	}
	return s.RemoveRange(r)
}

// Merge merges first and second, which must be consecutive segments
// (second == first.NextSegment()), if they are adjacent (first.End() ==
// second.Start()) and Functions.Merge allows. It returns the merged segment,
// or a terminal iterator (changing nothing) if they are not adjacent or
// Functions.Merge refuses. ClearValue is called on second's old value. It
// panics if either is terminal or second does not follow first.
func (s *Set[K, V, F]) Merge(first, second Iterator[K, V, F]) Iterator[K, V, F] {
	if !first.Ok() || !second.Ok() || first.NextSegment() != second {
		panic("segment: Merge of segments that are not consecutive")
	}
	if first.End() != second.Start() {
		return Iterator[K, V, F]{}
	}
	var f F
	mv, ok := f.Merge(first.Range(), first.Value(), second.Range(), second.Value())
	if !ok {
		return Iterator[K, V, F]{}
	}
	end := second.End()
	first = s.Remove(second).PrevSegment()
	first.l.vals[first.i] = mv
	first.SetEndUnchecked(end)
	return first
}

// MergeRange merges every mergeable adjacent pair of segments both of which
// overlap r. Within a leaf it compacts in one pass (each value that stays
// moves at most once, and the leaf is rebalanced once), so that merging
// thousands of segments back into one (mprotect over many pages, then back)
// costs one structural change per leaf rather than one per segment.
func (s *Set[K, V, F]) MergeRange(r Range[K]) {
	if r.Start >= r.End {
		return
	}
	seg := s.LowerBoundSegment(r.Start)
	for seg.Ok() && seg.Start() < r.End {
		seg = s.compactLeaf(seg, r.End)
		if seg.i == seg.l.n-1 && seg.l.next != nil {
			if m, ok := s.absorbLeafHead(seg, r.End); ok {
				seg = m
				continue
			}
		}
		next := seg.NextSegment()
		if !next.Ok() || next.Start() >= r.End {
			return
		}
		// Across the leaf boundary.
		if m := s.Merge(seg, next); m.Ok() {
			seg = m
		} else {
			seg = next
		}
	}
}

// compactLeaf merges, within seg's leaf, every mergeable adjacent pair from
// seg on whose second segment starts before end, and rebalances the leaf.
// It returns the segment (re-found) that holds what was the leaf's last
// entry examined, merged with what followed it.
func (s *Set[K, V, F]) compactLeaf(seg Iterator[K, V, F], end K) Iterator[K, V, F] {
	var f F
	l, w := seg.l, seg.i
	j := w + 1
	for ; j < l.n && l.starts[j] < end; j++ {
		if l.ends[w] == l.starts[j] {
			if mv, ok := f.Merge(l.rng(w), l.vals[w], l.rng(j), l.vals[j]); ok {
				l.vals[w] = mv
				l.ends[w] = l.ends[j]
				f.ClearValue(&l.vals[j])
				continue
			}
		}
		w++
		if w != j {
			l.starts[w], l.ends[w], l.vals[w] = l.starts[j], l.ends[j], l.vals[j]
		}
	}
	removed := j - (w + 1)
	if removed == 0 {
		return Iterator[K, V, F]{l, w}
	}
	// Close up the entries after j.
	n := l.n
	copy(l.starts[w+1:], l.starts[j:n])
	copy(l.ends[w+1:], l.ends[j:n])
	copy(l.vals[w+1:], l.vals[j:n])
	l.n = n - removed
	l.clearTail(l.n)
	s.len -= removed
	key := l.starts[w]
	if l.parent != nil && l.n <= leafMerge {
		s.rebalanceLeaf(l, w)
	} else {
		l.fix()
		l.fixNext()
	}
	return s.FindSegment(key)
}

// absorbLeafHead merges into seg, the last entry of its leaf, the entries
// at the head of the next leaf that merge with it in turn and start before
// end, and takes them out of that leaf at once (one shift, one rebalance,
// or the leaf dropped whole), where Merge would remove them one at a time.
// It returns the merged segment (re-found) and true, or seg and false if
// the next leaf's first entry does not merge.
func (s *Set[K, V, F]) absorbLeafHead(seg Iterator[K, V, F], end K) (Iterator[K, V, F], bool) {
	var f F
	l, w := seg.l, seg.i
	nl := l.next
	k := 0
	for k < nl.n && nl.starts[k] < end && l.ends[w] == nl.starts[k] {
		mv, ok := f.Merge(l.rng(w), l.vals[w], nl.rng(k), nl.vals[k])
		if !ok {
			break
		}
		l.vals[w] = mv
		l.ends[w] = nl.ends[k]
		f.ClearValue(&nl.vals[k])
		k++
	}
	if k == 0 {
		return seg, false
	}
	key := l.starts[w]
	n := nl.n
	copy(nl.starts[:], nl.starts[k:n])
	copy(nl.ends[:], nl.ends[k:n])
	copy(nl.vals[:], nl.vals[k:n])
	nl.n = n - k
	nl.clearTail(nl.n)
	s.len -= k
	switch {
	case nl.n == 0:
		// Both leaves have parents: the tree has two leaves at least.
		p, idx := nl.parent, nl.pidx
		s.unlinkLeaf(nl)
		s.removeChild(p, idx)
		s.keepLeaf(nl)
		// The leaf after nl keeps its first gap: l's last segment
		// now ends where nl's did.
	case nl.n <= leafMerge:
		s.rebalanceLeaf(nl, 0)
	default:
		nl.fix()
	}
	return s.FindSegment(key), true
}

// MergeAdjacent tries to merge the segment containing r.Start with its
// predecessor, and the segment containing r.End-1 with its successor. It
// does nothing for an empty r.
func (s *Set[K, V, F]) MergeAdjacent(r Range[K]) {
	if r.Start >= r.End {
		return
	}
	if seg := s.FindSegment(r.Start); seg.Ok() {
		if prev := seg.PrevSegment(); prev.Ok() {
			s.Merge(prev, seg)
		}
	}
	if seg := s.FindSegment(r.End - 1); seg.Ok() {
		if next := seg.NextSegment(); next.Ok() {
			s.Merge(seg, next)
		}
	}
}

// MergeAll merges every mergeable adjacent pair of segments.
func (s *Set[K, V, F]) MergeAll() {
	seg := s.FirstSegment()
	if !seg.Ok() {
		return
	}
	for {
		next := seg.NextSegment()
		if !next.Ok() {
			return
		}
		if m := s.Merge(seg, next); m.Ok() {
			seg = m
		} else {
			seg = next
		}
	}
}

// Split splits seg at split using Functions.Split and returns the two
// resulting segments, [seg.Start, split) and [split, seg.End). It panics
// unless seg is Ok and seg.Start() < split < seg.End().
func (s *Set[K, V, F]) Split(seg Iterator[K, V, F], split K) (Iterator[K, V, F], Iterator[K, V, F]) {
	if !seg.Ok() || !seg.Range().CanSplitAt(split) {
		panic(fmt.Sprintf("segment: Split at %#x outside the segment", uint64(split)))
	}
	var f F
	l, i := seg.l, seg.i
	r := l.rng(i)
	v1, v2 := f.Split(r, l.vals[i], split)
	// insertAt brings the gaps up to date for the shortened segment too.
	l.ends[i] = split
	l.vals[i] = v1
	second := s.insertAt(l, i+1, Range[K]{split, r.End}, v2)
	return second.PrevSegment(), second
}

// SplitAt splits the segment containing split at split if split lies
// strictly inside it, and reports whether it did.
func (s *Set[K, V, F]) SplitAt(split K) bool {
	seg := s.FindSegment(split)
	if !seg.Ok() || !seg.Range().CanSplitAt(split) {
		return false
	}
	s.Split(seg, split)
	return true
}

// Isolate splits seg at r.Start and r.End where they lie strictly inside it,
// and returns the part of seg that lies within r. It panics if seg is
// terminal or r does not overlap seg.
func (s *Set[K, V, F]) Isolate(seg Iterator[K, V, F], r Range[K]) Iterator[K, V, F] {
	if !seg.Ok() || !seg.Range().Overlaps(r) {
		panic(fmt.Sprintf("segment: Isolate(%v) of a segment it does not overlap", r))
	}
	if seg.Range().CanSplitAt(r.Start) {
		_, seg = s.Split(seg, r.Start)
	}
	if seg.Range().CanSplitAt(r.End) {
		seg, _ = s.Split(seg, r.End)
	}
	return seg
}

// Segments returns an iterator over the segments overlapping r, in
// ascending order; each is yielded whole, not clipped to r. The set must not
// be mutated during the iteration (changing values through the yielded
// iterators is allowed).
func (s *Set[K, V, F]) Segments(r Range[K]) iter.Seq[Iterator[K, V, F]] {
	return func(yield func(Iterator[K, V, F]) bool) {
		if r.Start >= r.End {
			return
		}
		for seg := s.LowerBoundSegment(r.Start); seg.Ok() && seg.Start() < r.End; seg = seg.NextSegment() {
			if !yield(seg) {
				return
			}
		}
	}
}

// Gaps returns an iterator over the non-empty gaps overlapping r, in
// ascending order; each is yielded whole, not clipped to r. The set must not
// be mutated during the iteration.
func (s *Set[K, V, F]) Gaps(r Range[K]) iter.Seq[GapIterator[K, V, F]] {
	return func(yield func(GapIterator[K, V, F]) bool) {
		if r.Start >= r.End {
			return
		}
		for g := s.LowerBoundGap(r.Start); g.Ok() && g.Start() < r.End; g = g.NextGap() {
			if g.IsEmpty() {
				continue
			}
			if !yield(g) {
				return
			}
		}
	}
}

// fitLow returns the lowest s with s%align == 0 and [s, s+length) within
// avail, if any. align is a power of two; length > 0.
func fitLow[K Key](avail Range[K], length, align K) (K, bool) {
	if avail.End-avail.Start < length {
		return 0, false
	}
	start := (avail.Start + align - 1) &^ (align - 1)
	if start < avail.Start { // overflow rounding up
		return 0, false
	}
	if start > avail.End || avail.End-start < length {
		return 0, false
	}
	return start, true
}

// fitHigh returns the highest s with s%align == 0 and [s, s+length) within
// avail, if any. align is a power of two; length > 0.
func fitHigh[K Key](avail Range[K], length, align K) (K, bool) {
	if avail.End-avail.Start < length {
		return 0, false
	}
	start := (avail.End - length) &^ (align - 1)
	if start < avail.Start {
		return 0, false
	}
	return start, true
}

// checkGapArgs panics unless length > 0 and align is a power of two.
func checkGapArgs[K Key](length, align K) {
	if length == 0 || align == 0 || align&(align-1) != 0 {
		panic(fmt.Sprintf("segment: gap search with length %#x, align %#x", uint64(length), uint64(align)))
	}
}

// FindLowestGap returns the lowest start s with s%align == 0 such that
// [s, s+length) lies within bounds and wholly inside one gap, and true; or
// false if there is none. It panics if length is 0 or align is not a power
// of two (alignment 1 means none).
func (s *Set[K, V, F]) FindLowestGap(bounds Range[K], length, align K) (K, bool) {
	checkGapArgs(length, align)
	if bounds.Start >= bounds.End || bounds.End-bounds.Start < length {
		return 0, false
	}
	g := s.LowerBoundGap(bounds.Start)
	if g.Ok() && g.End()-g.Start() < length {
		g = g.NextLargeEnoughGap(length)
	}
	// Every gap visited is at least length long; alignment or bounds may
	// still rule it out.
	for ; g.Ok() && g.Start() < bounds.End; g = g.NextLargeEnoughGap(length) {
		if a, ok := fitLow(g.Range().Intersect(bounds), length, align); ok {
			return a, true
		}
	}
	return 0, false
}

// FindHighestGap returns the highest start s with s%align == 0 such that
// [s, s+length) lies within bounds and wholly inside one gap, and true; or
// false if there is none. It panics if length is 0 or align is not a power
// of two.
func (s *Set[K, V, F]) FindHighestGap(bounds Range[K], length, align K) (K, bool) {
	checkGapArgs(length, align)
	if bounds.Start >= bounds.End || bounds.End-bounds.Start < length {
		return 0, false
	}
	g := s.UpperBoundGap(bounds.End - 1)
	if g.Ok() && g.End()-g.Start() < length {
		g = g.PrevLargeEnoughGap(length)
	}
	for ; g.Ok() && g.End() > bounds.Start; g = g.PrevLargeEnoughGap(length) {
		if a, ok := fitHigh(g.Range().Intersect(bounds), length, align); ok {
			return a, true
		}
	}
	return 0, false
}

// ExportSlices returns the segments' ranges and values in ascending order.
func (s *Set[K, V, F]) ExportSlices() (ranges []Range[K], values []V) {
	ranges = make([]Range[K], 0, s.len)
	values = make([]V, 0, s.len)
	for l := s.first; l != nil; l = l.next {
		for i := 0; i < l.n; i++ {
			ranges = append(ranges, l.rng(i))
		}
		values = append(values, l.vals[:l.n]...)
	}
	return ranges, values
}

// Errors returned by ImportSortedSlices.
var (
	// ErrNotEmpty: ImportSortedSlices into a set that has segments.
	ErrNotEmpty = errors.New("segment: import into a non-empty set")
	// ErrBadImport: the slices differ in length, or a range is empty,
	// malformed, out of [MinKey, MaxKey), or out of order or overlapping.
	ErrBadImport = errors.New("segment: invalid ranges to import")
)

// ImportSortedSlices loads ranges[i] with values[i] into s, which must be
// empty, without merging, in O(n). ranges must be sorted, non-overlapping,
// non-empty and within [MinKey, MaxKey), and len(values) == len(ranges);
// otherwise it returns an error (wrapping ErrNotEmpty or ErrBadImport) and
// leaves s unchanged.
func (s *Set[K, V, F]) ImportSortedSlices(ranges []Range[K], values []V) error {
	if err := checkImport[K, V, F](s.Len(), ranges, values); err != nil {
		return err
	}
	n := len(ranges)
	if n == 0 {
		return nil
	}
	// Fill as few leaves as will hold everything, sharing the segments
	// evenly so that every leaf is at least half full.
	nLeaves := (n + leafCap - 1) / leafCap
	leaves := make([]*leaf[K, V, F], nLeaves)
	var prev *leaf[K, V, F]
	for j := range leaves {
		lo, hi := j*n/nLeaves, (j+1)*n/nLeaves
		l := newLeaf[K, V, F]()
		l.n, l.prev = hi-lo, prev
		for i, r := range ranges[lo:hi] {
			l.setRng(i, r)
		}
		copy(l.vals[:], values[lo:hi])
		if prev != nil {
			prev.next = l
		}
		l.maxGap = l.computeMaxGap()
		leaves[j] = l
		prev = l
	}
	s.first, s.last, s.len = leaves[0], leaves[nLeaves-1], n
	if nLeaves == 1 {
		return nil
	}
	// Build the inner levels the same way, bottom up.
	var level []*inner[K, V, F]
	for len(level) != 1 {
		count := len(level)
		if level == nil {
			count = nLeaves
		}
		nNodes := (count + innerCap - 1) / innerCap
		next := make([]*inner[K, V, F], nNodes)
		for j := range next {
			lo, hi := j*count/nNodes, (j+1)*count/nNodes
			p := newInner[K, V, F](level == nil)
			p.n = hi - lo
			for c := lo; c < hi; c++ {
				if level == nil {
					l := leaves[c]
					p.leaves[c-lo] = l
					p.gaps[c-lo], p.starts[c-lo] = l.maxGap, l.starts[0]
				} else {
					k := level[c]
					p.kids[c-lo] = k
					p.gaps[c-lo], p.starts[c-lo] = k.summary()
				}
			}
			p.relink(0)
			next[j] = p
		}
		level = next
	}
	s.root = level[0]
	return nil
}

// checkImport validates ImportSortedSlices' arguments.
func checkImport[K Key, V any, F Functions[K, V]](n int, ranges []Range[K], values []V) error {
	if n != 0 {
		return ErrNotEmpty
	}
	if len(ranges) != len(values) {
		return fmt.Errorf("%w: %d ranges but %d values", ErrBadImport, len(ranges), len(values))
	}
	prevEnd := minKey[K, V, F]()
	for i, r := range ranges {
		if r.Start >= r.End || r.Start < prevEnd || r.End > maxKey[K, V, F]() {
			return fmt.Errorf("%w: range %d is %v after %#x", ErrBadImport, i, r, uint64(prevEnd))
		}
		prevEnd = r.End
	}
	return nil
}

// String returns a description of the segments and their values, for
// debugging.
func (s *Set[K, V, F]) String() string {
	var b strings.Builder
	b.WriteString("{")
	for seg := s.FirstSegment(); seg.Ok(); seg = seg.NextSegment() {
		if seg != s.FirstSegment() {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%v: %v", seg.Range(), seg.Value())
	}
	b.WriteString("}")
	return b.String()
}
