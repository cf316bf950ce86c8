package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
)

// PageRun is a run of pages in one state, as a picture of the address
// space draws it (package report).
type PageRun struct {
	Range hostarch.AddrRange
	// Resident is true for pages backed by a pma (counted in Rss).
	Resident bool
	// Shared is true for resident private pages that another address
	// space (a fork relative) shares copy-on-write.
	Shared bool
	// Guard is true for pages in a guard region (MADV_GUARD_INSTALL).
	Guard bool
}

// PageRuns describes the pages of ar that are resident or in a guard
// region, as runs in address order; pages in neither are left out.
// Adjacent runs in the same state are merged.
func (mm *MemoryManager) PageRuns(ar hostarch.AddrRange) []PageRun {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	// residentRunsLocked needs activeMu for writing.
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	return mm.pageRunsLocked(ar)
}

// VMAsAndPageRuns returns what VMAs and PageRuns of the whole address
// space return, taken at one time, with one reading of the pages'
// residency for both (the run report's snapshots).
func (mm *MemoryManager) VMAsAndPageRuns(ctx context.Context) ([]VMAInfo, []PageRun) {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	var infos []VMAInfo
	var runs []PageRun
	mm.withResidencyMemoLocked(wholeSpace, func() {
		infos = mm.vmasLocked(ctx)
		runs = mm.pageRunsLocked(wholeSpace)
	})
	return infos, runs
}

// pageRunsLocked is PageRuns. Preconditions: mappingMu held for reading,
// activeMu for writing.
func (mm *MemoryManager) pageRunsLocked(ar hostarch.AddrRange) []PageRun {
	var res []PageRun
	add := func(r hostarch.AddrRange, shared bool) {
		if n := len(res); n > 0 && res[n-1].Range.End == r.Start && res[n-1].Shared == shared {
			res[n-1].Range.End = r.End
			return
		}
		res = append(res, PageRun{Range: r, Resident: true, Shared: shared})
	}
	mm.privateRefs.mu.Lock()
	mm.withResidencyMemoLocked(ar, func() {
		for pseg := mm.pmas.LowerBoundSegment(ar.Start); pseg.Ok() && pseg.Start() < ar.End; pseg = pseg.NextSegment() {
			if pseg.ValuePtr().isZero() {
				continue // the zero page holds no memory of the process
			}
			// Only touched pages are resident, as smaps' Rss counts them.
			for _, pr := range mm.residentRunsLocked(pseg, hostarch.AddrRange(pseg.Range()).Intersect(ar)) {
				mm.addPageRunsLocked(pseg, pr, add)
			}
		}
	})
	mm.privateRefs.mu.Unlock()
	return mergeGuardRuns(mm, ar, res)
}

// addPageRunsLocked adds the runs of pr, a resident part of pseg, to add:
// for private pmas split where another manager shares the pages.
// Preconditions: privateRefs.mu held.
func (mm *MemoryManager) addPageRunsLocked(pseg pmaIterator, pr hostarch.AddrRange, add func(hostarch.AddrRange, bool)) {
	{
		if !pseg.ValuePtr().private {
			add(pr, false)
			return
		}
		// Walk the reference counts of the pma's pages: a count above
		// one is a page shared with another manager.
		fr := pmaRef{pseg}.fileRange(pr)
		at := pr.Start
		for rseg := mm.privateRefs.refs.LowerBoundSegment(fr.Start); rseg.Ok() && rseg.Start() < fr.End && at < pr.End; rseg = rseg.NextSegment() {
			s, e := max(rseg.Start(), fr.Start), min(rseg.End(), fr.End)
			rs := pr.Start + hostarch.Addr(s-fr.Start)
			re := pr.Start + hostarch.Addr(e-fr.Start)
			if rs > at {
				add(hostarch.AddrRange{Start: at, End: rs}, false)
			}
			add(hostarch.AddrRange{Start: rs, End: re}, rseg.Value() > 1)
			at = re
		}
		if at < pr.End {
			add(hostarch.AddrRange{Start: at, End: pr.End}, false)
		}
	}
}

// mergeGuardRuns merges the guard regions of ar into res, in address order.
// Preconditions: mappingMu held.
func mergeGuardRuns(mm *MemoryManager, ar hostarch.AddrRange, res []PageRun) []PageRun {
	if mm.guards.IsEmpty() {
		return res
	}
	// Guard regions hold no pages: merge them in, in address order.
	var out []PageRun
	i := 0
	for g := mm.guards.LowerBoundSegment(ar.Start); g.Ok() && g.Start() < ar.End; g = g.NextSegment() {
		gr := hostarch.AddrRange(g.Range()).Intersect(ar)
		for i < len(res) && res[i].Range.Start < gr.Start {
			out = append(out, res[i])
			i++
		}
		out = append(out, PageRun{Range: gr, Guard: true})
	}
	return append(out, res[i:]...)
}
