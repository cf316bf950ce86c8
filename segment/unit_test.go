package segment

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

type r64 = Range[uint64]

func TestRange(t *testing.T) {
	r := r64{10, 20}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"Length", r.Length(), uint64(10)},
		{"WellFormed", r.WellFormed(), true},
		{"WellFormed empty", r64{5, 5}.WellFormed(), true},
		{"WellFormed reversed", r64{6, 5}.WellFormed(), false},
		{"Contains start", r.Contains(10), true},
		{"Contains last", r.Contains(19), true},
		{"Contains end", r.Contains(20), false},
		{"Contains before", r.Contains(9), false},
		{"Overlaps inside", r.Overlaps(r64{12, 13}), true},
		{"Overlaps straddling start", r.Overlaps(r64{5, 11}), true},
		{"Overlaps touching end", r.Overlaps(r64{20, 30}), false},
		{"Overlaps touching start", r.Overlaps(r64{0, 10}), false},
		{"Overlaps empty strictly inside", r.Overlaps(r64{15, 15}), true},
		{"Overlaps empty at start", r.Overlaps(r64{10, 10}), false},
		{"IsSupersetOf self", r.IsSupersetOf(r), true},
		{"IsSupersetOf inner", r.IsSupersetOf(r64{11, 19}), true},
		{"IsSupersetOf wider", r.IsSupersetOf(r64{9, 19}), false},
		{"IsSupersetOf empty at end", r.IsSupersetOf(r64{20, 20}), true},
		{"Intersect overlap", r.Intersect(r64{15, 30}), r64{15, 20}},
		{"Intersect inside", r.Intersect(r64{12, 13}), r64{12, 13}},
		{"Intersect disjoint is empty", r.Intersect(r64{30, 40}).Length(), uint64(0)},
		{"Intersect disjoint before is empty", r.Intersect(r64{0, 5}).Length(), uint64(0)},
		{"CanSplitAt inside", r.CanSplitAt(15), true},
		{"CanSplitAt start", r.CanSplitAt(10), false},
		{"CanSplitAt end", r.CanSplitAt(20), false},
		{"String", r.String(), "[0xa, 0x14)"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

// intFns: int values that merge when equal; keys in [0, 1000).
type intFns struct{}

var intCleared []int

func (intFns) MinKey() uint64                          { return 0 }
func (intFns) MaxKey() uint64                          { return 1000 }
func (intFns) ClearValue(v *int)                       { intCleared = append(intCleared, *v); *v = 0 }
func (intFns) Split(_ r64, v int, _ uint64) (int, int) { return v, v }
func (intFns) Merge(_ r64, a int, _ r64, b int) (int, bool) {
	return a, a == b
}

type intSet = Set[uint64, int, intFns]

// build returns a set holding the given segments, without merging.
func build(t *testing.T, segs ...any) *intSet {
	t.Helper()
	s := new(intSet)
	for i := 0; i < len(segs); i += 2 {
		if !s.AddWithoutMerging(segs[i].(r64), segs[i+1].(int)) {
			t.Fatalf("AddWithoutMerging(%v) failed", segs[i])
		}
	}
	if err := checkTree(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEmptySet(t *testing.T) {
	var s intSet
	if !s.IsEmpty() || s.Len() != 0 || s.Span() != 0 || s.String() != "{}" {
		t.Errorf("zero set not empty: %v", &s)
	}
	if s.FirstSegment().Ok() || s.LastSegment().Ok() {
		t.Error("empty set has segments")
	}
	for name, g := range map[string]GapIterator[uint64, int, intFns]{
		"FirstGap": s.FirstGap(), "LastGap": s.LastGap(), "FindGap": s.FindGap(5),
		"LowerBoundGap": s.LowerBoundGap(5), "UpperBoundGap": s.UpperBoundGap(5),
	} {
		if !g.Ok() || g.Range() != (r64{0, 1000}) {
			t.Errorf("%s = %v (ok %v), want [0, 1000)", name, g.Range(), g.Ok())
			continue
		}
		if g.PrevSegment().Ok() || g.NextSegment().Ok() || g.PrevGap().Ok() || g.NextGap().Ok() ||
			g.NextLargeEnoughGap(1).Ok() || g.PrevLargeEnoughGap(1).Ok() {
			t.Errorf("%s: the only gap has neighbours", name)
		}
	}
	if a, ok := s.FindLowestGap(r64{0, 1000}, 1000, 1); !ok || a != 0 {
		t.Errorf("FindLowestGap whole space = %d, %v", a, ok)
	}
	if a, ok := s.FindHighestGap(r64{0, 1000}, 10, 16); !ok || a != 976 {
		t.Errorf("FindHighestGap = %d, %v; want 976", a, ok)
	}
	seg := s.Insert(s.FirstGap(), r64{10, 20}, 1)
	if !seg.Ok() || seg.Range() != (r64{10, 20}) || s.Len() != 1 {
		t.Fatalf("Insert into empty set: %v", &s)
	}
	g := s.Remove(seg)
	if !g.Ok() || g.Range() != (r64{0, 1000}) || !s.IsEmpty() {
		t.Errorf("Remove of the last segment returned %v, set %v", g.Range(), &s)
	}
}

func TestFindAndBounds(t *testing.T) {
	// Segments [10,20) [20,30) [40,50); gaps [0,10) [20,20) [30,40) [50,1000).
	s := build(t, r64{10, 20}, 1, r64{20, 30}, 2, r64{40, 50}, 3)
	type res = findRes
	d := func(seg Iterator[uint64, int, intFns], g GapIterator[uint64, int, intFns]) res {
		switch {
		case seg.Ok() && g.Ok():
			return res{true, true, r64{}}
		case seg.Ok():
			return res{seg: true, r: seg.Range()}
		case g.Ok():
			return res{gap: true, r: g.Range()}
		}
		return res{}
	}
	none := res{}
	sg := func(a, b uint64) res { return res{seg: true, r: r64{a, b}} }
	gp := func(a, b uint64) res { return res{gap: true, r: r64{a, b}} }
	tests := []struct {
		key                                    uint64
		find, lbSeg, ubSeg, lbGap, ubGap, ubSA res
	}{
		{0, gp(0, 10), sg(10, 20), none, gp(0, 10), gp(0, 10), none},
		{10, sg(10, 20), sg(10, 20), sg(10, 20), gp(20, 20), gp(0, 10), none},
		{19, sg(10, 20), sg(10, 20), sg(10, 20), gp(20, 20), gp(0, 10), sg(10, 19)},
		{20, sg(20, 30), sg(20, 30), sg(20, 30), gp(30, 40), gp(20, 20), sg(10, 20)},
		{35, gp(30, 40), sg(40, 50), sg(20, 30), gp(30, 40), gp(30, 40), sg(20, 30)},
		{50, gp(50, 1000), none, sg(40, 50), gp(50, 1000), gp(50, 1000), sg(40, 50)},
		{999, gp(50, 1000), none, sg(40, 50), gp(50, 1000), gp(50, 1000), sg(40, 50)},
		{1000, none, none, sg(40, 50), none, gp(50, 1000), sg(40, 50)},
		{^uint64(0), none, none, sg(40, 50), none, gp(50, 1000), sg(40, 50)},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.key), func(t *testing.T) {
			s := build(t, r64{10, 20}, 1, r64{20, 30}, 2, r64{40, 50}, 3)
			check := func(name string, got, want res) {
				t.Helper()
				if got != want {
					t.Errorf("%s(%d) = %+v, want %+v", name, tc.key, got, want)
				}
			}
			check("Find", d(s.Find(tc.key)), tc.find)
			check("FindSegment", d(s.FindSegment(tc.key), GapIterator[uint64, int, intFns]{}), d(s.Find(tc.key)).onlySeg())
			check("LowerBoundSegment", d(s.LowerBoundSegment(tc.key), GapIterator[uint64, int, intFns]{}), tc.lbSeg)
			check("UpperBoundSegment", d(s.UpperBoundSegment(tc.key), GapIterator[uint64, int, intFns]{}), tc.ubSeg)
			check("LowerBoundGap", d(Iterator[uint64, int, intFns]{}, s.LowerBoundGap(tc.key)), tc.lbGap)
			check("UpperBoundGap", d(Iterator[uint64, int, intFns]{}, s.UpperBoundGap(tc.key)), tc.ubGap)
			check("UpperBoundSegmentSplitAfter", d(s.UpperBoundSegmentSplitAfter(tc.key), GapIterator[uint64, int, intFns]{}), tc.ubSA)
			if err := checkTree(s); err != nil {
				t.Fatal(err)
			}
		})
	}
	if seg := s.LowerBoundSegmentSplitBefore(15); seg.Range() != (r64{15, 20}) || seg.PrevSegment().Range() != (r64{10, 15}) {
		t.Errorf("LowerBoundSegmentSplitBefore(15) = %v after %v", seg.Range(), seg.PrevSegment().Range())
	}
	if seg := s.LowerBoundSegmentSplitBefore(35); seg.Range() != (r64{40, 50}) || s.Len() != 4 {
		t.Errorf("LowerBoundSegmentSplitBefore(35) = %v, %d segments", seg.Range(), s.Len())
	}
}

// findRes describes the result of a lookup for table tests.
type findRes struct {
	seg, gap bool
	r        r64
}

// onlySeg keeps the segment part of a result.
func (r findRes) onlySeg() findRes {
	if !r.seg {
		return findRes{}
	}
	return r
}

func TestInsertMerging(t *testing.T) {
	tests := []struct {
		name    string
		r       r64
		v       int
		want    string
		result  r64
		cleared []int
	}{
		{"alone", r64{60, 70}, 1, "{[0xa, 0x14): 1, [0x1e, 0x28): 2, [0x3c, 0x46): 1}", r64{60, 70}, nil},
		{"merge left", r64{20, 25}, 1, "{[0xa, 0x19): 1, [0x1e, 0x28): 2}", r64{10, 25}, nil},
		{"merge right", r64{25, 30}, 2, "{[0xa, 0x14): 1, [0x19, 0x28): 2}", r64{25, 40}, nil},
		{"refused both", r64{20, 30}, 3, "{[0xa, 0x14): 1, [0x14, 0x1e): 3, [0x1e, 0x28): 2}", r64{20, 30}, nil},
		{"left only, right refused", r64{20, 30}, 1, "{[0xa, 0x1e): 1, [0x1e, 0x28): 2}", r64{10, 30}, nil},
		{"right only, left refused", r64{20, 30}, 2, "{[0xa, 0x14): 1, [0x14, 0x28): 2}", r64{20, 40}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := build(t, r64{10, 20}, 1, r64{30, 40}, 2)
			intCleared = nil
			seg := s.Insert(s.FindGap(tc.r.Start), tc.r, tc.v)
			if got := s.String(); got != tc.want {
				t.Errorf("set = %s, want %s", got, tc.want)
			}
			if seg.Range() != tc.result {
				t.Errorf("Insert returned %v, want %v", seg.Range(), tc.result)
			}
			if fmt.Sprint(intCleared) != fmt.Sprint(tc.cleared) {
				t.Errorf("cleared %v, want %v", intCleared, tc.cleared)
			}
			if err := checkTree(s); err != nil {
				t.Fatal(err)
			}
		})
	}
	// Both sides: the right segment is absorbed and its value cleared.
	s := build(t, r64{10, 20}, 7, r64{30, 40}, 7)
	intCleared = nil
	seg := s.Insert(s.FindGap(20), r64{20, 30}, 7)
	if seg.Range() != (r64{10, 40}) || s.Len() != 1 || fmt.Sprint(intCleared) != "[7]" {
		t.Errorf("merge both: %v returned %v, cleared %v", s, seg.Range(), intCleared)
	}
}

func TestAdd(t *testing.T) {
	s := build(t, r64{10, 20}, 1)
	for _, tc := range []struct {
		r    r64
		want bool
	}{
		{r64{5, 11}, false},
		{r64{19, 25}, false},
		{r64{0, 1001}, false},
		{r64{995, 1001}, false},
		{r64{1000, 1001}, false},
		{r64{0, 10}, true},
		{r64{20, 30}, true},
		{r64{999, 1000}, true},
	} {
		if got := s.Add(tc.r, 1); got != tc.want {
			t.Errorf("Add(%v) = %v, want %v", tc.r, got, tc.want)
		}
	}
	if got := s.String(); got != "{[0x0, 0x1e): 1, [0x3e7, 0x3e8): 1}" {
		t.Errorf("set = %s", got)
	}
}

func TestRemoveAndMerge(t *testing.T) {
	s := build(t, r64{10, 20}, 1, r64{20, 30}, 1, r64{30, 40}, 2, r64{50, 60}, 2, r64{60, 70}, 2)
	intCleared = nil
	g := s.RemoveRange(r64{15, 35})
	if g.Range() != (r64{15, 35}) || s.String() != "{[0xa, 0xf): 1, [0x23, 0x28): 2, [0x32, 0x3c): 2, [0x3c, 0x46): 2}" {
		t.Errorf("RemoveRange: gap %v, set %v", g.Range(), s)
	}
	if fmt.Sprint(intCleared) != "[1 1 2]" {
		t.Errorf("RemoveRange cleared %v", intCleared)
	}
	if g := s.RemoveRange(r64{80, 90}); g.Range() != (r64{70, 1000}) {
		t.Errorf("RemoveRange of a gap returned %v", g.Range())
	}
	if g := s.RemoveRange(r64{12, 12}); g.Ok() {
		t.Errorf("RemoveRange of an empty range in a segment returned %v", g.Range())
	}
	s.MergeRange(r64{0, 55}) // [60, 70) is outside: nothing to merge
	if s.Len() != 4 {
		t.Errorf("MergeRange merged a segment outside the range: %v", s)
	}
	s.MergeRange(r64{0, 61})
	if s.String() != "{[0xa, 0xf): 1, [0x23, 0x28): 2, [0x32, 0x46): 2}" {
		t.Errorf("MergeRange: %v", s)
	}
	first, second := s.FirstSegment(), s.FirstSegment().NextSegment()
	if m := s.Merge(first, second); m.Ok() {
		t.Errorf("Merge of non-adjacent segments returned %v", m.Range())
	}
	intCleared = nil
	g = s.RemoveFullRange(r64{30, 70})
	if g.Range() != (r64{15, 1000}) || fmt.Sprint(intCleared) != "[2 2]" {
		t.Errorf("RemoveFullRange: gap %v, cleared %v", g.Range(), intCleared)
	}
	intCleared = nil
	s.RemoveAll()
	if !s.IsEmpty() || fmt.Sprint(intCleared) != "[1]" {
		t.Errorf("RemoveAll: %v, cleared %v", s, intCleared)
	}
}

func TestMergeAdjacent(t *testing.T) {
	s := build(t, r64{0, 10}, 1, r64{10, 20}, 1, r64{20, 30}, 1, r64{30, 40}, 1)
	s.MergeAdjacent(r64{10, 30})
	if s.String() != "{[0x0, 0x14): 1, [0x14, 0x28): 1}" {
		t.Errorf("MergeAdjacent: %v", s)
	}
	s.MergeAll()
	if s.String() != "{[0x0, 0x28): 1}" {
		t.Errorf("MergeAll: %v", s)
	}
}

func TestSplitAndIsolate(t *testing.T) {
	s := build(t, r64{10, 40}, 1)
	if s.SplitAt(10) || s.SplitAt(40) || s.SplitAt(50) {
		t.Error("SplitAt at a boundary or in a gap split")
	}
	if !s.SplitAt(20) || s.String() != "{[0xa, 0x14): 1, [0x14, 0x28): 1}" {
		t.Errorf("SplitAt(20): %v", s)
	}
	seg := s.Isolate(s.FindSegment(25), r64{25, 30})
	if seg.Range() != (r64{25, 30}) || s.Len() != 4 {
		t.Errorf("Isolate: %v in %v", seg.Range(), s)
	}
	seg = s.Isolate(seg, r64{0, 100})
	if seg.Range() != (r64{25, 30}) || s.Len() != 4 {
		t.Errorf("Isolate with a wider range changed %v", s)
	}
	a, b := s.Split(seg, 27)
	if a.Range() != (r64{25, 27}) || b.Range() != (r64{27, 30}) || a.NextSegment() != b {
		t.Errorf("Split: %v %v", a.Range(), b.Range())
	}
}

func TestIterators(t *testing.T) {
	s := build(t, r64{0, 10}, 1, r64{10, 20}, 2, r64{30, 40}, 3, r64{40, 1000}, 4)
	first := s.FirstSegment()
	if first != s.FindSegment(5) || first.PrevSegment().Ok() {
		t.Error("FirstSegment differs from FindSegment(5) or has a predecessor")
	}
	if seg, gap := first.PrevNonEmpty(); seg.Ok() || gap.Ok() {
		t.Error("PrevNonEmpty of a first segment at MinKey is not terminal")
	}
	if seg, gap := first.NextNonEmpty(); !seg.Ok() || gap.Ok() || seg.Range() != (r64{10, 20}) {
		t.Error("NextNonEmpty across an empty gap")
	}
	second := first.NextSegment()
	if seg, gap := second.NextNonEmpty(); seg.Ok() || !gap.Ok() || gap.Range() != (r64{20, 30}) {
		t.Error("NextNonEmpty across a non-empty gap")
	}
	last := s.LastSegment()
	if seg, gap := last.NextNonEmpty(); seg.Ok() || gap.Ok() {
		t.Error("NextNonEmpty of a last segment at MaxKey is not terminal")
	}
	if g := s.LastGap(); !g.IsEmpty() || g.Range() != (r64{1000, 1000}) || g.NextGap().Ok() || g.PrevSegment() != last {
		t.Errorf("LastGap %v", g.Range())
	}
	if g := s.FirstGap(); !g.IsEmpty() || g.PrevGap().Ok() || g.NextSegment() != first {
		t.Errorf("FirstGap %v", g.Range())
	}
	// SetValue and ValuePtr do not call ClearValue.
	intCleared = nil
	second.SetValue(9)
	*second.ValuePtr()++
	if second.Value() != 10 || intCleared != nil {
		t.Errorf("value %d, cleared %v", second.Value(), intCleared)
	}
	second.SetEnd(25)
	second.SetStart(12)
	if second.Range() != (r64{12, 25}) || s.FindGap(11).Range() != (r64{10, 12}) {
		t.Errorf("SetStart/SetEnd: %v", s)
	}
	var got []string
	for seg := range s.Segments(r64{11, 35}) {
		got = append(got, seg.Range().String())
	}
	for g := range s.Gaps(r64{0, 1000}) {
		got = append(got, g.Range().String())
	}
	want := "[[0xc, 0x19) [0x1e, 0x28) [0xa, 0xc) [0x19, 0x1e)]"
	if fmt.Sprint(got) != want {
		t.Errorf("Segments/Gaps = %v, want %v", got, want)
	}
	if s.Span() != 10+13+10+960 || s.SpanRange(r64{5, 35}) != 5+13+5 {
		t.Errorf("Span %d, SpanRange %d", s.Span(), s.SpanRange(r64{5, 35}))
	}
	if !s.IsEmptyRange(r64{25, 30}) || s.IsEmptyRange(r64{25, 31}) || !s.IsEmptyRange(r64{5, 5}) {
		t.Error("IsEmptyRange")
	}
}

func TestLargeEnoughGaps(t *testing.T) {
	// Gaps of lengths 1 to 99 in a scrambled order, between one-key
	// segments, so that many leaves are involved.
	lengths := make([]uint64, 0, 99)
	for i := uint64(1); i < 100; i++ {
		lengths = append(lengths, (i*37)%99+1)
	}
	var (
		next uint64
		gaps []r64
	)
	s2 := new(Set[uint64, int, wideIntFns])
	for i, l := range lengths {
		gaps = append(gaps, r64{next, next + l})
		next += l
		s2.AddWithoutMerging(r64{next, next + 1}, i)
		next++
	}
	for _, minSize := range []uint64{0, 1, 50, 98, 99, 100} {
		var want []r64
		for _, g := range gaps {
			if g.Length() >= minSize {
				want = append(want, g)
			}
		}
		if last := (r64{next, 1 << 20}); last.Length() >= minSize {
			want = append(want, last)
		}
		var got []r64
		for g := s2.FirstGap(); g.Ok(); g = g.NextLargeEnoughGap(minSize) {
			if g.Range().Length() >= minSize {
				got = append(got, g.Range())
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("NextLargeEnoughGap(%d): got %v, want %v", minSize, got, want)
		}
		var back []r64
		for g := s2.LastGap(); g.Ok(); g = g.PrevLargeEnoughGap(minSize) {
			if g.Range().Length() >= minSize {
				back = append([]r64{g.Range()}, back...)
			}
		}
		if fmt.Sprint(back) != fmt.Sprint(want) {
			t.Errorf("PrevLargeEnoughGap(%d): got %v, want %v", minSize, back, want)
		}
	}
}

// wideIntFns: like intFns with keys in [0, 1<<20).
type wideIntFns struct{ intFns }

func (wideIntFns) MaxKey() uint64 { return 1 << 20 }

func TestFindGapsAtTheTop(t *testing.T) {
	const max = ^uintptr(0)
	type fs = Set[uintptr, tval, fullFns]
	s := new(fs)
	s.Add(Range[uintptr]{max - 100, max - 50}, tval{})
	s.Add(Range[uintptr]{0, 4096}, tval{})
	tests := []struct {
		name          string
		bounds        Range[uintptr]
		length, align uintptr
		lowOK, highOK bool
		low, high     uintptr
	}{
		{"top gap", Range[uintptr]{max - 50, max}, 50, 1, true, true, max - 50, max - 50},
		{"top gap too small", Range[uintptr]{max - 50, max}, 51, 1, false, false, 0, 0},
		{"aligned near top", Range[uintptr]{0, max}, 32, 64, true, true, 4096, max - 191},
		{"huge alignment", Range[uintptr]{4096, max}, 1, 1 << 63, true, true, 1 << 63, 1 << 63},
		{"length beyond bounds", Range[uintptr]{10, 20}, 11, 1, false, false, 0, 0},
		{"whole space", Range[uintptr]{0, max}, max - 4096, 1, false, false, 0, 0},
		{"bottom", Range[uintptr]{0, 8192}, 4096, 4096, true, true, 4096, 4096},
		{"empty bounds", Range[uintptr]{5000, 5000}, 1, 1, false, false, 0, 0},
	}
	for _, tc := range tests {
		low, lowOK := s.FindLowestGap(tc.bounds, tc.length, tc.align)
		high, highOK := s.FindHighestGap(tc.bounds, tc.length, tc.align)
		if low != tc.low || lowOK != tc.lowOK || high != tc.high || highOK != tc.highOK {
			t.Errorf("%s: lowest %#x %v, highest %#x %v; want %#x %v, %#x %v",
				tc.name, low, lowOK, high, highOK, tc.low, tc.lowOK, tc.high, tc.highOK)
		}
	}
}

func TestImport(t *testing.T) {
	vals := func(n int) []int { return make([]int, n) }
	tests := []struct {
		name   string
		ranges []r64
		values []int
		err    error
	}{
		{"ok", []r64{{0, 10}, {10, 20}, {999, 1000}}, vals(3), nil},
		{"none", nil, nil, nil},
		{"length mismatch", []r64{{0, 10}}, vals(2), ErrBadImport},
		{"empty range", []r64{{0, 10}, {10, 10}}, vals(2), ErrBadImport},
		{"reversed range", []r64{{10, 5}}, vals(1), ErrBadImport},
		{"unsorted", []r64{{20, 30}, {0, 10}}, vals(2), ErrBadImport},
		{"overlapping", []r64{{0, 10}, {9, 20}}, vals(2), ErrBadImport},
		{"beyond MaxKey", []r64{{990, 1001}}, vals(1), ErrBadImport},
	}
	for _, tc := range tests {
		s := new(intSet)
		err := s.ImportSortedSlices(tc.ranges, tc.values)
		if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.err)
		}
		if tc.err != nil && !s.IsEmpty() {
			t.Errorf("%s: failed import changed the set: %v", tc.name, s)
		}
		if tc.err == nil && s.Len() != len(tc.ranges) {
			t.Errorf("%s: imported %d of %d", tc.name, s.Len(), len(tc.ranges))
		}
	}
	s := build(t, r64{1, 2}, 1)
	if err := s.ImportSortedSlices([]r64{{5, 6}}, vals(1)); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("import into a non-empty set: %v", err)
	}
	// Round trip at sizes that give 1, 2 and 3 levels of inner nodes.
	for _, n := range []int{1, leafCap, leafCap + 1, leafCap * innerCap, leafCap*innerCap + 1, 5000} {
		rs := make([]r64, n)
		for i := range rs {
			rs[i] = r64{uint64(i) * 3, uint64(i)*3 + 2}
		}
		s := new(Set[uint64, int, bigIntFns])
		if err := s.ImportSortedSlices(rs, vals(n)); err != nil {
			t.Fatal(err)
		}
		if err := checkTree(s); err != nil {
			t.Fatalf("import of %d: %v", n, err)
		}
		got, _ := s.ExportSlices()
		if fmt.Sprint(got) != fmt.Sprint(rs) {
			t.Fatalf("import of %d did not round-trip", n)
		}
	}
}

// bigIntFns: like intFns over the whole uint64 space.
type bigIntFns struct{ intFns }

func (bigIntFns) MaxKey() uint64 { return ^uint64(0) }

func TestPanics(t *testing.T) {
	fresh := func() *intSet { return build(t, r64{10, 20}, 1, r64{30, 40}, 2) }
	tests := []struct {
		name string
		fn   func(s *intSet)
	}{
		{"Add empty", func(s *intSet) { s.Add(r64{5, 5}, 1) }},
		{"Add reversed", func(s *intSet) { s.Add(r64{6, 5}, 1) }},
		{"Insert outside gap", func(s *intSet) { s.Insert(s.FindGap(25), r64{25, 31}, 1) }},
		{"Insert terminal gap", func(s *intSet) { s.Insert(GapIterator[uint64, int, intFns]{}, r64{25, 26}, 1) }},
		{"Insert through a stale empty-set gap", func(s *intSet) {
			var empty intSet
			s.Insert(empty.FirstGap(), r64{25, 26}, 1)
		}},
		{"InsertWithoutMerging empty", func(s *intSet) { s.InsertWithoutMerging(s.FindGap(25), r64{25, 25}, 1) }},
		{"Remove terminal", func(s *intSet) { s.Remove(Iterator[uint64, int, intFns]{}) }},
		{"RemoveRange reversed", func(s *intSet) { s.RemoveRange(r64{20, 10}) }},
		{"RemoveFullRange splitting", func(s *intSet) { s.RemoveFullRange(r64{15, 35}) }},
		{"Merge not consecutive", func(s *intSet) { s.Merge(s.LastSegment(), s.FirstSegment()) }},
		{"Split at start", func(s *intSet) { s.Split(s.FirstSegment(), 10) }},
		{"Split outside", func(s *intSet) { s.Split(s.FirstSegment(), 25) }},
		{"Isolate disjoint", func(s *intSet) { s.Isolate(s.FirstSegment(), r64{20, 30}) }},
		{"SetRange overlapping", func(s *intSet) { s.FirstSegment().SetRange(r64{10, 31}) }},
		{"SetRange empty", func(s *intSet) { s.FirstSegment().SetRange(r64{10, 10}) }},
		{"SetStart past end", func(s *intSet) { s.FirstSegment().SetStart(20) }},
		{"SetEnd beyond MaxKey", func(s *intSet) { s.LastSegment().SetEnd(1001) }},
		{"FindLowestGap length 0", func(s *intSet) { s.FindLowestGap(r64{0, 100}, 0, 1) }},
		{"FindHighestGap align 3", func(s *intSet) { s.FindHighestGap(r64{0, 100}, 1, 3) }},
		{"FindLowestGap align 0", func(s *intSet) { s.FindLowestGap(r64{0, 100}, 1, 0) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := fresh()
			before := s.String()
			defer func() {
				r := recover()
				if r == nil {
					t.Fatal("did not panic")
				}
				if msg := fmt.Sprint(r); !strings.HasPrefix(msg, "segment: ") {
					t.Errorf("panic message %q lacks the package prefix", msg)
				}
				if after := s.String(); after != before {
					t.Errorf("panicking call changed the set from %s to %s", before, after)
				}
			}()
			tc.fn(s)
		})
	}
}

// TestSpareLeavesReused checks that leaves emptied by removals are kept
// (up to maxSpareLeaves) and reused by later insertions: a set split into
// thousands of segments and merged back, over and over, allocates its
// leaves only in the first round.
func TestSpareLeavesReused(t *testing.T) {
	const n = 4096
	var s benchSet
	// One segment split into n pieces whose values no longer merge, then
	// merged back by restoring contiguous offsets.
	round := func() {
		s.Add(Range[uint64]{Start: 0, End: n * page}, bval{})
		for i := 1; i < n; i++ {
			seg := s.FindSegment(uint64(i) * page)
			_, second := s.Split(seg, uint64(i)*page)
			second.ValuePtr().off += 1 << 40 // breaks the merge with the left
		}
		if s.Len() != n {
			t.Fatalf("%d segments after splitting, want %d", s.Len(), n)
		}
		for seg := s.FirstSegment(); seg.Ok(); seg = seg.NextSegment() {
			seg.ValuePtr().off = seg.Start()
		}
		s.MergeAll()
		if s.Len() != 1 {
			t.Fatalf("%d segments after merging, want 1", s.Len())
		}
		s.RemoveRange(Range[uint64]{Start: 0, End: n * page})
	}
	round()
	if s.nspare == 0 || s.nspare > maxSpareLeaves {
		t.Fatalf("%d spare leaves after a round", s.nspare)
	}
	allocs := testing.AllocsPerRun(5, round)
	if smallCaps {
		// Tiny nodes: more leaves than spares, and many inner nodes.
		return
	}
	// Without spares every round allocates at least n/leafCap leaves;
	// with them only inner nodes (a sixteenth as many) are new.
	if leaves := float64(n / leafCap); allocs >= leaves/4 {
		t.Errorf("a round allocates %v times; its tree has at least %v leaves", allocs, leaves)
	}
	if err := checkTree(&s); err != nil {
		t.Error(err)
	}
}

// TestMergeRangeAcrossLeaves checks MergeRange over many leaves: runs of
// mergeable segments that span whole leaves collapse into one segment
// (absorbLeafHead drops the leaves), a run that ends inside a leaf leaves
// that leaf's tail alone, and nothing at or beyond r.End merges.
func TestMergeRangeAcrossLeaves(t *testing.T) {
	// 0..299 unit segments: values 1 for [0, 150), 2 for [150, 250), 1
	// again for [250, 300), with [200, 201) a 3 that stops the second run.
	var segs []any
	for i := uint64(0); i < 300; i++ {
		v := 1
		switch {
		case i == 200:
			v = 3
		case i >= 150 && i < 250:
			v = 2
		}
		segs = append(segs, r64{i, i + 1}, v)
	}
	s := build(t, segs...)
	intCleared = nil
	s.MergeRange(r64{0, 280})
	if err := checkTree(s); err != nil {
		t.Fatal(err)
	}
	want := "{[0x0, 0x96): 1, [0x96, 0xc8): 2, [0xc8, 0xc9): 3, [0xc9, 0xfa): 2, [0xfa, 0x118): 1"
	for i := uint64(280); i < 300; i++ {
		want += fmt.Sprintf(", [%#x, %#x): 1", i, i+1)
	}
	want += "}"
	if got := s.String(); got != want {
		t.Errorf("MergeRange(0, 280):\n got %s\nwant %s", got, want)
	}
	if s.Len() != 5+20 || len(intCleared) != 300-s.Len() {
		t.Errorf("Len = %d, %d values cleared", s.Len(), len(intCleared))
	}
	s.MergeRange(r64{0, 1000})
	if err := checkTree(s); err != nil {
		t.Fatal(err)
	}
	if got := s.String(); got != "{[0x0, 0x96): 1, [0x96, 0xc8): 2, [0xc8, 0xc9): 3, [0xc9, 0xfa): 2, [0xfa, 0x12c): 1}" {
		t.Errorf("MergeRange(all): %s", got)
	}
}
