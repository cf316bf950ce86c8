package safemem

import (
	"bytes"
	"runtime/debug"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// copyCase is a Copy (or, with zero set, a Zero of dst) expected to stop
// after wantN bytes at a fault, or to complete if wantSig is 0.
type copyCase struct {
	name string
	// setup makes the mappings and returns the Blocks.
	setup     func(t *testing.T) (dst, src Block)
	zero      bool
	wantN     int
	wantSig   syscall.Signal
	wantWrite bool
	// wantAddr returns the expected FaultError.Addr given the Blocks.
	wantAddr func(dst, src Block) uintptr
}

func dstAt(n int) func(dst, src Block) uintptr {
	return func(dst, _ Block) uintptr { return dst.Addr() + uintptr(n) }
}

func srcAt(n int) func(dst, src Block) uintptr {
	return func(_, src Block) uintptr { return src.Addr() + uintptr(n) }
}

// holeInMiddle maps 3 pages with the middle one PROT_NONE.
func holeInMiddle(t *testing.T) []byte {
	m := mapAnon(t, 3)
	protect(t, m[pg:2*pg], unix.PROT_NONE)
	return m
}

// unmappedMiddle maps 3 pages and unmaps the middle one.
func unmappedMiddle(t *testing.T) []byte {
	m := mapAnon(t, 3)
	unmap(t, m[pg:2*pg])
	return m
}

// readOnlyMiddle maps 3 pages with the middle one read-only.
func readOnlyMiddle(t *testing.T) []byte {
	m := mapAnon(t, 3)
	protect(t, m[pg:2*pg], unix.PROT_READ)
	return m
}

func copyCases() []copyCase {
	const lo = 1000 // blocks start this far into the first page
	const span = 8000
	prefix := pg - lo // bytes before the second page
	safe := func(n int) Block { return BlockFromSafeSlice(pattern(n, 0x5a)) }
	var cases []copyCase
	for _, hole := range []struct {
		name string
		make func(t *testing.T) []byte
	}{{"protnone", holeInMiddle}, {"unmapped", unmappedMiddle}} {
		cases = append(cases,
			copyCase{
				name: hole.name + "/into",
				setup: func(t *testing.T) (Block, Block) {
					return unsafeBlock(hole.make(t), lo, lo+span), safe(span)
				},
				wantN: prefix, wantSig: syscall.SIGSEGV, wantWrite: true, wantAddr: dstAt(prefix),
			},
			copyCase{
				name: hole.name + "/from",
				setup: func(t *testing.T) (Block, Block) {
					return safe(span), unsafeBlock(hole.make(t), lo, lo+span)
				},
				wantN: prefix, wantSig: syscall.SIGSEGV, wantAddr: srcAt(prefix),
			},
			copyCase{
				name: hole.name + "/zero",
				setup: func(t *testing.T) (Block, Block) {
					return unsafeBlock(hole.make(t), lo, lo+span), Block{}
				},
				zero:  true,
				wantN: prefix, wantSig: syscall.SIGSEGV, wantWrite: true, wantAddr: dstAt(prefix),
			},
		)
	}
	cases = append(cases,
		copyCase{
			name: "unsafe-to-unsafe/src-hole",
			setup: func(t *testing.T) (Block, Block) {
				d := mapAnon(t, 3)
				return unsafeBlock(d, 77, 77+span), unsafeBlock(holeInMiddle(t), lo, lo+span)
			},
			wantN: prefix, wantSig: syscall.SIGSEGV, wantAddr: srcAt(prefix),
		},
		copyCase{
			name: "unsafe-to-unsafe/dst-hole-first",
			setup: func(t *testing.T) (Block, Block) {
				// The destination's hole is 2000 bytes into the copy,
				// the source's 3096.
				return unsafeBlock(holeInMiddle(t), pg-2000, pg-2000+span), unsafeBlock(holeInMiddle(t), lo, lo+span)
			},
			wantN: 2000, wantSig: syscall.SIGSEGV, wantWrite: true, wantAddr: dstAt(2000),
		},
		copyCase{
			name: "starts-in-hole",
			setup: func(t *testing.T) (Block, Block) {
				return safe(100), unsafeBlock(holeInMiddle(t), pg, pg+100)
			},
			wantN: 0, wantSig: syscall.SIGSEGV, wantAddr: srcAt(0),
		},
		copyCase{
			name: "8-bytes-across-the-edge",
			setup: func(t *testing.T) (Block, Block) {
				return unsafeBlock(holeInMiddle(t), pg-3, pg+5), safe(8)
			},
			wantN: 3, wantSig: syscall.SIGSEGV, wantWrite: true, wantAddr: dstAt(3),
		},
		copyCase{
			name: "readonly/into",
			setup: func(t *testing.T) (Block, Block) {
				return unsafeBlock(readOnlyMiddle(t), lo, lo+span), safe(span)
			},
			wantN: prefix, wantSig: syscall.SIGSEGV, wantWrite: true, wantAddr: dstAt(prefix),
		},
		copyCase{
			name: "readonly/from",
			setup: func(t *testing.T) (Block, Block) {
				return safe(span), unsafeBlock(readOnlyMiddle(t), lo, lo+span)
			},
			wantN: span,
		},
		copyCase{
			name: "pastEOF/from",
			setup: func(t *testing.T) (Block, Block) {
				return safe(3 * pg), unsafeBlock(mapFilePastEOF(t, 3, 1), 0, 3*pg)
			},
			wantN: pg, wantSig: syscall.SIGBUS, wantAddr: srcAt(pg),
		},
		copyCase{
			name: "pastEOF/into",
			setup: func(t *testing.T) (Block, Block) {
				return unsafeBlock(mapFilePastEOF(t, 3, 1), 10, 3*pg), safe(3 * pg)
			},
			wantN: pg - 10, wantSig: syscall.SIGBUS, wantWrite: true, wantAddr: dstAt(pg - 10),
		},
		copyCase{
			name: "pastEOF/zero",
			setup: func(t *testing.T) (Block, Block) {
				return unsafeBlock(mapFilePastEOF(t, 4, 2), 100, 4*pg), Block{}
			},
			zero:  true,
			wantN: 2*pg - 100, wantSig: syscall.SIGBUS, wantWrite: true, wantAddr: dstAt(2*pg - 100),
		},
		copyCase{
			name: "pastEOF/unsafe-to-unsafe",
			setup: func(t *testing.T) (Block, Block) {
				return unsafeBlock(mapAnon(t, 3), 5, 5+2*pg), unsafeBlock(mapFilePastEOF(t, 2, 1), 0, 2*pg)
			},
			wantN: pg, wantSig: syscall.SIGBUS, wantAddr: srcAt(pg),
		},
		copyCase{
			// Large enough for the runtime's non-temporal stores.
			name: "pastEOF/large-from",
			setup: func(t *testing.T) (Block, Block) {
				return safe(300 * pg), unsafeBlock(mapFilePastEOF(t, 300, 290), 0, 300*pg)
			},
			wantN: 290 * pg, wantSig: syscall.SIGBUS, wantAddr: srcAt(290 * pg),
		},
		copyCase{
			name: "pastEOF/large-into",
			setup: func(t *testing.T) (Block, Block) {
				return unsafeBlock(mapFilePastEOF(t, 300, 290), 64, 300*pg), safe(300*pg - 64)
			},
			wantN: 290*pg - 64, wantSig: syscall.SIGBUS, wantWrite: true, wantAddr: dstAt(290*pg - 64),
		},
		copyCase{
			name: "nil-pointer",
			setup: func(t *testing.T) (Block, Block) {
				return BlockFromUnsafePointer(nil, 8), safe(8)
			},
			wantN: 0, wantSig: syscall.SIGSEGV, wantWrite: true, wantAddr: dstAt(0),
		},
		copyCase{
			name: "no-fault",
			setup: func(t *testing.T) (Block, Block) {
				return unsafeBlock(mapAnon(t, 3), 1, 3*pg), unsafeBlock(mapAnon(t, 3), 0, 3*pg-1)
			},
			wantN: 3*pg - 1,
		},
	)
	return cases
}

func TestCopyFaults(t *testing.T) {
	for _, tc := range copyCases() {
		t.Run(tc.name, func(t *testing.T) {
			dst, src := tc.setup(t)
			var want []byte
			if !tc.zero {
				// Snapshot the part of src the copy must transfer.
				want = bytes.Clone(src.TakeFirst(tc.wantN).ToSlice())
			} else {
				want = make([]byte, tc.wantN)
			}
			var n int
			var err error
			if tc.zero {
				n, err = Zero(dst)
			} else {
				n, err = Copy(dst, src)
			}
			if n != tc.wantN {
				t.Errorf("count = %d, want %d (err %v)", n, tc.wantN, err)
			}
			if tc.wantSig == 0 {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
			} else {
				fe := asFault(t, err)
				wantAddr := tc.wantAddr(dst, src)
				if fe.Signal != tc.wantSig || fe.Write != tc.wantWrite || fe.Addr != wantAddr || fe.Offset != uint64(n) {
					t.Errorf("fault = %+v, want Signal %v Write %v Addr %#x Offset %d", *fe, tc.wantSig, tc.wantWrite, wantAddr, n)
				}
			}
			if got := dst.TakeFirst(tc.wantN).ToSlice(); !bytes.Equal(got, want) {
				t.Errorf("the %d bytes before the fault were not all transferred", tc.wantN)
			}
			// The goroutine's panic-on-fault setting is back to off.
			if debug.SetPanicOnFault(false) {
				t.Errorf("SetPanicOnFault left enabled")
			}
		})
	}
}

// TestCopySeqFaults checks sequences mixing safe and unsafe Blocks: the
// count and Offset run across Blocks, Addr is in the faulting Block.
func TestCopySeqFaults(t *testing.T) {
	m := holeInMiddle(t)
	src := pattern(20000, 0x33)
	safeA, safeB := make([]byte, 100), make([]byte, 300)
	t.Run("hole-in-dst", func(t *testing.T) {
		dsts := BlockSeqFromSlice([]Block{
			BlockFromSafeSlice(safeA),
			unsafeBlock(m, 0, 50), // fine
			BlockFromSafeSlice(safeB),
			unsafeBlock(m, pg-1000, pg+1000), // faults after 1000 bytes
			BlockFromSafeSlice(make([]byte, 10)),
		})
		n, err := CopySeq(dsts, BlockSeqOf(BlockFromSafeSlice(src)))
		want := 100 + 50 + 300 + 1000
		fe := asFault(t, err)
		if n != uint64(want) || fe.Offset != n || !fe.Write || fe.Signal != syscall.SIGSEGV || fe.Addr != addr(m, pg) {
			t.Fatalf("CopySeq = %d, %+v; want %d then SIGSEGV writing %#x", n, fe, want, addr(m, pg))
		}
		if !bytes.Equal(safeA, src[:100]) || !bytes.Equal(m[:50], src[100:150]) || !bytes.Equal(safeB, src[150:450]) || !bytes.Equal(m[pg-1000:pg], src[450:1450]) {
			t.Errorf("bytes before the fault not copied")
		}
	})
	t.Run("hole-in-src", func(t *testing.T) {
		srcs := BlockSeqFromSlice([]Block{
			BlockFromSafeSlice(src[:10]),
			unsafeBlock(m, 2*pg, 2*pg+20),
			unsafeBlock(m, pg-7, pg+7), // faults after 7 bytes
		})
		dst := make([]byte, 100)
		dsts := BlockSeqFromSlice([]Block{BlockFromSafeSlice(dst[:3]), BlockFromSafeSlice(dst[3:])})
		n, err := CopySeq(dsts, srcs)
		fe := asFault(t, err)
		if n != 37 || fe.Offset != 37 || fe.Write || fe.Addr != addr(m, pg) {
			t.Fatalf("CopySeq = %d, %+v; want 37 then a fault reading %#x", n, fe, addr(m, pg))
		}
		want := append(append(bytes.Clone(src[:10]), m[2*pg:2*pg+20]...), m[pg-7:pg]...)
		if !bytes.Equal(dst[:37], want) {
			t.Errorf("bytes before the fault not copied")
		}
	})
	t.Run("zero", func(t *testing.T) {
		dsts := BlockSeqFromSlice([]Block{
			BlockFromSafeSlice(safeA),
			unsafeBlock(m, 2*pg, 2*pg+4),
			unsafeBlock(m, pg-5, pg+5),
		})
		n, err := ZeroSeq(dsts)
		fe := asFault(t, err)
		if n != 109 || fe.Offset != 109 || !fe.Write || fe.Addr != addr(m, pg) {
			t.Fatalf("ZeroSeq = %d, %+v; want 109 then a fault", n, fe)
		}
		if !bytes.Equal(m[pg-5:pg], make([]byte, 5)) || !bytes.Equal(m[2*pg:2*pg+4], make([]byte, 4)) || !bytes.Equal(safeA, make([]byte, 100)) {
			t.Errorf("bytes before the fault not zeroed")
		}
	})
	t.Run("past-eof", func(t *testing.T) {
		f := mapFilePastEOF(t, 3, 2)
		dsts := BlockSeqFromSlice([]Block{unsafeBlock(f, 0, pg), unsafeBlock(f, pg, 3*pg)})
		n, err := CopySeq(dsts, BlockSeqOf(BlockFromSafeSlice(src)))
		fe := asFault(t, err)
		if n != uint64(2*pg) || fe.Signal != syscall.SIGBUS || fe.Addr != addr(f, 2*pg) || !fe.Write {
			t.Fatalf("CopySeq = %d, %+v; want %d then SIGBUS", n, fe, 2*pg)
		}
	})
}

// TestCopyOverlap checks overlapping Blocks in both directions, with and
// without a fault, against copy() on a snapshot.
func TestCopyOverlap(t *testing.T) {
	for _, tc := range []struct {
		name             string
		dstOff, srcOff   int
		n                int
		hole             bool // page 2 of 4 is PROT_NONE
		wantN            int
		wantWrite        bool
		wantAddrIsInDest bool
	}{
		{name: "up", dstOff: 100, srcOff: 0, n: 3 * pg},
		{name: "down", dstOff: 0, srcOff: 100, n: 3 * pg},
		{name: "same", dstOff: 50, srcOff: 50, n: 3 * pg},
		{name: "up-by-1", dstOff: 1, srcOff: 0, n: 2*pg + 5},
		{name: "small", dstOff: 3, srcOff: 0, n: 8},
		// The hole is page 2: [2pg, 3pg).
		{name: "up-hole", dstOff: 1000, srcOff: 0, n: 2*pg + 500, hole: true, wantN: 2*pg - 1000, wantWrite: true},
		{name: "down-hole", dstOff: 0, srcOff: 1000, n: 2*pg + 500, hole: true, wantN: 2*pg - 1000},
		{name: "up-across-pages", dstOff: 3*pg + 100, srcOff: 3*pg - 300, n: 600, wantN: 600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mapAnon(t, 5)
			if tc.hole {
				protect(t, m[2*pg:3*pg], unix.PROT_NONE)
			}
			// Snapshot m, with zeros standing for the hole.
			want := bytes.Clone(m[:2*pg])
			if tc.hole {
				want = append(want, make([]byte, pg)...)
			} else {
				want = append(want, m[2*pg:3*pg]...)
			}
			want = append(want, m[3*pg:]...)
			ref := bytes.Clone(want)
			wantN := tc.n
			if tc.wantN != 0 {
				wantN = tc.wantN
			}
			copy(want[tc.dstOff:tc.dstOff+wantN], ref[tc.srcOff:tc.srcOff+wantN])
			n, err := Copy(unsafeBlock(m, tc.dstOff, tc.dstOff+tc.n), unsafeBlock(m, tc.srcOff, tc.srcOff+tc.n))
			if n != wantN {
				t.Fatalf("Copy = %d, %v; want %d", n, err, wantN)
			}
			if wantN == tc.n {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
			} else {
				fe := asFault(t, err)
				wantAddr := addr(m, tc.srcOff+wantN)
				if tc.wantWrite {
					wantAddr = addr(m, tc.dstOff+wantN)
				}
				if fe.Write != tc.wantWrite || fe.Addr != wantAddr || fe.Offset != uint64(n) || fe.Signal != syscall.SIGSEGV {
					t.Errorf("fault %+v, want write=%v at %#x", *fe, tc.wantWrite, wantAddr)
				}
			}
			// The prefix is exact; bytes outside the destination are
			// untouched. (Destination bytes after the fault may hold
			// anything the source held, so compare them only when there
			// was no fault.)
			for i := range m {
				if i >= 2*pg && i < 3*pg && tc.hole {
					continue
				}
				inDst := i >= tc.dstOff && i < tc.dstOff+tc.n
				if inDst && i >= tc.dstOff+wantN {
					continue
				}
				if m[i] != want[i] {
					t.Fatalf("byte %d = %#x, want %#x", i, m[i], want[i])
				}
			}
		})
	}
}

func TestSafeBlocksAreCopiedPlainly(t *testing.T) {
	a, b := pattern(100, 1), make([]byte, 100)
	if n, err := Copy(BlockFromSafeSlice(b[10:]), BlockFromSafeSlice(a)); n != 90 || err != nil || !bytes.Equal(b[10:], a[:90]) {
		t.Errorf("Copy = %d, %v", n, err)
	}
	// Overlap, as copy().
	copy(b, a)
	want := bytes.Clone(b)
	copy(want[5:], want)
	if n, err := Copy(BlockFromSafeSlice(b[5:]), BlockFromSafeSlice(b)); n != 95 || err != nil || !bytes.Equal(b, want) {
		t.Errorf("overlapping Copy = %d, %v", n, err)
	}
	if n, err := Zero(BlockFromSafeSlice(b[1:])); n != 99 || err != nil || b[0] == 0 || !bytes.Equal(b[1:], make([]byte, 99)) {
		t.Errorf("Zero = %d, %v", n, err)
	}
	if n, err := Copy(Block{}, BlockFromSafeSlice(a)); n != 0 || err != nil {
		t.Errorf("Copy to empty = %d, %v", n, err)
	}
	if n, err := Zero(Block{}); n != 0 || err != nil {
		t.Errorf("Zero empty = %d, %v", n, err)
	}
	if n, err := CopySeq(BlockSeq{}, BlockSeqOf(BlockFromSafeSlice(a))); n != 0 || err != nil {
		t.Errorf("CopySeq to empty = %d, %v", n, err)
	}
}

// TestNoAllocations checks that the success paths do not allocate.
func TestNoAllocations(t *testing.T) {
	m := mapAnon(t, 4)
	a, b := unsafeBlock(m, 0, pg), unsafeBlock(m, 2*pg, 3*pg)
	safe := BlockFromSafeSlice(make([]byte, 64))
	seqA := BlockSeqFromSlice([]Block{a.TakeFirst(100), safe, a.DropFirst(200)})
	seqB := BlockSeqFromSlice([]Block{b.TakeFirst(7), b.DropFirst(7)})
	word := unsafeBlock(m, 3*pg, 3*pg+4)
	for name, f := range map[string]func(){
		"Copy":        func() { Copy(a, b) },
		"Copy8":       func() { Copy(a.TakeFirst(8), safe) },
		"Zero":        func() { Zero(b) },
		"CopySeq":     func() { CopySeq(seqA, seqB) },
		"ZeroSeq":     func() { ZeroSeq(seqA) },
		"DropFirst64": func() { _ = seqA.DropFirst64(150).TakeFirst64(100).Tail() },
		"Swap":        func() { SwapUint32(word, 1) },
		"CAS":         func() { CompareAndSwapUint32(word, 1, 2) },
		"Load":        func() { LoadUint32(word) },
	} {
		if allocs := testing.AllocsPerRun(100, f); allocs != 0 {
			t.Errorf("%s: %v allocations", name, allocs)
		}
	}
}

// TestConcurrentFaults runs faulting and succeeding copies on several
// goroutines at once (run it with -race).
func TestConcurrentFaults(t *testing.T) {
	m := holeInMiddle(t)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]byte, 2*pg)
			for i := range 50 {
				off := (g*97 + i*13) % pg
				n, err := Copy(BlockFromSafeSlice(dst), unsafeBlock(m, off, off+2*pg))
				if fe, ok := err.(*FaultError); !ok || n != pg-off || fe.Offset != uint64(n) || fe.Addr != addr(m, pg) {
					errs <- "bad fault"
					return
				}
				if n, err := Copy(unsafeBlock(m, 2*pg+g*8, 2*pg+g*8+8), BlockFromSafeSlice(dst)); n != 8 || err != nil {
					errs <- "bad copy"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestFaultErrorString(t *testing.T) {
	e := &FaultError{Signal: syscall.SIGBUS, Addr: 0x1000, Offset: 12, Write: true}
	if got, want := e.Error(), "safemem: SIGBUS on write at 0x1000 after 12 bytes"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var _ error = e
}

// TestEndGuardPassesOtherPanics checks that a panic other than a memory
// fault is not swallowed, and that the panic-on-fault setting is restored.
func TestEndGuardPassesOtherPanics(t *testing.T) {
	defer func() {
		if r := recover(); r != "boom" {
			t.Errorf("recovered %v, want the original panic", r)
		}
		if debug.SetPanicOnFault(false) {
			t.Errorf("SetPanicOnFault left enabled")
		}
	}()
	var addr uintptr
	var done, faulted bool
	defer endGuard(debug.SetPanicOnFault(true), &done, &addr, &faulted)
	panic("boom")
}

// TestTransientFaults checks the retry after a fault whose page the kernel
// then finds accessible: the mapping changed between the fault and the
// classification.
func TestTransientFaults(t *testing.T) {
	defer func() { testClassifyHook = nil }()
	for _, tc := range []struct {
		name    string
		overlap bool
	}{{"disjoint", false}, {"overlapping-up", true}} {
		t.Run(tc.name, func(t *testing.T) {
			m := mapAnon(t, 4)
			protect(t, m[2*pg:3*pg], unix.PROT_NONE)
			dst, src := unsafeBlock(m, 100, 100+3*pg), unsafeBlock(m, 0, 3*pg)
			if !tc.overlap {
				dst = BlockFromSafeSlice(make([]byte, 3*pg))
			}
			// The mapping is repaired when the fault is classified.
			calls := 0
			testClassifyHook = func(addr uintptr, write bool) (syscall.Signal, bool) {
				calls++
				protect(t, m[2*pg:3*pg], unix.PROT_READ|unix.PROT_WRITE)
				return syscall.SIGSEGV, true
			}
			if n, err := Copy(dst, src); n != 3*pg || err != nil || calls != 1 {
				t.Fatalf("Copy = %d, %v after %d classifications; want all of it after 1", n, err, calls)
			}
			// A page that keeps faulting although the kernel says it is
			// fine is reported after a few retries.
			protect(t, m[2*pg:3*pg], unix.PROT_NONE)
			calls = 0
			testClassifyHook = func(uintptr, bool) (syscall.Signal, bool) { calls++; return syscall.SIGSEGV, true }
			n, err := Copy(dst, src)
			fe := asFault(t, err)
			wantN := 2 * pg
			if tc.overlap {
				wantN = 2*pg - 100 // the destination reaches the hole first
			}
			// (A backward copy meets more than one faulting piece.)
			if n != wantN || fe.Signal != syscall.SIGSEGV || calls < maxTransientRetries+1 || (!tc.overlap && calls != maxTransientRetries+1) {
				t.Fatalf("Copy = %d, %+v after %d classifications; want %d", n, fe, calls, wantN)
			}
		})
	}
}

// TestNilBlocks checks Blocks at address 0, which fault without an address
// from the runtime (or are refused before any access).
func TestNilBlocks(t *testing.T) {
	buf := make([]byte, 8)
	nilBlock := BlockFromUnsafePointer(nil, 8)
	for _, tc := range []struct {
		name  string
		run   func() (int, error)
		write bool
	}{
		{"copy-from", func() (int, error) { return Copy(BlockFromSafeSlice(buf), nilBlock) }, false},
		{"copy-to", func() (int, error) { return Copy(nilBlock, BlockFromSafeSlice(buf)) }, true},
		{"copy-nil-to-nil", func() (int, error) { return Copy(nilBlock, nilBlock) }, false},
		{"zero", func() (int, error) { return Zero(nilBlock) }, true},
		{"load", func() (int, error) { _, err := LoadUint32(nilBlock); return 0, err }, false},
		{"swap", func() (int, error) { _, err := SwapUint32(nilBlock, 1); return 0, err }, true},
	} {
		n, err := tc.run()
		fe, ok := err.(*FaultError)
		if n != 0 || !ok || fe.Signal != syscall.SIGSEGV || fe.Addr != 0 || fe.Write != tc.write {
			t.Errorf("%s = %d, %v; want a SIGSEGV (write %v) at 0", tc.name, n, err, tc.write)
		}
	}
}
