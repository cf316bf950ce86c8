package mm

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
)

// directFD opens a directly mapped host file of size bytes of pattern seed
// with flags, and returns its FD and path.
func directFD(t *testing.T, size int, seed byte, flags int) (*hostfile.FD, string) {
	t.Helper()
	path := tempHostFile(t, size, seed)
	tab := hostfile.NewDirectTable(newMF(t, 0))
	fd, err := tab.Open(path, flags, 0)
	mustOK(t, "open", err)
	t.Cleanup(func() { fd.Close(ctx) })
	return fd, path
}

// TestDirectFileBusError checks that the manager's own accesses to a
// shared mapping of a directly mapped host file fail with SIGBUS (EFAULT
// for a system call) past the host file's end, whoever truncated it, and
// succeed again when it grows; and that a fault past the end is SIGBUS.
func TestDirectFileBusError(t *testing.T) {
	m := newTestMM(t)
	const pg = hostarch.PageSize
	fd, path := directFD(t, 2*pg, 7, os.O_RDWR)
	addr, err := m.mmapFlags(ctx, window, 4*pg, unix.PROT_READ|unix.PROT_WRITE, MapShared|MapFixed, fd, 0)
	mustOK(t, "mmap", err)
	buf := make([]byte, 8)
	if _, err := m.CopyIn(ctx, addr+pg, buf, IOOpts{}); err != nil {
		t.Fatalf("CopyIn before truncation: %v", err)
	}
	// Another process truncates the file: the pma stays, its pages fault.
	mustOK(t, "truncate", os.Truncate(path, pg))
	for name, io := range map[string]func() error{
		"CopyIn":  func() error { _, err := m.CopyIn(ctx, addr+pg, buf, IOOpts{}); return err },
		"CopyOut": func() error { _, err := m.CopyOut(ctx, addr+pg, buf, IOOpts{}); return err },
	} {
		err := io()
		var ae *AccessError
		if !errors.As(err, &ae) || ae.Signal != unix.SIGBUS || ae.Addr != addr+pg || !errors.Is(err, unix.EFAULT) {
			t.Errorf("%s past EOF: %v, want a SIGBUS AccessError at %v (EFAULT)", name, err, addr+pg)
		}
	}
	// A page never touched past the end: the fault is SIGBUS.
	err = m.HandleUserFault(ctx, addr+3*pg, hostarch.Read, 0)
	var ae *AccessError
	if !errors.As(err, &ae) || ae.Signal != unix.SIGBUS {
		t.Errorf("fault past EOF: %v, want SIGBUS", err)
	}
	mustOK(t, "truncate", os.Truncate(path, 4*pg))
	if _, err := m.CopyOut(ctx, addr+3*pg, []byte("grown"), IOOpts{}); err != nil {
		t.Fatalf("CopyOut after growth: %v", err)
	}
	got := make([]byte, 5)
	h, err := os.Open(path)
	mustOK(t, "open", err)
	defer h.Close()
	if _, err := h.ReadAt(got, 3*pg); err != nil || string(got) != "grown" {
		t.Fatalf("host file reads %q, %v after a write through the mapping", got, err)
	}
	check(t, m)
}

// TestDirectFilePrivate checks a private mapping of a read-only directly
// mapped host file: reads see the host file's current contents until a
// page is written, which copies it.
func TestDirectFilePrivate(t *testing.T) {
	m := newTestMM(t)
	const pg = hostarch.PageSize
	fd, path := directFD(t, 2*pg, 9, os.O_RDONLY)
	addr, err := m.mmapFlags(ctx, window, 2*pg, unix.PROT_READ|unix.PROT_WRITE, MapPrivate|MapFixed, fd, 0)
	mustOK(t, "mmap", err)
	b := make([]byte, 1)
	if _, err := m.CopyIn(ctx, addr, b, IOOpts{}); err != nil {
		t.Fatalf("CopyIn of a private mapping of a read-only file: %v", err)
	}
	write(t, m, addr, []byte("P"))
	h, err := os.OpenFile(path, os.O_RDWR, 0)
	mustOK(t, "open", err)
	defer h.Close()
	_, err = h.WriteAt([]byte("NQ"), pg-1)
	mustOK(t, "pwrite", err)
	got := make([]byte, 2)
	if _, err := m.CopyIn(ctx, addr+pg-1, got, IOOpts{}); err != nil {
		t.Fatal(err)
	}
	n := pg - 1
	want := byte(n*131) + 9 // the original byte, copied before the write
	if got[0] != want || got[1] != 'Q' {
		t.Fatalf("private mapping reads %q: want the copy's %q then the host file's 'Q'", got, []byte{want, 'Q'})
	}
	check(t, m)
}
