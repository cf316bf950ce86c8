package mm

import (
	"bytes"
	"context"
	"errors"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
	"golang.org/x/sys/unix"
)

const window hostarch.Addr = 0x200000000000

var ctx = context.Background()

func newMF(t testing.TB, limit uint64) *pgalloc.MemoryFile {
	t.Helper()
	mf, err := pgalloc.New(pgalloc.Options{Limit: limit})
	if err != nil {
		t.Fatalf("pgalloc.New: %v", err)
	}
	t.Cleanup(mf.Destroy)
	return mf
}

// newTestMM returns a manager on a fresh memory file, and checks at the end
// of the test that releasing it returns every page.
func newTestMM(t testing.TB) *MemoryManager {
	t.Helper()
	mf := newMF(t, 0)
	mm := New(Options{MemoryFile: mf})
	t.Cleanup(func() {
		if err := mm.CheckInvariants(); err != nil {
			t.Errorf("CheckInvariants at end: %v", err)
		}
		if mm.Users() > 0 {
			mm.DecUsers(ctx)
		}
		if n := mf.UsageAllocated(); n != 0 {
			t.Errorf("memory file still has %d bytes allocated after release", n)
		}
	})
	return mm
}

func anon(addr hostarch.Addr, length uint64, perms hostarch.AccessType) memmap.MMapOpts {
	return memmap.MMapOpts{Length: length, Addr: addr, Fixed: addr != 0, Unmap: addr != 0, Private: true, Perms: perms, MaxPerms: hostarch.AnyAccess}
}

func mustMap(t testing.TB, mm *MemoryManager, opts memmap.MMapOpts) hostarch.Addr {
	t.Helper()
	a, err := mm.MMap(ctx, opts)
	if err != nil {
		t.Fatalf("MMap(%+v): %v", opts, err)
	}
	return a
}

func check(t testing.TB, mm *MemoryManager) {
	t.Helper()
	if err := mm.CheckInvariants(); err != nil {
		t.Fatalf("CheckInvariants: %v", err)
	}
}

func TestMMapErrors(t *testing.T) {
	mm := newTestMM(t)
	mustMap(t, mm, anon(window, 0x4000, hostarch.ReadWrite))
	for _, tc := range []struct {
		name string
		opts memmap.MMapOpts
		want error
	}{
		{"zero length", anon(window+0x10000, 0, hostarch.ReadWrite), unix.EINVAL},
		{"huge length", anon(0, math.MaxUint64-10, hostarch.ReadWrite), unix.ENOMEM},
		{"past user limit", anon(hostarch.MaxUserAddress-0x1000, 0x2000, hostarch.ReadWrite), unix.ENOMEM},
		{"unaligned fixed", anon(window+0x10001, 0x1000, hostarch.ReadWrite), unix.EINVAL},
		{"below mmap_min_addr", anon(0x1000, 0x1000, hostarch.ReadWrite), unix.EPERM},
		{"noreplace over mapping", memmap.MMapOpts{Length: 0x1000, Addr: window + 0x1000, Fixed: true, Private: true, Perms: hostarch.Read, MaxPerms: hostarch.AnyAccess}, unix.EEXIST},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mm.MMap(ctx, tc.opts)
			if !errors.Is(err, tc.want) {
				t.Errorf("MMap = %v, want %v", err, tc.want)
			}
			check(t, mm)
		})
	}
}

func TestMMapHintAndPlacement(t *testing.T) {
	mm := newTestMM(t)
	a := mustMap(t, mm, memmap.MMapOpts{Length: 0x3000, Addr: window + 0x5000, Private: true, Perms: hostarch.ReadWrite, MaxPerms: hostarch.AnyAccess})
	if a != window+0x5000 {
		t.Errorf("free hint not honoured: got %v", a)
	}
	b := mustMap(t, mm, memmap.MMapOpts{Length: 0x3000, Addr: window + 0x5000, Private: true, Perms: hostarch.Read, MaxPerms: hostarch.AnyAccess})
	if b == a || (b < a+0x3000 && a < b+0x3000) {
		t.Errorf("occupied hint gave overlapping mapping at %v", b)
	}
	c := mustMap(t, mm, memmap.MMapOpts{Length: 0x1000, Private: true, Perms: hostarch.Read, MaxPerms: hostarch.AnyAccess, Map32Bit: true})
	if c < map32Start || c >= map32End {
		t.Errorf("MAP_32BIT placed at %v", c)
	}
}

func TestCopyOutInAndPermissions(t *testing.T) {
	mm := newTestMM(t)
	a := mustMap(t, mm, anon(window, 0x3000, hostarch.ReadWrite))
	data := bytes.Repeat([]byte{0xab}, 0x1800)
	if n, err := mm.CopyOut(ctx, a+0x800, data, IOOpts{}); err != nil || n != len(data) {
		t.Fatalf("CopyOut = %d, %v", n, err)
	}
	got := make([]byte, 0x3000)
	if n, err := mm.CopyIn(ctx, a, got, IOOpts{}); err != nil || n != len(got) {
		t.Fatalf("CopyIn = %d, %v", n, err)
	}
	want := make([]byte, 0x3000)
	copy(want[0x800:], data)
	if !bytes.Equal(got, want) {
		t.Fatalf("read back differs")
	}
	// Make the middle page read-only: a write stops at it.
	if err := mm.MProtect(ctx, a+0x1000, 0x1000, hostarch.Read, MProtectOpts{}); err != nil {
		t.Fatal(err)
	}
	n, err := mm.CopyOut(ctx, a+0x800, make([]byte, 0x1000), IOOpts{})
	var ae *AccessError
	if n != 0x800 || !errors.As(err, &ae) || ae.Signal != unix.SIGSEGV || ae.Addr != a+0x1000 {
		t.Errorf("CopyOut across read-only page = %d, %v; want 0x800, SIGSEGV at %v", n, err, a+0x1000)
	}
	if !errors.Is(err, unix.EFAULT) {
		t.Errorf("AccessError does not unwrap to EFAULT")
	}
	// Forced writes ignore permissions.
	if n, err := mm.CopyOut(ctx, a+0x1000, []byte{1, 2}, IOOpts{IgnorePermissions: true}); err != nil || n != 2 {
		t.Errorf("forced CopyOut = %d, %v", n, err)
	}
	// Reads past the end of the mapping stop there.
	n, err = mm.CopyIn(ctx, a+0x2f00, make([]byte, 0x200), IOOpts{})
	if n != 0x100 || !errors.As(err, &ae) || ae.Addr != a+0x3000 {
		t.Errorf("CopyIn past end = %d, %v", n, err)
	}
	check(t, mm)
}

func TestMUnmapSplitsAndErrors(t *testing.T) {
	mm := newTestMM(t)
	a := mustMap(t, mm, anon(window, 0x5000, hostarch.ReadWrite))
	mm.CopyOut(ctx, a, make([]byte, 0x5000), IOOpts{})
	for _, tc := range []struct {
		addr   hostarch.Addr
		length uint64
		want   error
	}{
		{a + 1, 0x1000, unix.EINVAL},
		{a, 0, unix.EINVAL},
		{a, math.MaxUint64, unix.EINVAL},
		{hostarch.MaxUserAddress, 0x1000, unix.EINVAL},
		{a + 0x1000, 0x1000, nil},
		{a + 0x1000, 0x1000, nil}, // already unmapped: still fine
	} {
		if err := mm.MUnmap(ctx, tc.addr, tc.length); !errors.Is(err, tc.want) && !(err == nil && tc.want == nil) {
			t.Errorf("MUnmap(%v, %#x) = %v, want %v", tc.addr, tc.length, err, tc.want)
		}
	}
	if got := mm.VirtualMemorySize(); got != 0x4000 {
		t.Errorf("VmSize = %#x, want 0x4000", got)
	}
	if _, err := mm.CopyIn(ctx, a+0x1000, make([]byte, 1), IOOpts{}); err == nil {
		t.Errorf("read of unmapped page succeeded")
	}
	check(t, mm)
}

func TestMProtectPartialAndMerge(t *testing.T) {
	mm := newTestMM(t)
	a := mustMap(t, mm, anon(window, 0x2000, hostarch.ReadWrite))
	mustMap(t, mm, anon(window+0x3000, 0x1000, hostarch.ReadWrite))
	// The hole at +0x2000 makes mprotect fail after changing the first vma.
	if err := mm.MProtect(ctx, a, 0x4000, hostarch.Read, MProtectOpts{}); !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("MProtect over hole = %v, want ENOMEM", err)
	}
	regs := mm.Regions(hostarch.AddrRange{Start: a, End: a + 0x4000})
	if len(regs) != 3 || regs[0].Perms != "r--p" || regs[2].Perms != "rw-p" {
		t.Errorf("after partial mprotect: %+v", regs)
	}
	// Split into 4 and merge back.
	for i := 0; i < 2; i++ {
		if err := mm.MProtect(ctx, a+hostarch.Addr(i)*0x1000, 0x1000, hostarch.AccessType{Read: i == 0, Write: i == 0}, MProtectOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := mm.MProtect(ctx, a, 0x2000, hostarch.ReadWrite, MProtectOpts{}); err != nil {
		t.Fatal(err)
	}
	if n := mm.vmas.Len(); n != 2 {
		t.Errorf("%d vmas after merge, want 2", n)
	}
	if err := mm.MProtect(ctx, a, 0x1000, hostarch.Read, MProtectOpts{GrowsDown: true}); !errors.Is(err, unix.EINVAL) {
		t.Errorf("PROT_GROWSDOWN on non-growsdown = %v, want EINVAL", err)
	}
	check(t, mm)
}

func TestForkCopyOnWrite(t *testing.T) {
	mm := newTestMM(t)
	a := mustMap(t, mm, anon(window, 0x400000, hostarch.ReadWrite))
	mm.CopyOut(ctx, a, []byte("parent"), IOOpts{})
	mm.CopyOut(ctx, a+0x200000, []byte("second"), IOOpts{})
	child, err := mm.Fork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer child.DecUsers(ctx)
	if err := CheckPrivateRefs(mm, child); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	child.CopyIn(ctx, a, buf, IOOpts{})
	if string(buf) != "parent" {
		t.Fatalf("child reads %q", buf)
	}
	child.CopyOut(ctx, a, []byte("child!"), IOOpts{})
	mm.CopyIn(ctx, a, buf, IOOpts{})
	if string(buf) != "parent" {
		t.Errorf("parent sees child's write: %q", buf)
	}
	child.CopyIn(ctx, a, buf, IOOpts{})
	if string(buf) != "child!" {
		t.Errorf("child lost its write: %q", buf)
	}
	// The second huge unit is still shared.
	child.CopyIn(ctx, a+0x200000, buf, IOOpts{})
	if string(buf) != "second" {
		t.Errorf("child reads %q in the untouched unit", buf)
	}
	if err := CheckPrivateRefs(mm, child); err != nil {
		t.Fatal(err)
	}
	// The parent's write after the child broke COW takes the page over
	// without copying: its first unit is now only its own.
	mm.CopyOut(ctx, a, []byte("PARENT"), IOOpts{})
	child.CopyIn(ctx, a, buf, IOOpts{})
	if string(buf) != "child!" {
		t.Errorf("child sees parent's write: %q", buf)
	}
	check(t, mm)
	check(t, child)
	if err := CheckPrivateRefs(mm, child); err != nil {
		t.Fatal(err)
	}
}

func TestForkDontForkAndWipeOnFork(t *testing.T) {
	mm := newTestMM(t)
	a := mustMap(t, mm, anon(window, 0x3000, hostarch.ReadWrite))
	mm.CopyOut(ctx, a, bytes.Repeat([]byte{7}, 0x3000), IOOpts{})
	if err := mm.MAdvise(ctx, a, 0x1000, AdvDontFork); err != nil {
		t.Fatal(err)
	}
	if err := mm.MAdvise(ctx, a+0x2000, 0x1000, AdvWipeOnFork); err != nil {
		t.Fatal(err)
	}
	child, err := mm.Fork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer child.DecUsers(ctx)
	b := make([]byte, 1)
	if _, err := child.CopyIn(ctx, a, b, IOOpts{}); err == nil {
		t.Errorf("dontfork page is mapped in the child")
	}
	child.CopyIn(ctx, a+0x1000, b, IOOpts{})
	if b[0] != 7 {
		t.Errorf("inherited page reads %d", b[0])
	}
	child.CopyIn(ctx, a+0x2000, b, IOOpts{})
	if b[0] != 0 {
		t.Errorf("wipeonfork page reads %d, want 0", b[0])
	}
	check(t, child)
}

func TestBrk(t *testing.T) {
	mm := newTestMM(t)
	base := hostarch.Addr(0x555500000000)
	mm.BrkSetup(ctx, base)
	for k := hostarch.Addr(1); k <= 64; k++ {
		got, _ := mm.Brk(ctx, base+k*0x1000)
		if got != base+k*0x1000 {
			t.Fatalf("Brk(+%#x) = %v", k*0x1000, got)
		}
	}
	if got, _ := mm.Brk(ctx, base-1); got != base+64*0x1000 {
		t.Errorf("Brk below start = %v, want the old break", got)
	}
	if got, _ := mm.Brk(ctx, base+0x10); got != base+0x10 {
		t.Errorf("shrinking Brk = %v", got)
	}
	if mm.VirtualMemorySize() != 0x1000 {
		t.Errorf("VmSize after shrink = %#x", mm.VirtualMemorySize())
	}
	l := mm.Limits()
	l.Data.Cur = 0x8000
	mm.SetLimits(l)
	if got, _ := mm.Brk(ctx, base+0x10000); got != base+0x10 {
		t.Errorf("Brk past RLIMIT_DATA = %v, want unchanged", got)
	}
	check(t, mm)
}

func TestMRemap(t *testing.T) {
	mm := newTestMM(t)
	a := mustMap(t, mm, anon(window, 0x2000, hostarch.ReadWrite))
	mustMap(t, mm, anon(window+0x1000, 0x1000, hostarch.Read)) // blocker
	mm.CopyOut(ctx, a, []byte("moveme"), IOOpts{})
	if _, err := mm.MRemap(ctx, a, 0x1000, 0x2000, MRemapOpts{}); !errors.Is(err, unix.ENOMEM) {
		t.Errorf("grow without MAYMOVE = %v, want ENOMEM", err)
	}
	b, err := mm.MRemap(ctx, a, 0x1000, 0x4000, MRemapOpts{MayMove: true})
	if err != nil {
		t.Fatal(err)
	}
	if b == a {
		t.Fatalf("mapping did not move")
	}
	buf := make([]byte, 6)
	mm.CopyIn(ctx, b, buf, IOOpts{})
	if string(buf) != "moveme" {
		t.Errorf("moved contents %q", buf)
	}
	if _, err := mm.CopyIn(ctx, a, buf, IOOpts{}); err == nil {
		t.Errorf("old range still mapped")
	}
	if _, err := mm.MRemap(ctx, b, 0x8000, 0x10000, MRemapOpts{MayMove: true}); !errors.Is(err, unix.EFAULT) {
		t.Errorf("mremap across vma end = %v, want EFAULT", err)
	}
	if _, err := mm.MRemap(ctx, b, 0x1000, 0x1000, MRemapOpts{DontUnmap: true}); !errors.Is(err, unix.EINVAL) {
		t.Errorf("DONTUNMAP without MAYMOVE = %v, want EINVAL", err)
	}
	check(t, mm)
}

func TestMemoryLimitFailsCleanly(t *testing.T) {
	mf := newMF(t, 4<<20)
	mm := New(Options{MemoryFile: mf})
	a := mustMap(t, mm, anon(window, 64<<20, hostarch.ReadWrite))
	var err error
	var off hostarch.Addr
	for off = 0; off < 64<<20; off += hostarch.PageSize {
		if _, err = mm.CopyOut(ctx, a+off, []byte{1}, IOOpts{}); err != nil {
			break
		}
	}
	var ae *AccessError
	if !errors.As(err, &ae) || ae.Signal != unix.SIGBUS {
		t.Fatalf("writing past the memory limit: %v, want SIGBUS-class AccessError", err)
	}
	if err := mm.HandleUserFault(ctx, a+off, hostarch.Write, 0); err == nil {
		t.Errorf("fault past the limit succeeded")
	}
	if err := mm.MAdvise(ctx, a+off, 0x1000, AdvPopulateWrite); !errors.Is(err, unix.ENOMEM) {
		t.Errorf("populate past the limit = %v, want ENOMEM", err)
	}
	check(t, mm)
	mm.DecUsers(ctx)
	if n := mf.UsageAllocated(); n != 0 {
		t.Errorf("%d bytes leaked", n)
	}
}

func TestConcurrentIOAndMappingChanges(t *testing.T) {
	mm := newTestMM(t)
	a := mustMap(t, mm, anon(window, 0x100000, hostarch.ReadWrite))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var okIO, failedIO atomic.Int64
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			buf, got := make([]byte, 64), make([]byte, 64)
			// Only goroutine g writes its 64 bytes of each page, with a
			// value that tells g apart: a page reads as zeros (new
			// memory) or as a value g wrote.
			mine := func(v byte) bool { return v == 0 || int(v)%4 == g }
			checkIO := func(op string, addr hostarch.Addr, n int, err error) {
				var ae *AccessError
				switch {
				case err == nil && n == len(buf):
					okIO.Add(1)
				case err != nil && errors.As(err, &ae) && ae.Addr == addr+hostarch.Addr(n) && n < len(buf):
					failedIO.Add(1)
				default:
					t.Errorf("%s at %#x: %d bytes, %v: want all, or fewer and an AccessError where the copy stopped", op, uint64(addr), n, err)
				}
			}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				addr := a + hostarch.Addr((i*4096+g*64)%0x100000)
				for j := range buf {
					buf[j] = byte(4*(1+i%60) + g)
				}
				n, err := mm.CopyOut(ctx, addr, buf, IOOpts{})
				checkIO("CopyOut", addr, n, err)
				n, err = mm.CopyIn(ctx, addr, got, IOOpts{})
				checkIO("CopyIn", addr, n, err)
				for j := 1; j < n; j++ {
					if got[j] != got[0] || !mine(got[0]) {
						t.Errorf("goroutine %d reads %v at %#x: torn, or another's bytes", g, got[:n], uint64(addr))
						return
					}
				}
			}
		}(g)
	}
	// The mapping changes below must overlap the I/O: let it start (the
	// loop may otherwise finish before any goroutine has run).
	for okIO.Load()+failedIO.Load() == 0 {
		runtime.Gosched()
	}
	for i := 0; i < 300; i++ {
		off := hostarch.Addr(i%64) * 0x4000
		// An earlier round may have moved the page at a+off away: the
		// changes of a hole fail as Linux's do, the others succeed.
		if err := mm.MProtect(ctx, a+off, 0x2000, hostarch.Read, MProtectOpts{}); err != nil && !errors.Is(err, unix.ENOMEM) {
			t.Errorf("mprotect: %v", err)
		}
		if err := mm.MUnmap(ctx, a+off+0x2000, 0x1000); err != nil {
			t.Errorf("munmap: %v", err)
		}
		if _, err := mm.MMap(ctx, anon(a+off+0x2000, 0x1000, hostarch.ReadWrite)); err != nil {
			t.Errorf("mmap: %v", err)
		}
		if _, err := mm.MRemap(ctx, a+off, 0x1000, 0x1000, MRemapOpts{MayMove: true, Fixed: true, NewAddr: a + 0x100000 + off}); err != nil && !errors.Is(err, unix.EFAULT) {
			t.Errorf("mremap: %v", err)
		}
		if err := mm.MProtect(ctx, a+off, 0x4000, hostarch.ReadWrite, MProtectOpts{}); err != nil && !errors.Is(err, unix.ENOMEM) {
			t.Errorf("mprotect: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	if okIO.Load() == 0 {
		t.Errorf("no I/O succeeded (%d failed)", failedIO.Load())
	}
	check(t, mm)
}

// TestMRemapMoveAllocations checks that moving a mapping allocates
// nothing for the pmas it moves (they were gathered in a slice grown
// from nil: about two allocations a call of bench's mremap_grow).
func TestMRemapMoveAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates for what it instruments")
	}
	mm := newTestMM(t)
	const a, b = hostarch.Addr(0x300000000000), hostarch.Addr(0x310000000000)
	o := anonOpts(4 * hostarch.PageSize)
	o.Addr, o.Fixed = a, true
	if _, err := mm.MMap(ctx, o); err != nil {
		t.Fatal(err)
	}
	if _, err := mm.CopyOut(ctx, a, make([]byte, 4*hostarch.PageSize), IOOpts{}); err != nil {
		t.Fatal(err)
	}
	move := func(from, to hostarch.Addr) {
		if got, err := mm.MRemap(ctx, from, 4*hostarch.PageSize, 4*hostarch.PageSize, MRemapOpts{MayMove: true, Fixed: true, NewAddr: to}); err != nil || got != to {
			t.Fatalf("MRemap(%#x -> %#x) = %#x, %v", from, to, got, err)
		}
	}
	allocs := testing.AllocsPerRun(20, func() {
		move(a, b)
		move(b, a)
	})
	if allocs >= 1 {
		t.Errorf("two moves allocate %v times", allocs)
	}
}
