// Package report collects a picture of a program's memory while vmspace
// runs it, and writes it as one self-contained HTML page or as JSON
// ("vmspace run --report FILE.html", "--report-json FILE").
//
// A Collector is fed by the runner (package sandbox) at a few points:
// Fork, Exec and Exit of each process; End of an address space (its exit
// or exec), where the whole vma list is taken (Snapshot: every vma with
// its smaps figures and the runs of resident, copy-on-write shared and
// guard pages); Call for each memory system call served, with the time
// spent on it and where it came from (CallSite: the program counter and
// the return address on the stack, named by the files' ELF symbols, see
// Site); and Tick after each stop, which samples the memory figures
// of every live address space (VmSize, RSS, locked memory, faults, and the
// memory file's usage) once per interval. The interval starts at
// DefaultInterval and doubles whenever the samples reach maxSamples (pairs
// of samples are merged), so a long run costs as little as a short one.
// A sample asks the host for the residency of every page (RSS counts
// touched pages), so a process of tens of MiB makes it cost milliseconds:
// the next sample then waits collectShare times what this one cost, which
// keeps sampling within 0.5% of the run, unless a memory call gives back a
// MiB or more, which is sampled before and after (Freeing), or a process
// exits (Exiting), under the same bound, with which these events share
// their turns; the run's last process's exit is always sampled.
// Snapshots are also taken of a parent when it forks (when its private
// memory becomes shared copy-on-write), at most maxSnapshots per process,
// and after the first only while collecting has taken less than 0.5% of
// the run so far. With the snapshots at each image's end and the files
// written at the run's end, the report stays within the 2% the run may
// slow down by.
//
// Report is the data (the JSON document); WriteHTML draws it: the address
// space of each process on a segmented axis (each vma and each gap gets
// a height that grows with the logarithm of its size, so that a 4 KiB
// guard and a 128 TiB gap are both visible), the timeline, and the table
// of memory system calls. The page needs no network: inline SVG, CSS and
// a little script.
//
// The package sits between mm (whose VMAInfo, PageRuns and Stats it
// reads) and the runner; it keeps no lock, since one goroutine at a time
// uses a Collector (the runner's tracer, then, after the run, its caller).
package report

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"syscall"
	"time"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// Report is a run's report: what --report-json writes, and what the HTML
// page shows. Times are nanoseconds since the run started; sizes bytes.
type Report struct {
	// Command is the program and its arguments.
	Command []string `json:"command"`
	// Started is when the run started (RFC 3339).
	Started time.Time `json:"started"`
	// WallNS is the run's duration.
	WallNS int64 `json:"wall_ns"`
	// IntervalNS is the sampling interval the timeline ended with.
	IntervalNS int64 `json:"interval_ns"`
	// CollectNS is the CPU time the run spent taking samples and
	// snapshots for the report and naming its call sites (the report's
	// own cost during the run; writing the files comes after), measured
	// on the collecting thread, so that a loaded machine's waits for a
	// CPU do not count (the naming of a new site is timed by the clock:
	// it reads files).
	CollectNS int64 `json:"collect_ns"`
	// Totals are the run's figures.
	Totals Totals `json:"totals"`
	// Processes are the program's processes, in the order they started.
	Processes []*Process `json:"processes"`
	// Samples are the timeline, in time order.
	Samples []Sample `json:"samples"`
	// Events are the forks, execs and exits, in time order.
	Events []Event `json:"events"`
	// Syscalls are the memory system calls served, by name, the most
	// time-consuming first.
	Syscalls []Syscall `json:"syscalls"`
	// Sites are where the memory system calls came from, the most
	// time-consuming first (at most maxSites).
	Sites []Site `json:"sites"`
}

// Totals are the figures of the whole run (sandbox.Stats).
type Totals struct {
	// PeakRSS is the largest VmHWM any address space had.
	PeakRSS uint64 `json:"peak_rss"`
	// Faults is the number of page faults served.
	Faults uint64 `json:"faults"`
	// MemCalls is the number of memory system calls served.
	MemCalls uint64 `json:"mem_calls"`
	// Processes and Execs count processes and program images.
	Processes int `json:"processes"`
	Execs     int `json:"execs"`
	// ManagerNS is the time vmspace spent serving stops.
	ManagerNS int64 `json:"manager_ns"`
	// Exit is how the first process ended ("exited 0", "killed by
	// SIGSEGV").
	Exit string `json:"exit"`
}

// Process is one process of the program.
type Process struct {
	PID int `json:"pid"`
	// Parent is the pid of the process that forked it (0 for the first).
	Parent int `json:"parent"`
	// Name is the program the process last ran, as it was named.
	Name string `json:"name"`
	// Images are the host paths of the programs it executed, in order.
	Images []string `json:"images"`
	// StartNS is when it was forked (or first executed); EndNS when it
	// exited (-1 if it had not when the report was written).
	StartNS int64 `json:"start_ns"`
	EndNS   int64 `json:"end_ns"`
	// Exit is how it ended ("exited 0", "killed by SIGKILL"), or "".
	Exit string `json:"exit"`
	// PeakRSS is the largest VmHWM of its address spaces.
	PeakRSS uint64 `json:"peak_rss"`
	// Faults and MemCalls count the page faults and memory system calls
	// served for it.
	Faults   uint64 `json:"faults"`
	MemCalls uint64 `json:"mem_calls"`
	// Snapshots are its address spaces at events, in time order; the
	// last one of each image is taken when it ends.
	Snapshots []Snapshot `json:"snapshots"`
}

// Snapshot is an address space at one moment.
type Snapshot struct {
	TNS int64 `json:"t_ns"`
	// Why is the event: "fork" (the parent, just after forking), "exec"
	// (the image about to be replaced), "exit", or "kill" (still running
	// when the run ended).
	Why string `json:"why"`
	// Image is the host path of the program image.
	Image string `json:"image"`
	// Status figures (/proc/PID/status): VmSize, VmRSS, VmLck, VmHWM.
	VmSize uint64 `json:"vm_size"`
	RSS    uint64 `json:"rss"`
	Locked uint64 `json:"locked"`
	HWM    uint64 `json:"hwm"`
	// Shared and Guard are the bytes shared copy-on-write with other
	// address spaces, and in guard regions.
	Shared uint64 `json:"shared"`
	Guard  uint64 `json:"guard"`
	// VMAs are the vmas in address order.
	VMAs []VMA `json:"vmas"`
}

// VMA is one vma, with its /proc/PID/smaps figures.
type VMA struct {
	Start uint64 `json:"start"`
	End   uint64 `json:"end"`
	// Perms are the four permission letters ("rw-p").
	Perms  string `json:"perms"`
	Offset uint64 `json:"offset"`
	// Dev is "major:minor" in hex, as /proc/PID/maps shows it.
	Dev   string `json:"dev"`
	Inode uint64 `json:"inode"`
	Name  string `json:"name"`
	// Kind is what the picture colours it by: text, data, heap, stack,
	// file, shared, anonymous or special (see KindOf); MMKind is mm's
	// VMAKind.
	Kind   string   `json:"kind"`
	MMKind string   `json:"mm_kind"`
	Flags  []string `json:"flags"`
	// The smaps figures.
	Rss          uint64 `json:"rss"`
	Pss          uint64 `json:"pss"`
	SharedClean  uint64 `json:"shared_clean"`
	SharedDirty  uint64 `json:"shared_dirty"`
	PrivateDirty uint64 `json:"private_dirty"`
	Anonymous    uint64 `json:"anonymous"`
	Locked       uint64 `json:"locked"`
	// Shared (copy-on-write with another address space) and Guard are
	// the bytes of the vma in Runs of those states.
	Shared uint64 `json:"shared"`
	Guard  uint64 `json:"guard"`
	// Runs are the resident, shared and guard runs of pages.
	Runs []Run `json:"runs"`
}

// Run is a run of pages in one state: "resident", "shared" (resident and
// shared copy-on-write with another address space) or "guard".
type Run struct {
	Start uint64 `json:"start"`
	End   uint64 `json:"end"`
	State string `json:"state"`
}

// Sample is the memory figures at one moment of the timeline.
type Sample struct {
	TNS int64 `json:"t_ns"`
	// VmSize, RSS and Locked are the sums over the live address spaces.
	VmSize uint64 `json:"vm_size"`
	RSS    uint64 `json:"rss"`
	Locked uint64 `json:"locked"`
	// MemFile is the memory file's allocated bytes (every process's
	// private and shared memory).
	MemFile uint64 `json:"mem_file"`
	// Faults is the number of page faults served since the previous
	// sample.
	Faults uint64 `json:"faults"`
	// Procs are the figures of each live process, by pid.
	Procs []ProcSample `json:"procs"`
}

// ProcSample is one process's figures in a Sample.
type ProcSample struct {
	PID    int    `json:"pid"`
	VmSize uint64 `json:"vm_size"`
	RSS    uint64 `json:"rss"`
	Locked uint64 `json:"locked"`
	Faults uint64 `json:"faults"`
}

// Event is a fork, exec or exit.
type Event struct {
	TNS  int64  `json:"t_ns"`
	Kind string `json:"kind"`
	PID  int    `json:"pid"`
	// Child is the new process of a fork.
	Child int `json:"child,omitempty"`
	// Detail is the program of an exec, or how a process exited.
	Detail string `json:"detail,omitempty"`
}

// Syscall is the figures of one memory system call.
type Syscall struct {
	Name   string `json:"name"`
	Count  uint64 `json:"count"`
	Errors uint64 `json:"errors"`
	// TotalNS and MaxNS are the time vmspace spent serving them.
	TotalNS int64 `json:"total_ns"`
	MaxNS   int64 `json:"max_ns"`
}

const (
	// DefaultInterval is the timeline's first sampling interval.
	DefaultInterval = 10 * time.Millisecond
	// eventBytes is the smallest release of memory that is sampled
	// before and after (Freeing).
	eventBytes = 1 << 20
	// maxSamples is how many samples the timeline holds before pairs
	// are merged and the interval doubles.
	maxSamples = 1024
	// maxSnapshots is how many snapshots a process keeps: fork snapshots
	// beyond it are not taken (the end of an image always is).
	maxSnapshots = 8
	// collectShare bounds what collecting may cost: a process's fork
	// snapshots after its first are left out while collecting has taken
	// more than 1/collectShare of the run, and a sample that cost c puts
	// the next one at least collectShare*c later. Periodic samples and
	// those of events have a budget each: the two stay within 1%.
	collectShare = 200
)

// Space is a live address space as the runner sees it: a process and its
// manager (processes sharing one, vfork children, are listed once each).
type Space struct {
	PID int
	MM  *mm.MemoryManager
}

// Collector gathers a report during a run. One goroutine at a time uses
// it (the runner's tracer during the run): no field needs a lock.
type Collector struct {
	// ctx is the context of the managers' calls.
	ctx context.Context
	// start is when the run started; next when the next sample is due;
	// lastEvent when the last sample of an event was taken (a release,
	// Freeing, or an exit, Exiting).
	start, next, lastEvent time.Time
	// lastCost is what the last sample cost.
	lastCost time.Duration
	// interval is the sampling interval.
	interval time.Duration
	// rep is the report so far.
	rep Report
	// procs are the processes by pid (the last one with a pid, if the
	// host reuses it).
	procs map[int]*Process
	// faults are the fault counts of the live managers at their last
	// sample.
	faults map[*mm.MemoryManager]uint64
	// owed are faults of ended managers, by pid, not yet in a sample.
	owed map[int]uint64
	// calls are the memory system calls' figures by name.
	calls map[string]*Syscall
	// sites are their call sites.
	sites *sites
}

// NewCollector returns a Collector for a run of argv starting now.
func NewCollector(argv []string) *Collector {
	now := time.Now()
	return &Collector{
		ctx:      context.Background(),
		start:    now,
		next:     now.Add(DefaultInterval),
		interval: DefaultInterval,
		// As the JSON holds it: UTC, no monotonic reading.
		rep:    Report{Command: slices.Clone(argv), Started: now.UTC().Round(0)},
		procs:  make(map[int]*Process),
		faults: make(map[*mm.MemoryManager]uint64),
		owed:   make(map[int]uint64),
		calls:  make(map[string]*Syscall),
		sites:  newSites(context.Background()),
	}
}

// since returns t's offset from the start of the run.
func (c *Collector) since(t time.Time) int64 { return int64(t.Sub(c.start)) }

// process returns the process pid, created (with parent 0) if unknown.
func (c *Collector) process(pid int, now time.Time) *Process {
	p := c.procs[pid]
	if p == nil {
		p = &Process{PID: pid, StartNS: c.since(now), EndNS: -1}
		c.procs[pid] = p
		c.rep.Processes = append(c.rep.Processes, p)
	}
	return p
}

// Fork records that parent forked child, whose address space is (for a
// fork) a copy of the parent's m; m is nil for a child that shares its
// parent's (vfork) or has none yet. The parent's address space is taken
// (a "fork" snapshot) while the process has room for one.
func (c *Collector) Fork(parent, child int, name string, m *mm.MemoryManager, image string) {
	now := time.Now()
	pp := c.process(parent, now)
	cp := &Process{PID: child, Parent: parent, Name: name, StartNS: c.since(now), EndNS: -1}
	c.procs[child] = cp
	c.rep.Processes = append(c.rep.Processes, cp)
	c.rep.Events = append(c.rep.Events, Event{TNS: cp.StartNS, Kind: "fork", PID: parent, Child: child})
	if m != nil && len(pp.Snapshots) < maxSnapshots-1 && (len(pp.Snapshots) == 0 || !c.overBudget(now)) {
		c.snapshot(pp, now, "fork", image, m)
	}
}

// Exec records that pid now runs the program image (host path) named
// name.
func (c *Collector) Exec(pid int, name, image string) {
	now := time.Now()
	p := c.process(pid, now)
	p.Name = name
	p.Images = append(p.Images, image)
	c.sites.forget(pid)
	c.rep.Events = append(c.rep.Events, Event{TNS: c.since(now), Kind: "exec", PID: pid, Detail: image})
}

// Exit records that pid ended with wait status ws.
func (c *Collector) Exit(pid int, ws syscall.WaitStatus) {
	now := time.Now()
	p := c.process(pid, now)
	p.EndNS = c.since(now)
	p.Exit = statusText(ws)
	c.rep.Events = append(c.rep.Events, Event{TNS: p.EndNS, Kind: "exit", PID: pid, Detail: p.Exit})
}

// statusText says how a wait status ended a process.
func statusText(ws syscall.WaitStatus) string {
	switch {
	case ws.Signaled():
		return "killed by " + unix.SignalName(ws.Signal())
	case ws.Exited():
		return fmt.Sprintf("exited %d", ws.ExitStatus())
	}
	return fmt.Sprintf("status %#x", uint32(ws))
}

// End records the end of m, the address space of pid, running image, for
// why ("exit", "exec", "kill"): its last snapshot.
func (c *Collector) End(pid int, m *mm.MemoryManager, why, image string) {
	now := time.Now()
	p := c.process(pid, now)
	if last, ok := c.faults[m]; ok {
		c.owed[pid] += m.Faults() - last
		delete(c.faults, m)
	} else {
		c.owed[pid] += m.Faults()
	}
	c.snapshot(p, now, why, image, m)
	c.sites.forget(pid)
}

// Call records a memory system call of pid, named name, made at cs, that
// took d and failed or not.
func (c *Collector) Call(pid int, name string, cs CallSite, d time.Duration, failed bool) {
	c.rep.CollectNS += int64(c.sites.add(pid, name, cs, d, failed))
	sc := c.calls[name]
	if sc == nil {
		sc = &Syscall{Name: name}
		c.calls[name] = sc
	}
	sc.Count++
	if failed {
		sc.Errors++
	}
	sc.TotalNS += int64(d)
	sc.MaxNS = max(sc.MaxNS, int64(d))
	if p := c.procs[pid]; p != nil {
		p.MemCalls++
	}
}

// Freeing reports whether a memory call about to give back n bytes of
// address space or memory (munmap, MADV_DONTNEED, a shrinking mremap)
// should be sampled before and after (Sample), so that the timeline shows
// the memory's peak and its drop whatever the sampling interval has grown
// to: true from eventBytes on, at most once per interval, or per
// collectShare times the last sample's cost if that is longer (the same
// bound as the periodic samples').
func (c *Collector) Freeing(n uint64, now time.Time) bool {
	return n >= eventBytes && c.eventDue(now)
}

// Exiting reports whether the exit of a process at now should be sampled
// (Sample, taken before the process leaves its address space: its last
// figures; the drop shows at the next sample): under the same
// bound as Freeing's samples, with which it shares its turns (an exit
// sample after every exit of a run of short processes would cost more than
// the run, for a process with a large address space alive meanwhile).
func (c *Collector) Exiting(now time.Time) bool { return c.eventDue(now) }

// eventDue reports whether a sample of an event (Freeing, Exiting) may be
// taken at now, and if so counts it as taken.
func (c *Collector) eventDue(now time.Time) bool {
	if now.Before(c.lastEvent.Add(nextGap(c.interval, c.lastCost))) {
		return false
	}
	c.lastEvent = now
	return true
}

// Due reports whether a sample is due at now.
func (c *Collector) Due(now time.Time) bool { return !now.Before(c.next) }

// Sample takes a sample at now of the live address spaces, and of the
// memory file, of which memFile bytes are allocated.
func (c *Collector) Sample(now time.Time, spaces []Space, memFile uint64) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := startCPU()
	slices.SortFunc(spaces, func(a, b Space) int { return cmp.Compare(a.PID, b.PID) })
	s := Sample{TNS: c.since(now), MemFile: memFile}
	seen := make(map[*mm.MemoryManager]bool, len(spaces))
	for _, sp := range spaces {
		ps := ProcSample{PID: sp.PID}
		if !seen[sp.MM] {
			seen[sp.MM] = true
			st := sp.MM.Stats()
			ps.VmSize, ps.RSS, ps.Locked = st.VmSize, st.VmRSS, st.VmLck
			f := sp.MM.Faults()
			ps.Faults = f - c.faults[sp.MM]
			c.faults[sp.MM] = f
			s.VmSize += ps.VmSize
			s.RSS += ps.RSS
			s.Locked += ps.Locked
		}
		ps.Faults += c.owed[sp.PID]
		delete(c.owed, sp.PID)
		s.Faults += ps.Faults
		if p := c.procs[sp.PID]; p != nil {
			p.Faults += ps.Faults
		}
		s.Procs = append(s.Procs, ps)
	}
	// Faults of address spaces that ended since the last sample.
	for pid, n := range c.owed {
		s.Faults += n
		if p := c.procs[pid]; p != nil {
			p.Faults += n
		}
		delete(c.owed, pid)
	}
	c.rep.Samples = append(c.rep.Samples, s)
	if len(c.rep.Samples) >= maxSamples {
		c.rep.Samples = mergePairs(c.rep.Samples)
		c.interval *= 2
	}
	// The next sample is due after the interval, or later if this one
	// cost more than 1/collectShare of the time to the next: sampling a
	// large address space (which asks the host for the residency of
	// every page) stays a bounded share of the run.
	cost := cpu.since()
	c.lastCost = cost
	c.next = now.Add(nextGap(c.interval, cost))
	c.rep.CollectNS += int64(cost)
}

// nextGap is the time from a sample that cost cost to the next one: the
// interval, or collectShare times the cost if that is longer.
func nextGap(interval, cost time.Duration) time.Duration {
	return max(interval, cost*collectShare)
}

// overBudget reports whether collecting has taken more than
// 1/collectShare of the run at now: optional snapshots are not taken.
func (c *Collector) overBudget(now time.Time) bool {
	return c.rep.CollectNS*collectShare > c.since(now)
}

// mergePairs halves the timeline: of each pair of samples it keeps the
// one with the larger RSS (the later one if equal), so that a peak stays
// on the timeline however often it is halved, with the faults of both,
// and each process's larger figures of the two.
func mergePairs(ss []Sample) []Sample {
	out := ss[:0]
	for i := 0; i < len(ss); i += 2 {
		if i+1 == len(ss) {
			out = append(out, ss[i])
			break
		}
		keep, drop := ss[i+1], ss[i]
		if drop.RSS > keep.RSS {
			keep, drop = drop, keep
		}
		keep.Faults += drop.Faults
		// Each process keeps its own peak too: the pair's larger total
		// may be another process's (a parent growing while its child
		// shrinks). A process of the dropped sample only (one that
		// started or ended between the two) keeps its figures.
		merged := false
		for _, dp := range drop.Procs {
			j := slices.IndexFunc(keep.Procs, func(p ProcSample) bool { return p.PID == dp.PID })
			if j < 0 {
				keep.Procs = append(keep.Procs, dp)
				merged = true
				continue
			}
			kp := &keep.Procs[j]
			kp.Faults += dp.Faults
			kp.VmSize = max(kp.VmSize, dp.VmSize)
			kp.RSS = max(kp.RSS, dp.RSS)
			kp.Locked = max(kp.Locked, dp.Locked)
		}
		if merged {
			slices.SortFunc(keep.Procs, func(a, b ProcSample) int { return cmp.Compare(a.PID, b.PID) })
		}
		out = append(out, keep)
	}
	return out
}

// snapshot takes m's vmas and page runs for p.
func (c *Collector) snapshot(p *Process, now time.Time, why, image string, m *mm.MemoryManager) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := startCPU()
	defer func() { c.rep.CollectNS += int64(cpu.since()) }()
	snap := Snapshot{TNS: c.since(now), Why: why, Image: image}
	// The status figures are sums over the vmas, as Stats computes them
	// (VmLck is the size of the locked vmas, "lo"), without a second
	// pass over the pages' residency.
	infos, runs := m.VMAsAndPageRuns(c.ctx)
	for i := range infos {
		vi := &infos[i]
		snap.VmSize += vi.Range.Length()
		snap.RSS += vi.Rss
		if slices.Contains(vi.Flags, "lo") {
			snap.Locked += vi.Range.Length()
		}
	}
	snap.HWM = max(m.MaxResidentSetSize(), snap.RSS)
	p.PeakRSS = max(p.PeakRSS, snap.HWM)
	if len(infos) > 0 {
		for i := range infos {
			v := vmaOf(&infos[i])
			for len(runs) > 0 && uint64(runs[0].Range.Start) < v.End {
				// A pma may span vmas (a file mapped by neighbours):
				// each vma gets its part.
				r := &runs[0]
				run := Run{Start: max(uint64(r.Range.Start), v.Start), End: min(uint64(r.Range.End), v.End), State: "resident"}
				switch {
				case r.Guard:
					run.State = "guard"
					v.Guard += run.End - run.Start
				case r.Shared:
					run.State = "shared"
					v.Shared += run.End - run.Start
				}
				if run.Start < run.End {
					v.Runs = append(v.Runs, run)
				}
				if uint64(r.Range.End) > v.End {
					r.Range.Start = hostarch.Addr(v.End)
					break
				}
				runs = runs[1:]
			}
			snap.Shared += v.Shared
			snap.Guard += v.Guard
			snap.VMAs = append(snap.VMAs, v)
		}
	}
	p.Snapshots = append(p.Snapshots, snap)
}

// vmaOf converts mm's description of a vma.
func vmaOf(vi *mm.VMAInfo) VMA {
	return VMA{
		Start:        uint64(vi.Range.Start),
		End:          uint64(vi.Range.End),
		Perms:        vi.Perms,
		Offset:       vi.Offset,
		Dev:          fmt.Sprintf("%02x:%02x", vi.DevMajor, vi.DevMinor),
		Inode:        vi.Inode,
		Name:         vi.Name,
		Kind:         KindOf(vi),
		MMKind:       vi.Kind.String(),
		Flags:        slices.Clone(vi.Flags),
		Rss:          vi.Rss,
		Pss:          vi.Pss,
		SharedClean:  vi.SharedClean,
		SharedDirty:  vi.SharedDirty,
		PrivateDirty: vi.PrivateDirty,
		Anonymous:    vi.Anonymous,
		Locked:       vi.Locked,
	}
}

// Kinds are the kinds of vma the picture tells apart, in the legend's
// order.
var Kinds = []string{"text", "data", "heap", "stack", "file", "shared", "anonymous", "special"}

// KindOf classifies a vma for the picture: "special" (vdso, AIO rings),
// "stack" (the main stack or any growsdown vma), "heap" (brk),
// "shared" (a shared mapping or shared memory), "text" (executable file
// mappings), "data" (writable private file mappings), "file" (other file
// mappings), else "anonymous".
func KindOf(vi *mm.VMAInfo) string {
	shared := len(vi.Perms) == 4 && vi.Perms[3] == 's'
	switch {
	case vi.Kind == mm.VMASpecial || vi.Kind == mm.VMAAIORing:
		return "special"
	case vi.Name == "[stack]" || slices.Contains(vi.Flags, "gd"):
		return "stack"
	case vi.Name == "[heap]":
		return "heap"
	case shared || vi.Kind == mm.VMASharedAnonymous || vi.Kind == mm.VMASysVShm || vi.Kind == mm.VMAMemfd:
		return "shared"
	case vi.Kind == mm.VMAFile && len(vi.Perms) == 4 && vi.Perms[2] == 'x':
		return "text"
	case vi.Kind == mm.VMAFile && len(vi.Perms) == 4 && vi.Perms[1] == 'w':
		return "data"
	case vi.Kind == mm.VMAFile:
		return "file"
	}
	return "anonymous"
}

// Finish completes the report with the run's totals and returns it. The
// Collector must not be used afterwards.
func (c *Collector) Finish(t Totals) *Report {
	c.rep.WallNS = c.since(time.Now())
	c.rep.IntervalNS = int64(c.interval)
	c.rep.Totals = t
	// Faults of address spaces that ended after the last sample.
	for pid, n := range c.owed {
		if p := c.procs[pid]; p != nil {
			p.Faults += n
		}
	}
	clear(c.owed)
	c.rep.Syscalls = c.rep.Syscalls[:0]
	for _, sc := range c.calls {
		c.rep.Syscalls = append(c.rep.Syscalls, *sc)
	}
	slices.SortFunc(c.rep.Syscalls, func(a, b Syscall) int {
		return cmp.Or(cmp.Compare(b.TotalNS, a.TotalNS), cmp.Compare(b.Count, a.Count), cmp.Compare(a.Name, b.Name))
	})
	c.rep.Sites = c.sites.list()
	if c.rep.Processes == nil {
		c.rep.Processes = []*Process{}
	}
	return &c.rep
}

// cpuClock is a reading of the calling thread's CPU time, or of the wall
// clock where the host cannot say. Its user must stay on one OS thread
// between the reading and since (runtime.LockOSThread: the runner's
// tracer is locked to its thread; the fast path's server is not, so
// Sample and snapshot lock it meanwhile); since falls back to the wall
// clock if the thread changed anyway.
type cpuClock struct {
	tid    int
	thread time.Duration
	wall   time.Time
}

// startCPU reads the clock.
func startCPU() cpuClock {
	c := cpuClock{tid: unix.Gettid(), wall: time.Now()}
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) == nil {
		c.thread = time.Duration(ts.Nano())
	} else {
		c.tid = 0
	}
	return c
}

// since returns the CPU time the thread used since c was read, or the
// wall time if the thread's is not known.
func (c cpuClock) since() time.Duration {
	now := startCPU()
	if c.tid == 0 || now.tid != c.tid {
		return time.Since(c.wall)
	}
	return max(0, now.thread-c.thread)
}
