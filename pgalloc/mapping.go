package pgalloc

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/safemem"
)

const (
	// windowShift is log2(windowSize).
	windowShift = hostarch.HugePageShift
	// windowSize is the size of the smaller internal mappings a chunk is
	// mapped in when vmspace's address space cannot take the whole chunk
	// (see chunkMap).
	windowSize = 1 << windowShift
	// windowMask masks an offset's position within its window.
	windowMask = windowSize - 1
	// windowsPerChunk is the number of windows in a chunk.
	windowsPerChunk = chunkSize / windowSize
)

// ErrAddressSpace is returned, wrapped, by MapInternal when vmspace's own
// address space (bounded by a RLIMIT_AS it cannot raise, or by
// vm.max_map_count) has no room for even the smallest internal mapping the
// range needs. It wraps unix.ENOMEM.
var ErrAddressSpace = fmt.Errorf("pgalloc: no address space left in vmspace to map the memory file: %w", unix.ENOMEM)

// chunkMap is the internal mapping of one chunk of the file: the whole
// chunk in one mapping, or, when vmspace's address space had no room for
// that when the chunk was first used (mmap failed with ENOMEM), separate
// mappings of its 2 MiB windows, each made on first use. A chunk keeps
// the form it was given, and every mapping stays until Close.
type chunkMap struct {
	// whole maps the whole chunk, or is nil if the chunk is mapped in
	// windows. Immutable.
	whole unsafe.Pointer

	// windows[i] maps window i of the chunk, or is nil if it is not
	// mapped (yet, or ever if whole is set). Each is stored once, with
	// MemoryFile.mapMu held, and loaded without a lock.
	windows [windowsPerChunk]atomic.Pointer[byte]
}

// at returns the mapping of the chunk at off (within the chunk), valid
// for the n bytes from there, or nil if that is not mapped as one
// mapping.
func (c *chunkMap) at(off, n uint64) unsafe.Pointer {
	if c.whole != nil {
		return unsafe.Add(c.whole, off)
	}
	wi := off >> windowShift
	if (off+n-1)>>windowShift != wi {
		return nil
	}
	if p := c.windows[wi].Load(); p != nil {
		return unsafe.Add(unsafe.Pointer(p), off&windowMask)
	}
	return nil
}

// MapInternal implements memmap.File.MapInternal: it returns a mapping of fr
// in this process, valid while the caller holds a reference on fr (and until
// Close). The mapping is always readable and writable, whatever at says.
// A range within one internal mapping (a 64 MiB chunk of the file,
// normally; see chunkMap) is one Block; a range spanning several is one
// Block per mapping. Blocks need fault-tolerant access (NeedSafecopy),
// since the host may fail to allocate a page.
//
// fr need not be page-aligned. An empty fr gives an empty BlockSeq. A
// malformed fr, or one reaching past the end of the file, is an error
// wrapping unix.EINVAL. When vmspace's address space cannot take the
// mappings fr needs, the error wraps ErrAddressSpace (and unix.ENOMEM).
//
// Once the mapping holding fr exists, MapInternal takes no lock, makes no
// system call and does not allocate.
func (f *MemoryFile) MapInternal(fr memmap.FileRange, at hostarch.AccessType) (safemem.BlockSeq, error) {
	ci := fr.Start >> chunkShift
	if fr.Start < fr.End && (fr.End-1)>>chunkShift == ci {
		t := *f.chunks.Load()
		if ci < uint64(len(t)) {
			if c := t[ci]; c != nil {
				if p := c.at(fr.Start&chunkMask, fr.Length()); p != nil {
					return safemem.BlockSeqOf(blockAt(p, fr.Length())), nil
				}
			}
		}
	}
	return f.mapInternalSlow(fr)
}

// blockAt returns the Block of n bytes at p.
func blockAt(p unsafe.Pointer, n uint64) safemem.Block {
	return safemem.BlockFromUnsafeSlice(unsafe.Slice((*byte)(p), n))
}

// mapInternalSlow is MapInternal when fr is empty, malformed, spans
// internal mappings, or lies where none exists yet.
func (f *MemoryFile) mapInternalSlow(fr memmap.FileRange) (safemem.BlockSeq, error) {
	if fr.Start > fr.End {
		return safemem.BlockSeq{}, fmt.Errorf("pgalloc: MapInternal(%v): malformed range: %w", fr, unix.EINVAL)
	}
	if fr.Start == fr.End {
		return safemem.BlockSeq{}, nil
	}
	if size := f.size.Load(); fr.End > size {
		return safemem.BlockSeq{}, fmt.Errorf("pgalloc: MapInternal(%v): past the end of the file (%#x bytes): %w", fr, size, unix.EINVAL)
	}
	t, err := f.mapRange(fr)
	if err != nil {
		return safemem.BlockSeq{}, err
	}
	var blocks []safemem.Block
	for off := fr.Start; off < fr.End; {
		c := t[off>>chunkShift]
		end := min(fr.End, (off|chunkMask)+1)
		if c.whole == nil {
			end = min(end, (off|windowMask)+1)
		}
		p := c.at(off&chunkMask, end-off)
		if off == fr.Start && end == fr.End {
			return safemem.BlockSeqOf(blockAt(p, end-off)), nil
		}
		blocks = append(blocks, blockAt(p, end-off))
		off = end
	}
	return safemem.BlockSeqFromSlice(blocks), nil
}

// mapRange makes sure every byte of fr is mapped and returns the resulting
// table. A chunk used for the first time is mapped whole if vmspace's
// address space has room for it, else in windows, of which only those
// fr touches are mapped. On failure nothing new stays mapped.
//
// Preconditions: fr is non-empty and lies within the file.
func (f *MemoryFile) mapRange(fr memmap.FileRange) (chunkTable, error) {
	f.mapMu.Lock()
	defer f.mapMu.Unlock()
	if f.mapClosed {
		return nil, ErrClosed
	}
	t := *f.chunks.Load()
	chunkAt := func(ci uint64) *chunkMap {
		if ci < uint64(len(t)) {
			return t[ci]
		}
		return nil
	}
	// Map what is missing, publishing nothing until all of it is mapped:
	// readers may use a published mapping at once, so it cannot be taken
	// back.
	type newMapping struct {
		ci, wi uint64 // chunk, and window if !whole
		whole  bool
		p      unsafe.Pointer
	}
	var made []newMapping
	fail := func(err error) (chunkTable, error) {
		for _, m := range made {
			n := uint64(windowSize)
			if m.whole {
				n = chunkSize
			}
			unix.MunmapPtr(m.p, uintptr(n))
			f.mapped -= n
		}
		return nil, err
	}
	first, last := fr.Start>>chunkShift, (fr.End-1)>>chunkShift
	for ci := first; ci <= last; ci++ {
		c := chunkAt(ci)
		if c == nil && !f.windowed {
			p, err := f.mmap(ci<<chunkShift, chunkSize)
			if err == nil {
				made = append(made, newMapping{ci: ci, whole: true, p: p})
				continue
			}
			if !errors.Is(err, unix.ENOMEM) {
				return fail(fmt.Errorf("pgalloc: mapping chunk %d of the memory file: %w", ci, err))
			}
			// No room for the whole chunk: map it in windows.
		} else if c != nil && c.whole != nil {
			continue
		}
		piece := fr.Intersect(memmap.FileRange{Start: ci << chunkShift, End: (ci + 1) << chunkShift})
		for wi := (piece.Start & chunkMask) >> windowShift; wi <= ((piece.End-1)&chunkMask)>>windowShift; wi++ {
			if c != nil && c.windows[wi].Load() != nil {
				continue
			}
			off := ci<<chunkShift + wi<<windowShift
			p, err := f.mmap(off, windowSize)
			if err != nil {
				if errors.Is(err, unix.ENOMEM) {
					err = ErrAddressSpace
				}
				return fail(fmt.Errorf("pgalloc: mapping %#x bytes at %#x of the memory file: %w", windowSize, off, err))
			}
			made = append(made, newMapping{ci: ci, wi: wi, p: p})
		}
	}
	if len(made) == 0 {
		return t, nil
	}
	// The table is immutable: a chunk new to it takes a new table.
	nt := t
	for _, m := range made {
		if chunkAt(m.ci) == nil {
			nt = make(chunkTable, max(uint64(len(t)), last+1))
			copy(nt, t)
			break
		}
	}
	for _, m := range made {
		if m.whole {
			nt[m.ci] = &chunkMap{whole: m.p}
			continue
		}
		if nt[m.ci] == nil {
			nt[m.ci] = &chunkMap{}
		}
		nt[m.ci].windows[m.wi].Store((*byte)(m.p))
	}
	f.chunks.Store(&nt)
	return nt, nil
}

// mmap maps length bytes of the file at off, shared and read-write, within
// the budget. On failure the pointer is nil. Preconditions: mapMu held.
func (f *MemoryFile) mmap(off, length uint64) (unsafe.Pointer, error) {
	if f.mapBudget != 0 && f.mapped+length > f.mapBudget {
		return nil, unix.ENOMEM
	}
	p, err := unix.MmapPtr(f.fd, int64(off), nil, uintptr(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		// p is MAP_FAILED, not nil.
		return nil, err
	}
	f.mapped += length
	return p, nil
}

// unmapAll unmaps every internal mapping of t, returning the errors.
func unmapAll(t chunkTable) []error {
	var errs []error
	unmap := func(p unsafe.Pointer, n uint64, what string, i uint64) {
		if err := unix.MunmapPtr(p, uintptr(n)); err != nil {
			errs = append(errs, fmt.Errorf("pgalloc: munmap of %s %d: %w", what, i, err))
		}
	}
	for ci, c := range t {
		if c == nil {
			continue
		}
		if c.whole != nil {
			unmap(c.whole, chunkSize, "chunk", uint64(ci))
			continue
		}
		for wi := range c.windows {
			if p := c.windows[wi].Load(); p != nil {
				unmap(unsafe.Pointer(p), windowSize, "window", uint64(ci*windowsPerChunk+wi))
			}
		}
	}
	return errs
}
