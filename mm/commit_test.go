package mm

import (
	"errors"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"golang.org/x/sys/unix"
)

// TestCommitNever checks mode 2: accounted vmas (private writable, the
// heap, mprotect to writable, mremap growth, fork's copies) count against
// CommitLimit and are released as they go; MAP_NORESERVE does not exempt.
func TestCommitNever(t *testing.T) {
	m := newTestMM(t)
	// CommitLimit: 50% of 64 MiB; no reserves.
	c := NewCommit(Overcommit{Mode: OvercommitNever, Ratio: 50, TotalRAM: 64 << 20})
	m.SetCommit(c)
	if got := c.CommitLimit(); got != 32<<20 {
		t.Fatalf("CommitLimit %d, want %d", got, 32<<20)
	}
	a := mustMap(t, m, anon(window, 16<<20, hostarch.ReadWrite))
	if got := c.Committed(); got != 16<<20 {
		t.Fatalf("Committed %d after a 16 MiB private writable mapping", got)
	}
	// Read-only and shared mappings commit nothing.
	mustMap(t, m, anon(window+0x4000000, 64<<20, hostarch.Read))
	if got := c.Committed(); got != 16<<20 {
		t.Fatalf("Committed %d after a read-only mapping", got)
	}
	// The limit is strict: 16 more MiB reach it.
	if _, err := m.MMap(ctx, anon(window+0x2000000, 16<<20, hostarch.ReadWrite)); !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("mapping up to CommitLimit: %v, want ENOMEM", err)
	}
	// NORESERVE is ignored in mode 2.
	nr := anon(window+0x2000000, 16<<20, hostarch.ReadWrite)
	if _, err := m.mmapFlags(ctx, nr.Addr, nr.Length, unix.PROT_READ|unix.PROT_WRITE, MapPrivate|MapAnonymous|MapFixed|MapNoReserve, nil, 0); !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("MAP_NORESERVE in mode 2: %v, want ENOMEM", err)
	}
	// Making the read-only mapping writable commits it.
	if err := m.MProtect(ctx, window+0x4000000, 32<<20, hostarch.ReadWrite, MProtectOpts{}); !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("mprotect past CommitLimit: %v, want ENOMEM", err)
	}
	if err := m.MProtect(ctx, window+0x4000000, 8<<20, hostarch.ReadWrite, MProtectOpts{}); err != nil {
		t.Fatalf("mprotect within CommitLimit: %v", err)
	}
	if got := c.Committed(); got != 24<<20 {
		t.Fatalf("Committed %d after mprotect", got)
	}
	// Dropping write keeps the commitment (VM_ACCOUNT stays) once
	// the memory was written...
	write(t, m, window+0x4000000, []byte{1})
	if err := m.MProtect(ctx, window+0x4000000, 4<<20, hostarch.Read, MProtectOpts{}); err != nil {
		t.Fatal(err)
	}
	if got := c.Committed(); got != 24<<20 {
		t.Fatalf("Committed %d after dropping write", got)
	}
	// ... and gives it back for memory never faulted.
	b := mustMap(t, m, anon(window+0x8000000, 4<<20, hostarch.ReadWrite))
	if err := m.MProtect(ctx, b, 4<<20, hostarch.Read, MProtectOpts{}); err != nil {
		t.Fatal(err)
	}
	if got := c.Committed(); got != 24<<20 {
		t.Fatalf("Committed %d after dropping write from memory never faulted", got)
	}
	// Growing an accounted vma commits the growth.
	if _, err := m.MRemap(ctx, a, 16<<20, 32<<20, MRemapOpts{}); !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("mremap past CommitLimit: %v, want ENOMEM", err)
	}
	// A fork's accounted vmas are committed too: past CommitLimit the
	// fork fails (ENOMEM) and commits nothing ...
	if _, err := m.Fork(ctx); !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("fork past CommitLimit: %v, want ENOMEM", err)
	}
	if got := c.Committed(); got != 24<<20 {
		t.Fatalf("Committed %d after a failed fork", got)
	}
	// ... and within it they are committed, and released with the child.
	if err := m.MUnmap(ctx, a, 16<<20); err != nil {
		t.Fatal(err)
	}
	child, err := m.Fork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Committed(); got != 16<<20 {
		t.Fatalf("Committed %d with a forked child", got)
	}
	child.DecUsers(ctx)
	if got := c.Committed(); got != 8<<20 {
		t.Fatalf("Committed %d after the child went", got)
	}
	if err := m.MUnmap(ctx, window, 1<<30); err != nil {
		t.Fatal(err)
	}
	if got := c.Committed(); got != 0 {
		t.Fatalf("Committed %d after unmapping everything", got)
	}
}

// TestCommitGuess checks mode 0's heuristic and mode 1.
func TestCommitGuess(t *testing.T) {
	m := newTestMM(t)
	c := NewCommit(Overcommit{Mode: OvercommitGuess, Ratio: 50, TotalRAM: 64 << 20, TotalSwap: 16 << 20})
	m.SetCommit(c)
	if _, err := m.MMap(ctx, anon(window, 81<<20, hostarch.ReadWrite)); !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("a mapping larger than RAM and swap: %v, want ENOMEM", err)
	}
	mustMap(t, m, anon(window, 80<<20, hostarch.ReadWrite))
	mustMap(t, m, anon(window+0x10000000, 80<<20, hostarch.ReadWrite))
	if got := c.Committed(); got != 160<<20 {
		t.Fatalf("Committed %d", got)
	}
	c.SetPolicy(Overcommit{Mode: OvercommitAlways})
	mustMap(t, m, anon(window+0x20000000, 1<<30, hostarch.ReadWrite))
}
