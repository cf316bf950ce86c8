package mm

import (
	"errors"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
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
