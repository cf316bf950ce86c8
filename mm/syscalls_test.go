package mm

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

func TestMLockLimitsAndAccounting(t *testing.T) {
	mm := newTestMM(t)
	l := mm.Limits()
	l.MemLock = RLimit{0x3000, 0x3000}
	mm.SetLimits(l)
	a := mustMap(t, mm, anon(window, 0x8000, hostarch.ReadWrite))
	if err := mm.MLock(ctx, a, 0x2000, memmap.MLockEager); err != nil {
		t.Fatal(err)
	}
	if got := mm.LockedSize(); got != 0x2000 {
		t.Errorf("VmLck = %#x, want 0x2000", got)
	}
	// Relocking what is locked does not count twice.
	if err := mm.MLock(ctx, a, 0x3000, memmap.MLockEager); err != nil {
		t.Errorf("mlock within limit after overlap: %v", err)
	}
	if err := mm.MLock(ctx, a, 0x8000, memmap.MLockEager); !errors.Is(err, unix.ENOMEM) {
		t.Errorf("mlock past RLIMIT_MEMLOCK = %v, want ENOMEM", err)
	}
	// mlock populates: mincore sees resident pages.
	vec, err := mm.MInCore(ctx, a, 0x4000)
	if err != nil || !bytes.Equal(vec, []byte{1, 1, 1, 0}) {
		t.Errorf("mincore after mlock = %v, %v", vec, err)
	}
	if err := mm.MAdvise(ctx, a, 0x1000, AdvDontNeed); !errors.Is(err, unix.EINVAL) {
		t.Errorf("MADV_DONTNEED on locked memory = %v, want EINVAL", err)
	}
	if _, err := mm.MMap(ctx, memmap.MMapOpts{Length: 0x2000, Private: true, Perms: hostarch.ReadWrite, MaxPerms: hostarch.AnyAccess, MLockMode: memmap.MLockEager}); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("MAP_LOCKED past the limit = %v, want EAGAIN", err)
	}
	if err := mm.MLock(ctx, a, 0x8000, memmap.MLockNone); err != nil {
		t.Fatal(err)
	}
	if got := mm.LockedSize(); got != 0 {
		t.Errorf("VmLck after munlock = %#x", got)
	}
	l.MemLock = RLimit{0, 0}
	mm.SetLimits(l)
	if err := mm.MLock(ctx, a, 0x1000, memmap.MLockEager); !errors.Is(err, unix.EPERM) {
		t.Errorf("mlock with RLIMIT_MEMLOCK 0 = %v, want EPERM", err)
	}
	if err := mm.MLockAll(ctx, MLockAllOpts{}); !errors.Is(err, unix.EINVAL) {
		t.Errorf("mlockall(0) = %v, want EINVAL", err)
	}
	check(t, mm)
}

func TestMLockAllFuture(t *testing.T) {
	mm := newTestMM(t)
	l := mm.Limits()
	l.CapIPCLock = true
	mm.SetLimits(l)
	if err := mm.MLockAll(ctx, MLockAllOpts{Future: true, OnFault: true}); err != nil {
		t.Fatal(err)
	}
	a := mustMap(t, mm, anon(window, 0x2000, hostarch.ReadWrite))
	if got := mm.LockedSize(); got != 0x2000 {
		t.Errorf("VmLck after MCL_FUTURE mmap = %#x", got)
	}
	regs := mm.Regions(hostarch.AddrRange{Start: a, End: a + 0x2000})
	if len(regs) != 1 || !strings.Contains(strings.Join(regs[0].Flags, " "), "lo lf") {
		t.Errorf("regions: %+v", regs)
	}
	child, err := mm.Fork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := child.LockedSize(); got != 0 {
		t.Errorf("child inherited %#x locked bytes", got)
	}
	child.DecUsers(ctx)
	mm.MUnlockAll(ctx)
	check(t, mm)
}

func TestMSeal(t *testing.T) {
	mm := newTestMM(t)
	a := mustMap(t, mm, anon(window, 0x4000, hostarch.ReadWrite))
	if err := mm.MSeal(ctx, a+0x1000, 0x1000, 0); err != nil {
		t.Fatal(err)
	}
	if err := mm.MSeal(ctx, a, 0x1000, 1); !errors.Is(err, unix.EINVAL) {
		t.Errorf("mseal with flags = %v", err)
	}
	if err := mm.MSeal(ctx, a+0x10000, 0x1000, 0); !errors.Is(err, unix.ENOMEM) {
		t.Errorf("mseal of a hole = %v, want ENOMEM", err)
	}
	for name, err := range map[string]error{
		"munmap":   mm.MUnmap(ctx, a, 0x4000),
		"mprotect": mm.MProtect(ctx, a+0x1000, 0x1000, hostarch.Read, MProtectOpts{}),
	} {
		if !errors.Is(err, unix.EPERM) {
			t.Errorf("%s of sealed range = %v, want EPERM", name, err)
		}
	}
	if _, err := mm.MMap(ctx, anon(a, 0x2000, hostarch.Read)); !errors.Is(err, unix.EPERM) {
		t.Errorf("MAP_FIXED over sealed = %v, want EPERM", err)
	}
	if _, err := mm.MRemap(ctx, a+0x1000, 0x1000, 0x2000, MRemapOpts{MayMove: true}); !errors.Is(err, unix.EPERM) {
		t.Errorf("mremap of sealed = %v, want EPERM", err)
	}
	// mprotect changes vmas before the sealed one, like Linux.
	if err := mm.MProtect(ctx, a, 0x4000, hostarch.Read, MProtectOpts{}); !errors.Is(err, unix.EPERM) {
		t.Errorf("mprotect across sealed = %v", err)
	}
	regs := mm.Regions(hostarch.AddrRange{Start: a, End: a + 0x4000})
	if regs[0].Perms != "r--p" || regs[1].Perms != "rw-p" || !strings.Contains(strings.Join(regs[1].Flags, " "), "sl") {
		t.Errorf("regions after mprotect across seal: %+v", regs)
	}
	// Discarding advice is refused only on read-only private memory.
	if err := mm.MAdvise(ctx, a+0x1000, 0x1000, AdvDontNeed); err != nil {
		t.Errorf("DONTNEED on writable sealed memory = %v", err)
	}
	check(t, mm)
}

func TestMAdviseDontNeedAndErrors(t *testing.T) {
	mm := newTestMM(t)
	a := mustMap(t, mm, anon(window, 0x3000, hostarch.ReadWrite))
	mm.CopyOut(ctx, a, bytes.Repeat([]byte{9}, 0x3000), IOOpts{})
	if err := mm.MAdvise(ctx, a+0x1000, 0x1000, AdvDontNeed); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3)
	for i, want := range []byte{9, 0, 9} {
		mm.CopyIn(ctx, a+hostarch.Addr(i)*0x1000, b[i:i+1], IOOpts{})
		if b[i] != want {
			t.Errorf("page %d reads %d after DONTNEED of page 1, want %d", i, b[i], want)
		}
	}
	for _, tc := range []struct {
		addr   hostarch.Addr
		length uint64
		adv    Advice
		want   error
	}{
		{a, 0x1000, 999, unix.EINVAL},
		{a + 1, 0x1000, AdvNormal, unix.EINVAL},
		{a, math.MaxUint64, AdvNormal, unix.EINVAL},
		{a, 0, AdvDontNeed, nil},
		{a, 0x10000, AdvDontNeed, unix.ENOMEM},
		{a + 0x10000, 0x1000, AdvWillNeed, unix.ENOMEM},
		{a, 0x1000, AdvRemove, unix.EINVAL},
		{a, 0x1000, AdvFree, nil},
	} {
		if err := mm.MAdvise(ctx, tc.addr, tc.length, tc.adv); !errors.Is(err, tc.want) && !(err == nil && tc.want == nil) {
			t.Errorf("MAdvise(%v, %#x, %d) = %v, want %v", tc.addr, tc.length, tc.adv, err, tc.want)
		}
	}
	check(t, mm)
}

func TestGuardPages(t *testing.T) {
	mm := newTestMM(t)
	a := mustMap(t, mm, anon(window, 0x3000, hostarch.ReadWrite))
	mm.CopyOut(ctx, a, bytes.Repeat([]byte{1}, 0x3000), IOOpts{})
	if err := mm.MAdvise(ctx, a+0x1000, 0x1000, AdvGuardInstall); err != nil {
		t.Fatal(err)
	}
	if n := mm.vmas.Len(); n != 1 {
		t.Errorf("guard install split the vma: %d vmas", n)
	}
	n, err := mm.CopyIn(ctx, a, make([]byte, 0x2000), IOOpts{})
	var ae *AccessError
	if n != 0x1000 || !errors.As(err, &ae) || ae.Addr != a+0x1000 || ae.Signal != unix.SIGSEGV {
		t.Errorf("read across guard = %d, %v", n, err)
	}
	if err := mm.HandleUserFault(ctx, a+0x1800, hostarch.Read, 0); err == nil {
		t.Errorf("fault in guard page succeeded")
	}
	if err := mm.MAdvise(ctx, a+0x1000, 0x1000, AdvGuardRemove); err != nil {
		t.Fatal(err)
	}
	b := []byte{5}
	mm.CopyIn(ctx, a+0x1000, b, IOOpts{})
	if b[0] != 0 {
		t.Errorf("page under a removed guard reads %d, want 0 (zapped on install)", b[0])
	}
	check(t, mm)
}

func TestStackGrowth(t *testing.T) {
	mm := newTestMM(t)
	top := window + 0x1000000
	mustMap(t, mm, memmap.MMapOpts{Length: 0x2000, Addr: top - 0x2000, Fixed: true, Unmap: true, Private: true, GrowsDown: true, Perms: hostarch.ReadWrite, MaxPerms: hostarch.AnyAccess})
	if err := mm.HandleUserFault(ctx, top-0x5000, hostarch.Write, 0); err != nil {
		t.Fatalf("fault below stack: %v", err)
	}
	if got := mm.StackSize(); got != 0x5000 {
		t.Errorf("VmStk = %#x, want 0x5000", got)
	}
	// An application write further down grows it too.
	if _, err := mm.CopyOut(ctx, top-0x8000, []byte{1}, IOOpts{AsApplication: true}); err != nil {
		t.Errorf("application write below stack: %v", err)
	}
	// A system-call copy does not.
	if _, err := mm.CopyOut(ctx, top-0xa000, []byte{1}, IOOpts{}); err == nil {
		t.Errorf("syscall copy grew the stack")
	}
	// RLIMIT_STACK bounds growth.
	l := mm.Limits()
	l.Stack.Cur = 0x10000
	mm.SetLimits(l)
	if err := mm.HandleUserFault(ctx, top-0x20000, hostarch.Write, 0); err == nil {
		t.Errorf("growth past RLIMIT_STACK succeeded")
	}
	// The guard gap keeps the stack away from a mapping below it.
	mustMap(t, mm, anon(top-0x8000-0x100000, 0x1000, hostarch.ReadWrite))
	l.Stack.Cur = RLimInfinity
	mm.SetLimits(l)
	if err := mm.HandleUserFault(ctx, top-0x8000-0x100000+0x1000, hostarch.Write, 0); err == nil {
		t.Errorf("stack grew into the guard gap")
	}
	check(t, mm)
}

func TestMInCoreAndMSync(t *testing.T) {
	mm := newTestMM(t)
	a := mustMap(t, mm, anon(window, 0x4000, hostarch.ReadWrite))
	mm.CopyOut(ctx, a+0x2000, []byte{1}, IOOpts{})
	vec, err := mm.MInCore(ctx, a, 0x4000)
	if err != nil || !bytes.Equal(vec, []byte{0, 0, 1, 0}) {
		t.Errorf("mincore = %v, %v; want [0 0 1 0]", vec, err)
	}
	if _, err := mm.MInCore(ctx, a+1, 0x1000); !errors.Is(err, unix.EINVAL) {
		t.Errorf("unaligned mincore = %v", err)
	}
	if _, err := mm.MInCore(ctx, a, 0x5000); !errors.Is(err, unix.ENOMEM) {
		t.Errorf("mincore over a hole = %v", err)
	}
	for _, tc := range []struct {
		addr   hostarch.Addr
		length uint64
		opts   MSyncOpts
		want   error
	}{
		{a, 0x4000, MSyncOpts{Sync: true}, nil},
		{a + 1, 0x1000, MSyncOpts{}, unix.EINVAL},
		{a, 0x1000, MSyncOpts{Sync: true, Async: true}, unix.EINVAL},
		{a, 0x8000, MSyncOpts{Sync: true}, unix.ENOMEM},
		{a + 0x10000, 0x1000, MSyncOpts{Async: true}, unix.ENOMEM},
		{a, 0, MSyncOpts{}, nil},
	} {
		if err := mm.MSync(ctx, tc.addr, tc.length, tc.opts); !errors.Is(err, tc.want) && !(err == nil && tc.want == nil) {
			t.Errorf("MSync(%v, %#x, %+v) = %v, want %v", tc.addr, tc.length, tc.opts, err, tc.want)
		}
	}
	mm.MLock(ctx, a, 0x1000, memmap.MLockEager)
	if err := mm.MSync(ctx, a, 0x1000, MSyncOpts{Invalidate: true}); !errors.Is(err, unix.EBUSY) {
		t.Errorf("MS_INVALIDATE on locked = %v, want EBUSY", err)
	}
	check(t, mm)
}

func TestMRemapMultiVMAMove(t *testing.T) {
	mm := newTestMM(t)
	mustMap(t, mm, anon(window, 0x1000, hostarch.ReadWrite))
	mustMap(t, mm, anon(window+0x2000, 0x1000, hostarch.Read))
	mm.CopyOut(ctx, window, []byte{42}, IOOpts{})
	got, err := mm.MRemap(ctx, window, 0x3000, 0x3000, MRemapOpts{MayMove: true, Fixed: true, NewAddr: window + 0x40000})
	if err != nil || got != window+0x40000 {
		t.Fatalf("multi-vma fixed move = %v, %v", got, err)
	}
	regs := mm.Regions(hostarch.AddrRange{Start: window + 0x40000, End: window + 0x43000})
	if len(regs) != 3 || regs[0].Perms != "rw-p" || regs[1].Mapped || regs[2].Perms != "r--p" {
		t.Errorf("after move: %+v", regs)
	}
	b := []byte{0}
	mm.CopyIn(ctx, window+0x40000, b, IOOpts{})
	if b[0] != 42 {
		t.Errorf("moved page reads %d", b[0])
	}
	if _, err := mm.MRemap(ctx, window+0x41000, 0x2000, 0x2000, MRemapOpts{MayMove: true, Fixed: true, NewAddr: window + 0x60000}); !errors.Is(err, unix.EFAULT) {
		t.Errorf("move starting in a gap = %v, want EFAULT", err)
	}
	check(t, mm)
}

func TestProcfsText(t *testing.T) {
	mm := newTestMM(t)
	a := mustMap(t, mm, anon(window, 0x2000, hostarch.ReadWrite))
	if err := mm.SetVMAName(ctx, a, 0x1000, "buf"); err != nil {
		t.Fatal(err)
	}
	if err := mm.SetVMAName(ctx, a, 0x1000, "bad$name"); !errors.Is(err, unix.EINVAL) {
		t.Errorf("bad name = %v", err)
	}
	mm.CopyOut(ctx, a, make([]byte, 10), IOOpts{})
	maps := mm.MapsText(ctx)
	want := "200000000000-200000001000 rw-p 00000000 00:00 0" + strings.Repeat(" ", 26) + "[anon:buf]\n" +
		"200000001000-200000002000 rw-p 00000000 00:00 0 \n"
	if maps != want {
		t.Errorf("maps:\n%q\nwant\n%q", maps, want)
	}
	smaps := mm.SmapsText(ctx)
	flags := "VmFlags: rd wr mr mw me ac \n"
	if hostSoftDirty() {
		flags = "VmFlags: rd wr mr mw me ac sd \n"
	}
	for _, line := range []string{"Size:                  4 kB\n", "Rss:                   4 kB\n", flags} {
		if !strings.Contains(smaps, line) {
			t.Errorf("smaps lacks %q:\n%s", line, smaps)
		}
	}
	status := mm.StatusText()
	if !strings.Contains(status, "VmSize:\t       8 kB\n") || !strings.Contains(status, "VmData:\t       8 kB\n") {
		t.Errorf("status:\n%s", status)
	}
}

func TestRepeatedOperationsOnPartOfAVMATerminate(t *testing.T) {
	mm := newTestMM(t)
	a := mustMap(t, mm, anon(window, 0x4000, hostarch.ReadWrite))
	// Each of these changes nothing the second time, on a range inside a
	// larger vma; they used to find the same vma again (a hole, or an
	// endless loop).
	for i := 0; i < 2; i++ {
		if err := mm.MSeal(ctx, a+0x1000, 0x1000, 0); err != nil {
			t.Fatalf("mseal #%d: %v", i, err)
		}
		if err := mm.SetNumaPolicy(ctx, a, 0x1000, MPolBind, 1); err != nil {
			t.Fatalf("mbind #%d: %v", i, err)
		}
		if err := mm.MProtect(ctx, a+0x2000, 0x1000, hostarch.ReadWrite, MProtectOpts{}); err != nil {
			t.Fatalf("mprotect #%d: %v", i, err)
		}
		if err := mm.MLock(ctx, a+0x3000, 0x1000, memmap.MLockNone); err != nil {
			t.Fatalf("munlock #%d: %v", i, err)
		}
	}
	check(t, mm)
}
