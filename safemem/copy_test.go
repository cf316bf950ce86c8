package safemem

import (
	"bytes"
	"os"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapWithHole maps 3 pages read-write with the middle one PROT_NONE.
func mapWithHole(t *testing.T) []byte {
	t.Helper()
	m, err := unix.Mmap(-1, 0, 3*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(m) })
	if err := unix.Mprotect(m[4096:8192], unix.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCopyStopsAtSIGSEGV(t *testing.T) {
	m := mapWithHole(t)
	src := bytes.Repeat([]byte{0x5a}, 8192)
	for _, tc := range []struct {
		name string
		run  func() (int, error)
	}{
		{"into", func() (int, error) {
			return Copy(BlockFromUnsafeSlice(m[1000:9000]), BlockFromSafeSlice(src))
		}},
		{"from", func() (int, error) {
			return Copy(BlockFromSafeSlice(make([]byte, 8000)), BlockFromUnsafeSlice(m[1000:9000]))
		}},
		{"zero", func() (int, error) { return Zero(BlockFromUnsafeSlice(m[1000:9000])) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := tc.run()
			fe, ok := err.(*FaultError)
			if n != 4096-1000 || !ok || fe.Signal != syscall.SIGSEGV || fe.Addr != uintptr(unsafe.Pointer(&m[4096])) || fe.Offset != n {
				t.Fatalf("got %d, %v; want %d bytes then SIGSEGV at the hole", n, err, 4096-1000)
			}
		})
	}
	if m[4095] != 0 {
		t.Errorf("Zero did not zero the bytes before the fault")
	}
	// Sequences report the offset across blocks.
	seq := BlockSeqFromSlice([]Block{BlockFromSafeSlice(make([]byte, 100)), BlockFromUnsafeSlice(m[4000:5000])})
	n, err := CopySeq(seq, BlockSeqOf(BlockFromSafeSlice(src)))
	if fe, ok := err.(*FaultError); n != 196 || !ok || fe.Offset != 196 {
		t.Errorf("CopySeq = %d, %v; want 196 and a fault", n, err)
	}
	if _, err := SwapUint32(BlockFromUnsafeSlice(m[4096:4100]), 1); err == nil {
		t.Errorf("atomic on PROT_NONE succeeded")
	}
	if _, err := LoadUint32(BlockFromUnsafeSlice(m[1:5])); err != ErrMisaligned {
		t.Errorf("misaligned load = %v", err)
	}
}

func TestCopyStopsAtSIGBUS(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "bus")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(2 * 4096); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, 2*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	if err := f.Truncate(4096); err != nil {
		t.Fatal(err)
	}
	n, err := Copy(BlockFromSafeSlice(make([]byte, 8192)), BlockFromUnsafeSlice(m))
	fe, ok := err.(*FaultError)
	if n != 4096 || !ok || fe.Signal != syscall.SIGBUS {
		t.Fatalf("Copy past EOF = %d, %v; want 4096 bytes then SIGBUS", n, err)
	}
}

func TestAtomics(t *testing.T) {
	var v [2]uint32
	b := BlockFromSafePointer(unsafe.Pointer(&v[0]), 8)
	if old, err := SwapUint32(b, 5); old != 0 || err != nil {
		t.Errorf("Swap = %d, %v", old, err)
	}
	if prev, _ := CompareAndSwapUint32(b, 4, 9); prev != 5 || v[0] != 5 {
		t.Errorf("failed CAS changed the value")
	}
	if prev, _ := CompareAndSwapUint32(b, 5, 9); prev != 5 || v[0] != 9 {
		t.Errorf("CAS did not store")
	}
	if x, _ := LoadUint32(b); x != 9 {
		t.Errorf("Load = %d", x)
	}
	if _, err := LoadUint32(b.TakeFirst(3)); err != ErrShort {
		t.Errorf("short load = %v", err)
	}
}

func BenchmarkCopy8Unsafe(b *testing.B) {
	m, _ := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	defer unix.Munmap(m)
	dst := make([]byte, 8)
	src := BlockFromUnsafeSlice(m[:8])
	for i := 0; i < b.N; i++ {
		Copy(BlockFromSafeSlice(dst), src)
	}
}
