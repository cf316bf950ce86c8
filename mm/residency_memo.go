package mm

import (
	"cmp"
	"slices"
	"sort"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
)

// A reader of the whole address space (Stats, VMAs, PageRuns: /proc's
// status and smaps, the run report) asks the host about the residency of
// every memory-file page of every pma. One mincore call per pma makes
// that thousands of host system calls for a process whose heap is split
// into many pmas (copy-on-write breaks, forks), while the pmas' file
// ranges are mostly neighbours in the memory file. A residencyMemo reads
// the residency of the file ranges the pmas map with one mincore per run
// of contiguous offsets, and residentLocked answers from it while it is
// installed.

// residencyMemo is the host residency of some ranges of the memory file,
// read at one time.
type residencyMemo struct {
	// runs are the ranges, in offset order, without overlap or contact.
	runs []memoRun
}

// memoRun is the residency of the pages of fr: vec[i] is 1 if page i is
// resident.
type memoRun struct {
	fr  memmap.FileRange
	vec []byte
}

// lookup returns the residency of fr's pages, or nil if fr is not within
// one of m's runs.
func (m *residencyMemo) lookup(fr memmap.FileRange) []byte {
	i := sort.Search(len(m.runs), func(i int) bool { return m.runs[i].fr.End > fr.Start })
	if i == len(m.runs) || m.runs[i].fr.Start > fr.Start || m.runs[i].fr.End < fr.End {
		return nil
	}
	r := &m.runs[i]
	first := (fr.Start - r.fr.Start) >> hostarch.PageShift
	return r.vec[first : first+fr.Length()>>hostarch.PageShift : first+fr.Length()>>hostarch.PageShift]
}

// memoGap is the largest gap between two ranges of the memory file that a
// residencyMemo reads over rather than asking the host twice.
const memoGap = 16 * hostarch.PageSize

// withResidencyMemoLocked runs f with the residency of the memory-file
// pages of the pmas within ar read in advance (see residencyMemo):
// residentLocked answers from it inside f. Preconditions: activeMu held
// for writing (it reads only the pmas; callers that read vmas inside f
// hold mappingMu too).
func (mm *MemoryManager) withResidencyMemoLocked(ar hostarch.AddrRange, f func()) {
	if mm.resMemo != nil {
		f()
		return
	}
	var frs []memmap.FileRange
	for pseg := mm.pmas.LowerBoundSegment(ar.Start); pseg.Ok() && pseg.Start() < ar.End; pseg = pseg.NextSegment() {
		if p := pseg.ValuePtr(); p.file == memmap.File(mm.mf) && !(p.allData && p.private) {
			frs = append(frs, pmaRef{pseg}.fileRange(hostarch.AddrRange(pseg.Range()).Intersect(ar)))
		}
	}
	sortByStart(frs)
	memo := &residencyMemo{}
	for _, fr := range frs {
		// Ranges a few pages apart share a run: reading the residency
		// of the pages between them costs less than another query
		// (a forked heap's pmas alternate with pages only the other
		// manager still holds).
		if n := len(memo.runs); n > 0 && fr.Start <= memo.runs[n-1].fr.End+memoGap {
			memo.runs[n-1].fr.End = max(memo.runs[n-1].fr.End, fr.End)
			continue
		}
		memo.runs = append(memo.runs, memoRun{fr: fr})
	}
	for i := range memo.runs {
		r := &memo.runs[i]
		ims, err := mm.mf.MapInternal(r.fr, hostarch.Read)
		if err != nil {
			// Left to residentLocked's own reading, pma by pma.
			r.vec = nil
			continue
		}
		r.vec = residency(ims, r.fr.Length())
	}
	memo.runs = slices.DeleteFunc(memo.runs, func(r memoRun) bool { return r.vec == nil })
	mm.resMemo = memo
	defer func() { mm.resMemo = nil }()
	f()
}

// sortByStart sorts frs by their starts. A forked heap has tens of
// thousands of pmas whose file ranges alternate between two ascending
// sequences; sorting them by a comparison function was a third of a
// sample's cost. Page numbers and indexes packed in one word sort as
// plain integers, several times faster; ranges beyond what a word holds
// fall back to the comparison.
func sortByStart(frs []memmap.FileRange) {
	const idxBits = 20
	if len(frs) < 2 {
		return
	}
	maxStart := uint64(0)
	for _, fr := range frs {
		maxStart = max(maxStart, fr.Start)
	}
	if len(frs) > 1<<idxBits || maxStart>>hostarch.PageShift >= 1<<(64-idxBits) {
		slices.SortFunc(frs, func(a, b memmap.FileRange) int { return cmp.Compare(a.Start, b.Start) })
		return
	}
	keys := make([]uint64, len(frs))
	for i, fr := range frs {
		keys[i] = fr.Start>>hostarch.PageShift<<idxBits | uint64(i)
	}
	slices.Sort(keys)
	sorted := make([]memmap.FileRange, len(frs))
	for i, k := range keys {
		sorted[i] = frs[k&(1<<idxBits-1)]
	}
	copy(frs, sorted)
}
