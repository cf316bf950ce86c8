package report

import (
	"bytes"
	"context"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/pgalloc"
)

var ctx = context.Background()

const base = hostarch.Addr(0x200000000000)

// fixture runs a small story through a Collector with real managers: a
// process with a locked page, a guard page and touched memory forks a
// child, which writes to part of it and exits with status 3; both make a
// few memory calls.
func fixture(t *testing.T) (*Report, *mm.MemoryManager, *mm.MemoryManager) {
	t.Helper()
	mf, err := pgalloc.New(pgalloc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mf.Destroy)
	m := mm.New(mm.Options{MemoryFile: mf})
	t.Cleanup(func() { m.DecUsers(ctx) })
	const unit = hostarch.HugePageSize
	if _, err := m.MMap(ctx, memmap.MMapOpts{Length: 3 * unit, Addr: base, Fixed: true, Private: true, Perms: hostarch.ReadWrite, MaxPerms: hostarch.AnyAccess}); err != nil {
		t.Fatal(err)
	}
	// A second vma, far away, locked.
	far := base + 0x10000000000
	if _, err := m.MMap(ctx, memmap.MMapOpts{Length: 4096, Addr: far, Fixed: true, Private: true, Perms: hostarch.ReadWrite, MaxPerms: hostarch.AnyAccess}); err != nil {
		t.Fatal(err)
	}
	if err := m.MLock(ctx, far, 4096, memmap.MLockEager); err != nil {
		t.Fatal(err)
	}
	m.CopyOut(ctx, base, []byte("one"), mm.IOOpts{})
	m.CopyOut(ctx, base+unit, []byte("two"), mm.IOOpts{})
	if err := m.MAdvise(ctx, base+2*unit, 4096, mm.AdvGuardInstall); err != nil {
		t.Fatal(err)
	}
	c := NewCollector([]string{"prog", "arg"})
	c.Exec(100, "prog", "/bin/prog")
	c.Call(100, "mmap", CallSite{}, 5*time.Microsecond, false)
	c.Call(100, "mmap", CallSite{}, 7*time.Microsecond, false)
	c.Call(100, "munmap", CallSite{}, time.Millisecond, true)
	c.Sample(time.Now(), []Space{{100, m}}, 4096)
	child, err := m.Fork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.DecUsers(ctx) })
	c.Fork(100, 101, "prog", m, "/bin/prog")
	child.CopyOut(ctx, base, []byte("ONE"), mm.IOOpts{})
	if err := child.HandleUserFault(ctx, base+unit+4096, hostarch.Write, 0); err != nil {
		t.Fatal(err)
	}
	c.Call(101, "brk", CallSite{}, 3*time.Microsecond, false)
	c.Sample(time.Now(), []Space{{101, child}, {100, m}}, 8192)
	c.Exit(101, syscall.WaitStatus(3<<8))
	c.End(101, child, "exit", "/bin/prog")
	return c.Finish(Totals{Processes: 2, Execs: 1, MemCalls: 4, Exit: "exited 0"}), m, child
}

// TestCollector: the report holds the processes, their snapshots (vmas
// with kinds, resident, shared, locked and guard pages), the timeline and
// the calls as they happened.
func TestCollector(t *testing.T) {
	r, m, child := fixture(t)
	if len(r.Processes) != 2 {
		t.Fatalf("%d processes, want 2", len(r.Processes))
	}
	par, ch := r.Processes[0], r.Processes[1]
	if par.PID != 100 || par.Parent != 0 || ch.PID != 101 || ch.Parent != 100 {
		t.Errorf("processes %d (parent %d), %d (parent %d), want 100 (0), 101 (100)", par.PID, par.Parent, ch.PID, ch.Parent)
	}
	if ch.Exit != "exited 3" || ch.EndNS < ch.StartNS || par.EndNS != -1 {
		t.Errorf("child ended %q at %d (started %d); parent end %d", ch.Exit, ch.EndNS, ch.StartNS, par.EndNS)
	}
	if par.MemCalls != 3 || ch.MemCalls != 1 {
		t.Errorf("memory calls %d, %d, want 3, 1", par.MemCalls, ch.MemCalls)
	}
	if got := ch.Faults + par.Faults; got != m.Faults()+child.Faults() {
		t.Errorf("faults %d+%d, the managers served %d+%d", par.Faults, ch.Faults, m.Faults(), child.Faults())
	}
	// The parent's snapshot at the fork: everything it touched is shared.
	if len(par.Snapshots) != 1 || par.Snapshots[0].Why != "fork" {
		t.Fatalf("parent snapshots %+v", par.Snapshots)
	}
	ps := par.Snapshots[0]
	if len(ps.VMAs) != 2 {
		t.Fatalf("parent's snapshot has %d vmas, want 2", len(ps.VMAs))
	}
	v, lk := ps.VMAs[0], ps.VMAs[1]
	const unit = hostarch.HugePageSize
	if v.Start != uint64(base) || v.End != uint64(base+3*unit) || v.Kind != "anonymous" || v.Perms != "rw-p" {
		t.Errorf("vma %#x-%#x %s %s", v.Start, v.End, v.Kind, v.Perms)
	}
	wantRuns := []Run{
		{uint64(base), uint64(base) + 4096, "shared"},
		{uint64(base + unit), uint64(base+unit) + 4096, "shared"},
		{uint64(base + 2*unit), uint64(base+2*unit) + 4096, "guard"},
	}
	if !reflect.DeepEqual(v.Runs, wantRuns) {
		t.Errorf("runs %+v, want %+v", v.Runs, wantRuns)
	}
	// smaps counts as Rss only the pages touched (one per unit), as Linux
	// does, and its Locked is the locked pages' Pss (the page is shared
	// with the child: half of it); the snapshot's own locked figure is
	// the locked bytes.
	if v.Shared != 8192 || v.Guard != 4096 || v.Rss != 2*4096 || ps.Shared != 8192+4096 || ps.Guard != 4096 {
		t.Errorf("vma shared %d guard %d rss %d; snapshot shared %d guard %d", v.Shared, v.Guard, v.Rss, ps.Shared, ps.Guard)
	}
	if lk.Locked != 2048 || ps.Locked != 4096 || !strings.Contains(strings.Join(lk.Flags, " "), "lo") {
		t.Errorf("locked vma: Locked %d, flags %v; snapshot locked %d", lk.Locked, lk.Flags, ps.Locked)
	}
	// The child's snapshot at its exit: its first page is its own copy,
	// the second unit's first page still shared, its second page the
	// child's own.
	if len(ch.Snapshots) != 1 || ch.Snapshots[0].Why != "exit" || ch.Snapshots[0].Image != "/bin/prog" {
		t.Fatalf("child snapshots %+v", ch.Snapshots)
	}
	cv := ch.Snapshots[0].VMAs[0]
	if cv.Shared != 4096 || cv.Runs[0] != (Run{uint64(base), uint64(base) + 4096, "resident"}) {
		t.Errorf("child's vma: shared %d, runs %+v", cv.Shared, cv.Runs)
	}
	// The timeline.
	if len(r.Samples) != 2 {
		t.Fatalf("%d samples, want 2", len(r.Samples))
	}
	s := r.Samples[1]
	if s.MemFile != 8192 || len(s.Procs) != 2 || s.Procs[0].PID != 100 || s.RSS != s.Procs[0].RSS+s.Procs[1].RSS {
		t.Errorf("sample %+v", s)
	}
	// The calls, the most time first.
	want := []Syscall{
		{Name: "munmap", Count: 1, Errors: 1, TotalNS: int64(time.Millisecond), MaxNS: int64(time.Millisecond)},
		{Name: "mmap", Count: 2, TotalNS: 12000, MaxNS: 7000},
		{Name: "brk", Count: 1, TotalNS: 3000, MaxNS: 3000},
	}
	if !reflect.DeepEqual(r.Syscalls, want) {
		t.Errorf("syscalls %+v, want %+v", r.Syscalls, want)
	}
	var kinds []string
	for _, e := range r.Events {
		kinds = append(kinds, e.Kind)
	}
	if strings.Join(kinds, " ") != "exec fork exit" {
		t.Errorf("events %v", kinds)
	}
}

// TestJSONRoundTrip: ReadJSON reads back what WriteJSON wrote.
func TestJSONRoundTrip(t *testing.T) {
	r, _, _ := fixture(t)
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSON(&b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		for i := range r.Processes {
			if !reflect.DeepEqual(got.Processes[i], r.Processes[i]) {
				t.Errorf("process %d: read back %+v\nwrote %+v", i, got.Processes[i], r.Processes[i])
			}
		}
		t.Errorf("read back %+v\nwrote %+v", got, r)
	}
}

// TestMergePairs: a timeline at its size limit is halved, keeping every
// fault, and the interval doubles.
func TestMergePairs(t *testing.T) {
	c := NewCollector(nil)
	mf, err := pgalloc.New(pgalloc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Destroy()
	m := mm.New(mm.Options{MemoryFile: mf})
	defer m.DecUsers(ctx)
	if _, err := m.MMap(ctx, memmap.MMapOpts{Length: maxSamples * 4096, Addr: base, Fixed: true, Private: true, Perms: hostarch.ReadWrite, MaxPerms: hostarch.AnyAccess}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range maxSamples {
		// One fault per sample (each unit is 2 MiB: fault them apart).
		m.HandleUserFault(ctx, base+hostarch.Addr(i)*4096, hostarch.Write, 0)
		now = now.Add(DefaultInterval)
		c.Sample(now, []Space{{1, m}}, 0)
	}
	r := c.Finish(Totals{})
	var faults uint64
	for _, s := range r.Samples {
		faults += s.Faults
	}
	if len(r.Samples) != maxSamples/2 || faults != m.Faults() || r.IntervalNS != int64(2*DefaultInterval) {
		t.Errorf("%d samples, %d faults (the manager served %d), interval %v", len(r.Samples), faults, m.Faults(), time.Duration(r.IntervalNS))
	}
}

// TestHTMLNumbers: the page holds every vma, sample and call of the
// report, with the report's numbers.
func TestHTMLNumbers(t *testing.T) {
	r, _, _ := fixture(t)
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if strings.Contains(page, "http://") || strings.Contains(page, "https://") || strings.Contains(page, "src=") {
		t.Error("the page refers to something outside it")
	}
	if err := CheckPage(page, r); err != nil {
		t.Error(err)
	}
	// CheckPage sees a difference.
	r.Processes[1].Snapshots[0].VMAs[0].Rss += 4096
	r.Samples[0].Faults++
	if err := CheckPage(page, r); err == nil || !strings.Contains(err.Error(), "rss") || !strings.Contains(err.Error(), "faults") {
		t.Errorf("CheckPage of a changed report: %v", err)
	}
}

// TestCollectBudget: once collecting has taken more than 1% of the run,
// a process's fork snapshots after its first are left out.
func TestCollectBudget(t *testing.T) {
	mf, err := pgalloc.New(pgalloc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Destroy()
	m := mm.New(mm.Options{MemoryFile: mf})
	defer m.DecUsers(ctx)
	c := NewCollector(nil)
	// A sample that (by its start) took 50 ms of a run of about as much.
	c.Sample(time.Now().Add(-50*time.Millisecond), []Space{{1, m}}, 0)
	c.Fork(1, 2, "p", m, "/bin/p")
	c.Fork(1, 3, "p", m, "/bin/p")
	r := c.Finish(Totals{})
	if n := len(r.Processes[0].Snapshots); n != 1 {
		t.Errorf("%d fork snapshots over budget, want 1", n)
	}
}

// TestSnapshotStatus: a snapshot's status figures, summed from its vmas,
// are what the manager's Stats says (VmSize, VmRSS, VmLck, VmHWM).
func TestSnapshotStatus(t *testing.T) {
	r, m, child := fixture(t)
	for _, tc := range []struct {
		who string
		s   Snapshot
		m   *mm.MemoryManager
	}{
		{"parent at the fork", r.Processes[0].Snapshots[0], m},
		{"child at its exit", r.Processes[1].Snapshots[len(r.Processes[1].Snapshots)-1], child},
	} {
		st := tc.m.Stats()
		got := [4]uint64{tc.s.VmSize, tc.s.RSS, tc.s.Locked, tc.s.HWM}
		want := [4]uint64{st.VmSize, st.VmRSS, st.VmLck, st.VmHWM}
		if got != want {
			t.Errorf("%s: VmSize, RSS, Locked, HWM = %v, Stats says %v", tc.who, got, want)
		}
		if want[1] == 0 || (tc.m == m && want[2] == 0) {
			// (Locks are not inherited: the child has none.)
			t.Errorf("%s: the fixture should have resident (and the parent locked) memory: %v", tc.who, want)
		}
	}
}

// TestNextGap: samples are spaced by the interval, or by collectShare
// times what the last one cost when that is longer, so sampling stays
// within 1/collectShare of the run however large the address spaces.
func TestNextGap(t *testing.T) {
	for _, tc := range []struct{ interval, cost, want time.Duration }{
		{10 * time.Millisecond, 0, 10 * time.Millisecond},
		{10 * time.Millisecond, 50 * time.Microsecond, 10 * time.Millisecond},
		{10 * time.Millisecond, 100 * time.Microsecond, 20 * time.Millisecond},
		{10 * time.Millisecond, 3 * time.Millisecond, 600 * time.Millisecond},
		{time.Second, 20 * time.Millisecond, 4 * time.Second},
	} {
		if got := nextGap(tc.interval, tc.cost); got != tc.want {
			t.Errorf("nextGap(%v, %v) = %v, want %v", tc.interval, tc.cost, got, tc.want)
		}
	}
}

// TestFreeing: a release of a MiB or more is sampled around, at most
// once per interval; smaller releases are not.
func TestFreeing(t *testing.T) {
	c := NewCollector([]string{"prog"})
	t0 := c.start.Add(time.Second)
	if c.Freeing(eventBytes-4096, t0) {
		t.Errorf("a release below eventBytes is sampled")
	}
	if !c.Freeing(eventBytes, t0) {
		t.Errorf("a release of %d bytes is not sampled", eventBytes)
	}
	if c.Freeing(eventBytes, t0.Add(DefaultInterval/2)) {
		t.Errorf("two releases within the interval are both sampled")
	}
	if !c.Freeing(eventBytes, t0.Add(DefaultInterval)) {
		t.Errorf("a release an interval after the last sampled one is not sampled")
	}
	// After a sample that cost 1 ms, the pairs keep 100 ms apart.
	c.lastCost = time.Millisecond
	if c.Freeing(eventBytes, t0.Add(2*DefaultInterval)) {
		t.Errorf("a release is sampled within collectShare times the last sample's cost")
	}
	if !c.Freeing(eventBytes, t0.Add(DefaultInterval+collectShare*time.Millisecond)) {
		t.Errorf("a release is not sampled collectShare times the last sample's cost later")
	}
}

// TestExiting: exits are sampled under the same bound as releases, and
// share their turns: a run of exits within one interval gets one sample,
// and a release sampled just before leaves the exit unsampled.
func TestExiting(t *testing.T) {
	c := NewCollector([]string{"prog"})
	t0 := c.start.Add(time.Second)
	if !c.Exiting(t0) {
		t.Errorf("the first exit is not sampled")
	}
	if c.Exiting(t0.Add(DefaultInterval / 2)) {
		t.Errorf("two exits within the interval are both sampled")
	}
	if !c.Freeing(eventBytes, t0.Add(DefaultInterval)) {
		t.Errorf("a release an interval after the last sampled exit is not sampled")
	}
	if c.Exiting(t0.Add(DefaultInterval + DefaultInterval/2)) {
		t.Errorf("an exit within the interval after a sampled release is sampled")
	}
	c.lastCost = time.Millisecond
	if c.Exiting(t0.Add(3 * DefaultInterval)) {
		t.Errorf("an exit is sampled within collectShare times the last sample's cost")
	}
	if !c.Exiting(t0.Add(DefaultInterval + collectShare*time.Millisecond)) {
		t.Errorf("an exit is not sampled collectShare times the last sample's cost later")
	}
}

// TestCollectCostIsCPUTime: what a sample costs is the collecting
// thread's CPU time, so a thread that waits (for a CPU, on a loaded
// machine) is not charged for the wait.
func TestCollectCostIsCPUTime(t *testing.T) {
	// As Sample and snapshot are while they measure.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c := startCPU()
	if c.tid == 0 {
		t.Skip("no thread CPU clock here")
	}
	time.Sleep(50 * time.Millisecond)
	if d := c.since(); d >= 25*time.Millisecond {
		t.Errorf("a 50 ms sleep cost %v of CPU time", d)
	}
	c = startCPU()
	for t0 := time.Now(); time.Since(t0) < 20*time.Millisecond; {
	}
	if d := c.since(); d <= 0 {
		t.Errorf("20 ms of spinning cost %v of CPU time", d)
	}
}

// TestDrawnRuns: a vma's bar draws every run when they fit in its
// columns, and otherwise one run per stretch of columns of one state, the
// strongest of the column's pages, so that a guard page or a shared page
// among tens of thousands of runs stays visible and the page stays small.
func TestDrawnRuns(t *testing.T) {
	const pg = 4096
	few := VMA{Start: 0x10000, End: 0x10000 + 8*pg, Runs: []Run{
		{Start: 0x10000, End: 0x10000 + pg, State: "resident"},
		{Start: 0x10000 + 2*pg, End: 0x10000 + 3*pg, State: "shared"},
	}}
	if got := drawnRuns(&few); !slices.Equal(got, few.Runs) {
		t.Errorf("a few runs drawn as %v, want them all", got)
	}

	// 20,000 pages alternating resident and shared, one guard page in
	// the middle, a resident tail.
	const n = 20000
	many := VMA{Start: 0x7f0000000000, End: 0x7f0000000000 + 2*n*pg}
	for i := uint64(0); i < n; i++ {
		st := "resident"
		if i%2 == 1 {
			st = "shared"
		}
		if i == n/2 {
			st = "guard"
		}
		many.Runs = append(many.Runs, Run{Start: many.Start + i*pg, End: many.Start + (i+1)*pg, State: st})
	}
	many.Runs = append(many.Runs, Run{Start: many.Start + n*pg, End: many.End, State: "resident"})
	got := drawnRuns(&many)
	if len(got) > mapBarW {
		t.Fatalf("%d runs drawn, more than the bar's %d columns", len(got), mapBarW)
	}
	var states []string
	prev := many.Start
	for _, r := range got {
		if r.Start < prev || r.End <= r.Start || r.End > many.End {
			t.Errorf("drawn run %#x-%#x out of order or outside the vma", r.Start, r.End)
		}
		prev = r.End
		states = append(states, r.State)
	}
	// The alternating half shows shared, broken by the guard page's
	// column; the tail shows resident.
	want := []string{"shared", "guard", "shared", "resident"}
	if !slices.Equal(states, want) {
		t.Errorf("drawn states %v, want %v", states, want)
	}
	if got[len(got)-1].End != many.End {
		t.Errorf("the last drawn run ends at %#x, want the vma's end %#x", got[len(got)-1].End, many.End)
	}
}

// TestMergePairsKeepsPeaks: halving the timeline keeps, of each pair, the
// sample with the larger RSS, so a one-sample peak survives every
// halving, with the pair's faults.
func TestMergePairsKeepsPeaks(t *testing.T) {
	var ss []Sample
	for i := range 16 {
		s := Sample{TNS: int64(i), RSS: 100, Faults: 1, Procs: []ProcSample{{PID: 1, RSS: 100, Faults: 1}}}
		if i == 6 {
			s.RSS, s.Procs[0].RSS = 900, 900
		}
		ss = append(ss, s)
	}
	for len(ss) > 1 {
		ss = mergePairs(ss)
		var peak bool
		var faults, procFaults uint64
		for _, s := range ss {
			peak = peak || s.RSS == 900
			faults += s.Faults
			procFaults += s.Procs[0].Faults
		}
		if !peak || faults != 16 || procFaults != 16 {
			t.Fatalf("after halving to %d samples: peak kept %v, faults %d and %d, want 16", len(ss), peak, faults, procFaults)
		}
	}
	if ss[0].TNS != 6 {
		t.Errorf("the last sample left is at %d, want the peak's (6)", ss[0].TNS)
	}
}

// TestMergePairsKeepsEachProcessPeak: halving the timeline keeps each
// process's own peak, not only the larger total's: a child's peak in the
// sample whose total is smaller, and a process seen in one sample only.
func TestMergePairsKeepsEachProcessPeak(t *testing.T) {
	ss := []Sample{
		{TNS: 0, RSS: 110, Faults: 2, Procs: []ProcSample{{PID: 1, RSS: 100, Faults: 1}, {PID: 3, RSS: 10, Faults: 1}}},
		{TNS: 1, RSS: 60, Faults: 3, Procs: []ProcSample{{PID: 1, RSS: 10, Faults: 1}, {PID: 2, RSS: 30, Faults: 1}, {PID: 3, RSS: 20, Faults: 1}}},
	}
	got := mergePairs(ss)
	want := []ProcSample{{PID: 1, RSS: 100, Faults: 2}, {PID: 2, RSS: 30, Faults: 1}, {PID: 3, RSS: 20, Faults: 2}}
	if len(got) != 1 || got[0].RSS != 110 || got[0].Faults != 5 || !slices.Equal(got[0].Procs, want) {
		t.Errorf("merged to %+v, want total RSS 110, 5 faults, processes %+v", got, want)
	}
}
