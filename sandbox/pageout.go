package sandbox

import "github.com/vmspace/vmspace/mm"

var _ mm.UnmapFlusher = (*stubAS)(nil)

// FlushUnmaps implements mm.UnmapFlusher: the memory manager's page-out of
// a directly mapped host file needs the stub's mappings of the pages gone
// before it asks the host to reclaim them, since the host keeps a page
// that a second process maps. Flushing early is always safe (the pages
// stay held by the memory file until the shootdown); the pages of the
// tasks' kernel areas stay mapped until then (flushEarly).
func (as *stubAS) FlushUnmaps() {
	if len(as.s.unflushed) == 0 {
		return
	}
	if _, ok := as.s.unflushed[as]; ok {
		as.flushEarly()
	}
}
