package mm

import (
	"iter"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/safemem"
)

// residencyWindowSize is how much of a file one residencyWindow asks the
// host about at once.
const residencyWindowSize = 32 << 20

// residencyWindow caches the host residency of a window of a file, so that
// a walk over many pmas (fork's, each asking which of its pages hold data)
// makes one mincore per window instead of one per pma: on a virtualised
// host a system call costs microseconds, and a fork of 128 two-megabyte
// pmas made 128 of them. The zero value is empty. It is not safe for
// concurrent use, and is meant to live for one walk, under the locks that
// keep the pages it describes from changing hands.
type residencyWindow struct {
	// file and fr are the window; vec holds one byte (0 or 1) per page
	// of fr.
	file memmap.File
	fr   memmap.FileRange
	vec  []byte
}

// dataRuns is privateDataRuns(ims, file, fr), reading residency from the
// window, which it first moves to start at fr if fr is not inside it.
func (w *residencyWindow) dataRuns(ims safemem.BlockSeq, file memmap.File, fr memmap.FileRange) iter.Seq[[2]uint64] {
	if !w.cover(file, fr) {
		return privateDataRuns(ims, file, fr)
	}
	off := (fr.Start - w.fr.Start) >> hostarch.PageShift
	return dataRuns(w.vec[off:off+fr.Length()>>hostarch.PageShift], file, fr)
}

// cover makes the window cover fr of file, and reports whether it does.
func (w *residencyWindow) cover(file memmap.File, fr memmap.FileRange) bool {
	if w.file == file && w.fr.IsSupersetOf(fr) {
		return true
	}
	w.file = nil
	// The window may reach past the end of the file: halve it until
	// MapInternal accepts it.
	size := max(fr.Length(), residencyWindowSize)
	for {
		win := memmap.FileRange{Start: fr.Start, End: fr.Start + size}
		if win.End < win.Start {
			return false
		}
		ims, err := file.MapInternal(win, hostarch.Read)
		if err == nil {
			n := win.Length() >> hostarch.PageShift
			if uint64(cap(w.vec)) < n {
				w.vec = make([]byte, n)
			}
			w.vec = w.vec[:n]
			i := uint64(0)
			for b := range ims.All {
				m := uint64(b.Len()) >> hostarch.PageShift
				hostMincore(b, w.vec[i:i+m])
				i += m
			}
			w.file, w.fr = file, win
			return true
		}
		if size == fr.Length() {
			return false
		}
		size = max(size/2, fr.Length())
	}
}
