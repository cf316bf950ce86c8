package mm

import (
	"context"
	"errors"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
)

// TestForcedAccess checks /proc/PID/mem's rules (Linux's FOLL_FORCE): a
// write to a read-only private page breaks copy-on-write and leaves the
// page read-only; PROT_NONE memory is read; a read-only shared mapping,
// guard pages and holes are never accessed, and an access stops at them.
func TestForcedAccess(t *testing.T) {
	mf := newMF(t, 0)
	m := New(Options{MemoryFile: mf})
	defer m.DecUsers(ctx)
	mk := hostfile.SharedAnonFactory(mf)
	m.SetSharedAnonFactory(func(ctx context.Context, n uint64) (MappableFile, error) { return mk(ctx, n) })
	const pg = hostarch.PageSize
	a := mustMap(t, m, anon(window, 4*pg, hostarch.ReadWrite))
	if _, err := m.CopyOut(ctx, a, []byte("parent"), IOOpts{}); err != nil {
		t.Fatal(err)
	}
	child, err := m.Fork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer child.DecUsers(ctx)
	if err := m.MProtect(ctx, a, pg, hostarch.Read, MProtectOpts{}); err != nil {
		t.Fatal(err)
	}
	if n, err := m.CopyOut(ctx, a, []byte("x"), IOOpts{}); n != 0 || err == nil {
		t.Fatalf("plain CopyOut to a read-only page = %d, %v", n, err)
	}
	if n, err := m.ForcedCopyOut(ctx, a, []byte("forced")); n != 6 || err != nil {
		t.Fatalf("ForcedCopyOut to a read-only private page = %d, %v", n, err)
	}
	buf := make([]byte, 6)
	m.CopyIn(ctx, a, buf, IOOpts{})
	if string(buf) != "forced" {
		t.Errorf("after the forced write the page reads %q", buf)
	}
	child.CopyIn(ctx, a, buf, IOOpts{})
	if string(buf) != "parent" {
		t.Errorf("the fork child sees the forced write: %q (copy-on-write not broken)", buf)
	}
	if r := m.Regions(hostarch.AddrRange{Start: a, End: a + pg}); len(r) != 1 || r[0].Perms != "r--p" {
		t.Errorf("the forced write changed the vma: %+v", r)
	}
	if err := CheckPrivateRefs(m, child); err != nil {
		t.Error(err)
	}

	// PROT_NONE memory is read (and reads as zero).
	if err := m.MProtect(ctx, a+pg, pg, hostarch.NoAccess, MProtectOpts{}); err != nil {
		t.Fatal(err)
	}
	if n, err := m.CopyIn(ctx, a+pg, buf, IOOpts{}); n != 0 || err == nil {
		t.Fatalf("plain CopyIn of PROT_NONE = %d, %v", n, err)
	}
	if n, err := m.ForcedCopyIn(ctx, a+pg, buf); n != len(buf) || err != nil || string(buf) != "\x00\x00\x00\x00\x00\x00" {
		t.Errorf("ForcedCopyIn of PROT_NONE = %d, %v, %q", n, err, buf)
	}

	// A read stops at the end of the mapping, and at a guard page, with
	// the bytes before read.
	var ae *AccessError
	if n, err := m.ForcedCopyIn(ctx, a+4*pg-2, buf); n != 2 || !errors.As(err, &ae) || ae.Addr != a+4*pg {
		t.Errorf("ForcedCopyIn past the mapping = %d, %v", n, err)
	}
	if err := m.MAdvise(ctx, a+3*pg, pg, AdvGuardInstall); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 2*pg)
	n, err := m.ForcedCopyIn(ctx, a+2*pg, big)
	if n != int(pg) || !errors.As(err, &ae) || ae.Addr != a+3*pg {
		t.Errorf("ForcedCopyIn across a guard page = %d, %v; want %d, fault at %v", n, err, pg, a+3*pg)
	}

	// A shared mapping that is not writable is never written; a writable
	// one is.
	s, err := m.mmapFlags(ctx, window+0x100000, pg, ProtRead, MapShared|MapAnonymous|MapFixed, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := m.ForcedCopyOut(ctx, s, []byte("no")); n != 0 || !errors.As(err, &ae) {
		t.Errorf("ForcedCopyOut to a read-only shared mapping = %d, %v", n, err)
	}
	if err := m.MProtect(ctx, s, pg, hostarch.ReadWrite, MProtectOpts{}); err != nil {
		t.Fatal(err)
	}
	if n, err := m.ForcedCopyOut(ctx, s, []byte("ok")); n != 2 || err != nil {
		t.Errorf("ForcedCopyOut to a writable shared mapping = %d, %v", n, err)
	}
	check(t, m)
	check(t, child)
}
