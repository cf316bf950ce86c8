package segment

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// bval is a 64-byte value, about the size of a vma.
type bval struct {
	off uint64
	pad [56]byte
}

// benchFns: page-granular uint64 keys; values merge when their offsets are
// contiguous.
type benchFns struct{}

func (benchFns) MinKey() uint64     { return 0 }
func (benchFns) MaxKey() uint64     { return ^uint64(0) }
func (benchFns) ClearValue(v *bval) { *v = bval{} }
func (benchFns) Merge(r1 Range[uint64], v1 bval, r2 Range[uint64], v2 bval) (bval, bool) {
	return v1, v1.off+r1.Length() == v2.off
}
func (benchFns) Split(r Range[uint64], v bval, split uint64) (bval, bval) {
	v2 := v
	v2.off += split - r.Start
	return v, v2
}

type benchSet = Set[uint64, bval, benchFns]

const page = 4096

var benchSizes = []int{1e3, 1e5, 1e6}

// slot returns the range of segment slot i: 4 pages long, with a 1-page
// gap before it. Values get unrelated offsets, so neighbours never merge.
func slot(i int) Range[uint64] {
	start := uint64(i)*5*page + page
	return Range[uint64]{start, start + 4*page}
}

// buildSet returns a set of n segments in slots 0..n-1, built by bulk
// import.
func buildSet(tb testing.TB, n int) *benchSet {
	rs := make([]Range[uint64], n)
	vs := make([]bval, n)
	for i := range rs {
		rs[i] = slot(i)
		vs[i] = bval{off: uint64(i) << 40}
	}
	s := new(benchSet)
	if err := s.ImportSortedSlices(rs, vs); err != nil {
		tb.Fatal(err)
	}
	return s
}

// BenchmarkInsert measures Insert (no merge possible) while a set grows to
// n segments in random order: ns/op is per insertion.
func BenchmarkInsert(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			order := rand.New(rand.NewPCG(1, 2)).Perm(n)
			s := new(benchSet)
			j := 0
			b.ReportAllocs()
			for b.Loop() {
				if j == n {
					b.StopTimer()
					s = new(benchSet)
					j = 0
					b.StartTimer()
				}
				i := order[j]
				j++
				r := slot(i)
				s.Insert(s.FindGap(r.Start), r, bval{off: uint64(i) << 40})
			}
		})
	}
}

// BenchmarkInsertRemove measures inserting a segment into a random gap of a
// set of n segments and removing it again.
func BenchmarkInsertRemove(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s := buildSet(b, n)
			rng := rand.New(rand.NewPCG(3, 4))
			b.ReportAllocs()
			for b.Loop() {
				i := rng.IntN(n)
				start := slot(i).Start - page
				seg := s.Insert(s.FindGap(start), Range[uint64]{start, start + page}, bval{off: 1})
				s.Remove(seg)
			}
		})
	}
}

// BenchmarkFind measures FindSegment at random keys (in segments and gaps).
func BenchmarkFind(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s := buildSet(b, n)
			rng := rand.New(rand.NewPCG(5, 6))
			keys := make([]uint64, 1<<16)
			for i := range keys {
				keys[i] = rng.Uint64N(uint64(n) * 5 * page)
			}
			found := 0
			j := 0
			for b.Loop() {
				if s.FindSegment(keys[j&(len(keys)-1)]).Ok() {
					found++
				}
				j++
			}
			if found == 0 {
				b.Fatal("found nothing")
			}
		})
	}
}

// BenchmarkIsolateMerge isolates one page in the middle of a random segment
// (two splits) and merges it back (two merges).
func BenchmarkIsolateMerge(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s := buildSet(b, n)
			rng := rand.New(rand.NewPCG(7, 8))
			b.ReportAllocs()
			for b.Loop() {
				r := slot(rng.IntN(n))
				mid := Range[uint64]{r.Start + page, r.Start + 2*page}
				seg := s.Isolate(s.FindSegment(mid.Start), mid)
				seg.ValuePtr().pad[0]++
				seg.ValuePtr().pad[0]--
				s.MergeRange(r)
			}
			if s.Len() != n {
				b.Fatalf("%d segments after merging, want %d", s.Len(), n)
			}
		})
	}
}

// gapSet returns 1e5 segments separated by one-page gaps, with a 64-page
// gap after every 1000th segment.
func gapSet(tb testing.TB) (*benchSet, uint64) {
	const n = 100000
	rs := make([]Range[uint64], n)
	vs := make([]bval, n)
	addr := uint64(1 << 30)
	for i := range rs {
		addr += page
		if i%1000 == 999 {
			addr += 64 * page
		}
		rs[i] = Range[uint64]{addr, addr + 4*page}
		vs[i] = bval{off: uint64(i) << 40}
		addr += 4 * page
	}
	s := new(benchSet)
	if err := s.ImportSortedSlices(rs, vs); err != nil {
		tb.Fatal(err)
	}
	return s, addr
}

// BenchmarkFindGap searches a set of 1e5 segments, whose gaps are mostly
// one page, for 16-page holes above (FindLowestGap) or below
// (FindHighestGap) random addresses; the augmentation lets it skip the
// small gaps.
func BenchmarkFindGap(b *testing.B) {
	s, top := gapSet(b)
	rng := rand.New(rand.NewPCG(9, 10))
	starts := make([]uint64, 1<<12)
	for i := range starts {
		starts[i] = 1<<30 + rng.Uint64N(top-1<<30)
	}
	b.Run("Lowest", func(b *testing.B) {
		j := 0
		for b.Loop() {
			bounds := Range[uint64]{starts[j&(len(starts)-1)], top}
			if _, ok := s.FindLowestGap(bounds, 16*page, page); !ok {
				b.Fatal("no gap")
			}
			j++
		}
	})
	b.Run("Highest", func(b *testing.B) {
		j := 0
		for b.Loop() {
			bounds := Range[uint64]{1 << 30, starts[j&(len(starts)-1)] + 70*page*1000}
			if _, ok := s.FindHighestGap(bounds, 16*page, page); !ok {
				b.Fatal("no gap")
			}
			j++
		}
	})
}

// heapBytesPerSegment builds a set of n segments with build and returns the
// heap bytes it holds per segment.
func heapBytesPerSegment(n int, build func(s *benchSet)) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := new(benchSet)
	build(s)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if s.Len() != n {
		panic(fmt.Sprintf("built %d segments, want %d", s.Len(), n))
	}
	runtime.KeepAlive(s)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// memoryPatterns are ways of building a set of n non-mergeable segments.
func memoryPatterns(n int) []struct {
	name  string
	build func(s *benchSet)
} {
	v := func(i int) bval { return bval{off: uint64(i) << 40} }
	return []struct {
		name  string
		build func(s *benchSet)
	}{
		{"import", func(s *benchSet) {
			rs := make([]Range[uint64], n)
			vs := make([]bval, n)
			for i := range rs {
				rs[i], vs[i] = slot(i), v(i)
			}
			if err := s.ImportSortedSlices(rs, vs); err != nil {
				panic(err)
			}
		}},
		{"ascending", func(s *benchSet) {
			for i := 0; i < n; i++ {
				s.Add(slot(i), v(i))
			}
		}},
		{"descending", func(s *benchSet) {
			for i := n - 1; i >= 0; i-- {
				s.Add(slot(i), v(i))
			}
		}},
		{"random", func(s *benchSet) {
			for _, i := range rand.New(rand.NewPCG(11, 12)).Perm(n) {
				s.Add(slot(i), v(i))
			}
		}},
		{"mmap-like", func(s *benchSet) {
			// Low mappings first, then each new mapping just below the
			// previous one, as top-down mmap places them.
			for i := 0; i < 16; i++ {
				s.Add(slot(i), v(i))
			}
			for i := n - 1; i >= 16; i-- {
				s.Add(slot(i), v(i))
			}
		}},
		{"random-then-remove-half", func(s *benchSet) {
			for _, i := range rand.New(rand.NewPCG(13, 14)).Perm(2 * n) {
				s.Add(slot(i), v(i))
			}
			for _, i := range rand.New(rand.NewPCG(15, 16)).Perm(2 * n)[:n] {
				s.Remove(s.FindSegment(slot(i).Start))
			}
		}},
	}
}

// BenchmarkMemory reports heap bytes per segment (B/seg) for 1e5 segments
// with 64-byte values, built in several orders. The entry alone (range and
// value) is 80 bytes.
func BenchmarkMemory(b *testing.B) {
	const n = 100000
	for _, p := range memoryPatterns(n) {
		b.Run(p.name, func(b *testing.B) {
			var per float64
			for b.Loop() {
				per = heapBytesPerSegment(n, p.build)
			}
			b.ReportMetric(per, "B/seg")
		})
	}
}

// TestMemoryPerSegment checks that sets stay compact whatever the order
// they are built in.
func TestMemoryPerSegment(t *testing.T) {
	if testing.Short() || smallCaps {
		t.Skip("builds large sets; measures the real node capacities")
	}
	const n = 100000
	for _, p := range memoryPatterns(n) {
		per := heapBytesPerSegment(n, p.build)
		t.Logf("%s: %.1f heap bytes per segment", p.name, per)
		if limit := 160.0; per > limit {
			t.Errorf("%s: %.1f heap bytes per segment, want at most %v", p.name, per, limit)
		}
	}
}

// Other value sizes, for the memory report: a 4-byte count (like the memory
// file's reference counts) and a 96-byte value (like a vma).
type (
	val4  struct{ n int32 }
	val96 struct {
		off uint64
		pad [88]byte
	}
)

type anyFns[V any] struct{}

func (anyFns[V]) MinKey() uint64                         { return 0 }
func (anyFns[V]) MaxKey() uint64                         { return ^uint64(0) }
func (anyFns[V]) ClearValue(*V)                          {}
func (anyFns[V]) Merge(_ r64, v V, _ r64, _ V) (V, bool) { return v, false }
func (anyFns[V]) Split(_ r64, v V, _ uint64) (V, V)      { return v, v }

// heapPerSegmentOf returns the heap bytes per segment of a set of n
// segments of value type V, built in order if ordered, else at random.
func heapPerSegmentOf[V any](n int, ordered bool) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := new(Set[uint64, V, anyFns[V]])
	order := rand.New(rand.NewPCG(17, 18)).Perm(n)
	var zero V
	for j := range n {
		i := j
		if !ordered {
			i = order[j]
		}
		s.Add(slot(i), zero)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(s)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// TestMemoryByValueSize logs the heap bytes per segment for other value
// sizes (see -v), and checks the overhead over the bare entry stays small
// for ordered insertion.
func TestMemoryByValueSize(t *testing.T) {
	if testing.Short() || smallCaps {
		t.Skip("builds large sets; measures the real node capacities")
	}
	const n = 100000
	for _, tc := range []struct {
		name    string
		entry   float64 // range plus value
		measure func(bool) float64
	}{
		{"4-byte value", 16 + 4, func(o bool) float64 { return heapPerSegmentOf[val4](n, o) }},
		{"96-byte value", 16 + 96, func(o bool) float64 { return heapPerSegmentOf[val96](n, o) }},
	} {
		ordered, random := tc.measure(true), tc.measure(false)
		t.Logf("%s: %.1f heap bytes per segment in order, %.1f at random (entry %.0f)", tc.name, ordered, random, tc.entry)
		// Ordered insertion leaves leaves nearly full: allow a leaf header
		// share, size-class rounding and inner nodes.
		if limit := tc.entry*1.2 + 30; ordered > limit {
			t.Errorf("%s: %.1f bytes per segment in order, want at most %.1f", tc.name, ordered, limit)
		}
	}
}
