package safemem

import (
	"encoding/binary"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestAtomicsOnGoodMemory(t *testing.T) {
	var words [4]uint32
	m := mapAnon(t, 1)
	for name, b := range map[string]Block{
		"safe":   BlockFromSafePointer(unsafe.Pointer(&words[1]), 8),
		"unsafe": unsafeBlock(m, 8, 16),
	} {
		t.Run(name, func(t *testing.T) {
			binary.NativeEndian.PutUint32(b.ToSlice(), 7)
			binary.NativeEndian.PutUint32(b.ToSlice()[4:], 0xfeedf00d)
			if old, err := SwapUint32(b, 5); old != 7 || err != nil {
				t.Errorf("Swap = %d, %v", old, err)
			}
			if prev, err := CompareAndSwapUint32(b, 4, 9); prev != 5 || err != nil {
				t.Errorf("failing CAS = %d, %v", prev, err)
			}
			if v, _ := LoadUint32(b); v != 5 {
				t.Errorf("failing CAS stored: %d", v)
			}
			if prev, err := CompareAndSwapUint32(b, 5, 9); prev != 5 || err != nil {
				t.Errorf("CAS = %d, %v", prev, err)
			}
			if v, err := LoadUint32(b); v != 9 || err != nil {
				t.Errorf("Load = %d, %v", v, err)
			}
			if got := binary.NativeEndian.Uint32(b.ToSlice()); got != 9 {
				t.Errorf("memory holds %d", got)
			}
			// The next 4 bytes are untouched.
			if got := binary.NativeEndian.Uint32(b.ToSlice()[4:]); got != 0xfeedf00d {
				t.Errorf("bytes after the word changed")
			}
		})
	}
}

func TestAtomicsRejectBadBlocks(t *testing.T) {
	var words [2]uint64
	base := BlockFromSafePointer(unsafe.Pointer(&words[0]), 16)
	m := mapAnon(t, 1)
	ops := map[string]func(Block) error{
		"Swap": func(b Block) error { _, err := SwapUint32(b, 1); return err },
		"CAS":  func(b Block) error { _, err := CompareAndSwapUint32(b, 0, 1); return err },
		"Load": func(b Block) error { _, err := LoadUint32(b); return err },
	}
	for _, tc := range []struct {
		name string
		b    Block
		want error
	}{
		{"misaligned by 1", base.DropFirst(1), ErrMisaligned},
		{"misaligned by 2", base.DropFirst(2), ErrMisaligned},
		{"misaligned unsafe", unsafeBlock(m, 3, 11), ErrMisaligned},
		{"3 bytes", base.TakeFirst(3), ErrShort},
		{"empty", Block{}, ErrShort},
		{"short and misaligned", base.DropFirst(1).TakeFirst(2), ErrShort},
	} {
		for name, op := range ops {
			if err := op(tc.b); err != tc.want {
				t.Errorf("%s on %s: %v, want %v", name, tc.name, err, tc.want)
			}
		}
	}
	if words != [2]uint64{} {
		t.Errorf("rejected operations wrote memory")
	}
}

func TestAtomicFaults(t *testing.T) {
	type op struct {
		name  string
		run   func(Block) (uint32, error)
		write bool
	}
	swap := op{"Swap", func(b Block) (uint32, error) { return SwapUint32(b, 1) }, true}
	casHit := op{"CAS", func(b Block) (uint32, error) { return CompareAndSwapUint32(b, 0, 1) }, true}
	load := op{"Load", func(b Block) (uint32, error) { return LoadUint32(b) }, false}
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T) Block
		ops     []op
		wantSig syscall.Signal
	}{
		{"protnone", func(t *testing.T) Block { return unsafeBlock(holeInMiddle(t), pg+8, pg+12) }, []op{swap, casHit, load}, syscall.SIGSEGV},
		{"unmapped", func(t *testing.T) Block { return unsafeBlock(unmappedMiddle(t), pg, pg+4) }, []op{swap, casHit, load}, syscall.SIGSEGV},
		{"readonly", func(t *testing.T) Block {
			m := mapAnon(t, 1)
			clear(m)
			protect(t, m, unix.PROT_READ)
			return unsafeBlock(m, 0, 4)
		}, []op{swap, casHit}, syscall.SIGSEGV},
		{"pastEOF", func(t *testing.T) Block { return unsafeBlock(mapFilePastEOF(t, 2, 1), pg+4, pg+8) }, []op{swap, casHit, load}, syscall.SIGBUS},
	} {
		for _, o := range tc.ops {
			t.Run(tc.name+"/"+o.name, func(t *testing.T) {
				b := tc.setup(t)
				v, err := o.run(b)
				fe := asFault(t, err)
				if v != 0 || fe.Signal != tc.wantSig || fe.Write != o.write || fe.Addr != b.Addr() || fe.Offset != 0 {
					t.Errorf("got %d, %+v; want %v (write %v) at %#x", v, *fe, tc.wantSig, o.write, b.Addr())
				}
			})
		}
	}
	// On a read-only page, Load works; a CAS whose comparison fails needs
	// write access on amd64 (LOCK CMPXCHG), not elsewhere.
	m := mapAnon(t, 1)
	binary.NativeEndian.PutUint32(m, 42)
	protect(t, m, unix.PROT_READ)
	b := unsafeBlock(m, 0, 4)
	if v, err := LoadUint32(b); v != 42 || err != nil {
		t.Errorf("Load of read-only = %d, %v", v, err)
	}
	v, err := CompareAndSwapUint32(b, 1, 2)
	if runtime.GOARCH == "amd64" {
		if fe, ok := err.(*FaultError); !ok || fe.Signal != syscall.SIGSEGV || !fe.Write {
			t.Errorf("failing CAS on read-only = %d, %v; want a SIGSEGV on write", v, err)
		}
	} else if v != 42 || err != nil {
		t.Errorf("failing CAS on read-only = %d, %v", v, err)
	}
	if binary.NativeEndian.Uint32(m) != 42 {
		t.Errorf("read-only word changed")
	}
}

// TestConcurrentCAS increments a word of a host mapping from several
// goroutines with CompareAndSwapUint32 and checks that no increment is lost.
func TestConcurrentCAS(t *testing.T) {
	m := mapAnon(t, 1)
	b := unsafeBlock(m, 64, 68)
	binary.NativeEndian.PutUint32(b.ToSlice(), 0)
	const goroutines, each = 4, 500
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				for {
					v, err := LoadUint32(b)
					if err != nil {
						t.Error(err)
						return
					}
					if prev, err := CompareAndSwapUint32(b, v, v+1); err != nil || prev == v {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	if v, _ := LoadUint32(b); v != goroutines*each {
		t.Errorf("counter = %d, want %d", v, goroutines*each)
	}
}
