package hostfile

import (
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
)

// PageOutUnmapsFirst reports whether the memory manager must take its own
// mappings of a range away before it calls PageOut: true for a directly
// mapped host file, whose pages the host kernel reclaims only when no
// process, the program's included, maps them (mm.PageOutUnmapper).
func (f *File) PageOutUnmapsFirst() bool { return f.direct }

// pageOutDirect is PageOut for a directly mapped host file. The caller has
// already unmapped mr from its address space; what still maps the host
// pages is vmspace's internal view of the file and any other process
// (another program under vmspace, or anything on the host). The host
// kernel is left to decide, as it would for the program natively: the
// pages of mr in the host page cache are mapped in the internal view
// alone (any other internal view of them is zapped first) and the host is
// asked for MADV_PAGEOUT of that view, so it reclaims exactly the pages
// nobody else maps and does with dirty ones what Linux does for a
// program's MADV_PAGEOUT. Pages that are not in the page cache are not
// read in.
func (f *File) pageOutDirect(mr memmap.MappableRange) {
	f.dataMu.RLock()
	defer f.dataMu.RUnlock()
	if f.released {
		return
	}
	size, err := f.hostSizeLocked()
	if err != nil {
		return
	}
	r := mr.Intersect(memmap.MappableRange{Start: 0, End: pageRoundUpSize(size)})
	if r.Length() == 0 || r.End > cacheMaxKey {
		return
	}
	h := f.hm
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || !f.descLocked().open() {
		return
	}
	if h.shift == 0 {
		h.shift = directChunkShiftFor(size)
	}
	shift := h.shift
	for ci := r.Start >> shift; ci <= (r.End-1)>>shift; ci++ {
		piece := r.Intersect(memmap.MappableRange{Start: ci << shift, End: (ci + 1) << shift})
		off := uintptr(piece.Start & (1<<shift - 1))
		n := int(piece.Length())
		// A retired view of the chunk maps the pages a second time,
		// which the host counts as sharing: zap it (shared file pages
		// lose nothing; a dirty bit goes to the page).
		for _, rc := range h.retired {
			if rc.ci == ci {
				_ = unix.Madvise(unsafe.Slice((*byte)(unsafe.Add(rc.p, off)), n), unix.MADV_DONTNEED)
			}
		}
		p, err := h.chunkLocked(ci, false)
		if err != nil {
			return
		}
		view := unsafe.Slice((*byte)(unsafe.Add(p, off)), n)
		vec := make([]byte, n>>hostarch.PageShift)
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&view[0])), uintptr(n), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			continue
		}
		// Map the cached pages in the view (a page cache hit each),
		// a run at a time, so that MADV_PAGEOUT considers them.
		for i := 0; i < len(vec); {
			if vec[i]&1 == 0 {
				i++
				continue
			}
			j := i
			for j < len(vec) && vec[j]&1 != 0 {
				j++
			}
			_ = unix.Madvise(view[i<<hostarch.PageShift:j<<hostarch.PageShift], unix.MADV_POPULATE_READ)
			i = j
		}
		_ = unix.Madvise(view, unix.MADV_PAGEOUT)
	}
}
