package safemem

import (
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pg is the host page size as an int.
var pg = int(pageSize)

// mapAnon maps pages pages of private anonymous read-write memory, filled
// with a pattern, and unmaps them when the test ends.
func mapAnon(t testing.TB, pages int) []byte {
	t.Helper()
	m, err := unix.Mmap(-1, 0, pages*pg, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(m) })
	for i := range m {
		m[i] = byte(i*7 + 3)
	}
	return m
}

// protect changes the protection of the pages of b.
func protect(t testing.TB, b []byte, prot int) {
	t.Helper()
	if err := unix.Mprotect(b, prot); err != nil {
		t.Fatal(err)
	}
}

// unmap unmaps the pages of b (part of a mapping made by mapAnon, whose
// cleanup still unmaps the whole range).
func unmap(t testing.TB, b []byte) {
	t.Helper()
	if err := unix.MunmapPtr(unsafe.Pointer(&b[0]), uintptr(len(b))); err != nil {
		t.Fatal(err)
	}
}

// mapFilePastEOF maps pages pages of a temporary file MAP_SHARED
// read-write, and then truncates the file to eofPages pages, so that an
// access to the pages from eofPages on raises SIGBUS.
func mapFilePastEOF(t testing.TB, pages, eofPages int) []byte {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "safemem")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(pages * pg)); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, pages*pg, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(m) })
	for i := range m {
		m[i] = byte(i*5 + 1)
	}
	if err := f.Truncate(int64(eofPages * pg)); err != nil {
		t.Fatal(err)
	}
	return m
}

// pattern returns n bytes that differ from their neighbours and from the
// patterns of mapAnon and mapFilePastEOF.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*13) ^ seed
	}
	return b
}

// addr returns the host address of b[i].
func addr(b []byte, i int) uintptr { return uintptr(unsafe.Pointer(&b[0])) + uintptr(i) }

// unsafeBlock returns an unsafe Block over b[i:j] without touching it.
func unsafeBlock(b []byte, i, j int) Block {
	return BlockFromUnsafePointer(unsafe.Add(unsafe.Pointer(&b[0]), i), j-i)
}

// asFault returns err as a *FaultError, failing the test if it is not one.
func asFault(t testing.TB, err error) *FaultError {
	t.Helper()
	fe, ok := err.(*FaultError)
	if !ok {
		t.Fatalf("error %v (%T) is not a *FaultError", err, err)
	}
	return fe
}
