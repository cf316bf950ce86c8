package hostfile

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
)

// TestKeptDescriptors checks that the Files of a direct Table keep their
// descriptors outside vmspace's file table, so that more files than
// RLIMIT_NOFILE allows open at once stay usable: read, written, translated
// and opened by path (Path) after the caller's descriptors are closed.
func TestKeptDescriptors(t *testing.T) {
	ctx := context.Background()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	// Room for what is open now and a few more, far fewer than the
	// files made below.
	low := lim
	low.Cur = uint64(len(ents)) + 40
	if low.Cur >= lim.Cur {
		t.Skipf("RLIMIT_NOFILE %d too low", lim.Cur)
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	const n = 300
	dir := t.TempDir()
	tab := NewDirectTable(newMF(t))
	fds := make([]*FD, 0, n)
	defer func() {
		for _, fd := range fds {
			fd.Close(ctx)
		}
	}()
	for i := range n {
		path := filepath.Join(dir, fmt.Sprint(i))
		if err := os.WriteFile(path, []byte(fmt.Sprintf("file %d", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		fd, err := tab.Open(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatalf("Open of file %d of %d: %v", i, n, err)
		}
		fds = append(fds, fd)
	}
	ents, err = os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(ents)) >= low.Cur {
		t.Fatalf("%d descriptors open in vmspace's table for %d files", len(ents), n)
	}
	for i, fd := range fds {
		f := fd.File()
		want := fmt.Sprintf("file %d", i)
		buf := make([]byte, len(want))
		if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != want {
			t.Fatalf("ReadAt of file %d: %q, %v", i, buf, err)
		}
		if _, err := f.WriteAt([]byte("F"), 0); err != nil {
			t.Fatalf("WriteAt of file %d: %v", i, err)
		}
		ts, err := f.Translate(ctx, mr(0, pg), mr(0, pg), hostarch.Read)
		if err != nil || len(ts) != 1 {
			t.Fatalf("Translate of file %d: %v, %v", i, ts, err)
		}
		if ts[0].File.FD() >= 0 {
			t.Fatalf("file %d's descriptor %d is in vmspace's table", i, ts[0].File.FD())
		}
		path := ts[0].File.(interface{ Path() string }).Path()
		if !strings.Contains(path, "/task/") {
			t.Fatalf("file %d's path %q does not name a keeper", i, path)
		}
		if i%50 == 0 {
			b, err := os.ReadFile(path)
			if err != nil || string(b) != "F"+want[1:] {
				t.Fatalf("reading file %d by %s: %q, %v", i, path, b, err)
			}
		}
	}
	for _, k := range keepers.all {
		if k.tid == os.Getpid() {
			t.Fatal("a keeper is the thread-group leader")
		}
	}
	if len(keepers.all) < 2 {
		t.Fatalf("%d keepers for %d files at RLIMIT_NOFILE %d", len(keepers.all), n, low.Cur)
	}
}
