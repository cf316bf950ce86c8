package segment

// This file is the model the B-tree Set is checked against: the first,
// sorted-slice implementation of the API, kept as simple as possible. Every
// operation is O(n) or worse; that is the point.

import (
	"fmt"
	"iter"
	"strings"
)

// Set is an ordered set of non-overlapping, non-empty ranges (segments),
// each with a value of type V. Keys lie in [F.MinKey(), F.MaxKey()). The
// spaces between segments, and before the first and after the last, are
// gaps; a set with n segments always has n+1 gaps, some possibly empty.
//
// The zero value is an empty set. A Set is not safe for concurrent
// mutation; concurrent reads are safe when nothing mutates.
type modelSet[K Key, V any, F Functions[K, V]] struct {
	// ranges are the segments' ranges, sorted and non-overlapping.
	ranges []Range[K]
	// values[i] is the value of ranges[i].
	values []V
}

// Iterator points at a segment of a Set, or is terminal (!Ok()). Any
// mutation of the set invalidates all iterators except those returned by the
// mutation. The zero Iterator is terminal. Iterators are comparable: two
// valid iterators into one set are equal iff they point at the same segment.
type modelIter[K Key, V any, F Functions[K, V]] struct {
	// s is the set, or nil for a terminal iterator.
	s *modelSet[K, V, F]
	// i is the index of the segment in s.
	i int
}

// GapIterator points at a gap of a Set: the space between two adjacent
// segments, before the first segment (from MinKey) or after the last (to
// MaxKey). Gaps may be empty. The zero GapIterator is terminal (!Ok()).
// Invalidation and comparison are as for Iterator.
type modelGap[K Key, V any, F Functions[K, V]] struct {
	// s is the set, or nil for a terminal iterator.
	s *modelSet[K, V, F]
	// i is the index of the segment after the gap (len for the last gap).
	i int
}

func mMinKey[K Key, V any, F Functions[K, V]]() K {
	var f F
	return f.MinKey()
}

func mMaxKey[K Key, V any, F Functions[K, V]]() K {
	var f F
	return f.MaxKey()
}

// Ok reports whether it points at a segment.
func (it modelIter[K, V, F]) Ok() bool { return it.s != nil }

// Range returns the segment's range.
func (it modelIter[K, V, F]) Range() Range[K] { return it.s.ranges[it.i] }

// Start returns the segment's start.
func (it modelIter[K, V, F]) Start() K { return it.s.ranges[it.i].Start }

// End returns the segment's end.
func (it modelIter[K, V, F]) End() K { return it.s.ranges[it.i].End }

// SetRangeUnchecked changes the segment's range. The caller guarantees that r
// is non-empty, within [MinKey, MaxKey), and does not overlap or reorder
// with the neighbouring segments. It does not invalidate iterators.
func (it modelIter[K, V, F]) SetRangeUnchecked(r Range[K]) { it.s.ranges[it.i] = r }

// SetRange changes the segment's range. It panics if r is empty or
// malformed, leaves [MinKey, MaxKey), or overlaps a neighbouring segment.
// It does not invalidate iterators.
func (it modelIter[K, V, F]) SetRange(r Range[K]) {
	if r.Start >= r.End {
		panic(fmt.Sprintf("segment: SetRange(%v): empty or malformed range", r))
	}
	lo, hi := mMinKey[K, V, F](), mMaxKey[K, V, F]()
	if prev := it.PrevSegment(); prev.Ok() {
		lo = prev.End()
	}
	if next := it.NextSegment(); next.Ok() {
		hi = next.Start()
	}
	if r.Start < lo || r.End > hi {
		panic(fmt.Sprintf("segment: SetRange(%v): outside the space [%#x, %#x) between neighbours", r, uint64(lo), uint64(hi)))
	}
	it.SetRangeUnchecked(r)
}

// SetStartUnchecked is SetRangeUnchecked(Range{k, it.End()}).
func (it modelIter[K, V, F]) SetStartUnchecked(k K) { it.SetRangeUnchecked(Range[K]{k, it.End()}) }

// SetStart is SetRange(Range{k, it.End()}); it panics likewise.
func (it modelIter[K, V, F]) SetStart(k K) { it.SetRange(Range[K]{k, it.End()}) }

// SetEndUnchecked is SetRangeUnchecked(Range{it.Start(), k}).
func (it modelIter[K, V, F]) SetEndUnchecked(k K) { it.SetRangeUnchecked(Range[K]{it.Start(), k}) }

// SetEnd is SetRange(Range{it.Start(), k}); it panics likewise.
func (it modelIter[K, V, F]) SetEnd(k K) { it.SetRange(Range[K]{it.Start(), k}) }

// Value returns a copy of the segment's value.
func (it modelIter[K, V, F]) Value() V { return it.s.values[it.i] }

// ValuePtr returns a pointer to the segment's value, valid until the next
// mutation of the set (other than through the pointer or SetValue).
func (it modelIter[K, V, F]) ValuePtr() *V { return &it.s.values[it.i] }

// SetValue replaces the segment's value. ClearValue is not called on the old
// value.
func (it modelIter[K, V, F]) SetValue(v V) { it.s.values[it.i] = v }

// PrevSegment returns the segment before it, or a terminal iterator.
func (it modelIter[K, V, F]) PrevSegment() modelIter[K, V, F] {
	if it.i == 0 {
		return modelIter[K, V, F]{}
	}
	return modelIter[K, V, F]{it.s, it.i - 1}
}

// NextSegment returns the segment after it, or a terminal iterator.
func (it modelIter[K, V, F]) NextSegment() modelIter[K, V, F] {
	if it.i+1 >= len(it.s.ranges) {
		return modelIter[K, V, F]{}
	}
	return modelIter[K, V, F]{it.s, it.i + 1}
}

// PrevGap returns the gap just before it (possibly empty). It is always Ok.
func (it modelIter[K, V, F]) PrevGap() modelGap[K, V, F] {
	return modelGap[K, V, F]{it.s, it.i}
}

// NextGap returns the gap just after it (possibly empty). It is always Ok.
func (it modelIter[K, V, F]) NextGap() modelGap[K, V, F] {
	return modelGap[K, V, F]{it.s, it.i + 1}
}

// PrevNonEmpty returns the previous segment if it is adjacent to it (the gap
// between them is empty), else the previous gap if it is non-empty. At most
// one of the results is Ok; both are terminal when it is the first segment
// and starts at MinKey.
func (it modelIter[K, V, F]) PrevNonEmpty() (modelIter[K, V, F], modelGap[K, V, F]) {
	g := it.PrevGap()
	if !g.IsEmpty() {
		return modelIter[K, V, F]{}, g
	}
	return it.PrevSegment(), modelGap[K, V, F]{}
}

// NextNonEmpty returns the next segment if it is adjacent to it, else the
// next gap if it is non-empty. At most one of the results is Ok; both are
// terminal when it is the last segment and ends at MaxKey.
func (it modelIter[K, V, F]) NextNonEmpty() (modelIter[K, V, F], modelGap[K, V, F]) {
	g := it.NextGap()
	if !g.IsEmpty() {
		return modelIter[K, V, F]{}, g
	}
	return it.NextSegment(), modelGap[K, V, F]{}
}

// Ok reports whether g points at a gap.
func (g modelGap[K, V, F]) Ok() bool { return g.s != nil }

// Range returns the gap's range.
func (g modelGap[K, V, F]) Range() Range[K] { return Range[K]{g.Start(), g.End()} }

// Start returns the gap's start: the end of the previous segment, or MinKey.
func (g modelGap[K, V, F]) Start() K {
	if g.i == 0 {
		return mMinKey[K, V, F]()
	}
	return g.s.ranges[g.i-1].End
}

// End returns the gap's end: the start of the next segment, or MaxKey.
func (g modelGap[K, V, F]) End() K {
	if g.i == len(g.s.ranges) {
		return mMaxKey[K, V, F]()
	}
	return g.s.ranges[g.i].Start
}

// IsEmpty reports whether the gap has length 0.
func (g modelGap[K, V, F]) IsEmpty() bool { return g.Start() == g.End() }

// PrevSegment returns the segment before g, or a terminal iterator.
func (g modelGap[K, V, F]) PrevSegment() modelIter[K, V, F] {
	if g.i == 0 {
		return modelIter[K, V, F]{}
	}
	return modelIter[K, V, F]{g.s, g.i - 1}
}

// NextSegment returns the segment after g, or a terminal iterator.
func (g modelGap[K, V, F]) NextSegment() modelIter[K, V, F] {
	if g.i == len(g.s.ranges) {
		return modelIter[K, V, F]{}
	}
	return modelIter[K, V, F]{g.s, g.i}
}

// PrevGap returns the gap before g (across one segment), or a terminal
// iterator.
func (g modelGap[K, V, F]) PrevGap() modelGap[K, V, F] {
	if g.i == 0 {
		return modelGap[K, V, F]{}
	}
	return modelGap[K, V, F]{g.s, g.i - 1}
}

// NextGap returns the gap after g (across one segment), or a terminal
// iterator.
func (g modelGap[K, V, F]) NextGap() modelGap[K, V, F] {
	if g.i == len(g.s.ranges) {
		return modelGap[K, V, F]{}
	}
	return modelGap[K, V, F]{g.s, g.i + 1}
}

// NextLargeEnoughGap returns the first gap after g whose length is at least
// minSize, or a terminal iterator.
func (g modelGap[K, V, F]) NextLargeEnoughGap(minSize K) modelGap[K, V, F] {
	for g = g.NextGap(); g.Ok(); g = g.NextGap() {
		if g.End()-g.Start() >= minSize {
			return g
		}
	}
	return g
}

// PrevLargeEnoughGap returns the last gap before g whose length is at least
// minSize, or a terminal iterator.
func (g modelGap[K, V, F]) PrevLargeEnoughGap(minSize K) modelGap[K, V, F] {
	for g = g.PrevGap(); g.Ok(); g = g.PrevGap() {
		if g.End()-g.Start() >= minSize {
			return g
		}
	}
	return g
}

// IsEmpty reports whether the set has no segments.
func (s *modelSet[K, V, F]) IsEmpty() bool { return len(s.ranges) == 0 }

// IsEmptyRange reports whether no segment overlaps r. An empty r overlaps
// nothing.
func (s *modelSet[K, V, F]) IsEmptyRange(r Range[K]) bool {
	if r.Start >= r.End {
		return true
	}
	seg := s.LowerBoundSegment(r.Start)
	return !seg.Ok() || seg.Start() >= r.End
}

// Span returns the total length of all segments.
func (s *modelSet[K, V, F]) Span() K {
	var n K
	for _, r := range s.ranges {
		n += r.Length()
	}
	return n
}

// SpanRange returns the total length of the parts of segments that lie
// within r.
func (s *modelSet[K, V, F]) SpanRange(r Range[K]) K {
	var n K
	for seg := range s.Segments(r) {
		n += seg.Range().Intersect(r).Length()
	}
	return n
}

// Len returns the number of segments.
func (s *modelSet[K, V, F]) Len() int { return len(s.ranges) }

// FirstSegment returns the first segment, or a terminal iterator if the set
// is empty.
func (s *modelSet[K, V, F]) FirstSegment() modelIter[K, V, F] {
	if len(s.ranges) == 0 {
		return modelIter[K, V, F]{}
	}
	return modelIter[K, V, F]{s, 0}
}

// LastSegment returns the last segment, or a terminal iterator if the set is
// empty.
func (s *modelSet[K, V, F]) LastSegment() modelIter[K, V, F] {
	if len(s.ranges) == 0 {
		return modelIter[K, V, F]{}
	}
	return modelIter[K, V, F]{s, len(s.ranges) - 1}
}

// FirstGap returns the first gap, [MinKey, first segment's start). It is
// always Ok.
func (s *modelSet[K, V, F]) FirstGap() modelGap[K, V, F] { return modelGap[K, V, F]{s, 0} }

// LastGap returns the last gap, [last segment's end, MaxKey). It is always
// Ok.
func (s *modelSet[K, V, F]) LastGap() modelGap[K, V, F] {
	return modelGap[K, V, F]{s, len(s.ranges)}
}

// upper returns the number of segments with Start <= key.
func (s *modelSet[K, V, F]) upper(key K) int {
	lo, hi := 0, len(s.ranges)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s.ranges[m].Start <= key {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// Find returns the segment containing key, or else the gap containing key.
// Exactly one of the results is Ok, except that both are terminal when key
// is outside [MinKey, MaxKey).
func (s *modelSet[K, V, F]) Find(key K) (modelIter[K, V, F], modelGap[K, V, F]) {
	if key < mMinKey[K, V, F]() || key >= mMaxKey[K, V, F]() {
		return modelIter[K, V, F]{}, modelGap[K, V, F]{}
	}
	i := s.upper(key)
	if i > 0 && key < s.ranges[i-1].End {
		return modelIter[K, V, F]{s, i - 1}, modelGap[K, V, F]{}
	}
	return modelIter[K, V, F]{}, modelGap[K, V, F]{s, i}
}

// FindSegment returns the segment containing key, or a terminal iterator.
func (s *modelSet[K, V, F]) FindSegment(key K) modelIter[K, V, F] {
	seg, _ := s.Find(key)
	return seg
}

// FindGap returns the gap containing key, or a terminal iterator if a
// segment contains key or key is outside [MinKey, MaxKey). Empty gaps
// contain no key.
func (s *modelSet[K, V, F]) FindGap(key K) modelGap[K, V, F] {
	_, g := s.Find(key)
	return g
}

// LowerBoundSegment returns the first segment with End > min: the segment
// containing min, or else the first segment after min. It is terminal if
// there is none.
func (s *modelSet[K, V, F]) LowerBoundSegment(min K) modelIter[K, V, F] {
	i := s.upper(min)
	if i > 0 && min < s.ranges[i-1].End {
		i--
	}
	if i == len(s.ranges) {
		return modelIter[K, V, F]{}
	}
	return modelIter[K, V, F]{s, i}
}

// UpperBoundSegment returns the last segment with Start <= max: the segment
// containing max, or else the last segment before max. It is terminal if
// there is none.
func (s *modelSet[K, V, F]) UpperBoundSegment(max K) modelIter[K, V, F] {
	i := s.upper(max)
	if i == 0 {
		return modelIter[K, V, F]{}
	}
	return modelIter[K, V, F]{s, i - 1}
}

// LowerBoundGap returns the first gap, in order and counting empty gaps,
// with End > min: the gap containing min, or else the first gap after min.
// It is terminal if min >= MaxKey.
func (s *modelSet[K, V, F]) LowerBoundGap(min K) modelGap[K, V, F] {
	if min >= mMaxKey[K, V, F]() {
		return modelGap[K, V, F]{}
	}
	// Gap i ends at ranges[i].Start; the first with ranges[i].Start > min.
	return modelGap[K, V, F]{s, s.upper(min)}
}

// UpperBoundGap returns the last gap, in order and counting empty gaps, with
// Start <= max: the gap containing max, or else the last gap before max. It
// is terminal if max < MinKey.
func (s *modelSet[K, V, F]) UpperBoundGap(max K) modelGap[K, V, F] {
	if max < mMinKey[K, V, F]() {
		return modelGap[K, V, F]{}
	}
	// Gap i starts at ranges[i-1].End; the last with ranges[i-1].End <= max.
	lo, hi := 0, len(s.ranges)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s.ranges[m].End <= max {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return modelGap[K, V, F]{s, lo}
}

// LowerBoundSegmentSplitBefore is LowerBoundSegment(min), except that if the
// segment found contains min strictly inside, it is split at min and the
// part starting at min is returned.
func (s *modelSet[K, V, F]) LowerBoundSegmentSplitBefore(min K) modelIter[K, V, F] {
	seg := s.LowerBoundSegment(min)
	if seg.Ok() && seg.Range().CanSplitAt(min) {
		_, seg = s.Split(seg, min)
	}
	return seg
}

// UpperBoundSegmentSplitAfter returns the last segment with Start < max
// (that is, the last segment overlapping [MinKey, max)), split at max if it
// extends past max, so that the result ends at or before max. It is terminal
// if there is none. Note that unlike UpperBoundSegment(max) it does not
// return a segment starting exactly at max, which would have nothing to
// keep.
func (s *modelSet[K, V, F]) UpperBoundSegmentSplitAfter(max K) modelIter[K, V, F] {
	if max == 0 {
		return modelIter[K, V, F]{}
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
func (s *modelSet[K, V, F]) Add(r Range[K], v V) bool {
	g := s.gapFor(r)
	if !g.Ok() {
		return false
	}
	s.Insert(g, r, v)
	return true
}

// AddWithoutMerging is Add without merging.
func (s *modelSet[K, V, F]) AddWithoutMerging(r Range[K], v V) bool {
	g := s.gapFor(r)
	if !g.Ok() {
		return false
	}
	s.InsertWithoutMergingUnchecked(g, r, v)
	return true
}

// gapFor returns the gap wholly containing r, or a terminal iterator. It
// panics if r is empty or malformed.
func (s *modelSet[K, V, F]) gapFor(r Range[K]) modelGap[K, V, F] {
	if r.Start >= r.End {
		panic(fmt.Sprintf("segment: adding empty or malformed range %v", r))
	}
	g := s.FindGap(r.Start)
	if !g.Ok() || r.End > g.End() {
		return modelGap[K, V, F]{}
	}
	return g
}

// mCheckInsert panics unless r is non-empty and lies within gap.
func mCheckInsert[K Key, V any, F Functions[K, V]](gap modelGap[K, V, F], r Range[K]) {
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
func (s *modelSet[K, V, F]) Insert(gap modelGap[K, V, F], r Range[K], v V) modelIter[K, V, F] {
	mCheckInsert(gap, r)
	var f F
	prev, next := gap.PrevSegment(), gap.NextSegment()
	if prev.Ok() && prev.End() == r.Start {
		if mv, ok := f.Merge(prev.Range(), prev.Value(), r, v); ok {
			prev.SetRangeUnchecked(Range[K]{prev.Start(), r.End})
			prev.SetValue(mv)
			if next.Ok() && next.Start() == r.End {
				return s.Merge(prev, next).mOrElse(prev)
			}
			return prev
		}
	}
	if next.Ok() && next.Start() == r.End {
		if mv, ok := f.Merge(r, v, next.Range(), next.Value()); ok {
			next.SetRangeUnchecked(Range[K]{r.Start, next.End()})
			next.SetValue(mv)
			return next
		}
	}
	return s.InsertWithoutMergingUnchecked(gap, r, v)
}

// orElse returns it if it is Ok, else other.
func (it modelIter[K, V, F]) mOrElse(other modelIter[K, V, F]) modelIter[K, V, F] {
	if it.Ok() {
		return it
	}
	return other
}

// InsertWithoutMerging inserts r with value v into gap, which must contain
// r, as a new segment, and returns it. It panics if gap is terminal or r is
// empty, malformed or not within gap.
func (s *modelSet[K, V, F]) InsertWithoutMerging(gap modelGap[K, V, F], r Range[K], v V) modelIter[K, V, F] {
	mCheckInsert(gap, r)
	return s.InsertWithoutMergingUnchecked(gap, r, v)
}

// InsertWithoutMergingUnchecked is InsertWithoutMerging without checking
// its preconditions: the caller guarantees that gap is Ok and r is
// non-empty and lies within gap.
func (s *modelSet[K, V, F]) InsertWithoutMergingUnchecked(gap modelGap[K, V, F], r Range[K], v V) modelIter[K, V, F] {
	i := gap.i
	var zr Range[K]
	var zv V
	s.ranges = append(s.ranges, zr)
	s.values = append(s.values, zv)
	copy(s.ranges[i+1:], s.ranges[i:])
	copy(s.values[i+1:], s.values[i:])
	s.ranges[i] = r
	s.values[i] = v
	return modelIter[K, V, F]{s, i}
}

// Remove removes seg, calling ClearValue on its value, and returns the gap
// that replaced it. It panics if seg is terminal.
func (s *modelSet[K, V, F]) Remove(seg modelIter[K, V, F]) modelGap[K, V, F] {
	if !seg.Ok() {
		panic("segment: Remove of a terminal iterator")
	}
	var f F
	i := seg.i
	f.ClearValue(&s.values[i])
	copy(s.ranges[i:], s.ranges[i+1:])
	copy(s.values[i:], s.values[i+1:])
	var zv V
	s.values[len(s.values)-1] = zv
	s.ranges = s.ranges[:len(s.ranges)-1]
	s.values = s.values[:len(s.values)-1]
	return modelGap[K, V, F]{s, i}
}

// RemoveAll removes every segment, calling ClearValue on each value.
func (s *modelSet[K, V, F]) RemoveAll() {
	var f F
	for i := range s.values {
		f.ClearValue(&s.values[i])
	}
	s.ranges = nil
	s.values = nil
}

// RemoveRange removes every part of every segment that lies within r,
// splitting segments that straddle r's bounds and calling ClearValue on the
// values removed. It returns the gap that now contains r, that is
// LowerBoundGap(r.Start) after the removal (terminal if r.Start >= MaxKey).
// If r is empty it removes nothing and returns FindGap(r.Start) (terminal if
// a segment contains r.Start). It panics if r is malformed.
func (s *modelSet[K, V, F]) RemoveRange(r Range[K]) modelGap[K, V, F] {
	if r.Start > r.End {
		panic(fmt.Sprintf("segment: RemoveRange(%v): malformed range", r))
	}
	if r.Start == r.End {
		return s.FindGap(r.Start)
	}
	seg := s.LowerBoundSegment(r.Start)
	for seg.Ok() && seg.Start() < r.End {
		seg = s.Isolate(seg, r)
		seg = s.Remove(seg).NextSegment()
	}
	return s.LowerBoundGap(r.Start)
}

// RemoveFullRange is RemoveRange for an r that splits no segment: every
// segment overlapping r must lie wholly within it. It panics if one does not,
// or if r is malformed.
func (s *modelSet[K, V, F]) RemoveFullRange(r Range[K]) modelGap[K, V, F] {
	if r.Start > r.End {
		panic(fmt.Sprintf("segment: RemoveFullRange(%v): malformed range", r))
	}
	if r.Start == r.End {
		return s.FindGap(r.Start)
	}
	seg := s.LowerBoundSegment(r.Start)
	for seg.Ok() && seg.Start() < r.End {
		if !r.IsSupersetOf(seg.Range()) {
			panic(fmt.Sprintf("segment: RemoveFullRange(%v) would split segment %v", r, seg.Range()))
		}
		seg = s.Remove(seg).NextSegment()
	}
	return s.LowerBoundGap(r.Start)
}

// Merge merges first and second, which must be consecutive segments
// (second == first.NextSegment()), if they are adjacent (first.End() ==
// second.Start()) and Functions.Merge allows. It returns the merged segment,
// or a terminal iterator (changing nothing) if they are not adjacent or
// Functions.Merge refuses. ClearValue is called on second's old value. It
// panics if either is terminal or second does not follow first.
func (s *modelSet[K, V, F]) Merge(first, second modelIter[K, V, F]) modelIter[K, V, F] {
	if !first.Ok() || !second.Ok() || first.NextSegment() != second {
		panic("segment: Merge of segments that are not consecutive")
	}
	if first.End() != second.Start() {
		return modelIter[K, V, F]{}
	}
	var f F
	mv, ok := f.Merge(first.Range(), first.Value(), second.Range(), second.Value())
	if !ok {
		return modelIter[K, V, F]{}
	}
	end := second.End()
	s.Remove(second)
	first.SetRangeUnchecked(Range[K]{first.Start(), end})
	first.SetValue(mv)
	return first
}

// MergeRange merges every mergeable adjacent pair of segments both of which
// overlap r.
func (s *modelSet[K, V, F]) MergeRange(r Range[K]) {
	if r.Start >= r.End {
		return
	}
	seg := s.LowerBoundSegment(r.Start)
	if !seg.Ok() {
		return
	}
	for {
		next := seg.NextSegment()
		if !next.Ok() || next.Start() >= r.End {
			return
		}
		if m := s.Merge(seg, next); m.Ok() {
			seg = m
		} else {
			seg = next
		}
	}
}

// MergeAdjacent tries to merge the segment containing r.Start with its
// predecessor, and the segment containing r.End-1 with its successor. It
// does nothing for an empty r.
func (s *modelSet[K, V, F]) MergeAdjacent(r Range[K]) {
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
func (s *modelSet[K, V, F]) MergeAll() {
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
func (s *modelSet[K, V, F]) Split(seg modelIter[K, V, F], split K) (modelIter[K, V, F], modelIter[K, V, F]) {
	if !seg.Ok() || !seg.Range().CanSplitAt(split) {
		panic(fmt.Sprintf("segment: Split at %#x outside the segment", uint64(split)))
	}
	var f F
	r := seg.Range()
	v1, v2 := f.Split(r, seg.Value(), split)
	seg.SetRangeUnchecked(Range[K]{r.Start, split})
	seg.SetValue(v1)
	second := s.InsertWithoutMergingUnchecked(seg.NextGap(), Range[K]{split, r.End}, v2)
	return second.PrevSegment(), second
}

// SplitAt splits the segment containing split at split if split lies
// strictly inside it, and reports whether it did.
func (s *modelSet[K, V, F]) SplitAt(split K) bool {
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
func (s *modelSet[K, V, F]) Isolate(seg modelIter[K, V, F], r Range[K]) modelIter[K, V, F] {
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
// ascending order. The set must not be mutated during the iteration.
func (s *modelSet[K, V, F]) Segments(r Range[K]) iter.Seq[modelIter[K, V, F]] {
	return func(yield func(modelIter[K, V, F]) bool) {
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
// ascending order. The set must not be mutated during the iteration.
func (s *modelSet[K, V, F]) Gaps(r Range[K]) iter.Seq[modelGap[K, V, F]] {
	return func(yield func(modelGap[K, V, F]) bool) {
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

// mFitLow returns the lowest aligned s with [s, s+length) within avail. It
// is written differently from the package's fitLow on purpose.
func mFitLow[K Key](avail Range[K], length, align K) (K, bool) {
	s := avail.Start
	if rem := s % align; rem != 0 {
		add := align - rem
		if add > avail.End-s {
			return 0, false
		}
		s += add
	}
	if avail.End-s < length {
		return 0, false
	}
	return s, true
}

// mFitHigh returns the highest aligned s with [s, s+length) within avail.
func mFitHigh[K Key](avail Range[K], length, align K) (K, bool) {
	if avail.End-avail.Start < length {
		return 0, false
	}
	s := avail.End - length
	s -= s % align
	if s < avail.Start {
		return 0, false
	}
	return s, true
}

// mCheckGapArgs panics unless length > 0 and align is a power of two.
func mCheckGapArgs[K Key](length, align K) {
	if length == 0 || align == 0 || align&(align-1) != 0 {
		panic(fmt.Sprintf("segment: gap search with length %#x, align %#x", uint64(length), uint64(align)))
	}
}

// FindLowestGap returns the lowest start s with s%align == 0 such that
// [s, s+length) lies within bounds and wholly inside one gap, and true; or
// false if there is none. It panics if length is 0 or align is not a power
// of two (alignment 1 means none).
func (s *modelSet[K, V, F]) FindLowestGap(bounds Range[K], length, align K) (K, bool) {
	mCheckGapArgs(length, align)
	if bounds.Start >= bounds.End {
		return 0, false
	}
	for g := s.LowerBoundGap(bounds.Start); g.Ok() && g.Start() < bounds.End; g = g.NextGap() {
		if a, ok := mFitLow(g.Range().Intersect(bounds), length, align); ok {
			return a, true
		}
	}
	return 0, false
}

// FindHighestGap returns the highest start s with s%align == 0 such that
// [s, s+length) lies within bounds and wholly inside one gap, and true; or
// false if there is none. It panics if length is 0 or align is not a power
// of two.
func (s *modelSet[K, V, F]) FindHighestGap(bounds Range[K], length, align K) (K, bool) {
	mCheckGapArgs(length, align)
	if bounds.Start >= bounds.End {
		return 0, false
	}
	for g := s.UpperBoundGap(bounds.End - 1); g.Ok() && g.End() > bounds.Start; g = g.PrevGap() {
		if a, ok := mFitHigh(g.Range().Intersect(bounds), length, align); ok {
			return a, true
		}
	}
	return 0, false
}

// ExportSlices returns the segments' ranges and values in ascending order.
func (s *modelSet[K, V, F]) ExportSlices() (ranges []Range[K], values []V) {
	return append([]Range[K](nil), s.ranges...), append([]V(nil), s.values...)
}

// ImportSortedSlices loads ranges[i] with values[i] into s, which must be
// empty, without merging, in O(n). ranges must be sorted, non-overlapping,
// non-empty and within [MinKey, MaxKey), and len(values) == len(ranges);
// otherwise it returns an error (wrapping ErrNotEmpty or ErrBadImport) and
// leaves s unchanged.
func (s *modelSet[K, V, F]) ImportSortedSlices(ranges []Range[K], values []V) error {
	if err := mCheckImport[K, V, F](s.Len(), ranges, values); err != nil {
		return err
	}
	s.ranges = append([]Range[K](nil), ranges...)
	s.values = append([]V(nil), values...)
	return nil
}

// mCheckImport validates ImportSortedSlices' arguments.
func mCheckImport[K Key, V any, F Functions[K, V]](n int, ranges []Range[K], values []V) error {
	if n != 0 {
		return ErrNotEmpty
	}
	if len(ranges) != len(values) {
		return fmt.Errorf("%w: %d ranges but %d values", ErrBadImport, len(ranges), len(values))
	}
	prevEnd := mMinKey[K, V, F]()
	for i, r := range ranges {
		if r.Start >= r.End || r.Start < prevEnd || r.End > mMaxKey[K, V, F]() {
			return fmt.Errorf("%w: range %d is %v after %#x", ErrBadImport, i, r, uint64(prevEnd))
		}
		prevEnd = r.End
	}
	return nil
}

// String returns a description of the segments and their values, for
// debugging.
func (s *modelSet[K, V, F]) String() string {
	var b strings.Builder
	b.WriteString("{")
	for i, r := range s.ranges {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%v: %v", r, s.values[i])
	}
	b.WriteString("}")
	return b.String()
}
