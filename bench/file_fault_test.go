package bench

import (
	"context"
	"os"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"github.com/vmspace/vmspace/linuxabi"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/pgalloc"
	"golang.org/x/sys/unix"
)

// BenchmarkPrivateFileFault measures faulting in a private mapping of a
// host file, one read fault per page (the page cache is cold the first
// time each page is reached, so this includes reading the file), as the
// loader's program mappings are faulted in.
func BenchmarkPrivateFileFault(b *testing.B) {
	const size = 64 << 20
	ctx := context.Background()
	f, err := os.CreateTemp(b.TempDir(), "file")
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	path := f.Name()
	f.Close()
	mf, err := pgalloc.New(pgalloc.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer mf.Destroy()
	b.ResetTimer()
	b.StopTimer()
	pages := 0
	for pages < b.N {
		m := mm.New(mm.Options{MemoryFile: mf})
		fd, err := hostfile.OpenFile(mf, path, unix.O_RDONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		a, err := linuxabi.MMap(ctx, m, 0, size, linuxabi.ProtRead, linuxabi.MapPrivate, fd, 0)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for off := hostarch.Addr(0); off < size && pages < b.N; off += hostarch.PageSize {
			if err := m.HandleUserFault(ctx, a+off, hostarch.Read, 0); err != nil {
				b.Fatal(err)
			}
			pages++
		}
		b.StopTimer()
		fd.Close(ctx)
		m.DecUsers(ctx)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/page")
}
