package segment

import (
	"fmt"
	"slices"
	"testing"
)

// tval is the value type of the tested sets: like a vma, two neighbours
// merge only if they have the same colour and contiguous offsets.
type tval struct {
	off   uint64
	color uint8
}

// clearLog records ClearValue calls, so that the tree and the model can be
// checked to clear the same values. Tests using it do not run in parallel.
var clearLog struct {
	calls int
	sum   uint64
}

func clearTval(v *tval) {
	clearLog.calls++
	clearLog.sum = clearLog.sum*31 + v.off*7 + uint64(v.color)
	*v = tval{}
}

func mergeTval[K Key](r1 Range[K], v1 tval, r2 Range[K], v2 tval) (tval, bool) {
	if v1.color != v2.color || v1.off+uint64(r1.Length()) != v2.off {
		return tval{}, false
	}
	return v1, true
}

func splitTval[K Key](r Range[K], v tval, split K) (tval, tval) {
	v2 := v
	v2.off += uint64(split - r.Start)
	return v, v2
}

// smallFns: uint64 keys in [8, 3000), a space small enough for collisions.
type smallFns struct{}

func (smallFns) MinKey() uint64     { return 8 }
func (smallFns) MaxKey() uint64     { return 3000 }
func (smallFns) ClearValue(v *tval) { clearTval(v) }
func (smallFns) Merge(r1 Range[uint64], v1 tval, r2 Range[uint64], v2 tval) (tval, bool) {
	return mergeTval(r1, v1, r2, v2)
}
func (smallFns) Split(r Range[uint64], v tval, split uint64) (tval, tval) {
	return splitTval(r, v, split)
}

// wideFns: uint64 keys in [0, 70000), room for thousands of segments.
type wideFns struct{}

func (wideFns) MinKey() uint64     { return 0 }
func (wideFns) MaxKey() uint64     { return 70000 }
func (wideFns) ClearValue(v *tval) { clearTval(v) }
func (wideFns) Merge(r1 Range[uint64], v1 tval, r2 Range[uint64], v2 tval) (tval, bool) {
	return mergeTval(r1, v1, r2, v2)
}
func (wideFns) Split(r Range[uint64], v tval, split uint64) (tval, tval) {
	return splitTval(r, v, split)
}

// fullFns: uintptr keys over the whole space, to test overflow at the top.
type fullFns struct{}

func (fullFns) MinKey() uintptr    { return 0 }
func (fullFns) MaxKey() uintptr    { return ^uintptr(0) }
func (fullFns) ClearValue(v *tval) { clearTval(v) }
func (fullFns) Merge(r1 Range[uintptr], v1 tval, r2 Range[uintptr], v2 tval) (tval, bool) {
	return mergeTval(r1, v1, r2, v2)
}
func (fullFns) Split(r Range[uintptr], v tval, split uintptr) (tval, tval) {
	return splitTval(r, v, split)
}

// byteReader decodes an operation sequence. Reads past the end return 0 and
// set done.
type byteReader struct {
	data []byte
	done bool
}

func (br *byteReader) byte() byte {
	if len(br.data) == 0 {
		br.done = true
		return 0
	}
	b := br.data[0]
	br.data = br.data[1:]
	return b
}

func (br *byteReader) u16() uint64 { return uint64(br.byte())<<8 | uint64(br.byte()) }

// keyspace turns bytes into keys of one kind of set.
type keyspace[K Key] interface {
	key(br *byteReader) K    // any key, sometimes outside [MinKey, MaxKey)
	length(br *byteReader) K // a short length, >= 0
}

type smallSpace struct{}

func (smallSpace) key(br *byteReader) uint64    { return br.u16() % 3010 }
func (smallSpace) length(br *byteReader) uint64 { return uint64(br.byte() % 40) }

type wideSpace struct{}

func (wideSpace) key(br *byteReader) uint64    { return br.u16() + br.u16()%4500 }
func (wideSpace) length(br *byteReader) uint64 { return uint64(br.byte() % 24) }

type fullSpace struct{}

// key returns keys near 0, near the top of the space, or near the middle.
func (fullSpace) key(br *byteReader) uintptr {
	sel := br.byte()
	k := uintptr(br.u16() % 2000)
	switch sel % 3 {
	case 0:
		return k
	case 1:
		return ^uintptr(0) - k
	default:
		return uintptr(1)<<(8*8-1) + k - 1000
	}
}
func (fullSpace) length(br *byteReader) uintptr { return uintptr(br.byte() % 40) }

// desc describes an iterator (segment or gap) for comparisons.
type desc[K Key] struct {
	ok bool
	r  Range[K]
	v  tval
}

func (d desc[K]) String() string {
	if !d.ok {
		return "<end>"
	}
	return fmt.Sprintf("%v:%v", d.r, d.v)
}

func tseg[K Key, F Functions[K, tval]](it Iterator[K, tval, F]) desc[K] {
	if !it.Ok() {
		return desc[K]{}
	}
	return desc[K]{true, it.Range(), it.Value()}
}

func mseg[K Key, F Functions[K, tval]](it modelIter[K, tval, F]) desc[K] {
	if !it.Ok() {
		return desc[K]{}
	}
	return desc[K]{true, it.Range(), it.Value()}
}

func tgap[K Key, F Functions[K, tval]](g GapIterator[K, tval, F]) desc[K] {
	if !g.Ok() {
		return desc[K]{}
	}
	return desc[K]{ok: true, r: g.Range()}
}

func mgap[K Key, F Functions[K, tval]](g modelGap[K, tval, F]) desc[K] {
	if !g.Ok() {
		return desc[K]{}
	}
	return desc[K]{ok: true, r: g.Range()}
}

// pair is a tree and its model, driven in lock step.
type pair[K Key, F Functions[K, tval]] struct {
	t    testing.TB
	tree *Set[K, tval, F]
	mod  *modelSet[K, tval, F]
	ks   keyspace[K]
	step int
	op   string
}

func (p *pair[K, F]) failf(format string, args ...any) {
	p.t.Helper()
	p.t.Fatalf("step %d (%s): %s\ntree:  %v\nmodel: %v", p.step, p.op, fmt.Sprintf(format, args...), p.tree, p.mod)
}

func (p *pair[K, F]) eq(what string, got, want desc[K]) {
	p.t.Helper()
	if got != want {
		p.failf("%s: tree %v, model %v", what, got, want)
	}
}

// mutate runs fn on the tree and mfn on the model, comparing the
// ClearValue calls they make.
func (p *pair[K, F]) mutate(fn, mfn func()) {
	p.t.Helper()
	clearLog.calls, clearLog.sum = 0, 0
	mfn()
	mc, ms := clearLog.calls, clearLog.sum
	clearLog.calls, clearLog.sum = 0, 0
	fn()
	if clearLog.calls != mc || clearLog.sum != ms {
		p.failf("ClearValue: tree %d calls (sum %#x), model %d (sum %#x)", clearLog.calls, clearLog.sum, mc, ms)
	}
}

// compareAll checks the tree's invariants and that it holds exactly what
// the model holds.
func (p *pair[K, F]) compareAll() {
	p.t.Helper()
	if err := checkTree(p.tree); err != nil {
		p.failf("invariant: %v", err)
	}
	tr, tv := p.tree.ExportSlices()
	mr, mv := p.mod.ExportSlices()
	if !slices.Equal(tr, mr) || !slices.Equal(tv, mv) {
		p.failf("contents differ")
	}
	if p.tree.Len() != p.mod.Len() || p.tree.IsEmpty() != p.mod.IsEmpty() {
		p.failf("Len %d, model %d", p.tree.Len(), p.mod.Len())
	}
}

// rangeArg decodes a range that is usually well-formed and sometimes empty.
func (p *pair[K, F]) rangeArg(br *byteReader) Range[K] {
	start := p.ks.key(br)
	end := start + p.ks.length(br)
	if end < start {
		end = start
	}
	return Range[K]{start, end}
}

// findSeg returns the segment at or after key in both sets.
func (p *pair[K, F]) findSeg(key K) (Iterator[K, tval, F], modelIter[K, tval, F]) {
	t, m := p.tree.LowerBoundSegment(key), p.mod.LowerBoundSegment(key)
	p.eq("LowerBoundSegment", tseg(t), mseg(m))
	return t, m
}

// runOps decodes data into operations and applies them to a tree and a
// model, checking after each that they agree.
func runOps[K Key, F Functions[K, tval]](t testing.TB, data []byte, ks keyspace[K]) {
	p := &pair[K, F]{t: t, tree: new(Set[K, tval, F]), mod: new(modelSet[K, tval, F]), ks: ks}
	br := &byteReader{data: data}
	var f F
	maxLen, maxHeight := 0, 0
	for p.step = 0; ; p.step++ {
		op := br.byte()
		if br.done {
			if testing.Verbose() {
				t.Logf("%d steps; at most %d segments, height %d", p.step, maxLen, maxHeight)
			}
			return
		}
		maxLen = max(maxLen, p.tree.Len())
		maxHeight = max(maxHeight, p.tree.height())
		mutated := true
		// Alternate long phases that mostly grow the set with shorter
		// ones that mostly shrink it, so that trees get deep and then
		// rebalance on the way down.
		switch phase := p.step / 3000 % 3; {
		case phase < 2 && (op%32 >= 9 && op%32 <= 12 || op%32 == 31):
			op = 0
		case phase == 2 && op%32 <= 4:
			op = 11
		}
		switch op % 32 {
		case 0, 1, 2, 3, 4: // Add, often merging.
			p.op = "Add"
			r := p.rangeArg(br)
			color := br.byte() % 3
			v := tval{uint64(r.Start), color}
			if r.Start >= r.End {
				mutated = false
				break
			}
			without := op%32 == 4
			var got, want bool
			p.mutate(func() {
				if without {
					got = p.tree.AddWithoutMerging(r, v)
				} else {
					got = p.tree.Add(r, v)
				}
			}, func() {
				if without {
					want = p.mod.AddWithoutMerging(r, v)
				} else {
					want = p.mod.Add(r, v)
				}
			})
			if got != want {
				p.failf("Add(%v) = %v, model %v", r, got, want)
			}
		case 5, 6, 7: // Insert into the gap at a key, with or without merging.
			p.op = "Insert"
			k := p.ks.key(br)
			ln := p.ks.length(br) + 1
			mode := br.byte() % 3
			tg, mg := p.tree.FindGap(k), p.mod.FindGap(k)
			p.eq("FindGap", tgap(tg), tgap(tg))
			p.eq("FindGap", tgap(tg), mgap(mg))
			if !tg.Ok() {
				mutated = false
				break
			}
			end := k + ln
			if end < k || end > tg.End() {
				end = tg.End()
			}
			r := Range[K]{k, end}
			v := tval{uint64(k), br.byte() % 2}
			var got, want desc[K]
			p.mutate(func() {
				switch mode {
				case 0:
					got = tseg(p.tree.Insert(tg, r, v))
				case 1:
					got = tseg(p.tree.InsertWithoutMerging(tg, r, v))
				default:
					got = tseg(p.tree.InsertWithoutMergingUnchecked(tg, r, v))
				}
			}, func() {
				switch mode {
				case 0:
					want = mseg(p.mod.Insert(mg, r, v))
				case 1:
					want = mseg(p.mod.InsertWithoutMerging(mg, r, v))
				default:
					want = mseg(p.mod.InsertWithoutMergingUnchecked(mg, r, v))
				}
			})
			p.eq("Insert result", got, want)
		case 8: // Append a run after the last segment, as fork does.
			p.op = "append run"
			n := int(br.byte() % 64)
			ln := p.ks.length(br) + 1
			tg, mg := p.tree.LastGap(), p.mod.LastGap()
			p.eq("LastGap", tgap(tg), mgap(mg))
			p.mutate(func() {
				for i := 0; i < n; i++ {
					r := Range[K]{tg.Start() + 1, tg.Start() + 1 + ln}
					if r.Start < tg.Start() || r.End < r.Start || r.End > tg.End() {
						return
					}
					tg = p.tree.InsertWithoutMergingUnchecked(tg, r, tval{uint64(i), 0}).NextGap()
				}
			}, func() {
				for i := 0; i < n; i++ {
					r := Range[K]{mg.Start() + 1, mg.Start() + 1 + ln}
					if r.Start < mg.Start() || r.End < r.Start || r.End > mg.End() {
						return
					}
					mg = p.mod.InsertWithoutMergingUnchecked(mg, r, tval{uint64(i), 0}).NextGap()
				}
			})
			p.eq("append run gap", tgap(tg), mgap(mg))
		case 9, 10: // Remove the segment at or after a key.
			p.op = "Remove"
			ts, ms := p.findSeg(p.ks.key(br))
			if !ts.Ok() {
				mutated = false
				break
			}
			var got, want desc[K]
			p.mutate(func() { got = tgap(p.tree.Remove(ts)) }, func() { want = mgap(p.mod.Remove(ms)) })
			p.eq("Remove result", got, want)
		case 11, 12: // RemoveRange or RemoveFullRange.
			p.op = "RemoveRange"
			r := p.rangeArg(br)
			full := op%32 == 12
			if full {
				// Widen r to the segments it touches, so it splits none.
				if s := p.mod.FindSegment(r.Start); s.Ok() {
					r.Start = s.Start()
				}
				if r.End > r.Start {
					if s := p.mod.FindSegment(r.End - 1); s.Ok() {
						r.End = s.End()
					}
				}
			}
			var got, want desc[K]
			p.mutate(func() {
				if full {
					got = tgap(p.tree.RemoveFullRange(r))
				} else {
					got = tgap(p.tree.RemoveRange(r))
				}
			}, func() {
				if full {
					want = mgap(p.mod.RemoveFullRange(r))
				} else {
					want = mgap(p.mod.RemoveRange(r))
				}
			})
			p.eq("RemoveRange result", got, want)
		case 13: // Merge a segment with its successor.
			p.op = "Merge"
			ts, ms := p.findSeg(p.ks.key(br))
			if !ts.Ok() || !ts.NextSegment().Ok() {
				mutated = false
				break
			}
			var got, want desc[K]
			p.mutate(func() { got = tseg(p.tree.Merge(ts, ts.NextSegment())) },
				func() { want = mseg(p.mod.Merge(ms, ms.NextSegment())) })
			p.eq("Merge result", got, want)
		case 14: // MergeRange, MergeAdjacent, MergeAll.
			p.op = "MergeRange"
			r := p.rangeArg(br)
			which := br.byte() % 8
			p.mutate(func() {
				switch {
				case which == 0:
					p.tree.MergeAll()
				case which < 4:
					p.tree.MergeAdjacent(r)
				default:
					p.tree.MergeRange(r)
				}
			}, func() {
				switch {
				case which == 0:
					p.mod.MergeAll()
				case which < 4:
					p.mod.MergeAdjacent(r)
				default:
					p.mod.MergeRange(r)
				}
			})
		case 15, 16: // Split or SplitAt.
			p.op = "Split"
			k := p.ks.key(br)
			if op%32 == 16 {
				var got, want bool
				p.mutate(func() { got = p.tree.SplitAt(k) }, func() { want = p.mod.SplitAt(k) })
				if got != want {
					p.failf("SplitAt(%#x) = %v, model %v", uint64(k), got, want)
				}
				break
			}
			ts, ms := p.findSeg(k)
			if !ts.Ok() || ts.End()-ts.Start() < 2 {
				mutated = false
				break
			}
			split := ts.Start() + 1 + K(br.byte())%(ts.End()-ts.Start()-1)
			var g1, g2, w1, w2 desc[K]
			p.mutate(func() {
				a, b := p.tree.Split(ts, split)
				g1, g2 = tseg(a), tseg(b)
			}, func() {
				a, b := p.mod.Split(ms, split)
				w1, w2 = mseg(a), mseg(b)
			})
			p.eq("Split first", g1, w1)
			p.eq("Split second", g2, w2)
		case 17: // Isolate.
			p.op = "Isolate"
			r := p.rangeArg(br)
			ts, ms := p.findSeg(r.Start)
			if !ts.Ok() || !ts.Range().Overlaps(r) {
				mutated = false
				break
			}
			var got, want desc[K]
			p.mutate(func() { got = tseg(p.tree.Isolate(ts, r)) }, func() { want = mseg(p.mod.Isolate(ms, r)) })
			p.eq("Isolate result", got, want)
		case 18: // LowerBoundSegmentSplitBefore / UpperBoundSegmentSplitAfter.
			p.op = "BoundSplit"
			k := p.ks.key(br)
			after := br.byte()%2 == 0
			var got, want desc[K]
			p.mutate(func() {
				if after {
					got = tseg(p.tree.UpperBoundSegmentSplitAfter(k))
				} else {
					got = tseg(p.tree.LowerBoundSegmentSplitBefore(k))
				}
			}, func() {
				if after {
					want = mseg(p.mod.UpperBoundSegmentSplitAfter(k))
				} else {
					want = mseg(p.mod.LowerBoundSegmentSplitBefore(k))
				}
			})
			p.eq("bound split result", got, want)
		case 19: // Change a segment's range within its neighbours' gaps.
			p.op = "SetRange"
			ts, ms := p.findSeg(p.ks.key(br))
			if !ts.Ok() {
				mutated = false
				break
			}
			lo, hi := ts.PrevGap().Start(), ts.NextGap().End()
			p.eq("PrevGap", tgap(ts.PrevGap()), mgap(ms.PrevGap()))
			p.eq("NextGap", tgap(ts.NextGap()), mgap(ms.NextGap()))
			a := lo + K(br.u16())%(hi-lo)
			b := a + 1 + K(br.u16())%(hi-a)
			if b <= a || b > hi {
				b = hi
			}
			r := Range[K]{a, b}
			mode := br.byte() % 4
			p.mutate(func() {
				switch mode {
				case 0:
					ts.SetRange(r)
				case 1:
					ts.SetRangeUnchecked(r)
				case 2:
					if a < ts.End() {
						ts.SetStart(a)
					}
				default:
					if b > ts.Start() {
						ts.SetEndUnchecked(b)
					}
				}
			}, func() {
				switch mode {
				case 0:
					ms.SetRange(r)
				case 1:
					ms.SetRangeUnchecked(r)
				case 2:
					if a < ms.End() {
						ms.SetStart(a)
					}
				default:
					if b > ms.Start() {
						ms.SetEndUnchecked(b)
					}
				}
			})
		case 20: // Change a value.
			p.op = "SetValue"
			ts, ms := p.findSeg(p.ks.key(br))
			if !ts.Ok() {
				mutated = false
				break
			}
			c := br.byte() % 3
			if c == 0 {
				ts.ValuePtr().color++
				ms.ValuePtr().color++
			} else {
				ts.SetValue(tval{uint64(c), c})
				ms.SetValue(tval{uint64(c), c})
			}
		case 21, 22, 23: // Point queries.
			p.op = "queries"
			mutated = false
			k := p.ks.key(br)
			ts, tg := p.tree.Find(k)
			ms, mg := p.mod.Find(k)
			p.eq("Find seg", tseg(ts), mseg(ms))
			p.eq("Find gap", tgap(tg), mgap(mg))
			p.eq("FindSegment", tseg(p.tree.FindSegment(k)), mseg(p.mod.FindSegment(k)))
			p.eq("FindGap", tgap(p.tree.FindGap(k)), mgap(p.mod.FindGap(k)))
			p.eq("LowerBoundSegment", tseg(p.tree.LowerBoundSegment(k)), mseg(p.mod.LowerBoundSegment(k)))
			p.eq("UpperBoundSegment", tseg(p.tree.UpperBoundSegment(k)), mseg(p.mod.UpperBoundSegment(k)))
			p.eq("LowerBoundGap", tgap(p.tree.LowerBoundGap(k)), mgap(p.mod.LowerBoundGap(k)))
			p.eq("UpperBoundGap", tgap(p.tree.UpperBoundGap(k)), mgap(p.mod.UpperBoundGap(k)))
			if ts.Ok() != !tg.Ok() && k >= f.MinKey() && k < f.MaxKey() {
				p.failf("Find(%#x): segment ok %v, gap ok %v", uint64(k), ts.Ok(), tg.Ok())
			}
		case 24, 25: // Walk from a segment and from a gap.
			p.op = "walk"
			mutated = false
			k := p.ks.key(br)
			ts, ms := p.findSeg(k)
			for i := 0; i < 4 && ts.Ok(); i++ {
				p.eq("seg", tseg(ts), mseg(ms))
				p.eq("PrevSegment", tseg(ts.PrevSegment()), mseg(ms.PrevSegment()))
				p.eq("NextSegment", tseg(ts.NextSegment()), mseg(ms.NextSegment()))
				p.eq("PrevGap", tgap(ts.PrevGap()), mgap(ms.PrevGap()))
				p.eq("NextGap", tgap(ts.NextGap()), mgap(ms.NextGap()))
				a, b := ts.PrevNonEmpty()
				c, d := ms.PrevNonEmpty()
				p.eq("PrevNonEmpty seg", tseg(a), mseg(c))
				p.eq("PrevNonEmpty gap", tgap(b), mgap(d))
				a, b = ts.NextNonEmpty()
				c, d = ms.NextNonEmpty()
				p.eq("NextNonEmpty seg", tseg(a), mseg(c))
				p.eq("NextNonEmpty gap", tgap(b), mgap(d))
				if op%2 == 0 {
					ts, ms = ts.NextSegment(), ms.NextSegment()
				} else {
					ts, ms = ts.PrevSegment(), ms.PrevSegment()
				}
			}
			tg, mg := p.tree.LowerBoundGap(k), p.mod.LowerBoundGap(k)
			for i := 0; i < 4 && tg.Ok(); i++ {
				p.eq("gap", tgap(tg), mgap(mg))
				p.eq("gap PrevSegment", tseg(tg.PrevSegment()), mseg(mg.PrevSegment()))
				p.eq("gap NextSegment", tseg(tg.NextSegment()), mseg(mg.NextSegment()))
				p.eq("gap PrevGap", tgap(tg.PrevGap()), mgap(mg.PrevGap()))
				p.eq("gap NextGap", tgap(tg.NextGap()), mgap(mg.NextGap()))
				if tg.IsEmpty() != mg.IsEmpty() {
					p.failf("IsEmpty differs")
				}
				if op%2 == 0 {
					tg, mg = tg.NextGap(), mg.NextGap()
				} else {
					tg, mg = tg.PrevGap(), mg.PrevGap()
				}
			}
		case 26, 27: // Gap searches by size.
			p.op = "large gaps"
			mutated = false
			k := p.ks.key(br)
			minSize := p.ks.length(br) * K(1+br.byte()%4)
			tg, mg := p.tree.UpperBoundGap(k), p.mod.UpperBoundGap(k)
			p.eq("UpperBoundGap", tgap(tg), mgap(mg))
			for i := 0; i < 3 && tg.Ok(); i++ {
				if op%2 == 0 {
					tg, mg = tg.NextLargeEnoughGap(minSize), mg.NextLargeEnoughGap(minSize)
				} else {
					tg, mg = tg.PrevLargeEnoughGap(minSize), mg.PrevLargeEnoughGap(minSize)
				}
				p.eq(fmt.Sprintf("LargeEnoughGap(%#x)", uint64(minSize)), tgap(tg), mgap(mg))
			}
		case 28, 29: // FindLowestGap / FindHighestGap.
			p.op = "FindGap search"
			mutated = false
			bounds := Range[K]{p.ks.key(br), p.ks.key(br)}
			if bounds.Start > bounds.End {
				bounds.Start, bounds.End = bounds.End, bounds.Start
			}
			if br.byte()%4 == 0 {
				bounds = Range[K]{f.MinKey(), f.MaxKey()}
			}
			length := p.ks.length(br) + 1
			align := K(1) << (br.byte() % 6)
			if br.byte()%8 == 0 {
				length = f.MaxKey() - K(br.byte())
			}
			ta, tok := p.tree.FindLowestGap(bounds, length, align)
			ma, mok := p.mod.FindLowestGap(bounds, length, align)
			if ta != ma || tok != mok {
				p.failf("FindLowestGap(%v, %#x, %#x) = %#x %v, model %#x %v", bounds, uint64(length), uint64(align), uint64(ta), tok, uint64(ma), mok)
			}
			ta, tok = p.tree.FindHighestGap(bounds, length, align)
			ma, mok = p.mod.FindHighestGap(bounds, length, align)
			if ta != ma || tok != mok {
				p.failf("FindHighestGap(%v, %#x, %#x) = %#x %v, model %#x %v", bounds, uint64(length), uint64(align), uint64(ta), tok, uint64(ma), mok)
			}
			if tok && (ta%align != 0 || !bounds.IsSupersetOf(Range[K]{ta, ta + length}) || !p.tree.IsEmptyRange(Range[K]{ta, ta + length})) {
				p.failf("FindHighestGap result %#x does not fit", uint64(ta))
			}
		case 30: // Range queries and iteration.
			p.op = "range queries"
			mutated = false
			r := p.rangeArg(br)
			if p.tree.IsEmptyRange(r) != p.mod.IsEmptyRange(r) {
				p.failf("IsEmptyRange(%v) differs", r)
			}
			if p.tree.Span() != p.mod.Span() || p.tree.SpanRange(r) != p.mod.SpanRange(r) {
				p.failf("Span or SpanRange(%v) differs", r)
			}
			var got, want []desc[K]
			for s := range p.tree.Segments(r) {
				got = append(got, tseg(s))
			}
			for s := range p.mod.Segments(r) {
				want = append(want, mseg(s))
			}
			for g := range p.tree.Gaps(r) {
				got = append(got, tgap(g))
			}
			for g := range p.mod.Gaps(r) {
				want = append(want, mgap(g))
			}
			if !slices.Equal(got, want) {
				p.failf("Segments/Gaps(%v): tree %v, model %v", r, got, want)
			}
			if p.tree.FirstSegment() != p.tree.LowerBoundSegment(0) || tseg(p.tree.LastSegment()) != mseg(p.mod.LastSegment()) {
				p.failf("First/LastSegment differ")
			}
			p.eq("FirstGap", tgap(p.tree.FirstGap()), mgap(p.mod.FirstGap()))
			p.eq("LastGap", tgap(p.tree.LastGap()), mgap(p.mod.LastGap()))
		default: // Rarely: export and reimport, or remove everything.
			p.op = "export/import"
			switch br.byte() % 8 {
			case 0:
				p.mutate(p.tree.RemoveAll, p.mod.RemoveAll)
			default:
				rs, vs := p.tree.ExportSlices()
				ns := new(Set[K, tval, F])
				if err := ns.ImportSortedSlices(rs, vs); err != nil {
					p.failf("reimport: %v", err)
				}
				if err := ns.ImportSortedSlices(rs, vs); len(rs) > 0 && err == nil {
					p.failf("import into a non-empty set succeeded")
				}
				p.tree = ns
			}
		}
		if mutated {
			p.compareAll()
		}
	}
}
