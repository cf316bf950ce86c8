package pgalloc

import (
	"fmt"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
)

// BenchmarkAllocateDecRef allocates and frees ranges, with the asynchronous
// releaser running as in production. Some ranges stay allocated throughout
// so that the used set is not trivially empty.
func BenchmarkAllocateDecRef(b *testing.B) {
	for _, size := range []uint64{page, hostarch.HugePageSize} {
		for _, async := range []bool{true, false} {
			b.Run(fmt.Sprintf("%dKiB/async=%v", size>>10, async), func(b *testing.B) {
				f := newFile(b, Options{DisableAsyncRelease: !async})
				var keep []memmap.FileRange
				for i := 0; i < 64; i++ {
					keep = append(keep, mustAllocate(b, f, page, AllocOpts{}))
					mustAllocate(b, f, page, AllocOpts{}) // hole once freed below
				}
				for i := 1; i < len(keep); i++ {
					f.DecRef(memmap.FileRange{Start: keep[i].Start + page, End: keep[i].Start + 2*page})
				}
				f.WaitReleased()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					fr, err := f.Allocate(size, AllocOpts{Huge: size == hostarch.HugePageSize})
					if err != nil {
						b.Fatal(err)
					}
					f.DecRef(fr)
				}
				b.StopTimer()
				f.WaitReleased()
				for _, fr := range keep {
					f.DecRef(fr)
				}
				f.DecRef(memmap.FileRange{Start: keep[0].Start + page, End: keep[0].Start + 2*page})
			})
		}
	}
}

// BenchmarkMapInternal maps 8 bytes of a chunk that is already mapped: the
// CopyIn path. "discard" ignores the result but the error; "consume" reads
// the result's length, which (in this Go version) makes the caller copy the
// returned BlockSeq through the stack with 16-byte moves that straddle the
// 8- and 1-byte stores the call's results were spilled with, defeating
// store forwarding: that costs several ns on its own.
func BenchmarkMapInternal(b *testing.B) {
	f := newFile(b, Options{})
	fr := mustAllocate(b, f, 16*page, AllocOpts{})
	sub := memmap.FileRange{Start: fr.Start + 3*page, End: fr.Start + 3*page + 8}
	if _, err := f.MapInternal(sub, hostarch.Read); err != nil {
		b.Fatal(err)
	}
	b.Run("discard", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := f.MapInternal(sub, hostarch.Read); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("consume", func(b *testing.B) {
		b.ReportAllocs()
		var n uint64
		for i := 0; i < b.N; i++ {
			bs, err := f.MapInternal(sub, hostarch.Read)
			if err != nil {
				b.Fatal(err)
			}
			n += bs.NumBytes()
		}
		if n != uint64(b.N)*8 {
			b.Fatalf("mapped %d bytes", n)
		}
	})
	f.DecRef(fr)
}

// BenchmarkAllocateFragmented allocates 8 KiB bottom-up (and frees it) in a
// file whose first 16384 pages alternate between allocated and free, so
// that every free range below the end is too small: the gap search must
// skip them all.
func BenchmarkAllocateFragmented(b *testing.B) {
	f := newFile(b, Options{})
	const n = 16384
	base := mustAllocate(b, f, 2*n*page, AllocOpts{})
	for i := uint64(0); i < n; i++ {
		f.DecRef(memmap.FileRange{Start: base.Start + (2*i+1)*page, End: base.Start + (2*i+2)*page})
	}
	f.WaitReleased()
	if got := usedLen(f); got != n {
		b.Fatalf("%d segments, want %d", got, n)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fr, err := f.Allocate(2*page, AllocOpts{})
		if err != nil {
			b.Fatal(err)
		}
		f.DecRef(fr)
	}
	b.StopTimer()
	f.WaitReleased()
	for i := uint64(0); i < n; i++ {
		f.DecRef(memmap.FileRange{Start: base.Start + 2*i*page, End: base.Start + (2*i+1)*page})
	}
}

// BenchmarkMapInternalParallel is BenchmarkMapInternal from every P at once.
func BenchmarkMapInternalParallel(b *testing.B) {
	f := newFile(b, Options{})
	fr := mustAllocate(b, f, 16*page, AllocOpts{})
	if _, err := f.MapInternal(fr, hostarch.Read); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.MapInternal(fr, hostarch.Read); err != nil {
				b.Error(err)
				return
			}
		}
	})
	f.DecRef(fr)
}

// BenchmarkAllocatePopulate measures Allocate(Populate) of 2 MiB per page;
// the release of each range (synchronous here) is not timed. For comparison,
// "touch" allocates without populating and then writes one byte per page
// through the internal mapping, taking one host fault per page.
func BenchmarkAllocatePopulate(b *testing.B) {
	const size = hostarch.HugePageSize
	for _, mode := range []string{"populate", "touch"} {
		b.Run(mode, func(b *testing.B) {
			f := newFile(b, Options{DisableAsyncRelease: true})
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				fr, err := f.Allocate(size, AllocOpts{Huge: true, Populate: mode == "populate"})
				if err != nil {
					b.Fatal(err)
				}
				if mode == "touch" {
					bs, err := f.MapInternal(fr, hostarch.Write)
					if err != nil {
						b.Fatal(err)
					}
					s := bs.Head().ToSlice()
					for j := 0; j < len(s); j += page {
						s[j] = 1
					}
				}
				b.StopTimer()
				f.DecRef(fr)
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(size/page), "ns/page")
		})
	}
}
