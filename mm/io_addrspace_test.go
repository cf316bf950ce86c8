package mm

import (
	"errors"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/pgalloc"
	"golang.org/x/sys/unix"
)

// newBudgetMM returns a manager on a memory file whose internal mappings
// may take only budget bytes of address space.
func newBudgetMM(t *testing.T, budget uint64) *MemoryManager {
	t.Helper()
	mf, err := pgalloc.New(pgalloc.Options{MapBudget: budget})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mf.Destroy)
	m := New(Options{MemoryFile: mf})
	t.Cleanup(func() { m.DecUsers(ctx) })
	return m
}

// TestIOWithTightAddressSpace runs I/O on a memory file whose internal
// mappings may take only 4 MiB of vmspace's address space (as under a
// hard RLIMIT_AS that the Go runtime nearly fills): an access maps only
// what it needs of a larger pma, and one that cannot be mapped at all
// fails with ENOMEM, not a fault (which syscalls would report as EFAULT).
func TestIOWithTightAddressSpace(t *testing.T) {
	m := newBudgetMM(t, 2*hostarch.HugePageSize)
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
	_, err := m.CopyOut(ctx, a+12<<20, []byte("x"), IOOpts{})
	var ae *AccessError
	if !errors.Is(err, unix.ENOMEM) || errors.As(err, &ae) {
		t.Errorf("CopyOut with no address space left: %v; want ENOMEM, not an access error", err)
	}
	if err := m.CheckInvariants(); err != nil {
		t.Error(err)
	}
}

// TestFastIOSpanningMappings checks that I/O to a pma whose pages span
// several of the memory file's internal mappings (a pma merged from
// adjacent allocations; here 2 MiB windows) takes the fast path once the
// pages are there: it has no cached mapping of its whole range, but each
// access lies within one of the file's mappings.
func TestFastIOSpanningMappings(t *testing.T) {
	m := newBudgetMM(t, 4*hostarch.HugePageSize)
	const size = 2 * hostarch.HugePageSize
	a := mustMap(t, m, anon(window, size, hostarch.ReadWrite))
	for off := hostarch.Addr(0); off < size; off += hostarch.HugePageSize {
		if _, err := m.CopyOut(ctx, a+off, []byte("first"), IOOpts{}); err != nil {
			t.Fatalf("CopyOut at +%#x: %v", uint64(off), err)
		}
	}
	if n := m.pmas.Len(); n != 1 {
		t.Fatalf("%d pmas for two adjacent allocations; the test wants one", n)
	}
	if im := m.pmas.FirstSegment().ValuePtr().im; !im.IsZero() {
		t.Fatalf("the pma spanning two windows has a cached mapping %v", im)
	}
	slow := 0
	testHookIODowngraded = func(hm *MemoryManager) {
		if hm == m {
			slow++
		}
	}
	defer func() { testHookIODowngraded = nil }()
	for _, off := range []hostarch.Addr{0, 4096, hostarch.HugePageSize, size - 8} {
		if _, err := m.CopyOut(ctx, a+off, []byte("fastpath"), IOOpts{}); err != nil {
			t.Errorf("CopyOut at +%#x: %v", uint64(off), err)
		}
		got := make([]byte, 8)
		if _, err := m.CopyIn(ctx, a+off, got, IOOpts{}); err != nil || string(got) != "fastpath" {
			t.Errorf("CopyIn at +%#x: %q, %v", uint64(off), got, err)
		}
	}
	if slow != 0 {
		t.Errorf("%d hook calls: I/O within the pma's windows took the slow path", slow)
	}
	// An access across the windows' boundary still works (slowly).
	if _, err := m.CopyOut(ctx, a+hostarch.HugePageSize-4, []byte("straddle"), IOOpts{}); err != nil {
		t.Errorf("CopyOut across the windows: %v", err)
	}
	got := make([]byte, 8)
	if _, err := m.CopyIn(ctx, a+hostarch.HugePageSize-4, got, IOOpts{}); err != nil || string(got) != "straddle" {
		t.Errorf("CopyIn across the windows: %q, %v", got, err)
	}
}
