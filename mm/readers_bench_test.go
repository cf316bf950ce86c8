package mm

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
)

// BenchmarkWholeSpaceReaders measures the readers of the whole address
// space (/proc's status and smaps, the run report's samples and snapshots)
// on a heap split into many pmas the way a forked interpreter's is: 64 MiB
// touched, shared with a forked child, every other page then written by
// the parent (a private copy each, so about 8,000 pmas and as many runs
// of shared pages).
func BenchmarkWholeSpaceReaders(b *testing.B) {
	m := benchMM(b)
	const size = 64 << 20
	const pg = hostarch.PageSize
	a, err := m.MMap(ctx, anonOpts(size))
	if err != nil {
		b.Fatal(err)
	}
	for p := hostarch.Addr(0); p < size; p += pg {
		m.CopyOut(ctx, a+p, []byte{1}, IOOpts{})
	}
	c, err := m.Fork(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.DecUsers(ctx) })
	for p := hostarch.Addr(0); p < size; p += 2 * pg {
		m.CopyOut(ctx, a+p, []byte{2}, IOOpts{})
	}
	all := hostarch.AddrRange{Start: 0, End: ^hostarch.Addr(0) &^ (pg - 1)}
	b.Run("Stats", func(b *testing.B) {
		for range b.N {
			if m.Stats().RssAnon != size {
				b.Fatal("wrong RssAnon")
			}
		}
	})
	b.Run("VMAs", func(b *testing.B) {
		for range b.N {
			m.VMAs(ctx)
		}
	})
	b.Run("PageRuns", func(b *testing.B) {
		for range b.N {
			m.PageRuns(all)
		}
	})
}
