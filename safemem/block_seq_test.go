package safemem

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"
)

// seqModel is the model of a BlockSeq: its Blocks as (address, length,
// safecopy) triples.
type seqModel []Block

func (m seqModel) bytes() uint64 {
	var n uint64
	for _, b := range m {
		n += uint64(b.Len())
	}
	return n
}

func (m seqModel) dropFirst(n uint64) seqModel {
	var out seqModel
	for _, b := range m {
		switch {
		case n >= uint64(b.Len()):
			n -= uint64(b.Len())
		case n > 0:
			out = append(out, BlockFromUnsafePointer(unsafe.Add(b.Pointer(), n), b.Len()-int(n)))
			out[len(out)-1].needSafecopy = b.NeedSafecopy()
			n = 0
		default:
			out = append(out, b)
		}
	}
	return out
}

func (m seqModel) takeFirst(n uint64) seqModel {
	var out seqModel
	for _, b := range m {
		if n == 0 {
			break
		}
		if uint64(b.Len()) > n {
			b.length = int(n)
		}
		out = append(out, b)
		n -= uint64(b.Len())
	}
	return out
}

// checkSeq compares s with the model m.
func checkSeq(t testing.TB, what string, s BlockSeq, m seqModel) {
	t.Helper()
	if s.NumBytes() != m.bytes() || s.IsEmpty() != (len(m) == 0) || s.NumBlocks() != len(m) {
		t.Fatalf("%s: %d bytes in %d blocks (empty %v), model %d bytes in %d blocks", what, s.NumBytes(), s.NumBlocks(), s.IsEmpty(), m.bytes(), len(m))
	}
	i := 0
	for b := range s.All {
		if i >= len(m) || b != m[i] {
			t.Fatalf("%s: block %d = %v, model %v", what, i, b, m)
		}
		i++
	}
	if i != len(m) {
		t.Fatalf("%s: All yielded %d blocks, model %d", what, i, len(m))
	}
	if len(m) > 0 && s.Head() != m[0] {
		t.Fatalf("%s: Head = %v, model %v", what, s.Head(), m[0])
	}
	// Walking by Tail gives the same Blocks.
	i = 0
	for r := s; !r.IsEmpty(); r = r.Tail() {
		if r.Head() != m[i] {
			t.Fatalf("%s: Tail^%d.Head = %v, model %v", what, i, r.Head(), m[i])
		}
		i++
	}
}

// arenaBlocks returns random Blocks, some empty, some unsafe, over buf.
func arenaBlocks(r *rand.Rand, buf []byte, n int) []Block {
	bs := make([]Block, n)
	for i := range bs {
		off := r.IntN(len(buf))
		l := r.IntN(min(len(buf)-off, 200) + 1)
		if r.IntN(5) == 0 {
			l = 0
		}
		if r.IntN(2) == 0 {
			bs[i] = BlockFromSafeSlice(buf[off : off+l])
		} else {
			bs[i] = BlockFromUnsafeSlice(buf[off : off+l])
		}
	}
	return bs
}

func modelOf(bs []Block) seqModel {
	var m seqModel
	for _, b := range bs {
		if !b.IsEmpty() {
			m = append(m, b)
		}
	}
	return m
}

// runSeqOps applies ops chosen by next to a BlockSeq and its model.
func runSeqOps(t testing.TB, buf []byte, next func(n int) int, steps int) {
	r := rand.New(rand.NewPCG(uint64(next(1<<30)), 1))
	bs := arenaBlocks(r, buf, next(6))
	s, m := BlockSeqFromSlice(bs), modelOf(bs)
	checkSeq(t, "fromSlice", s, m)
	for range steps {
		total := s.NumBytes()
		var n uint64
		switch next(4) {
		case 0:
			n = uint64(next(int(total) + 2)) // 0 .. total+1
		case 1:
			n = 0
		case 2:
			n = total
		case 3:
			if !s.IsEmpty() {
				n = uint64(s.Head().Len()) // a Block boundary
			}
		}
		switch next(4) {
		case 0:
			s, m = s.DropFirst64(n), m.dropFirst(n)
		case 1:
			s, m = s.TakeFirst64(n), m.takeFirst(n)
		case 2:
			if !s.IsEmpty() {
				s, m = s.Tail(), m[1:]
			}
		case 3:
			bs := arenaBlocks(r, buf, next(6))
			s, m = BlockSeqFromSlice(bs), modelOf(bs)
		}
		checkSeq(t, "step", s, m)
	}
}

func TestBlockSeqModel(t *testing.T) {
	buf := make([]byte, 4096)
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 2))
		runSeqOps(t, buf, r.IntN, 30)
	}
}

func FuzzBlockSeq(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Add([]byte{0, 0, 0, 0, 3, 1, 2, 0, 255, 17, 4, 4, 2, 1})
	f.Add([]byte("drop the first and take the last"))
	buf := make([]byte, 4096)
	f.Fuzz(func(t *testing.T, data []byte) {
		next := func(n int) int {
			if len(data) == 0 {
				return 0
			}
			v := int(data[0])
			data = data[1:]
			if len(data) > 0 {
				v = v<<8 | int(data[0])
				data = data[1:]
			}
			return v % n
		}
		runSeqOps(t, buf, next, len(data)/4)
	})
}

func TestBlockSeqEdges(t *testing.T) {
	buf := make([]byte, 100)
	a, b, c := BlockFromSafeSlice(buf[0:10]), BlockFromUnsafeSlice(buf[20:50]), BlockFromSafeSlice(buf[60:100])
	s := BlockSeqFromSlice([]Block{{}, a, {}, b, c, {}})
	checkSeq(t, "filtered", s, seqModel{a, b, c})

	for _, tc := range []struct {
		name string
		got  BlockSeq
		want seqModel
	}{
		{"drop 0", s.DropFirst64(0), seqModel{a, b, c}},
		{"drop head", s.DropFirst64(10), seqModel{b, c}},
		{"drop into b", s.DropFirst64(15), seqModel{b.DropFirst(5), c}},
		{"drop all but 1", s.DropFirst64(79), seqModel{c.DropFirst(39)}},
		{"drop all", s.DropFirst64(80), nil},
		{"drop more", s.DropFirst64(1 << 63), nil},
		{"drop max", s.DropFirst64(^uint64(0)), nil},
		{"take 0", s.TakeFirst64(0), nil},
		{"take 1", s.TakeFirst64(1), seqModel{a.TakeFirst(1)}},
		{"take head", s.TakeFirst64(10), seqModel{a}},
		{"take into b", s.TakeFirst64(11), seqModel{a, b.TakeFirst(1)}},
		{"take all", s.TakeFirst64(80), seqModel{a, b, c}},
		{"take more", s.TakeFirst64(^uint64(0)), seqModel{a, b, c}},
		{"take then drop", s.TakeFirst64(45).DropFirst64(12), seqModel{b.DropFirst(2), c.TakeFirst(5)}},
		{"drop then take", s.DropFirst64(12).TakeFirst64(33), seqModel{b.DropFirst(2), c.TakeFirst(5)}},
		{"take then tail", s.TakeFirst64(45).Tail(), seqModel{b, c.TakeFirst(5)}},
		{"take then tail tail", s.TakeFirst64(45).Tail().Tail(), seqModel{c.TakeFirst(5)}},
		{"take to boundary then tail", s.TakeFirst64(40).Tail(), seqModel{b}},
		{"one block", BlockSeqOf(b).DropFirst64(3).TakeFirst64(4), seqModel{b.DropFirst(3).TakeFirst(4)}},
		{"of empty", BlockSeqOf(Block{}), nil},
		{"from nil", BlockSeqFromSlice(nil), nil},
		{"from empties", BlockSeqFromSlice([]Block{{}, {}}), nil},
		{"from one of many", BlockSeqFromSlice([]Block{{}, b, {}}), seqModel{b}},
		{"zero value", BlockSeq{}, nil},
	} {
		checkSeq(t, tc.name, tc.got, tc.want)
	}
	// The safecopy flag survives slicing.
	if !s.DropFirst64(15).Head().NeedSafecopy() || s.DropFirst64(40).Head().NeedSafecopy() {
		t.Errorf("safecopy flag lost")
	}
	// BlockSeqFromSlice does not copy a slice without empty Blocks, and
	// slicing never writes to it.
	bs := []Block{a, b, c}
	s2 := BlockSeqFromSlice(bs)
	_ = s2.DropFirst64(15).TakeFirst64(20).Tail()
	if bs[0] != a || bs[1] != b || bs[2] != c {
		t.Errorf("slicing modified the caller's slice")
	}
	if got := s.TakeFirst64(11).String(); !strings.Contains(got, "(11 bytes)") || strings.Count(got, "Block{") != 2 {
		t.Errorf("String = %q", got)
	}
	for name, f := range map[string]func(){
		"Head": func() { BlockSeq{}.Head() },
		"Tail": func() { BlockSeq{}.Tail() },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s of an empty BlockSeq did not panic", name)
				}
			}()
			f()
		}()
	}
}

func TestBlockEdges(t *testing.T) {
	buf := make([]byte, 10)
	b := BlockFromUnsafeSlice(buf)
	for _, tc := range []struct {
		name    string
		got     Block
		wantLen int
		wantOff int
	}{
		{"drop 0", b.DropFirst(0), 10, 0},
		{"drop 3", b.DropFirst(3), 7, 3},
		{"drop all", b.DropFirst(10), 0, -1},
		{"drop more", b.DropFirst64(1 << 40), 0, -1},
		{"take 0", b.TakeFirst(0), 0, -1},
		{"take 3", b.TakeFirst(3), 3, 0},
		{"take more", b.TakeFirst64(1 << 40), 10, 0},
		{"drop64 4 take64 2", b.DropFirst64(4).TakeFirst64(2), 2, 4},
	} {
		if tc.got.Len() != tc.wantLen || tc.got.IsEmpty() != (tc.wantLen == 0) {
			t.Errorf("%s: length %d, want %d", tc.name, tc.got.Len(), tc.wantLen)
		}
		if tc.wantOff >= 0 && (tc.got.Addr() != addr(buf, tc.wantOff) || !tc.got.NeedSafecopy()) {
			t.Errorf("%s: %v, want address of byte %d", tc.name, tc.got, tc.wantOff)
		}
	}
	if BlockFromSafeSlice(nil) != (Block{}) || BlockFromUnsafeSlice(buf[:0]) != (Block{}) || BlockFromUnsafePointer(unsafe.Pointer(&buf[0]), 0).NeedSafecopy() {
		t.Errorf("empty Blocks are not the zero Block")
	}
	if len(b.ToSlice()) != 10 || (Block{}).ToSlice() != nil {
		t.Errorf("ToSlice")
	}
}
