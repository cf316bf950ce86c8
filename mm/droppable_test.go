package mm

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

// TestMapDroppable checks MAP_DROPPABLE as Linux 6.18 has it (the cases and
// results were taken from a native run): private anonymous memory, never
// locked, wiped in a forked child, not dumped, VmFlags "nr wf dd dp". (The
// flags that fail before the type is known are linuxabi's: TestMMapDecoding.)
func TestMapDroppable(t *testing.T) {
	m := newTestMM(t)
	const rw = ProtRead | ProtWrite
	mmap := func(addr hostarch.Addr, length uint64, flags int) (hostarch.Addr, error) {
		return m.mmapFlags(ctx, addr, length, rw, flags, nil, 0)
	}
	for _, c := range []struct {
		what  string
		flags int
		want  error
	}{
		{"locked", MapDroppable | MapAnonymous | MapLocked, unix.EINVAL},
		{"growsdown", MapDroppable | MapAnonymous | MapGrowsDown, unix.EINVAL},
		{"stack", MapDroppable | MapAnonymous | MapStack, nil},
		{"populate", MapDroppable | MapAnonymous | MapPopulate, nil},
	} {
		if _, err := mmap(0, 0x1000, c.flags); c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("mmap %s: %v, want %v", c.what, err, c.want)
		}
	}
	a, err := mmap(window, 0x4000, MapDroppable|MapAnonymous|MapFixed)
	mustOK(t, "mmap droppable", err)
	if _, err := mmap(a, 0x1000, MapDroppable|MapAnonymous|MapFixedNoReplace); !errors.Is(err, unix.EEXIST) {
		t.Errorf("fixed_noreplace over it: %v", err)
	}
	write(t, m, a, bytes.Repeat([]byte{'d'}, 0x4000))
	flagsAt := func(m *MemoryManager, addr hostarch.Addr) string {
		t.Helper()
		rs := m.Regions(hostarch.AddrRange{Start: addr, End: addr + 0x1000})
		if len(rs) != 1 || !rs[0].Mapped {
			t.Fatalf("regions at %v: %+v", addr, rs)
		}
		return strings.Join(rs[0].Flags, " ")
	}
	if f := flagsAt(m, a); !strings.Contains(f, "nr wf dd") || !strings.HasSuffix(f, " dp") || strings.Contains(f, " ac") {
		t.Errorf("VmFlags %q, want nr wf dd ... dp, not ac", f)
	}

	// Never locked, by mlock, mlock2(MLOCK_ONFAULT) or mlockall; mlock
	// still succeeds.
	lim := m.Limits()
	lim.MemLock = RLimit{1 << 20, 1 << 20}
	m.SetLimits(lim)
	mustOK(t, "mlock", m.MLock(ctx, a, 0x4000, memmap.MLockEager))
	mustOK(t, "mlock onfault", m.MLock(ctx, a, 0x4000, memmap.MLockLazy))
	if n := m.LockedSize(); n != 0 {
		t.Errorf("VmLck %#x after mlock of droppable memory", n)
	}
	// The madvise that would undo its wipe-on-fork or don't-dump is refused.
	for _, c := range []struct {
		adv  Advice
		want error
	}{{AdvKeepOnFork, unix.EINVAL}, {AdvWipeOnFork, nil}, {AdvDoDump, unix.EINVAL}, {AdvDontDump, nil}, {AdvDontFork, nil}, {AdvDoFork, nil}} {
		if err := m.MAdvise(ctx, a, 0x1000, c.adv); c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("madvise %d: %v, want %v", c.adv, err, c.want)
		}
	}
	mustOK(t, "mprotect", m.MProtect(ctx, a+0x2000, 0x1000, hostarch.Read, MProtectOpts{}))
	if f := flagsAt(m, a+0x2000); !strings.HasSuffix(f, " dp") {
		t.Errorf("VmFlags after mprotect %q", f)
	}

	// A child sees zeros.
	c, err := m.Fork(ctx)
	mustOK(t, "fork", err)
	if got := read(t, c, a, 1)[0] | read(t, c, a+0x3000, 1)[0]; got != 0 {
		t.Errorf("the child reads %#x in droppable memory, want zeros", got)
	}
	if got := read(t, m, a+0x3000, 1)[0]; got != 'd' {
		t.Errorf("the parent reads %#x", got)
	}
	c.DecUsers(ctx)

	// mlockall(MCL_CURRENT|MCL_FUTURE) locks neither it nor new ones.
	mustOK(t, "mlockall", m.MLockAll(ctx, MLockAllOpts{Current: true, Future: true}))
	b, err := mmap(0, 0x1000, MapDroppable|MapAnonymous)
	mustOK(t, "mmap droppable under MCL_FUTURE", err)
	for _, x := range []hostarch.Addr{a, b} {
		if f := flagsAt(m, x); strings.Contains(f, "lo") {
			t.Errorf("droppable memory at %v locked: %q", x, f)
		}
	}
	mustOK(t, "munlockall", m.MUnlockAll(ctx))

	// MADV_PAGEOUT drops droppable pages (Linux's reclaim frees them
	// without swap); they are no longer resident and read zero. Ordinary
	// private memory beside them keeps its data.
	o, err := mmap(a+0x4000, 0x1000, MapPrivate|MapAnonymous|MapFixed)
	mustOK(t, "mmap private", err)
	write(t, m, o, []byte{'o'})
	mustOK(t, "pageout", m.MAdvise(ctx, a, 0x5000, AdvPageOut))
	vec, err := m.MInCore(ctx, a, 0x5000)
	mustOK(t, "mincore", err)
	if !bytes.Equal(vec, []byte{0, 0, 0, 0, 1}) {
		t.Errorf("mincore after pageout %v, want droppable pages gone and the private page resident", vec)
	}
	if got := read(t, m, a, 0x4000); !bytes.Equal(got, make([]byte, 0x4000)) {
		t.Errorf("droppable memory after pageout is not zero")
	}
	if got := read(t, m, o, 1)[0]; got != 'o' {
		t.Errorf("private memory after pageout reads %#x", got)
	}
	check(t, m)
}
