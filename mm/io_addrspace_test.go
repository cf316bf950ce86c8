package mm

import (
	"errors"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/pgalloc"
	"golang.org/x/sys/unix"
)

// TestIOWithTightAddressSpace runs I/O on a memory file whose internal
// mappings may take only 4 MiB of vmspace's address space (as under a
// hard RLIMIT_AS that the Go runtime nearly fills): an access maps only
// what it needs of a larger pma, and one that cannot be mapped at all
// fails with ENOMEM, not a fault (which syscalls would report as EFAULT).
func TestIOWithTightAddressSpace(t *testing.T) {
	mf, err := pgalloc.New(pgalloc.Options{MapBudget: 2 * hostarch.HugePageSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mf.Destroy)
	m := New(Options{MemoryFile: mf})
	t.Cleanup(func() { m.DecUsers(ctx) })
	const size = 16 << 20
	a := mustMap(t, m, anon(window, size, hostarch.ReadWrite))
	for off := hostarch.Addr(0); off < size; off += hostarch.HugePageSize {
		if err := m.HandleUserFault(ctx, a+off, hostarch.Write, 0); err != nil {
			t.Fatalf("fault at +%#x: %v", off, err)
		}
	}
	if n := m.pmas.Len(); n != 1 {
		t.Fatalf("%d pmas for a faulted-in 16 MiB mapping; the test wants one", n)
	}
	rw := func(addr hostarch.Addr, s string) error {
		if _, err := m.CopyOut(ctx, addr, []byte(s), IOOpts{}); err != nil {
			return err
		}
		got := make([]byte, len(s))
		if _, err := m.CopyIn(ctx, addr, got, IOOpts{}); err != nil {
			return err
		}
		if string(got) != s {
			t.Errorf("read back %q at %v, wrote %q", got, addr, s)
		}
		return nil
	}
	// The pma is 16 MiB: it cannot be mapped whole, only in windows.
	for _, off := range []hostarch.Addr{0, 1 << 20, 8 << 20, 8<<20 + 4096} {
		if err := rw(a+off, "window"); err != nil {
			t.Errorf("I/O at +%#x: %v", uint64(off), err)
		}
	}
	// A third window does not fit.
	_, err = m.CopyOut(ctx, a+12<<20, []byte("x"), IOOpts{})
	var ae *AccessError
	if !errors.Is(err, unix.ENOMEM) || errors.As(err, &ae) {
		t.Errorf("CopyOut with no address space left: %v; want ENOMEM, not an access error", err)
	}
	if err := m.CheckInvariants(); err != nil {
		t.Error(err)
	}
}
