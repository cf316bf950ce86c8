package mm

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"golang.org/x/sys/unix"
)

// forkingPlatform makes recordingASes whose PreFork answers keepWritable,
// counting the PreFork and PostFork calls.
type forkingPlatform struct {
	recordingPlatform
	fas *forkingAS
}

type forkingAS struct {
	*recordingAS
	keepWritable    bool
	preFork, postFk int
}

func (a *forkingAS) PreFork() bool {
	a.preFork++
	return a.keepWritable
}

func (a *forkingAS) PostFork() { a.postFk++ }

// forkPlanMM returns an active manager whose AddressSpace's PreFork
// answers keepWritable, with one vma of every kind a fork treats apart, at
// these addresses (each followed by a gap):
//
//	window+0x00000  private, written: Copy
//	window+0x10000  private, MADV_DONTFORK: nothing
//	window+0x20000  private, written, MADV_WIPEONFORK: nothing
//	window+0x30000  shared: Keep
//	window+0x40000  private, never written: Keep
//	window+0x50000  private, written, then read-only: Keep
//	window+0x60000  private, written, half dropped: Copy and Keep
//
// Its memory is committed to c (nil: the process-wide accounting).
func forkPlanMM(t *testing.T, keepWritable bool, c *Commit) (*MemoryManager, *forkingAS) {
	t.Helper()
	mf := newMF(t, 0)
	p := &forkingPlatform{}
	m := New(Options{MemoryFile: mf, Platform: p})
	m.SetCommit(c)
	m.SetSharedAnonFactory(func(ctx context.Context, n uint64) (MappableFile, error) {
		return hostfile.NewSharedAnon(ctx, mf, n)
	})
	mustOK(t, "Activate", m.Activate(ctx))
	p.fas = &forkingAS{recordingAS: p.as, keepWritable: keepWritable}
	// Make the forking AS the active one (the recording platform made a
	// plain recordingAS).
	m.activeMu.Lock()
	m.as = p.fas
	m.activeMu.Unlock()
	fault := func(addr hostarch.Addr, n uint64) {
		for off := uint64(0); off < n; off += hostarch.PageSize {
			mustOK(t, "fault", m.HandleUserFault(ctx, addr+hostarch.Addr(off), hostarch.Write, 0))
		}
	}
	a := mustMap(t, m, anon(window, 0x2000, hostarch.ReadWrite))
	fault(a, 0x2000)
	b := mustMap(t, m, anon(window+0x10000, 0x2000, hostarch.ReadWrite))
	fault(b, 0x2000)
	mustOK(t, "MADV_DONTFORK", m.MAdvise(ctx, b, 0x2000, AdvDontFork))
	w := mustMap(t, m, anon(window+0x20000, 0x2000, hostarch.ReadWrite))
	fault(w, 0x2000)
	mustOK(t, "MADV_WIPEONFORK", m.MAdvise(ctx, w, 0x2000, AdvWipeOnFork))
	d, err := m.mmapFlags(ctx, window+0x30000, 0x2000, ProtRead|ProtWrite, MapShared|MapAnonymous|MapFixed, nil, 0)
	mustOK(t, "mmap shared", err)
	fault(d, 0x2000)
	mustMap(t, m, anon(window+0x40000, 0x2000, hostarch.ReadWrite))
	f := mustMap(t, m, anon(window+0x50000, 0x2000, hostarch.ReadWrite))
	fault(f, 0x2000)
	mustOK(t, "mprotect", m.MProtect(ctx, f, 0x2000, hostarch.Read, MProtectOpts{}))
	mustOK(t, "fault", m.HandleUserFault(ctx, f, hostarch.Read, 0))
	g := mustMap(t, m, anon(window+0x60000, 0x4000, hostarch.ReadWrite))
	fault(g, 0x4000)
	mustOK(t, "MADV_DONTNEED", m.MAdvise(ctx, g+0x2000, 0x2000, AdvDontNeed))
	return m, p.fas
}

// TestForkPlan checks the ranges ForkWithPlan reports for a child: Copy
// where the parent could write private memory, Keep for the rest of what
// the child inherits, nothing for MADV_DONTFORK and MADV_WIPEONFORK
// ranges and holes.
func TestForkPlan(t *testing.T) {
	m, _ := forkPlanMM(t, false, nil)
	defer m.DecUsers(ctx)
	defer m.Deactivate()
	c, plan, err := m.ForkWithPlan(ctx)
	mustOK(t, "fork", err)
	defer c.DecUsers(ctx)
	r := func(start, end hostarch.Addr) hostarch.AddrRange {
		return hostarch.AddrRange{Start: window + start, End: window + end}
	}
	wantCopy := []hostarch.AddrRange{r(0, 0x2000), r(0x60000, 0x62000)}
	wantKeep := []hostarch.AddrRange{r(0x30000, 0x32000), r(0x40000, 0x42000), r(0x50000, 0x52000), r(0x62000, 0x64000)}
	if !reflect.DeepEqual(plan.Copy, wantCopy) {
		t.Errorf("Copy %v, want %v", plan.Copy, wantCopy)
	}
	if !reflect.DeepEqual(plan.Keep, wantKeep) {
		t.Errorf("Keep %v, want %v", plan.Keep, wantKeep)
	}
	check(t, c)
	check(t, m)
}

// TestForkKeepWritable checks that Fork brackets the copy with PreFork and
// PostFork, and that the parent's writable private memory leaves its
// AddressSpace (Unmap) unless PreFork asks to keep it mapped writable: then
// Fork does not touch it, and the parent's next write fault (once the child
// has its copy) makes it the parent's again without a copy.
func TestForkKeepWritable(t *testing.T) {
	for _, keep := range []bool{false, true} {
		m, as := forkPlanMM(t, keep, nil)
		c, plan, err := m.ForkWithPlan(ctx)
		mustOK(t, "fork", err)
		if as.preFork != 1 || as.postFk != 1 {
			t.Errorf("keep %v: PreFork called %d times, PostFork %d, want 1 and 1", keep, as.preFork, as.postFk)
		}
		for _, cr := range plan.Copy {
			at, ok := as.perms(cr.Start)
			if keep && (!ok || at != hostarch.ReadWrite) {
				t.Errorf("keep %v: %v mapped %v (%v) after the fork, want rw- kept", keep, cr.Start, at, ok)
			}
			if !keep && ok {
				t.Errorf("keep %v: %v still mapped %v after the fork", keep, cr.Start, at)
			}
		}
		// Memory the child does not inherit stays writable in the
		// parent either way.
		for _, addr := range []hostarch.Addr{window + 0x10000, window + 0x20000} {
			if at, ok := as.perms(addr); !ok || at != hostarch.ReadWrite {
				t.Errorf("keep %v: uninherited %v mapped %v (%v), want rw-", keep, addr, at, ok)
			}
		}
		// The child copies, then the parent takes its page back.
		mustOK(t, "child fault", c.HandleUserFault(ctx, window, hostarch.Write, 0))
		used := m.mf.UsageAllocated()
		mustOK(t, "parent fault", m.HandleUserFault(ctx, window, hostarch.Write, 0))
		if got := m.mf.UsageAllocated(); got != used {
			t.Errorf("keep %v: the parent's write fault after the child's copy allocated %#x bytes", keep, got-used)
		}
		if at, ok := as.perms(window); !ok || at != hostarch.ReadWrite {
			t.Errorf("keep %v: parent maps %v (%v) after its write fault, want rw-", keep, at, ok)
		}
		check(t, c)
		check(t, m)
		c.DecUsers(ctx)
		m.Deactivate()
		m.DecUsers(ctx)
	}
}

// TestForkFailsPostFork checks that a fork that fails (past CommitLimit)
// still ends with PostFork, and touches no mapping of the parent.
func TestForkFailsPostFork(t *testing.T) {
	m, as := forkPlanMM(t, false, NewCommit(Overcommit{Mode: OvercommitNever, Ratio: 50, TotalRAM: 64 << 20}))
	defer m.DecUsers(ctx)
	defer m.Deactivate()
	// CommitLimit is 32 MiB: the parent fits, its child would not.
	mustMap(t, m, anon(window+0x1000000, 30<<20, hostarch.ReadWrite))
	if _, _, err := m.ForkWithPlan(ctx); !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("fork past CommitLimit: %v, want ENOMEM", err)
	}
	if as.preFork != 1 || as.postFk != 1 {
		t.Errorf("PreFork called %d times, PostFork %d, want 1 and 1", as.preFork, as.postFk)
	}
	if at, ok := as.perms(window); !ok || at != hostarch.ReadWrite {
		t.Errorf("parent maps %v (%v) after a failed fork, want rw-", at, ok)
	}
	check(t, m)
}

// TestForkPinned checks ForkPinned: the parent's writable private pages
// within the pinned ranges stay as they were (writable in its manager and
// in its AddressSpace, not in the plan's Copy), the child gets copies of
// those holding data (counted in the plan's Pinned and Keep), and from
// then on each side writes its own page without a fault or a copy; the
// rest forks as ever.
func TestForkPinned(t *testing.T) {
	m, as := forkPlanMM(t, true, nil)
	defer m.DecUsers(ctx)
	defer m.Deactivate()
	r := func(start, end hostarch.Addr) hostarch.AddrRange {
		return hostarch.AddrRange{Start: window + start, End: window + end}
	}
	mustOK(t, "CopyOut", func() error { _, err := m.CopyOut(ctx, window+0x1000, []byte("parent"), IOOpts{}); return err }())
	// Pinned: the second page of the first vma, one byte of the second
	// half of the last (which has no page: not copied), and shared memory
	// (not private: shared as ever).
	pinned := []hostarch.AddrRange{r(0x30000, 0x30010), {Start: window + 0x1800, End: window + 0x1900}, r(0x63000, 0x63001)}
	used := m.mf.UsageAllocated()
	c, plan, err := m.ForkPinned(ctx, pinned)
	mustOK(t, "fork", err)
	defer c.DecUsers(ctx)
	if got := m.mf.UsageAllocated() - used; got != hostarch.PageSize {
		t.Errorf("the fork allocated %#x bytes, want one page", got)
	}
	wantCopy := []hostarch.AddrRange{r(0, 0x1000), r(0x60000, 0x62000)}
	if !reflect.DeepEqual(plan.Copy, wantCopy) {
		t.Errorf("Copy %v, want %v", plan.Copy, wantCopy)
	}
	if want := []hostarch.AddrRange{r(0x1000, 0x2000)}; !reflect.DeepEqual(plan.Pinned, want) {
		t.Errorf("Pinned %v, want %v", plan.Pinned, want)
	}
	if !slices.ContainsFunc(plan.Keep, func(k hostarch.AddrRange) bool { return k.IsSupersetOf(r(0x1000, 0x2000)) }) {
		t.Errorf("Keep %v lacks the pinned page", plan.Keep)
	}
	if at, ok := as.perms(window + 0x1000); !ok || at != hostarch.ReadWrite {
		t.Errorf("parent maps the pinned page %v (%v) after the fork, want rw- kept", at, ok)
	}
	pb, cb := m.Backings(r(0x1000, 0x2000)), c.Backings(r(0x1000, 0x2000))
	if len(pb) != 1 || len(cb) != 1 || pb[0].Offset == cb[0].Offset || !pb[0].Perms.Write || !cb[0].Perms.Write {
		t.Fatalf("pinned page: parent %+v, child %+v, want distinct writable pages", pb, cb)
	}
	// Each side's writes are its own, and cost nothing more.
	used = m.mf.UsageAllocated()
	mustOK(t, "parent CopyOut", func() error { _, err := m.CopyOut(ctx, window+0x1000, []byte("PARENT"), IOOpts{}); return err }())
	mustOK(t, "child CopyOut", func() error { _, err := c.CopyOut(ctx, window+0x1002, []byte("ild"), IOOpts{}); return err }())
	if got := m.mf.UsageAllocated(); got != used {
		t.Errorf("writes to the pinned pages allocated %#x bytes", got-used)
	}
	for _, side := range []struct {
		name string
		m    *MemoryManager
		want string
	}{{"parent", m, "PARENT"}, {"child", c, "paild"}} {
		b := make([]byte, len(side.want))
		if _, err := side.m.CopyIn(ctx, window+0x1000, b, IOOpts{}); err != nil || string(b) != side.want {
			t.Errorf("%s reads %q (%v), want %q", side.name, b, err, side.want)
		}
	}
	// The page the parent had none of stays without one in the child.
	if cb := c.Backings(r(0x63000, 0x64000)); len(cb) != 0 {
		t.Errorf("child has %+v where the parent had no page", cb)
	}
	check(t, c)
	check(t, m)
}
