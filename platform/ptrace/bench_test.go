package ptrace

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

// The benchmarks measure one operation from an ordinary goroutine (the stub
// parked: comm page and futex) and, with the OnTracer suffix, from a
// function run by Do (the stub stopped: ptrace injection), as a sandbox's
// fault handler would. The project measures them with the process pinned
// to one CPU: taskset -c 0 go test -bench . ./platform/ptrace

const benchAddr = 0x10000000

func benchMapFile(b *testing.B, size uint64, precommit, onTracer bool) {
	as := newTestStub(b)
	f := newTestFile(b, 1, int(size/hostarch.PageSize))
	fr := memmap.FileRange{Start: 0, End: size}
	run := func() error {
		for i := 0; i < b.N; i++ {
			if err := as.MapFile(benchAddr, f, fr, hostarch.ReadWrite, precommit); err != nil {
				return err
			}
		}
		return nil
	}
	// The first MapFile installs the descriptor.
	if err := as.MapFile(benchAddr, f, fr, hostarch.ReadWrite, precommit); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var err error
	if onTracer {
		err = as.Do(run)
	} else {
		err = run()
	}
	if err != nil {
		b.Fatal(err)
	}
}

func BenchmarkMapFile4K(b *testing.B)          { benchMapFile(b, hostarch.PageSize, false, false) }
func BenchmarkMapFile2M(b *testing.B)          { benchMapFile(b, hostarch.HugePageSize, false, false) }
func BenchmarkMapFile2MPrecommit(b *testing.B) { benchMapFile(b, hostarch.HugePageSize, true, false) }
func BenchmarkMapFile4KOnTracer(b *testing.B)  { benchMapFile(b, hostarch.PageSize, false, true) }
func BenchmarkMapFile2MOnTracer(b *testing.B)  { benchMapFile(b, hostarch.HugePageSize, false, true) }

func benchUnmap(b *testing.B, remap, onTracer bool) {
	as := newTestStub(b)
	f := newTestFile(b, 1, 1)
	fr := memmap.FileRange{Start: 0, End: hostarch.PageSize}
	if err := as.MapFile(benchAddr, f, fr, hostarch.ReadWrite, false); err != nil {
		b.Fatal(err)
	}
	run := func() error {
		for i := 0; i < b.N; i++ {
			if remap {
				if err := as.MapFile(benchAddr, f, fr, hostarch.ReadWrite, false); err != nil {
					return err
				}
			}
			as.Unmap(benchAddr, hostarch.PageSize)
		}
		return nil
	}
	b.ResetTimer()
	var err error
	if onTracer {
		err = as.Do(run)
	} else {
		err = run()
	}
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkUnmap unmaps a page that is not mapped (after the first
// iteration): the cost of the path and of munmap's lookup.
func BenchmarkUnmap(b *testing.B)         { benchUnmap(b, false, false) }
func BenchmarkUnmapOnTracer(b *testing.B) { benchUnmap(b, false, true) }

// BenchmarkMapUnmap4K maps a page and unmaps it.
func BenchmarkMapUnmap4K(b *testing.B) { benchUnmap(b, true, false) }

// BenchmarkSyscall is the bare round trip: getppid in the stub.
func BenchmarkSyscall(b *testing.B) {
	as := newTestStub(b)
	for i := 0; i < b.N; i++ {
		if _, err := as.Syscall(unix.SYS_GETPPID); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSyscallOnTracer(b *testing.B) {
	as := newTestStub(b)
	if err := as.Do(func() error {
		for i := 0; i < b.N; i++ {
			if _, err := as.Syscall(unix.SYS_GETPPID); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkDo is the cost of getting the tracer thread from another
// goroutine: stopping the parked stub, running an empty function, parking
// it again.
func BenchmarkDo(b *testing.B) {
	as := newTestStub(b)
	for i := 0; i < b.N; i++ {
		if err := as.Do(func() error { return nil }); err != nil {
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
