package safemem

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Page states of the model.
const (
	pageRW   = iota
	pageRO   // read-only: stores fault with SIGSEGV
	pageNone // PROT_NONE: everything faults with SIGSEGV
	pageEOF  // file page past end-of-file: everything faults with SIGBUS
)

// modelArena is a span of memory and what the model knows of it.
type modelArena struct {
	mem   []byte
	safe  bool  // Go memory: Blocks over it are safe
	state []int // per page
	// shadow is the expected content of every readable page.
	shadow []byte
}

func (a *modelArena) readable(off int) bool {
	s := a.state[off/pg]
	return s == pageRW || s == pageRO
}

func (a *modelArena) writable(off int) bool { return a.state[off/pg] == pageRW }

// signal is the signal an access to the page at off raises.
func (a *modelArena) signal(off int) syscall.Signal {
	if a.state[off/pg] == pageEOF {
		return syscall.SIGBUS
	}
	return syscall.SIGSEGV
}

// loc is a byte of an arena.
type loc struct {
	a   *modelArena
	off int
}

// newModelArenas makes two anonymous arenas with random page states, a
// file mapping whose last pages lie past end-of-file, and a Go buffer.
func newModelArenas(t *testing.T, r *rand.Rand) []*modelArena {
	var arenas []*modelArena
	for range 2 {
		const pages = 10
		a := &modelArena{mem: mapAnon(t, pages), state: make([]int, pages)}
		for p := range pages {
			switch r.IntN(7) {
			case 0:
				a.state[p] = pageNone
				protect(t, a.mem[p*pg:(p+1)*pg], unix.PROT_NONE)
			case 1:
				a.state[p] = pageRO
				protect(t, a.mem[p*pg:(p+1)*pg], unix.PROT_READ)
			}
		}
		arenas = append(arenas, a)
	}
	f := &modelArena{mem: mapFilePastEOF(t, 6, 4), state: []int{pageRW, pageRW, pageRW, pageRW, pageEOF, pageEOF}}
	g := &modelArena{mem: pattern(3*pg, 0x77), safe: true, state: make([]int, 3)}
	arenas = append(arenas, f, g)
	for _, a := range arenas {
		a.shadow = make([]byte, len(a.mem))
		a.resync()
	}
	return arenas
}

// resync copies the readable pages of a into its shadow.
func (a *modelArena) resync() {
	for p := range a.state {
		if a.readable(p * pg) {
			copy(a.shadow[p*pg:(p+1)*pg], a.mem[p*pg:(p+1)*pg])
		}
	}
}

// randomSeq makes a BlockSeq of up to 4 Blocks over regions of the arenas
// not yet in used, and the list of the bytes it holds.
func randomSeq(r *rand.Rand, arenas []*modelArena, used map[*modelArena][][2]int) (BlockSeq, []loc) {
	var blocks []Block
	var locs []loc
	for range 1 + r.IntN(4) {
		a := arenas[r.IntN(len(arenas))]
		for try := 0; try < 10; try++ {
			n := r.IntN(2*pg + 1)
			if r.IntN(3) == 0 {
				n = r.IntN(20)
			}
			if n > len(a.mem) {
				continue
			}
			off := r.IntN(len(a.mem) - n + 1)
			free := true
			for _, u := range used[a] {
				if off < u[1] && u[0] < off+n {
					free = false
				}
			}
			if !free {
				continue
			}
			used[a] = append(used[a], [2]int{off, off + n})
			if a.safe {
				blocks = append(blocks, BlockFromSafeSlice(a.mem[off:off+n]))
			} else {
				blocks = append(blocks, unsafeBlock(a.mem, off, off+n))
			}
			for i := range n {
				locs = append(locs, loc{a, off + i})
			}
			break
		}
	}
	s := BlockSeqFromSlice(blocks)
	if r.IntN(3) == 0 && len(locs) > 0 {
		n := r.IntN(len(locs))
		s, locs = s.DropFirst64(uint64(n)), locs[n:]
	}
	if r.IntN(3) == 0 && len(locs) > 0 {
		n := r.IntN(len(locs))
		s, locs = s.TakeFirst64(uint64(n)), locs[:n]
	}
	return s, locs
}

// TestCopySeqModel runs random CopySeqs and ZeroSeqs between sequences of
// Blocks over memory with faulting pages and checks them against a model:
// the count stops at the first byte that cannot be loaded or stored, the
// fault names that byte, the bytes before it are transferred, no byte
// outside the destination changes, and a destination byte after the fault
// holds either its old value or the source's.
func TestCopySeqModel(t *testing.T) {
	ops, faults := 0, 0
	defer func() {
		// The model must exercise faults, not just clean copies.
		if !t.Failed() && faults < ops/5 {
			t.Errorf("only %d of %d operations faulted", faults, ops)
		}
		t.Logf("%d operations, %d faulted", ops, faults)
	}()
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 3))
			arenas := newModelArenas(t, r)
			for op := range 25 {
				ops++
				used := map[*modelArena][][2]int{}
				dsts, dlocs := randomSeq(r, arenas, used)
				zero := r.IntN(5) == 0
				var srcs BlockSeq
				var slocs []loc
				if !zero {
					srcs, slocs = randomSeq(r, arenas, used)
				}
				// The model's answer.
				total := len(dlocs)
				if !zero {
					total = min(total, len(slocs))
				}
				wantN, faulted := total, false
				var readFault, writeFault bool
				for i := range total {
					readFault = !zero && !slocs[i].a.readable(slocs[i].off)
					writeFault = !dlocs[i].a.writable(dlocs[i].off)
					if readFault || writeFault {
						wantN, faulted = i, true
						break
					}
				}
				val := func(i int) byte {
					if zero {
						return 0
					}
					return slocs[i].a.shadow[slocs[i].off]
				}
				// srcOK reports whether the source byte i could have been
				// loaded, so that the destination may hold it even after
				// the fault.
				srcOK := func(i int) bool { return zero || slocs[i].a.readable(slocs[i].off) }
				var n uint64
				var err error
				if zero {
					n, err = ZeroSeq(dsts)
				} else {
					n, err = CopySeq(dsts, srcs)
				}
				what := fmt.Sprintf("op %d (zero %v) %v <- %v", op, zero, dsts, srcs)
				if n != uint64(wantN) {
					t.Fatalf("%s: count %d, want %d (err %v)", what, n, wantN, err)
				}
				if faulted {
					faults++
				}
				if !faulted {
					if err != nil {
						t.Fatalf("%s: unexpected error %v", what, err)
					}
				} else {
					fe := asFault(t, err)
					okRead := readFault && !fe.Write && fe.Addr == addr(slocs[n].a.mem, slocs[n].off) && fe.Signal == slocs[n].a.signal(slocs[n].off)
					okWrite := writeFault && fe.Write && fe.Addr == addr(dlocs[n].a.mem, dlocs[n].off) && fe.Signal == dlocs[n].a.signal(dlocs[n].off)
					if fe.Offset != n || !(okRead || okWrite) {
						t.Fatalf("%s: fault %+v does not match the model (read fault %v, write fault %v)", what, *fe, readFault, writeFault)
					}
				}
				// Check every readable byte.
				dstIndex := make(map[*modelArena][]int32)
				for _, a := range arenas {
					dstIndex[a] = make([]int32, len(a.mem))
					for i := range dstIndex[a] {
						dstIndex[a][i] = -1
					}
				}
				for i, l := range dlocs {
					dstIndex[l.a][l.off] = int32(i)
				}
				for _, a := range arenas {
					idx := dstIndex[a]
					for off := 0; off < len(a.mem); off++ {
						if !a.readable(off) {
							continue
						}
						if p := off / pg; off%pg == 0 && !pageHasDst(idx[off:off+pg]) {
							// Fast path: nothing of this page is in the
							// destination, so all of it is unchanged.
							if !bytes.Equal(a.mem[off:off+pg], a.shadow[off:off+pg]) {
								t.Fatalf("%s: page %d of an arena outside the destination changed", what, p)
							}
							off += pg - 1
							continue
						}
						got, old := a.mem[off], a.shadow[off]
						i := int(idx[off])
						inDst := i >= 0
						switch {
						case inDst && i < wantN:
							if got != val(i) {
								t.Fatalf("%s: destination byte %d = %#x, want %#x", what, i, got, val(i))
							}
						case inDst && i < total:
							if got != old && !(srcOK(i) && got == val(i)) {
								t.Fatalf("%s: destination byte %d after the fault = %#x, neither old %#x nor the source's", what, i, got, old)
							}
						default:
							if got != old {
								t.Fatalf("%s: byte %d of an arena outside the destination changed", what, off)
							}
						}
					}
					a.resync()
				}
				// Scribble new data over the writable pages for the next op.
				for _, a := range arenas {
					for p := range a.state {
						if a.writable(p * pg) {
							copy(a.mem[p*pg:(p+1)*pg], pattern(pg, byte(r.Uint32())))
						}
					}
					a.resync()
				}
			}
		})
	}
}

func pageHasDst(idx []int32) bool {
	for _, i := range idx {
		if i >= 0 {
			return true
		}
	}
	return false
}
