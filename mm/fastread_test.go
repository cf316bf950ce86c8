package mm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
)

// TestCopyInUnlocked checks CopyIn's lock-free path (fastread.go): a read
// of the page read before is served without activeMu, and a writer that
// comes between the lookup and the end of the copy, or before the read,
// sends it to the locked path, so that it never returns bytes of a page the
// manager no longer maps there, nor reads what the permissions forbid.
func TestCopyInUnlocked(t *testing.T) {
	m := newTestMM(t)
	a, err := m.MMap(ctx, anonOpts(hostarch.PageSize))
	if err != nil {
		t.Fatal(err)
	}
	old := []byte("AAAAAAAA")
	if _, err := m.CopyOut(ctx, a, old, IOOpts{}); err != nil {
		t.Fatal(err)
	}
	calls := 0
	testHookUnlockedReadCopied = func(*MemoryManager) { calls++ }
	defer func() { testHookUnlockedReadCopied = nil }()
	buf := make([]byte, 8)
	for i := 0; i < 2; i++ {
		if n, err := m.CopyIn(ctx, a, buf, IOOpts{}); n != 8 || err != nil || !bytes.Equal(buf, old) {
			t.Fatalf("CopyIn = %d, %v, %q; want 8, nil, %q", n, err, buf, old)
		}
	}
	if calls != 1 {
		t.Fatalf("the second CopyIn did not take the lock-free path (%d calls of its hook)", calls)
	}

	// A writer during the copy: MADV_DONTNEED frees the page, whose old
	// bytes stay in the memory file (its reuse cache). The read must see
	// the fresh zero page instead.
	testHookUnlockedReadCopied = func(m *MemoryManager) {
		testHookUnlockedReadCopied = nil
		if err := m.MAdvise(ctx, a, hostarch.PageSize, AdvDontNeed); err != nil {
			t.Errorf("MAdvise: %v", err)
		}
	}
	if n, err := m.CopyIn(ctx, a, buf, IOOpts{}); n != 8 || err != nil || !bytes.Equal(buf, make([]byte, 8)) {
		t.Fatalf("CopyIn racing MADV_DONTNEED = %d, %v, %q; want 8 zero bytes", n, err, buf)
	}

	// A writer before the read: the remembered pma is stale.
	if n, err := m.CopyIn(ctx, a, buf, IOOpts{}); n != 8 || err != nil {
		t.Fatalf("CopyIn = %d, %v", n, err)
	}
	if err := m.MProtect(ctx, a, hostarch.PageSize, hostarch.NoAccess, MProtectOpts{}); err != nil {
		t.Fatal(err)
	}
	var ae *AccessError
	if n, err := m.CopyIn(ctx, a, buf, IOOpts{}); n != 0 || !errors.As(err, &ae) {
		t.Fatalf("CopyIn of a PROT_NONE page = %d, %v; want 0 and an AccessError", n, err)
	}
}

// TestShardedRWMutexSeq checks activeMu's write sequence count, on which
// the lock-free read relies: odd exactly while a writer holds the lock,
// and changed by every write-lock period.
func TestShardedRWMutexSeq(t *testing.T) {
	var mu shardedRWMutex
	s0 := mu.seq.Load()
	if s0%2 != 0 {
		t.Fatalf("seq %d odd with no writer", s0)
	}
	mu.Lock()
	if s := mu.seq.Load(); s%2 != 1 {
		t.Fatalf("seq %d even while write-locked", s)
	}
	mu.Unlock()
	s1 := mu.seq.Load()
	if s1%2 != 0 || s1 == s0 {
		t.Fatalf("seq %d after Unlock (was %d): want even and changed", s1, s0)
	}
	mu.Lock()
	rt := mu.DowngradeLock()
	if s := mu.seq.Load(); s%2 != 0 || s == s1 {
		t.Fatalf("seq %d after DowngradeLock (was %d): want even and changed", s, s1)
	}
	mu.RUnlock(rt)
}

// TestCopyOutMemo checks CopyOut's remembered pma (lastWrite): a write to
// the pma written before needs no lookup, and any writer of activeMu in
// between (here MProtect, MADV_DONTNEED, MUnmap and MMap) makes the entry
// stale, so that CopyOut never writes through a pma the manager no longer
// maps there, nor where the permissions forbid.
func TestCopyOutMemo(t *testing.T) {
	m := newTestMM(t)
	a, err := m.MMap(ctx, anonOpts(hostarch.PageSize))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	// writeTwice writes s twice, the second time through the memo, and
	// checks that it reads back.
	writeTwice := func(s string) {
		t.Helper()
		for i := 0; i < 2; i++ {
			if n, err := m.CopyOut(ctx, a, []byte(s), IOOpts{}); n != len(s) || err != nil {
				t.Fatalf("CopyOut(%q) = %d, %v", s, n, err)
			}
		}
		if n, err := m.CopyIn(ctx, a, buf, IOOpts{}); n != 8 || err != nil || string(buf) != s {
			t.Fatalf("CopyIn = %d, %v, %q; want %q", n, err, buf, s)
		}
		if m.lastWrite.lookup(m.activeMu.seq.Load(), a, a+8) == nil {
			t.Fatalf("CopyOut did not remember the pma")
		}
	}
	writeTwice("AAAAAAAA")

	// Permissions taken away: the write faults.
	if err := m.MProtect(ctx, a, hostarch.PageSize, hostarch.Read, MProtectOpts{}); err != nil {
		t.Fatal(err)
	}
	var ae *AccessError
	if n, err := m.CopyOut(ctx, a, []byte("BBBBBBBB"), IOOpts{}); n != 0 || !errors.As(err, &ae) {
		t.Fatalf("CopyOut to a read-only page = %d, %v; want 0, an AccessError", n, err)
	}
	if err := m.MProtect(ctx, a, hostarch.PageSize, hostarch.ReadWrite, MProtectOpts{}); err != nil {
		t.Fatal(err)
	}
	writeTwice("CCCCCCCC")

	// The page freed: the write goes to the new zero page, which then
	// reads back what was written (not zeros, as when the write lands in
	// the freed page).
	if err := m.MAdvise(ctx, a, hostarch.PageSize, AdvDontNeed); err != nil {
		t.Fatal(err)
	}
	writeTwice("DDDDDDDD")

	// The mapping replaced by another at the same address.
	if err := m.MUnmap(ctx, a, hostarch.PageSize); err != nil {
		t.Fatal(err)
	}
	o := anonOpts(hostarch.PageSize)
	o.Addr, o.Fixed = a, true
	if b, err := m.MMap(ctx, o); err != nil || b != a {
		t.Fatalf("MMap at %#x = %#x, %v", a, b, err)
	}
	writeTwice("EEEEEEEE")
}
