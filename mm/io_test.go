package mm

import (
	"bytes"
	"errors"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/safemem"
)

// TestSlowIODowngrades checks that the slow I/O path copies with activeMu
// held only for reading: before the copy no reader can get in (the pmas
// are being made), during it any reader can and no writer can.
func TestSlowIODowngrades(t *testing.T) {
	m := newTestMM(t)
	const pg = hostarch.PageSize
	a := mustMap(t, m, anon(window, 4*pg, hostarch.ReadWrite))
	calls := 0
	testHookIODowngraded = func(hm *MemoryManager) {
		if hm != m {
			return
		}
		calls++
		readers := 0
		for i := 0; i < rwShardsUsed; i++ {
			if m.activeMu.shards[i].TryRLock() {
				readers++
				m.activeMu.shards[i].RUnlock()
			}
		}
		writable := m.activeMu.shards[rwShardsUsed-1].TryLock()
		if writable {
			m.activeMu.shards[rwShardsUsed-1].Unlock()
		}
		switch {
		case calls%2 == 1 && readers != 0:
			t.Errorf("before the downgrade, %d shards admit readers", readers)
		case calls%2 == 0 && (readers != rwShardsUsed || writable):
			t.Errorf("during the copy, %d of %d shards admit readers, writable %v: want all, and no writer", readers, rwShardsUsed, writable)
		}
	}
	defer func() { testHookIODowngraded = nil }()
	// Never touched: no pma, so CopyOut and CopyIn take the slow path.
	if n, err := m.CopyOut(ctx, a+pg-2, []byte("slow"), IOOpts{}); n != 4 || err != nil {
		t.Fatalf("CopyOut: %d, %v", n, err)
	}
	got := make([]byte, 4)
	if n, err := m.CopyIn(ctx, a+pg-2, got, IOOpts{IgnorePermissions: true}); n != 4 || err != nil || string(got) != "slow" {
		t.Fatalf("CopyIn: %d %q, %v", n, got, err)
	}
	if calls < 4 {
		t.Fatalf("the slow path ran %d times, want 2", calls/2)
	}
}

// TestSlowIOErrorOrder checks that the slow I/O path reports the first
// error in address order: a copy that faults (a page of a host file
// truncated after it was mapped) before the pmas stop (pages past the end
// of the file, then a hole) reports the fault, with the bytes copied before
// it.
func TestSlowIOErrorOrder(t *testing.T) {
	m := newTestMM(t)
	const pg = hostarch.PageSize
	fd, path := directFD(t, 2*pg, 5, os.O_RDWR)
	addr, err := m.mmapFlags(ctx, window, 4*pg, unix.PROT_READ|unix.PROT_WRITE, MapShared|MapFixed, fd, 0)
	mustOK(t, "mmap", err)
	buf := make([]byte, 2*pg)
	if n, err := m.CopyIn(ctx, addr, buf, IOOpts{}); n != 2*pg || err != nil {
		t.Fatalf("CopyIn before truncation: %d, %v", n, err)
	}
	// The pmas of pages 0 and 1 stay; page 1's host memory now faults.
	mustOK(t, "truncate", os.Truncate(path, pg))
	big := make([]byte, 5*pg)
	// IgnorePermissions keeps CopyIn off the fast path.
	n, err := m.CopyIn(ctx, addr, big, IOOpts{IgnorePermissions: true})
	var ae *AccessError
	if n != pg || !errors.As(err, &ae) || ae.Addr != addr+pg || ae.Signal != unix.SIGBUS {
		t.Fatalf("CopyIn across a truncated page: %d, %v; want %d bytes and SIGBUS at %#x", n, err, pg, uint64(addr+pg))
	}
	// With the fault gone, the first error is where the pmas stop: page 2,
	// past the end of the file.
	mustOK(t, "truncate", os.Truncate(path, 2*pg))
	n, err = m.CopyIn(ctx, addr, big, IOOpts{IgnorePermissions: true})
	if n != 2*pg || !errors.As(err, &ae) || ae.Addr != addr+2*pg || ae.Signal != unix.SIGBUS {
		t.Fatalf("CopyIn past the end of the file: %d, %v; want %d bytes and SIGBUS at %#x", n, err, 2*pg, uint64(addr+2*pg))
	}
	check(t, m)
}

// TestNoUnsafe checks that mm's code does not import unsafe: host memory
// is reached only through safemem Blocks.
func TestNoUnsafe(t *testing.T) {
	files, err := filepath.Glob("*.go")
	mustOK(t, "glob", err)
	fs := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fs, f, nil, parser.ImportsOnly)
		mustOK(t, "parse", err)
		for _, im := range af.Imports {
			if im.Path.Value == `"unsafe"` {
				t.Errorf("%s imports unsafe", f)
			}
		}
	}
}

// unmapDuringCopy is a safemem.Writer that, in the middle of a copy,
// unmaps the range being copied from another goroutine, then takes the
// bytes. If mappingMu does not exclude the munmap, it waits until the
// munmap has it (entered).
type unmapDuringCopy struct {
	t        *testing.T
	m        *MemoryManager
	ar       hostarch.AddrRange
	got      []byte
	unmapped atomic.Bool
	wg       sync.WaitGroup
	once     bool
	entered  bool
}

func (w *unmapDuringCopy) WriteFromBlocks(srcs safemem.BlockSeq) (uint64, error) {
	if !w.once {
		w.once = true
		free := w.m.mappingMu.TryLock()
		if free {
			w.m.mappingMu.Unlock()
		}
		done := make(chan struct{})
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			defer close(done)
			if err := w.m.MUnmap(ctx, w.ar.Start, w.ar.Length()); err != nil {
				w.t.Errorf("munmap: %v", err)
			}
			w.unmapped.Store(true)
		}()
		if free {
			for w.m.mappingMu.TryRLock() {
				w.m.mappingMu.RUnlock()
				runtime.Gosched()
			}
			w.entered = true
		}
		_ = done
	}
	buf := make([]byte, srcs.NumBytes())
	n, err := safemem.CopySeq(safemem.BlockSeqOf(safemem.BlockFromSafeSlice(buf)), srcs)
	w.got = append(w.got, buf[:n]...)
	return n, err
}

// TestIOExcludesUnmap checks that I/O holds mappingMu for reading while it
// copies: an munmap of the range, started during the copy, waits for it,
// and the copy sees the memory as it was.
func TestIOExcludesUnmap(t *testing.T) {
	m := newTestMM(t)
	const pg = hostarch.PageSize
	a := mustMap(t, m, anon(window, 2*pg, hostarch.ReadWrite))
	want := bytes.Repeat([]byte("contents"), 2*pg/8)
	write(t, m, a, want)
	ar := hostarch.AddrRange{Start: a, End: a + 2*pg}
	w := &unmapDuringCopy{t: t, m: m, ar: ar}
	n, err := m.CopyInTo(ctx, []hostarch.AddrRange{ar}, w, IOOpts{})
	w.wg.Wait()
	if n != 2*pg || err != nil || !bytes.Equal(w.got, want) {
		t.Errorf("CopyInTo during an munmap: %d bytes, %v, contents equal %v", n, err, bytes.Equal(w.got, want))
	}
	if w.entered {
		t.Errorf("the munmap took mappingMu during the copy")
	}
	if _, err := m.CopyIn(ctx, a, make([]byte, 1), IOOpts{}); err == nil {
		t.Errorf("the range is still mapped after the munmap")
	}
}
