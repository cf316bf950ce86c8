package hostfile

import (
	"os"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
)

// BenchmarkTranslateCached measures a read fault on a page already in the
// cache (the read-locked fast path).
func BenchmarkTranslateCached(b *testing.B) {
	mf := newMF(b)
	f := openHostFile(b, mf, tempFile(b, pattern(64*pg, 0)), os.O_RDONLY)
	defer f.DecRef(ctx)
	if _, err := f.Translate(ctx, mr(0, 64*pg), mr(0, 64*pg), hostarch.Read); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		p := uint64(i%64) * pg
		if _, err := f.Translate(ctx, mr(p, p+pg), mr(p, p+pg), hostarch.Read); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTranslateCold measures a first read fault with 2 MiB of
// read-ahead: allocation and pread of the whole extent.
func BenchmarkTranslateCold(b *testing.B) {
	mf := newMF(b)
	f := openHostFile(b, mf, tempFile(b, pattern(hostarch.HugePageSize, 0)), os.O_RDWR)
	defer f.DecRef(ctx)
	b.SetBytes(hostarch.HugePageSize)
	for b.Loop() {
		if _, err := f.Translate(ctx, mr(0, pg), mr(0, hostarch.HugePageSize), hostarch.Read); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := f.Punch(ctx, mr(0, hostarch.HugePageSize)); err != nil {
			b.Skip(err)
		}
		if _, err := f.WriteAt(pattern(hostarch.HugePageSize, 0), 0); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkReadAtCached measures a 4 KiB pread served from the cache.
func BenchmarkReadAtCached(b *testing.B) {
	mf := newMF(b)
	f := openHostFile(b, mf, tempFile(b, pattern(64*pg, 0)), os.O_RDONLY)
	defer f.DecRef(ctx)
	if _, err := f.Translate(ctx, mr(0, 64*pg), mr(0, 64*pg), hostarch.Read); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, pg)
	b.SetBytes(pg)
	for i := 0; b.Loop(); i++ {
		if _, err := f.ReadAt(buf, int64(i%64)*pg); err != nil {
			b.Fatal(err)
		}
	}
}
