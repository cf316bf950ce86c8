package mm

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"golang.org/x/sys/unix"
)

const pg = hostarch.PageSize

// newUffd returns a context of mm with UFFDIO_API done with features.
func newUffd(t *testing.T, mm *MemoryManager, features uint64) *Userfaultfd {
	t.Helper()
	u, err := NewUserfaultfd(mm, 0)
	if err != nil {
		t.Fatalf("NewUserfaultfd: %v", err)
	}
	t.Cleanup(func() { u.Release(ctx) })
	if _, _, err := u.API(UffdAPI, features, true); err != nil {
		t.Fatalf("UFFDIO_API: %v", err)
	}
	return u
}

// sharedAnonMM returns a test manager that can map shared anonymous memory.
func sharedAnonMM(t *testing.T) *MemoryManager {
	mm := newTestMM(t)
	mm.SetSharedAnonFactory(func(ctx context.Context, n uint64) (MappableFile, error) {
		return hostfile.NewSharedAnon(ctx, mm.mf, n)
	})
	return mm
}

func TestUffdAPI(t *testing.T) {
	mm := newTestMM(t)
	for _, tc := range []struct {
		name      string
		api, feat uint64
		ptrace    bool
		want      error
	}{
		{"wrong api", 0xAB, 0, true, unix.EINVAL},
		{"fork event unprivileged", UffdAPI, UffdFeatureEventFork, false, unix.EPERM},
		{"unknown feature", UffdAPI, 1 << 17, true, unix.EINVAL},
		{"ok", UffdAPI, UffdFeatureEventFork | UffdFeatureMove, true, nil},
	} {
		u, _ := NewUserfaultfd(mm, 0)
		f, io, err := u.API(tc.api, tc.feat, tc.ptrace)
		if !errors.Is(err, tc.want) && err != tc.want {
			t.Errorf("%s: UFFDIO_API = %v, want %v", tc.name, err, tc.want)
		}
		if err == nil && (f != UffdAPIFeatures || io != 0x8000000000000003) {
			t.Errorf("%s: features %#x ioctls %#x", tc.name, f, io)
		}
		if err != nil && (f != 0 || io != 0) {
			t.Errorf("%s: failed UFFDIO_API wrote %#x %#x, want zeros", tc.name, f, io)
		}
		if err == nil {
			if _, _, err := u.API(UffdAPI, 0, true); err != unix.EINVAL {
				t.Errorf("second UFFDIO_API = %v, want EINVAL", err)
			}
		} else if u.Initialized() {
			t.Errorf("%s: failed UFFDIO_API initialized the context", tc.name)
		}
	}
	// Before UFFDIO_API every ioctl is EINVAL.
	u, _ := NewUserfaultfd(mm, 0)
	mustMap(t, mm, anon(window, 4*pg, hostarch.ReadWrite))
	if _, err := u.Register(ctx, uint64(window), pg, UffdioRegisterModeMissing); err != unix.EINVAL {
		t.Errorf("REGISTER before API = %v", err)
	}
	if err := u.Wake(uint64(window), pg); err != unix.EINVAL {
		t.Errorf("WAKE before API = %v", err)
	}
	if _, err := NewUserfaultfd(mm, 4); err != unix.EINVAL {
		t.Errorf("userfaultfd(4) = %v, want EINVAL", err)
	}
}

func TestUffdRegisterErrors(t *testing.T) {
	mm := sharedAnonMM(t)
	w := uint64(window)
	mustMap(t, mm, anon(window, 4*pg, hostarch.ReadWrite))
	if _, err := mm.DoMMap(ctx, DoMMapOpts{Addr: window + 8*pg, Length: 2 * pg, Perms: hostarch.ReadWrite, Type: MapTypeShared, Fixed: true}); err != nil {
		t.Fatal(err)
	}
	other := newUffd(t, mm, 0)
	mustMap(t, mm, anon(window+16*pg, 2*pg, hostarch.ReadWrite))
	if _, err := other.Register(ctx, w+16*pg, 2*pg, UffdioRegisterModeMissing); err != nil {
		t.Fatal(err)
	}
	u := newUffd(t, mm, 0)
	const missing, wp, minor = UffdioRegisterModeMissing, UffdioRegisterModeWP, UffdioRegisterModeMinor
	for _, tc := range []struct {
		name             string
		start, len, mode uint64
		want             error
		ioctls           uint64
	}{
		{"no mode", w, pg, 0, unix.EINVAL, 0},
		{"unknown mode", w, pg, 8, unix.EINVAL, 0},
		{"unaligned start", w + 1, pg, missing, unix.EINVAL, 0},
		{"unaligned length", w, 100, missing, unix.EINVAL, 0},
		{"zero length", w, 0, missing, unix.EINVAL, 0},
		{"below mmap_min_addr", 0, pg, missing, unix.EINVAL, 0},
		{"past TASK_SIZE", uint64(mm.p.MaxUserAddress()), pg, missing, unix.EINVAL, 0},
		{"no vma", w + 4*pg, 4 * pg, missing, unix.EINVAL, 0},
		{"minor on anonymous", w, pg, minor, unix.EINVAL, 0},
		{"other context", w + 16*pg, pg, missing, unix.EBUSY, 0},
		{"missing", w, 2 * pg, missing, nil, 0x13c},
		{"missing and wp over a hole", w, 12 * pg, missing | wp, nil, 0x17c},
		{"minor on shmem", w + 8*pg, pg, minor, nil, 0x1bc},
	} {
		io, err := u.Register(ctx, tc.start, tc.len, tc.mode)
		if err != tc.want || io != tc.ioctls {
			t.Errorf("%s: REGISTER = %#x, %v; want %#x, %v", tc.name, io, err, tc.ioctls, tc.want)
		}
	}
	check(t, mm)
	// A shared mapping without write access to its memory.
	if err := mm.MUnmap(ctx, window+8*pg, 2*pg); err != nil {
		t.Fatal(err)
	}
	if _, err := mm.DoMMap(ctx, DoMMapOpts{Addr: window + 8*pg, Length: 2 * pg, Perms: hostarch.Read, Type: MapTypeShared, Fixed: true}); err != nil {
		t.Fatal(err)
	}
	if err := mm.MProtect(ctx, window+8*pg, 2*pg, hostarch.Read, MProtectOpts{}); err != nil {
		t.Fatal(err)
	}
	// UNREGISTER: a range with no vma, and a good one.
	if err := u.Unregister(ctx, w+4*pg, 4*pg); err != unix.EINVAL {
		t.Errorf("UNREGISTER of a hole = %v", err)
	}
	if err := u.Unregister(ctx, w, 16*pg); err != nil {
		t.Errorf("UNREGISTER = %v", err)
	}
	if s := mm.SmapsText(ctx); strings.Count(s, " um ") != 1 {
		t.Errorf("smaps after UNREGISTER shows um other than the other context's:\n%s", s)
	}
}

// fault faults at addr and returns the userfault it waits on.
func mustUserfault(t *testing.T, mm *MemoryManager, addr hostarch.Addr, at hostarch.AccessType) *Userfault {
	t.Helper()
	err := mm.HandleUserFault(ctx, addr, at, 0)
	var ue *UserfaultError
	if !errors.As(err, &ue) || ue.Fault == nil {
		t.Fatalf("fault at %v (%v) = %v, want a userfault", addr, at, err)
	}
	return ue.Fault
}

func TestUffdMissingCopyZeropage(t *testing.T) {
	mm := newTestMM(t)
	w := uint64(window)
	mustMap(t, mm, anon(window, 8*pg, hostarch.ReadWrite))
	src := mustMap(t, mm, anon(window+0x100000, 2*pg, hostarch.ReadWrite))
	data := bytes.Repeat([]byte("uffd"), int(pg)/4)
	if _, err := mm.CopyOut(ctx, src, data, IOOpts{}); err != nil {
		t.Fatal(err)
	}
	u := newUffd(t, mm, UffdFeatureThreadID)
	if _, err := u.Register(ctx, w, 8*pg, UffdioRegisterModeMissing); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(mm.SmapsText(ctx), "VmFlags: rd wr mr mw me gd"[:0]+" um ") {
		t.Errorf("smaps lacks um:\n%s", mm.SmapsText(ctx))
	}
	f := mustUserfault(t, mm, window+pg+5, hostarch.Write)
	if mm.HandleUserFault(WithFaultingThread(ctx, 77), window+5*pg, hostarch.Read, 0) == nil {
		t.Fatal("second fault served")
	}
	msgs := u.Messages()
	if len(msgs) != 2 || msgs[0].Event != UffdEventPagefault || msgs[0].Address != w+pg || msgs[0].Flags != UffdPagefaultFlagWrite ||
		msgs[1].Address != w+5*pg || msgs[1].Flags != 0 || msgs[1].PTID != 77 {
		t.Fatalf("messages %+v", msgs)
	}
	if b := msgs[1].Marshal(0); b[0] != 0x12 || b[16] != 0 || b[24] != 77 {
		t.Errorf("marshalled % x", b)
	}
	if f.Woken() || u.Waiting() != 2 {
		t.Fatalf("woken %v waiting %d before COPY", f.Woken(), u.Waiting())
	}
	// Errors of COPY.
	for _, tc := range []struct {
		name                string
		dst, src, len, mode uint64
		want                error
	}{
		{"unaligned dst", w + 1, uint64(src), pg, 0, unix.EINVAL},
		{"zero length", w, uint64(src), 0, 0, unix.EINVAL},
		{"null src", w, 0, pg, 0, unix.EFAULT},
		{"bad mode", w, uint64(src), pg, 4, unix.EINVAL},
		{"past the vma", w + 6*pg, uint64(src), 4 * pg, 0, unix.ENOENT},
		{"unregistered", uint64(src), uint64(src), pg, 0, unix.ENOENT},
		{"wp without wp registration", w, uint64(src), pg, UffdioCopyModeWP, unix.EINVAL},
		{"unreadable src", w, w + 0x400000, pg, 0, unix.EFAULT},
	} {
		if n, _, err := u.Copy(ctx, tc.dst, tc.src, tc.len, tc.mode, mm); n != 0 || err != tc.want {
			t.Errorf("COPY %s = %d, %v; want %v", tc.name, n, err, tc.want)
		}
	}
	n, _, err := u.Copy(ctx, w+pg, uint64(src), pg, 0, mm)
	if n != pg || err != nil {
		t.Fatalf("COPY = %d, %v", n, err)
	}
	if !f.Woken() || u.Waiting() != 1 {
		t.Fatalf("woken %v waiting %d after COPY", f.Woken(), u.Waiting())
	}
	if err := mm.HandleUserFault(ctx, window+pg, hostarch.Write, 0); err != nil {
		t.Fatalf("retried fault: %v", err)
	}
	got := make([]byte, pg)
	if _, err := mm.CopyIn(ctx, window+pg, got, IOOpts{}); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("copied page reads %q..., %v", got[:8], err)
	}
	if n, _, err := u.Copy(ctx, w, uint64(src), 2*pg, 0, mm); n != pg || err != unix.EEXIST {
		t.Errorf("COPY over a present page = %d, %v; want one page, EEXIST", n, err)
	}
	if v, err := UffdioResult(pg, 2*pg, unix.EEXIST); v != int64(pg) || err != unix.EAGAIN {
		t.Errorf("partial result %d %v", v, err)
	}
	if v, err := UffdioResult(0, 2*pg, unix.EEXIST); v != -int64(unix.EEXIST) || err != unix.EEXIST {
		t.Errorf("failed result %d %v", v, err)
	}
	// ZEROPAGE with DONTWAKE leaves the fault waiting until WAKE.
	if n, _, err := u.ZeroPage(ctx, w+5*pg, pg, 2); n != 0 || err != unix.EINVAL {
		t.Errorf("ZEROPAGE bad mode = %d, %v", n, err)
	}
	if n, _, err := u.ZeroPage(ctx, w+4*pg, 2*pg, UffdioZeropageModeDontWake); n != 2*pg || err != nil {
		t.Fatalf("ZEROPAGE = %d, %v", n, err)
	}
	if u.Waiting() != 1 {
		t.Fatal("ZEROPAGE_MODE_DONTWAKE woke")
	}
	if err := u.Wake(w+5*pg, pg); err != nil || u.Waiting() != 0 {
		t.Fatalf("WAKE = %v, waiting %d", err, u.Waiting())
	}
	if _, err := mm.CopyIn(ctx, window+5*pg, got, IOOpts{}); err != nil || !bytes.Equal(got, make([]byte, pg)) {
		t.Fatalf("zero page reads %v, %v", got[:8], err)
	}
	// I/O by the embedder never waits: EFAULT.
	if _, err := mm.CopyIn(ctx, window+7*pg, got, IOOpts{}); !errors.Is(err, unix.EFAULT) {
		t.Errorf("CopyIn of a missing page = %v, want EFAULT", err)
	}
	if len(u.Messages()) != 0 {
		t.Error("embedder I/O queued a message")
	}
	check(t, mm)
}

func TestUffdWriteProtect(t *testing.T) {
	mm := newTestMM(t)
	w := uint64(window)
	mustMap(t, mm, anon(window, 4*pg, hostarch.ReadWrite))
	mustMap(t, mm, anon(window+8*pg, 4*pg, hostarch.ReadWrite))
	u := newUffd(t, mm, UffdFeaturePagefaultFlagWP)
	if _, err := u.Register(ctx, w, 4*pg, UffdioRegisterModeWP); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(mm.SmapsText(ctx), " uw ") {
		t.Errorf("smaps lacks uw:\n%s", mm.SmapsText(ctx))
	}
	// Without missing mode, faults allocate.
	if _, err := mm.CopyOut(ctx, window, []byte("before"), IOOpts{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name             string
		start, len, mode uint64
		want             error
	}{
		{"wp and dontwake", w, pg, UffdioWriteprotectModeWP | UffdioWriteprotectModeDontWk, unix.EINVAL},
		{"bad mode", w, pg, 4, unix.EINVAL},
		{"not registered", w + 8*pg, pg, UffdioWriteprotectModeWP, unix.ENOENT},
		{"hole", w + 4*pg, 4 * pg, UffdioWriteprotectModeWP, unix.ENOENT},
		{"ok", w, 4 * pg, UffdioWriteprotectModeWP, nil},
	} {
		if err := u.WriteProtect(ctx, tc.start, tc.len, tc.mode); err != tc.want {
			t.Errorf("WRITEPROTECT %s = %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := mm.HandleUserFault(ctx, window+3, hostarch.Read, 0); err != nil {
		t.Fatalf("read of a protected page: %v", err)
	}
	f := mustUserfault(t, mm, window+3, hostarch.Write)
	if m := u.Messages(); len(m) != 1 || m[0].Flags != UffdPagefaultFlagWP|UffdPagefaultFlagWrite || m[0].Address != w {
		t.Fatalf("messages %+v", m)
	}
	// mprotect keeps the protection.
	if err := mm.MProtect(ctx, window, 4*pg, hostarch.ReadWrite, MProtectOpts{}); err != nil {
		t.Fatal(err)
	}
	mustUserfault(t, mm, window+3, hostarch.Write)
	if _, err := mm.CopyOut(ctx, window, []byte("x"), IOOpts{}); !errors.Is(err, unix.EFAULT) {
		t.Errorf("CopyOut to a protected page = %v", err)
	}
	if err := u.WriteProtect(ctx, w, pg, 0); err != nil {
		t.Fatal(err)
	}
	if !f.Woken() {
		t.Fatal("un-protecting did not wake")
	}
	if err := mm.HandleUserFault(ctx, window+3, hostarch.Write, 0); err != nil {
		t.Fatalf("write after un-protecting: %v", err)
	}
	// COPY with WP installs a protected page.
	if _, err := u.Register(ctx, w, 4*pg, UffdioRegisterModeWP|UffdioRegisterModeMissing); err != nil {
		t.Fatal(err)
	}
	if err := mm.MAdvise(ctx, window+2*pg, pg, AdvDontNeed); err != nil {
		t.Fatal(err)
	}
	if n, _, err := u.Copy(ctx, w+2*pg, w, pg, UffdioCopyModeWP, mm); n != pg || err != nil {
		t.Fatalf("COPY WP = %d, %v", n, err)
	}
	if err := mm.HandleUserFault(ctx, window+2*pg, hostarch.Read, 0); err != nil {
		t.Fatal(err)
	}
	mustUserfault(t, mm, window+2*pg, hostarch.Write)
	// Unregistering removes protection and wakes.
	if err := u.Unregister(ctx, w, 4*pg); err != nil {
		t.Fatal(err)
	}
	if err := mm.HandleUserFault(ctx, window+2*pg, hostarch.Write, 0); err != nil {
		t.Fatalf("write after UNREGISTER: %v", err)
	}
	check(t, mm)
}

func TestUffdAsyncWP(t *testing.T) {
	mm := newTestMM(t)
	w := uint64(window)
	mustMap(t, mm, anon(window, 2*pg, hostarch.ReadWrite))
	if _, err := mm.CopyOut(ctx, window, []byte("a"), IOOpts{}); err != nil {
		t.Fatal(err)
	}
	u := newUffd(t, mm, UffdFeatureWPAsync)
	if _, err := u.Register(ctx, w, 2*pg, UffdioRegisterModeWP); err != nil {
		t.Fatal(err)
	}
	if err := u.WriteProtect(ctx, w, 2*pg, UffdioWriteprotectModeWP); err != nil {
		t.Fatal(err)
	}
	if err := mm.HandleUserFault(ctx, window, hostarch.Write, 0); err != nil {
		t.Fatalf("async wp write: %v", err)
	}
	if len(u.Messages()) != 0 {
		t.Error("async wp queued a message")
	}
}

func TestUffdEvents(t *testing.T) {
	mm := newTestMM(t)
	w := uint64(window)
	mustMap(t, mm, anon(window, 8*pg, hostarch.ReadWrite))
	u := newUffd(t, mm, UffdFeatureEventUnmap|UffdFeatureEventRemove|UffdFeatureEventRemap|UffdFeatureEventFork)
	if _, err := u.Register(ctx, w, 8*pg, UffdioRegisterModeMissing); err != nil {
		t.Fatal(err)
	}
	if err := mm.MAdvise(ctx, window+pg, 2*pg, AdvDontNeed); err != nil {
		t.Fatal(err)
	}
	if err := mm.MUnmap(ctx, window+7*pg, 4*pg); err != nil {
		t.Fatal(err)
	}
	to := window + 0x100000
	if _, err := mm.MRemap(ctx, window+4*pg, 2*pg, 2*pg, MRemapOpts{MayMove: true, Fixed: true, NewAddr: to}); err != nil {
		t.Fatal(err)
	}
	child, err := mm.Fork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer child.DecUsers(ctx)
	want := []UffdMsg{
		{Event: UffdEventRemove, Start: w + pg, End: w + 3*pg},
		{Event: UffdEventUnmap, Start: w + 7*pg, End: w + 11*pg},
		{Event: UffdEventRemap, From: w + 4*pg, To: uint64(to), Len: 2 * pg},
		{Event: UffdEventUnmap, Start: w + 4*pg, End: w + 6*pg},
		{Event: UffdEventFork},
	}
	got := u.Messages()
	if len(got) != len(want) {
		t.Fatalf("messages %+v, want %+v", got, want)
	}
	for i := range want {
		g := got[i]
		g.Child = nil
		if g != want[i] {
			t.Errorf("message %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	c := got[4].Child
	if c == nil || c.MemoryManager() != child || !c.Initialized() {
		t.Fatalf("fork child context %+v", c)
	}
	// The moved range stayed registered; the child's ranges are its
	// context's.
	mustUserfault(t, mm, to, hostarch.Read)
	mustUserfault(t, child, window+pg, hostarch.Read)
	if len(c.Messages()) != 1 {
		t.Error("child fault not queued on the child context")
	}
	c.Release(ctx)
	if err := child.HandleUserFault(ctx, window+pg, hostarch.Read, 0); err != nil {
		t.Errorf("fault after the child context's release: %v", err)
	}

	// Without the features: no events, the moved and forked ranges
	// lose their registration.
	mm2 := newTestMM(t)
	mustMap(t, mm2, anon(window, 8*pg, hostarch.ReadWrite))
	u2 := newUffd(t, mm2, 0)
	if _, err := u2.Register(ctx, w, 8*pg, UffdioRegisterModeMissing); err != nil {
		t.Fatal(err)
	}
	if _, err := mm2.MRemap(ctx, window+4*pg, 2*pg, 2*pg, MRemapOpts{MayMove: true, Fixed: true, NewAddr: to}); err != nil {
		t.Fatal(err)
	}
	if err := mm2.HandleUserFault(ctx, to, hostarch.Read, 0); err != nil {
		t.Errorf("fault in a moved range without EVENT_REMAP: %v", err)
	}
	child2, err := mm2.Fork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer child2.DecUsers(ctx)
	if err := child2.HandleUserFault(ctx, window, hostarch.Read, 0); err != nil {
		t.Errorf("fault in a forked range without EVENT_FORK: %v", err)
	}
	if m := u2.Messages(); len(m) != 0 {
		t.Errorf("messages without event features: %+v", m)
	}
}

func TestUffdRelease(t *testing.T) {
	mm := newTestMM(t)
	w := uint64(window)
	mustMap(t, mm, anon(window, 4*pg, hostarch.ReadWrite))
	u := newUffd(t, mm, 0)
	if _, err := u.Register(ctx, w, 4*pg, UffdioRegisterModeMissing|UffdioRegisterModeWP); err != nil {
		t.Fatal(err)
	}
	f := mustUserfault(t, mm, window, hostarch.Read)
	u.Release(ctx)
	if !f.Woken() {
		t.Error("release did not wake")
	}
	if err := mm.HandleUserFault(ctx, window, hostarch.Write, 0); err != nil {
		t.Errorf("fault after release: %v", err)
	}
	if strings.Contains(mm.SmapsText(ctx), " um") {
		t.Error("registration left after release")
	}
	// Another context may register now.
	if err := mm.MAdvise(ctx, window, 4*pg, AdvDontNeed); err != nil {
		t.Fatal(err)
	}
	u2 := newUffd(t, mm, UffdFeatureSigbus)
	if _, err := u2.Register(ctx, w, 4*pg, UffdioRegisterModeMissing); err != nil {
		t.Fatal(err)
	}
	var ae *AccessError
	if err := mm.HandleUserFault(ctx, window+pg, hostarch.Read, 0); !errors.As(err, &ae) || ae.Signal != unix.SIGBUS {
		t.Errorf("UFFD_FEATURE_SIGBUS fault = %v", err)
	}
	check(t, mm)
}

func TestUffdMovePoison(t *testing.T) {
	mm := newTestMM(t)
	w := uint64(window)
	mustMap(t, mm, anon(window, 8*pg, hostarch.ReadWrite))
	src := mustMap(t, mm, anon(window+0x100000, 2*pg, hostarch.ReadWrite))
	if _, err := mm.CopyOut(ctx, src, []byte("moved"), IOOpts{}); err != nil {
		t.Fatal(err)
	}
	if err := mm.MAdvise(ctx, src+pg, pg, AdvDontNeed); err != nil {
		t.Fatal(err)
	}
	u := newUffd(t, mm, UffdFeatureMove|UffdFeaturePoison)
	if _, err := u.Register(ctx, w, 8*pg, UffdioRegisterModeMissing); err != nil {
		t.Fatal(err)
	}
	f := mustUserfault(t, mm, window, hostarch.Read)
	other := newTestMM(t)
	if n, _, err := u.Move(ctx, w, uint64(src), pg, 0, other); n != 0 || err != unix.EINVAL {
		t.Errorf("MOVE from another mm = %d, %v", n, err)
	}
	if n, _, err := u.Move(ctx, w, uint64(src)+pg, pg, 0, mm); n != 0 || err != unix.ENOENT {
		t.Errorf("MOVE of a hole = %d, %v", n, err)
	}
	if n, _, err := u.Move(ctx, w, uint64(src), 2*pg, UffdioMoveModeAllowSrcHoles, mm); n != 2*pg || err != nil {
		t.Fatalf("MOVE = %d, %v", n, err)
	}
	if !f.Woken() {
		t.Error("MOVE did not wake")
	}
	got := make([]byte, 5)
	if _, err := mm.CopyIn(ctx, window, got, IOOpts{}); err != nil || string(got) != "moved" {
		t.Errorf("moved page reads %q, %v", got, err)
	}
	if _, err := mm.CopyIn(ctx, src, got, IOOpts{}); err != nil || string(got) != "\x00\x00\x00\x00\x00" {
		t.Errorf("source page after MOVE reads %q, %v", got, err)
	}
	if n, _, err := u.Move(ctx, w, uint64(src), pg, 0, mm); n != 0 || err != unix.EEXIST {
		t.Errorf("MOVE onto a page = %d, %v", n, err)
	}
	if n, _, err := u.Poison(ctx, w+4*pg, pg, 0); n != pg || err != nil {
		t.Fatalf("POISON = %d, %v", n, err)
	}
	if n, _, err := u.Poison(ctx, w+4*pg, pg, 0); n != 0 || err != unix.EEXIST {
		t.Errorf("POISON twice = %d, %v", n, err)
	}
	var ae *AccessError
	if err := mm.HandleUserFault(ctx, window+4*pg, hostarch.Read, 0); !errors.As(err, &ae) || ae.Signal != unix.SIGBUS {
		t.Errorf("access to a poisoned page = %v", err)
	}
	if n, _, err := u.Continue(ctx, w+5*pg, pg, 0); n != 0 || err != unix.EINVAL {
		t.Errorf("CONTINUE on anonymous memory = %d, %v", n, err)
	}
	if err := mm.MAdvise(ctx, window+4*pg, pg, AdvDontNeed); err != nil {
		t.Fatal(err)
	}
	mustUserfault(t, mm, window+4*pg, hostarch.Read)
	check(t, mm)
}

func TestUffdRefusesSave(t *testing.T) {
	mm := newTestMM(t)
	mustMap(t, mm, anon(window, 2*pg, hostarch.ReadWrite))
	u := newUffd(t, mm, 0)
	if _, err := u.Register(ctx, uint64(window), 2*pg, UffdioRegisterModeMissing); err != nil {
		t.Fatal(err)
	}
	mm.mappingMu.RLock()
	rt := mm.activeMu.RLock()
	err := mm.uffdSaveCheckLocked()
	mm.activeMu.RUnlock(rt)
	mm.mappingMu.RUnlock()
	if err == nil {
		t.Error("a registered manager may be saved")
	}
}

func TestUffdShmem(t *testing.T) {
	mm := sharedAnonMM(t)
	w := uint64(window)
	if _, err := mm.DoMMap(ctx, DoMMapOpts{Addr: window, Length: 4 * pg, Perms: hostarch.ReadWrite, Type: MapTypeShared, Fixed: true}); err != nil {
		t.Fatal(err)
	}
	// Page 0 is in the file before registration.
	if _, err := mm.CopyOut(ctx, window, []byte("held"), IOOpts{}); err != nil {
		t.Fatal(err)
	}
	if err := mm.MAdvise(ctx, window, 4*pg, AdvDontNeed); err != nil {
		t.Fatal(err)
	}
	src := mustMap(t, mm, anon(window+0x100000, pg, hostarch.ReadWrite))
	u := newUffd(t, mm, 0)
	if _, err := u.Register(ctx, w, 4*pg, UffdioRegisterModeMissing|UffdioRegisterModeMinor); err != nil {
		t.Fatal(err)
	}
	mustUserfault(t, mm, window, hostarch.Read)
	mustUserfault(t, mm, window+pg, hostarch.Read)
	m := u.Messages()
	if len(m) != 2 || m[0].Flags != UffdPagefaultFlagMinor || m[1].Flags != 0 {
		t.Fatalf("messages %+v, want a minor fault then a missing one", m)
	}
	for _, tc := range []struct {
		name string
		fill func() (uint64, bool, error)
		n    uint64
		want error
	}{
		{"COPY of a held page", func() (uint64, bool, error) { return u.Copy(ctx, w, uint64(src), pg, 0, mm) }, 0, unix.EEXIST},
		{"CONTINUE of a missing page", func() (uint64, bool, error) { return u.Continue(ctx, w+pg, pg, 0) }, 0, unix.EFAULT},
		{"CONTINUE", func() (uint64, bool, error) { return u.Continue(ctx, w, pg, 0) }, pg, nil},
		{"CONTINUE of a mapped page", func() (uint64, bool, error) { return u.Continue(ctx, w, pg, 0) }, 0, unix.EEXIST},
		{"ZEROPAGE", func() (uint64, bool, error) { return u.ZeroPage(ctx, w+pg, pg, 0) }, pg, nil},
	} {
		if n, _, err := tc.fill(); n != tc.n || err != tc.want {
			t.Errorf("%s = %d, %v; want %d, %v", tc.name, n, err, tc.n, tc.want)
		}
	}
	got := make([]byte, 4)
	if _, err := mm.CopyIn(ctx, window, got, IOOpts{}); err != nil || string(got) != "held" {
		t.Errorf("continued page reads %q, %v", got, err)
	}
	if u.Waiting() != 0 {
		t.Errorf("%d faults still wait", u.Waiting())
	}
	// Page 3 faults on its own: the fills mapped only their pages.
	mustUserfault(t, mm, window+3*pg, hostarch.Read)
	check(t, mm)
}
