package ptrace

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

// The benchmarks measure one operation from an ordinary goroutine (the
// stub parked: comm page and futex). The project measures them with the
// process pinned to one CPU: taskset -c 0 go test -bench . ./platform/ptrace

const benchAddr = 0x10000000

func benchMapFile(b *testing.B, size uint64, precommit bool) {
	as := newTestStub(b)
	f := newTestFile(b, 1, int(size/hostarch.PageSize))
	fr := memmap.FileRange{Start: 0, End: size}
	// The first MapFile installs the descriptor.
	if err := as.MapFile(benchAddr, f, fr, hostarch.ReadWrite, precommit); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := as.MapFile(benchAddr, f, fr, hostarch.ReadWrite, precommit); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMapFile4K(b *testing.B)          { benchMapFile(b, hostarch.PageSize, false) }
func BenchmarkMapFile2M(b *testing.B)          { benchMapFile(b, hostarch.HugePageSize, false) }
func BenchmarkMapFile2MPrecommit(b *testing.B) { benchMapFile(b, hostarch.HugePageSize, true) }

func benchUnmap(b *testing.B, remap bool) {
	as := newTestStub(b)
	f := newTestFile(b, 1, 1)
	fr := memmap.FileRange{Start: 0, End: hostarch.PageSize}
	if err := as.MapFile(benchAddr, f, fr, hostarch.ReadWrite, false); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if remap {
			if err := as.MapFile(benchAddr, f, fr, hostarch.ReadWrite, false); err != nil {
				b.Fatal(err)
			}
		}
		as.Unmap(benchAddr, hostarch.PageSize)
	}
}

// BenchmarkUnmap unmaps a page that is not mapped (after the first
// iteration): the cost of the path and of munmap's lookup.
func BenchmarkUnmap(b *testing.B) { benchUnmap(b, false) }

// BenchmarkMapUnmap4K maps a page and unmaps it.
func BenchmarkMapUnmap4K(b *testing.B) { benchUnmap(b, true) }

// BenchmarkSyscall is the bare round trip: getppid in the stub.
func BenchmarkSyscall(b *testing.B) {
	as := newTestStub(b)
	for i := 0; i < b.N; i++ {
		if _, err := as.Syscall(unix.SYS_GETPPID); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewAddressSpace(b *testing.B) {
	newTestStub(b) // skip early if ptrace is unusable
	for i := 0; i < b.N; i++ {
		as, err := testPlatform.NewStub()
		if err != nil {
			b.Fatal(err)
		}
		as.Release()
	}
}
