package hostfile

import (
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
)

// TestConcurrent runs Translate (through imitation memory managers that
// take references under their activeMu, as mm does), ReadAt, WriteAt,
// Truncate, Punch and Sync at once. A broken invalidation protocol shows up
// as pgalloc panicking on a reference to a freed page, a broken lock as a
// race report or a deadlock (the test's timeout).
func TestConcurrent(t *testing.T) {
	for _, kind := range []string{"host", "memfd"} {
		t.Run(kind, func(t *testing.T) {
			mf := newMF(t)
			before := mf.UsageAllocated()
			const maxPages = 64
			var f *File
			if kind == "host" {
				f = openHostFile(t, mf, tempFile(t, pattern(32*pg, 1)), os.O_RDWR)
			} else {
				var err error
				if f, err = NewMemfd(mf, "c", 32*pg); err != nil {
					t.Fatal(err)
				}
			}
			mms := make([]*fakeMM, 3)
			for i := range mms {
				mms[i] = &fakeMM{slow: true}
				// Address == offset in every fake address space.
				if err := f.AddMapping(ctx, mms[i], ar(0, maxPages*pg), 0, i == 0); err != nil {
					t.Fatal(err)
				}
			}

			const iters = 300
			var wg sync.WaitGroup
			errc := make(chan error, 16)
			report := func(err error) {
				select {
				case errc <- err:
				default:
				}
			}
			for i, m := range mms {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(i), 1))
					at := hostarch.Read
					if i == 0 {
						at = hostarch.ReadWrite
					}
					for range iters {
						p := rng.Uint64N(maxPages)
						n := 1 + rng.Uint64N(4)
						r := mr(p*pg, min(p+n, maxPages)*pg)
						ts, err := m.translate(ctx, f, r, at)
						if err != nil && !memmap.IsBusError(err) {
							report(err)
							return
						}
						// Touch what was translated, as the application
						// would, through the memory manager's references.
						m.activeMu.Lock()
						for _, h := range m.held {
							bs, err := h.f.MapInternal(memmap.FileRange{Start: h.fr.Start, End: h.fr.Start + 1}, hostarch.Write)
							if err == nil && at.Write {
								for b := range bs.All {
									b.ToSlice()[0]++
								}
							}
						}
						m.activeMu.Unlock()
						_ = ts
					}
				}()
			}
			wg.Add(3)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(7, 7))
				buf := make([]byte, 3*pg)
				for range iters {
					off := int64(rng.Uint64N(maxPages * pg))
					n := 1 + rng.IntN(len(buf))
					if off+int64(n) > maxPages*pg {
						continue
					}
					if _, err := f.WriteAt(buf[:n], off); err != nil {
						report(err)
						return
					}
					if _, err := f.ReadAt(buf[:n], off); err != nil && err != io.EOF {
						report(err)
						return
					}
				}
			}()
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(9, 9))
				for range iters / 3 {
					size := int64(rng.Uint64N(maxPages * pg))
					if err := f.Truncate(ctx, size); err != nil {
						report(err)
						return
					}
				}
			}()
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(11, 11))
				for range iters / 3 {
					p := rng.Uint64N(maxPages)
					r := mr(p*pg, min(p+1+rng.Uint64N(8), maxPages)*pg)
					if rng.IntN(2) == 0 {
						if err := f.Punch(ctx, r); err != nil {
							report(err)
							return
						}
					} else if err := f.Sync(ctx, r); err != nil {
						report(err)
						return
					}
					res := make([]byte, r.Length()/pg)
					f.Resident(r, res)
				}
			}()
			wg.Wait()
			close(errc)
			for err := range errc {
				t.Errorf("concurrent operation failed: %v", err)
			}

			for i, m := range mms {
				f.RemoveMapping(ctx, m, ar(0, maxPages*pg), 0, i == 0)
				m.release()
			}
			if f.IsMapped() {
				t.Errorf("mapped after removing every mapping")
			}
			f.DecRef(ctx)
			if got := mf.UsageAllocated(); got != before {
				t.Errorf("UsageAllocated = %#x after release, want %#x", got, before)
			}
		})
	}
}

// TestConcurrentTable opens, maps and closes one inode from many goroutines
// through a Table: the File must be shared while open and leave the table
// when the last reference goes.
func TestConcurrentTable(t *testing.T) {
	mf := newMF(t)
	before := mf.UsageAllocated()
	path := tempFile(t, pattern(8*pg, 3))
	tbl := NewTable(mf)
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				flags := os.O_RDONLY
				if (i+j)%2 == 0 {
					flags = os.O_RDWR
				}
				fd, err := tbl.Open(path, flags, 0)
				if err != nil {
					errc <- err
					return
				}
				var opts memmap.MMapOpts
				if err := fd.ConfigureMMap(ctx, &opts); err != nil {
					errc <- err
					return
				}
				m := &fakeMM{}
				if _, err := m.translate(ctx, opts.Mappable, mr(uint64(j%8)*pg, uint64(j%8+1)*pg), hostarch.Read); err != nil {
					errc <- err
					return
				}
				m.release()
				opts.MappingIdentity.DecRef(ctx)
				if err := fd.Close(ctx); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Errorf("concurrent open/map/close: %v", err)
	}
	if tbl.Len() != 0 {
		t.Errorf("table holds %d Files after every close", tbl.Len())
	}
	if got := mf.UsageAllocated(); got != before {
		t.Errorf("UsageAllocated = %#x, want %#x", got, before)
	}
}
