package mm

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"unsafe"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"golang.org/x/sys/unix"
)

// What Fork does with a field of MemoryManager.
const (
	// forkCopied: the child's value equals the parent's.
	forkCopied = "copied"
	// forkShared: the child points to the parent's object.
	forkShared = "shared"
	// forkZero: the child starts with the zero value, whatever the
	// parent's.
	forkZero = "zero"
	// forkOwn: the child's own value, derived from what it inherited
	// (checked by the tests named in the note).
	forkOwn = "own"
	// forkLock: a lock, unlocked in the child.
	forkLock = "lock"
)

// forkFields says what Fork does with each field of MemoryManager, and why.
// A new field must be added here, which is the reminder to decide what a
// forked child gets (Linux's dup_mm copies the whole mm_struct and then
// resets what a child must not inherit).
var forkFields = map[string]struct{ kind, why string }{
	"p":                     {forkCopied, "same platform"},
	"mf":                    {forkCopied, "same memory file"},
	"privateRefs":           {forkShared, "copy-on-write pages are counted across the family"},
	"users":                 {forkOwn, "1: the child's first user"},
	"mappingMu":             {forkLock, ""},
	"anonVMAMu":             {forkLock, ""},
	"vmas":                  {forkOwn, "copied except MADV_DONTFORK, without mlock (TestForkDontForkAndWipeOnFork)"},
	"layout":                {forkCopied, "mmap_base and direction are inherited"},
	"brk":                   {forkCopied, "the break is inherited"},
	"usageAS":               {forkOwn, "recomputed from the child's vmas (CheckInvariants)"},
	"peakAS":                {forkOwn, "the child's own VmPeak, as Linux's"},
	"lockedAS":              {forkOwn, "recomputed: nothing is locked in the child"},
	"dataAS":                {forkOwn, "recomputed from the child's vmas"},
	"stackAS":               {forkOwn, "recomputed from the child's vmas"},
	"execAS":                {forkOwn, "recomputed from the child's vmas"},
	"dataSegment":           {forkCopied, "inherited with the break"},
	"codeSegment":           {forkCopied, "the child runs the same program"},
	"guards":                {forkOwn, "kept within the inherited vmas"},
	"uffdMarkers":           {forkZero, "userfaultfd markers are not inherited (the child's registrations are new contexts')"},
	"defMLockMode":          {forkZero, "mlockall(MCL_FUTURE) is not inherited"},
	"sharedAnon":            {forkCopied, "the child can make shared anonymous memory"},
	"commit":                {forkCopied, "the child's accounted vmas are committed where the parent's are"},
	"limits":                {forkCopied, "rlimits and privileges are inherited"},
	"mdwe":                  {forkCopied, "inherited, unless PR_MDWE_NO_INHERIT (TestMDWE)"},
	"activeMu":              {forkLock, ""},
	"lastRead":              {forkZero, "a cache of the manager's own pmas (fastread.go)"},
	"lastWrite":             {forkZero, "a cache of the manager's own pmas (fastread.go)"},
	"pmas":                  {forkOwn, "copy-on-write copies (TestForkCopyOnWrite)"},
	"curRSS":                {forkOwn, "the size of the child's pmas (CheckInvariants)"},
	"maxRSS":                {forkOwn, "the child's own VmHWM (0: its resident set until it shrinks), as Linux's"},
	"resMemo":               {forkZero, "set only inside a reader's critical section"},
	"as":                    {forkZero, "no AddressSpace until the child's Activate"},
	"active":                {forkZero, "not active"},
	"unmapAllOnActivate":    {forkZero, "nothing to unmap"},
	"captureInvalidations":  {forkZero, "transient in the parent"},
	"capturedInvalidations": {forkZero, "transient in the parent"},
	"faults":                {forkZero, "the child's own fault count"},
	"aio":                   {forkZero, "AIO contexts are not inherited (their rings are DONTFORK)"},
	"metadataMu":            {forkLock, ""},
	"argv":                  {forkCopied, "the child's stack is the parent's"},
	"envv":                  {forkCopied, "the child's stack is the parent's"},
	"auxv":                  {forkCopied, "inherited"},
	"executable":            {forkCopied, "inherited (a reference of the child's)"},
	"dumpability":           {forkCopied, "inherited"},
	"vdsoSigReturn":         {forkCopied, "the vDSO is inherited"},
}

// forkZeroMayBeZeroInParent are the forkZero fields the test cannot make
// non-zero in the parent at the moment of the fork.
var forkZeroMayBeZeroInParent = map[string]bool{
	"unmapAllOnActivate": true, "captureInvalidations": true, "capturedInvalidations": true,
	"lastRead": true, "lastWrite": true, "resMemo": true,
}

// field returns the (unexported) field name of m, readable and settable.
func field(m *MemoryManager, name string) reflect.Value {
	f := reflect.ValueOf(m).Elem().FieldByName(name)
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
}

// sameValue compares two field values; functions compare by code pointer.
func sameValue(a, b reflect.Value) bool {
	if a.Kind() == reflect.Func {
		return a.Pointer() == b.Pointer()
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// TestForkCoversEveryField fails when MemoryManager gains or loses a field
// that forkFields does not classify, and checks the classification against
// a fork of a parent in which every copied, shared and reset field is set.
func TestForkCoversEveryField(t *testing.T) {
	ty := reflect.TypeOf(MemoryManager{})
	seen := map[string]bool{}
	for i := 0; i < ty.NumField(); i++ {
		name := ty.Field(i).Name
		seen[name] = true
		if _, ok := forkFields[name]; !ok {
			t.Errorf("MemoryManager.%s is new: decide what Fork gives the child (mm/fork.go) and list it in forkFields", name)
		}
	}
	for name := range forkFields {
		if !seen[name] {
			t.Errorf("MemoryManager.%s is gone: update forkFields", name)
		}
	}
	if t.Failed() {
		return
	}

	mf := newMF(t, 0)
	plat := &recordingPlatform{}
	m := New(Options{Platform: plat, MemoryFile: mf})
	m.SetSharedAnonFactory(func(ctx context.Context, n uint64) (MappableFile, error) {
		return hostfile.NewSharedAnon(ctx, mf, n)
	})
	lim := m.Limits()
	lim.MemLock = RLimit{64 << 20, 64 << 20}
	lim.CapSysRawIO = true
	m.SetLimits(lim)
	mustOK(t, "PR_SET_MDWE", m.SetMDWE(uint64(MDWERefuseExecGain), 0, 0, 0))
	m.BrkSetup(ctx, window+0x100000)
	m.SetDataSegment(hostarch.AddrRange{Start: window + 0x80000, End: window + 0x90000})
	m.SetCodeSegment(hostarch.AddrRange{Start: window + 0x10000, End: window + 0x20000})
	m.SetCommit(NewCommit(DefaultOvercommit(1 << 30)))
	refs := 0
	exe := testIdentity{name: "/bin/prog", refs: &refs}
	exe.IncRef()
	m.SetExecutable(ctx, exe)
	exe.DecRef(ctx)
	m.SetAuxv([]AuxEntry{{3, 0x400040}})
	m.SetArgvEnvv(hostarch.AddrRange{Start: 0x7ffd1000, End: 0x7ffd1010}, hostarch.AddrRange{Start: 0x7ffd1010, End: 0x7ffd1100})
	m.SetDumpability(RootDumpable)
	m.metadataMu.Lock()
	m.vdsoSigReturn = 0x7fff0123
	m.metadataMu.Unlock()
	mustOK(t, "Activate", m.Activate(ctx))
	a := mustMap(t, m, anon(window, 0x4000, hostarch.ReadWrite))
	mustOK(t, "fault", m.HandleUserFault(ctx, a, hostarch.Write, 0))
	// A userfaultfd marker (WP_UNPOPULATED) on an untouched page.
	wpa := mustMap(t, m, anon(window+0x400000, 0x2000, hostarch.ReadWrite))
	uf := newUffd(t, m, UffdFeatureWPUnpopulated)
	if _, err := uf.Register(ctx, uint64(wpa), 0x2000, UffdioRegisterModeWP); err != nil {
		t.Fatal(err)
	}
	mustOK(t, "UFFDIO_WRITEPROTECT", uf.WriteProtect(ctx, uint64(wpa), 0x2000, UffdioWriteprotectModeWP))
	mustOK(t, "mlockall", m.MLockAll(ctx, MLockAllOpts{Future: true}))
	if _, err := m.NewAIOContext(ctx, 4); err != nil {
		t.Fatal(err)
	}
	c, err := m.Fork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, rule := range forkFields {
		pv, cv := field(m, name), field(c, name)
		switch rule.kind {
		case forkCopied:
			if pv.IsZero() {
				t.Errorf("%s is zero in the parent: set it so the test sees it copied", name)
			} else if !sameValue(pv, cv) {
				t.Errorf("%s not copied: parent %v, child %v", name, pv, cv)
			}
		case forkShared:
			if pv.IsZero() || pv.Pointer() != cv.Pointer() {
				t.Errorf("%s not shared: parent %v, child %v", name, pv, cv)
			}
		case forkZero:
			if pv.IsZero() && !forkZeroMayBeZeroInParent[name] {
				t.Errorf("%s is zero in the parent: set it so the test sees it reset", name)
			}
			if !cv.IsZero() {
				t.Errorf("%s not reset in the child: %v", name, cv)
			}
		case forkLock:
			if name == "activeMu" {
				// Its write sequence count is the child's own.
				cv = cv.FieldByName("shards")
			}
			if !cv.IsZero() {
				t.Errorf("%s is held in the child", name)
			}
		}
	}
	check(t, c)
	m.Deactivate()
	c.DecUsers(ctx)
	m.DecUsers(ctx)
	if refs != 0 {
		t.Errorf("%d references on the executable after release", refs)
	}
	if n := mf.UsageAllocated(); n != 0 {
		t.Errorf("%#x bytes allocated after release", n)
	}
}

// TestForkSharedAnonymous: a forked child makes shared anonymous memory,
// which its own child shares.
func TestForkSharedAnonymous(t *testing.T) {
	mf := newMF(t, 0)
	m := New(Options{MemoryFile: mf})
	m.SetSharedAnonFactory(func(ctx context.Context, n uint64) (MappableFile, error) {
		return hostfile.NewSharedAnon(ctx, mf, n)
	})
	c, err := m.Fork(ctx)
	mustOK(t, "fork", err)
	a, err := c.mmapFlags(ctx, 0, 0x2000, ProtRead|ProtWrite, MapShared|MapAnonymous, nil, 0)
	if err != nil {
		t.Fatalf("mmap(MAP_SHARED|MAP_ANONYMOUS) in a forked child: %v", err)
	}
	g, err := c.Fork(ctx)
	mustOK(t, "fork", err)
	write(t, g, a+0x1000, []byte("grandchild"))
	if got := string(read(t, c, a+0x1000, 10)); got != "grandchild" {
		t.Errorf("the child reads %q, want what its child wrote", got)
	}
	if _, err := g.mmapFlags(ctx, 0, 0x1000, ProtRead, MapShared|MapAnonymous, nil, 0); err != nil {
		t.Errorf("mmap(MAP_SHARED|MAP_ANONYMOUS) in a grandchild: %v", err)
	}
	// Without a factory it stays ENODEV.
	n := New(Options{MemoryFile: mf})
	nc, err := n.Fork(ctx)
	mustOK(t, "fork", err)
	if _, err := nc.mmapFlags(ctx, 0, 0x1000, ProtRead, MapShared|MapAnonymous, nil, 0); !errors.Is(err, unix.ENODEV) {
		t.Errorf("without a factory: %v, want ENODEV", err)
	}
	for _, x := range []*MemoryManager{g, c, m, nc, n} {
		check(t, x)
		x.DecUsers(ctx)
	}
	if u := mf.UsageAllocated(); u != 0 {
		t.Errorf("%#x bytes allocated after release", u)
	}
}

// TestForkAllocationsPerPMA checks that forking allocates nothing for each
// pma it copies (only the child's set nodes, a few a leaf of 16): the
// iterator forkedRuns was made several heap allocations a pma, a tenth of
// bench's fork_256m.
func TestForkAllocationsPerPMA(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates for what it instruments")
	}
	allocs := func(vmas int) float64 {
		mm := newTestMM(t)
		for i := 0; i < vmas; i++ {
			o := anonOpts(4 * hostarch.PageSize)
			o.Addr, o.Fixed = 0x200000000000+hostarch.Addr(i)*8*hostarch.PageSize, true
			a, err := mm.MMap(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := mm.CopyOut(ctx, a, make([]byte, 4*hostarch.PageSize), IOOpts{}); err != nil {
				t.Fatal(err)
			}
		}
		fork := func() {
			c, err := mm.Fork(ctx)
			if err != nil {
				t.Fatal(err)
			}
			c.DecUsers(ctx)
		}
		fork() // The first fork asks the host which pages hold data.
		return testing.AllocsPerRun(10, fork)
	}
	few, many := allocs(8), allocs(72)
	if per := (many - few) / 64; per > 0.5 {
		t.Errorf("a fork allocates %.2f times a pma more (%v allocations with 8 pmas, %v with 72)", per, few, many)
	}
}
