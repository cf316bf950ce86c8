package mm

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
)

// These benchmarks follow the workloads of shared/spec/workloads.md that
// the memory manager alone covers; package bench runs the suite itself.

func benchMM(b *testing.B) *MemoryManager {
	mf, err := pgalloc.New(pgalloc.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(mf.Destroy)
	mm := New(Options{MemoryFile: mf})
	b.Cleanup(func() { mm.DecUsers(ctx) })
	return mm
}

func anonOpts(length uint64) memmap.MMapOpts {
	return memmap.MMapOpts{Length: length, Private: true, Perms: hostarch.ReadWrite, MaxPerms: hostarch.AnyAccess}
}

func BenchmarkMMapMUnmap64K(b *testing.B) {
	mm := benchMM(b)
	for i := 0; i < b.N; i++ {
		a, err := mm.MMap(ctx, anonOpts(64<<10))
		if err != nil {
			b.Fatal(err)
		}
		if err := mm.MUnmap(ctx, a, 64<<10); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFault256M(b *testing.B) {
	mm := benchMM(b)
	const size = 256 << 20
	a, _ := mm.MMap(ctx, anonOpts(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		addr := a + hostarch.Addr(i%(size/hostarch.PageSize))*hostarch.PageSize
		if i > 0 && addr == a {
			b.StopTimer()
			mm.MAdvise(ctx, a, size, AdvDontNeed)
			b.StartTimer()
		}
		if err := mm.HandleUserFault(ctx, addr, hostarch.Write, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCopyIn8(b *testing.B) {
	mm := benchMM(b)
	a, _ := mm.MMap(ctx, anonOpts(64<<10))
	mm.CopyOut(ctx, a, make([]byte, 64<<10), IOOpts{})
	buf := make([]byte, 8)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		mm.CopyIn(ctx, a, buf, IOOpts{})
	}
}

func BenchmarkCopyIn8Parallel(b *testing.B) {
	mm := benchMM(b)
	a, _ := mm.MMap(ctx, anonOpts(64<<10))
	mm.CopyOut(ctx, a, make([]byte, 64<<10), IOOpts{})
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 8)
		for pb.Next() {
			mm.CopyIn(ctx, a, buf, IOOpts{})
		}
	})
}

func BenchmarkMProtectSplitMerge4096(b *testing.B) {
	mm := benchMM(b)
	const pages = 4096
	a, _ := mm.MMap(ctx, anonOpts(pages*hostarch.PageSize))
	for p := 0; p < pages; p++ {
		mm.CopyOut(ctx, a+hostarch.Addr(p)*hostarch.PageSize, []byte{1}, IOOpts{})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for p := 0; p < pages; p += 2 {
			mm.MProtect(ctx, a+hostarch.Addr(p)*hostarch.PageSize, hostarch.PageSize, hostarch.Read, MProtectOpts{})
		}
		mm.MProtect(ctx, a, pages*hostarch.PageSize, hostarch.ReadWrite, MProtectOpts{})
	}
}

func BenchmarkFork256M(b *testing.B) {
	mm := benchMM(b)
	for i := 0; i < 64; i++ {
		o := anonOpts(4 << 20)
		o.Addr, o.Fixed = 0x200000000000+hostarch.Addr(i)*(8<<20), true
		a, _ := mm.MMap(ctx, o)
		for p := hostarch.Addr(0); p < 4<<20; p += hostarch.PageSize {
			mm.CopyOut(ctx, a+p, []byte{1}, IOOpts{})
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := mm.Fork(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		c.DecUsers(ctx)
		b.StartTimer()
	}
}
