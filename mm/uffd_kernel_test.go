package mm

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
)

// TestUffdKernelUserfault checks where a system call's buffer access
// would wait: the first missing page of a range registered with a context
// made without UFFD_USER_MODE_ONLY, never one of a user-mode-only
// context, nor past a page that faults otherwise.
func TestUffdKernelUserfault(t *testing.T) {
	mm := newTestMM(t)
	w := uint64(window)
	mustMap(t, mm, anon(window, 4*pg, hostarch.ReadWrite))
	mustMap(t, mm, anon(window+4*pg, 2*pg, hostarch.Read))
	mustMap(t, mm, anon(window+8*pg, 2*pg, hostarch.ReadWrite))
	u := newUffd(t, mm, 0)
	if _, err := u.Register(ctx, w, 6*pg, UffdioRegisterModeMissing); err != nil {
		t.Fatal(err)
	}
	um, err := NewUserfaultfd(mm, UffdUserModeOnly)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { um.Release(ctx) })
	if _, _, err := um.API(UffdAPI, 0, false); err != nil {
		t.Fatal(err)
	}
	if _, err := um.Register(ctx, w+8*pg, 2*pg, UffdioRegisterModeMissing); err != nil {
		t.Fatal(err)
	}
	if _, err := mm.CopyOut(ctx, window, []byte("x"), IOOpts{}); err == nil {
		t.Fatal("CopyOut into a missing page succeeded")
	}
	if _, _, err := u.ZeroPage(ctx, w, pg, 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		ar    hostarch.AddrRange
		at    hostarch.AccessType
		want  hostarch.Addr
		found bool
	}{
		{"filled page, then missing", hostarch.AddrRange{Start: window + 10, End: window + 2*pg}, hostarch.Write, window + pg, true},
		{"unaligned start", hostarch.AddrRange{Start: window + pg + 7, End: window + pg + 9}, hostarch.Read, window + pg + 7, true},
		{"filled page only", hostarch.AddrRange{Start: window, End: window + pg}, hostarch.Write, 0, false},
		{"read-only vma, write", hostarch.AddrRange{Start: window + 4*pg, End: window + 5*pg}, hostarch.Write, 0, false},
		{"read-only vma, read", hostarch.AddrRange{Start: window + 4*pg, End: window + 5*pg}, hostarch.Read, window + 4*pg, true},
		{"hole ends the search", hostarch.AddrRange{Start: window + 6*pg, End: window + 9*pg}, hostarch.Read, 0, false},
		{"user-mode-only context", hostarch.AddrRange{Start: window + 8*pg, End: window + 10*pg}, hostarch.Write, 0, false},
	} {
		got, ok := mm.KernelUserfault(ctx, tc.ar, tc.at)
		if ok != tc.found || got != tc.want {
			t.Errorf("%s: KernelUserfault = %v %v, want %v %v", tc.name, got, ok, tc.want, tc.found)
		}
	}
	if n := len(u.Messages()) + len(um.Messages()); n != 0 {
		t.Errorf("KernelUserfault queued %d messages", n)
	}
}

// TestUffdWPUnpopulated checks UFFD_FEATURE_WP_UNPOPULATED: a write to a
// page never populated in a write-protected range is a write-protect
// fault, a read maps it still protected; without the feature such pages
// are not protected, and unregistering drops the markers.
func TestUffdWPUnpopulated(t *testing.T) {
	mm := newTestMM(t)
	w := uint64(window)
	mustMap(t, mm, anon(window, 8*pg, hostarch.ReadWrite))
	u := newUffd(t, mm, UffdFeaturePagefaultFlagWP|UffdFeatureWPUnpopulated)
	if _, err := u.Register(ctx, w, 4*pg, UffdioRegisterModeWP); err != nil {
		t.Fatal(err)
	}
	if err := u.WriteProtect(ctx, w, 4*pg, UffdioWriteprotectModeWP); err != nil {
		t.Fatal(err)
	}
	mustUserfault(t, mm, window+pg, hostarch.Write)
	if m := u.Messages(); len(m) != 1 || m[0].Flags != UffdPagefaultFlagWrite|UffdPagefaultFlagWP {
		t.Fatalf("messages %+v", m)
	}
	if err := mm.HandleUserFault(ctx, window+2*pg, hostarch.Read, 0); err != nil {
		t.Fatalf("read of a marked page: %v", err)
	}
	mustUserfault(t, mm, window+2*pg, hostarch.Write)
	if err := u.WriteProtect(ctx, w, 4*pg, 0); err != nil {
		t.Fatal(err)
	}
	if err := mm.HandleUserFault(ctx, window+3*pg, hostarch.Write, 0); err != nil {
		t.Fatalf("write after un-protect: %v", err)
	}
	// Without the feature.
	u2 := newUffd(t, mm, UffdFeaturePagefaultFlagWP)
	if _, err := u2.Register(ctx, w+4*pg, 4*pg, UffdioRegisterModeWP); err != nil {
		t.Fatal(err)
	}
	if err := u2.WriteProtect(ctx, w+4*pg, 4*pg, UffdioWriteprotectModeWP); err != nil {
		t.Fatal(err)
	}
	if err := mm.HandleUserFault(ctx, window+5*pg, hostarch.Write, 0); err != nil {
		t.Fatalf("write to an unpopulated page without WP_UNPOPULATED: %v", err)
	}
	// Unregistering drops markers.
	if err := u.WriteProtect(ctx, w, 4*pg, UffdioWriteprotectModeWP); err != nil {
		t.Fatal(err)
	}
	if err := u.Unregister(ctx, w, 4*pg); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Register(ctx, w, 4*pg, UffdioRegisterModeWP); err != nil {
		t.Fatal(err)
	}
	if err := mm.HandleUserFault(ctx, window, hostarch.Write, 0); err != nil {
		t.Fatalf("write after re-registration: %v", err)
	}
}
