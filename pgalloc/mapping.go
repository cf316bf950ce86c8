package pgalloc

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/safemem"
)

// MapInternal implements memmap.File.MapInternal: it returns a mapping of fr
// in this process, valid while the caller holds a reference on fr (and until
// Close). The mapping is always readable and writable, whatever at says. A
// range within one 64 MiB chunk of the file is one Block; a range spanning
// chunks is one Block per chunk. Blocks need fault-tolerant access
// (NeedSafecopy), since the host may fail to allocate a page.
//
// fr need not be page-aligned. An empty fr gives an empty BlockSeq. A
// malformed fr, or one reaching past the end of the file, is an error
// wrapping unix.EINVAL.
//
// Once the chunk holding fr is mapped, MapInternal takes no lock, makes no
// system call and does not allocate.
func (f *MemoryFile) MapInternal(fr memmap.FileRange, at hostarch.AccessType) (safemem.BlockSeq, error) {
	ci := fr.Start >> chunkShift
	if fr.Start < fr.End && (fr.End-1)>>chunkShift == ci {
		t := *f.chunks.Load()
		if ci < uint64(len(t)) {
			if p := t[ci]; p != nil {
				return safemem.BlockSeqOf(blockAt(p, fr.Start&chunkMask, fr.Length())), nil
			}
		}
	}
	return f.mapInternalSlow(fr)
}

// blockAt returns the Block of n bytes at offset off of the chunk mapped at
// p.
func blockAt(p unsafe.Pointer, off, n uint64) safemem.Block {
	return safemem.BlockFromUnsafeSlice(unsafe.Slice((*byte)(unsafe.Add(p, off)), n))
}

// mapInternalSlow is MapInternal when fr is empty, malformed, spans chunks,
// or lies in a chunk not yet mapped.
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
	first, last := fr.Start>>chunkShift, (fr.End-1)>>chunkShift
	t, err := f.mapChunks(first, last)
	if err != nil {
		return safemem.BlockSeq{}, err
	}
	if first == last {
		return safemem.BlockSeqOf(blockAt(t[first], fr.Start&chunkMask, fr.Length())), nil
	}
	blocks := make([]safemem.Block, 0, last-first+1)
	for ci := first; ci <= last; ci++ {
		piece := fr.Intersect(memmap.FileRange{Start: ci << chunkShift, End: (ci + 1) << chunkShift})
		blocks = append(blocks, blockAt(t[ci], piece.Start&chunkMask, piece.Length()))
	}
	return safemem.BlockSeqFromSlice(blocks), nil
}

// mapChunks makes sure chunks first through last are mapped and returns the
// resulting table.
//
// Preconditions: (last+1)*chunkSize <= the file size.
func (f *MemoryFile) mapChunks(first, last uint64) (chunkTable, error) {
	f.mapMu.Lock()
	defer f.mapMu.Unlock()
	t := *f.chunks.Load()
	if f.mapClosed {
		return nil, ErrClosed
	}
	if last < uint64(len(t)) {
		all := true
		for ci := first; ci <= last; ci++ {
			all = all && t[ci] != nil
		}
		if all {
			return t, nil
		}
	}
	nt := make(chunkTable, max(uint64(len(t)), last+1))
	copy(nt, t)
	var err error
	for ci := first; ci <= last; ci++ {
		if nt[ci] != nil {
			continue
		}
		var p unsafe.Pointer
		p, err = unix.MmapPtr(f.fd, int64(ci<<chunkShift), nil, chunkSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			err = fmt.Errorf("pgalloc: mapping chunk %d of the memory file: %w", ci, err)
			break
		}
		nt[ci] = p
	}
	// Publish whatever was mapped, even on failure, so that Close unmaps
	// it.
	f.chunks.Store(&nt)
	if err != nil {
		return nil, err
	}
	return nt, nil
}
