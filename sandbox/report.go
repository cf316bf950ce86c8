package sandbox

import (
	"syscall"
	"time"

	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/report"
	"golang.org/x/sys/unix"
)

// The hooks that feed Options.Report (package report). Without a report
// each is a nil check.

// reportTick samples every live address space for the report's timeline,
// when a sample is due. It runs after each stop the loop serves.
func (s *Sandbox) reportTick() {
	r := s.opts.Report
	if r == nil {
		return
	}
	if now := time.Now(); r.Due(now) {
		s.reportSample(r, now)
	}
}

// reportSample takes a sample of every live address space at now.
func (s *Sandbox) reportSample(r *report.Collector, now time.Time) {
	spaces := make([]report.Space, 0, len(s.procs))
	for _, p := range s.procs {
		if p.mm != nil {
			spaces = append(spaces, report.Space{PID: p.pid, MM: p.mm})
		}
	}
	r.Sample(now, spaces, s.mf.UsageAllocated())
}

// servedMemCall serves memory system call nr (memCall), timing it for
// the report.
func (s *Sandbox) servedMemCall(t *task, nr int, a [6]uint64) sysResult {
	r := s.opts.Report
	if r == nil {
		return s.memCall(t, nr, a)
	}
	t0 := time.Now()
	around := r.Freeing(freedBy(nr, a), t0)
	if around {
		s.reportSample(r, t0)
		t0 = time.Now()
	}
	res := s.memCall(t, nr, a)
	d := time.Since(t0)
	if around {
		s.reportSample(r, time.Now())
	}
	_, failed := errnoOf(res.val)
	r.Call(t.p.pid, sysNames[nr], report.CallSite{MM: t.p.mm, PC: t.callPC, SP: t.callSP}, d, failed && res.act == actReturn)
	return res
}

// freedBy returns how many bytes memory call nr with arguments a gives
// back if it succeeds (for the report's timeline: see
// report.Collector.Freeing), 0 for calls that free nothing.
func freedBy(nr int, a [6]uint64) uint64 {
	switch nr {
	case unix.SYS_MUNMAP:
		return a[1]
	case unix.SYS_MADVISE:
		switch a[2] {
		case unix.MADV_DONTNEED, unix.MADV_FREE, unix.MADV_REMOVE, unix.MADV_PAGEOUT, unix.MADV_DONTNEED_LOCKED:
			return a[1]
		}
	case unix.SYS_MREMAP:
		if a[2] < a[1] {
			return a[1] - a[2]
		}
	}
	return 0
}

// reportFork records that p made the child process cp.
func (s *Sandbox) reportFork(p, cp *process) {
	if r := s.opts.Report; r != nil {
		r.Fork(p.pid, cp.pid, cp.name, p.mm, p.exe)
	}
}

// reportExec records that p now runs its new image.
func (s *Sandbox) reportExec(p *process) {
	if r := s.opts.Report; r != nil {
		r.Exec(p.pid, p.name, p.exe)
	}
}

// reportExit records that p ended with wait status ws, after a sample of
// the live address spaces if one is due (report.Collector.Exiting) or p is
// the last process, so that the timeline reaches the run's end.
func (s *Sandbox) reportExit(p *process, ws unix.WaitStatus) {
	if r := s.opts.Report; r != nil {
		if now := time.Now(); r.Exiting(now) || len(s.procs) == 1 {
			s.reportSample(r, now)
		}
		r.Exit(p.pid, syscall.WaitStatus(ws))
	}
}

// reportEnd records the end of m, p's address space, for why ("exit",
// "exec", "kill").
func (s *Sandbox) reportEnd(p *process, m *mm.MemoryManager, why string) {
	if r := s.opts.Report; r != nil {
		r.End(p.pid, m, why, p.exe)
	}
}
