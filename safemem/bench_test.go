package safemem

import (
	"fmt"
	"testing"
)

// BenchmarkCopy copies between two host mappings as unsafe Blocks, between
// the same mappings with plain copy(), and between safe Blocks of Go
// memory.
func BenchmarkCopy(b *testing.B) {
	for _, size := range []int{8, 4 << 10, 1 << 20} {
		pages := (size + pg - 1) / pg
		dm, sm := mapAnon(b, pages), mapAnon(b, pages)
		dst, src := unsafeBlock(dm, 0, size), unsafeBlock(sm, 0, size)
		gd, gs := make([]byte, size), make([]byte, size)
		b.Run(fmt.Sprintf("%d/unsafe", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				Copy(dst, src)
			}
		})
		b.Run(fmt.Sprintf("%d/copy", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			d, s := dm[:size], sm[:size]
			for b.Loop() {
				copy(d, s)
			}
		})
		b.Run(fmt.Sprintf("%d/safe", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			d, s := BlockFromSafeSlice(gd), BlockFromSafeSlice(gs)
			for b.Loop() {
				Copy(d, s)
			}
		})
	}
}

// BenchmarkCopyIn8 is the shape of an 8-byte CopyIn: a Go buffer filled
// from a host mapping, the Block cut from a larger one.
func BenchmarkCopyIn8(b *testing.B) {
	m := mapAnon(b, 1)
	im := unsafeBlock(m, 0, pg)
	var buf [8]byte
	for b.Loop() {
		Copy(BlockFromSafeSlice(buf[:]), im.DropFirst64(128))
	}
}

func BenchmarkCopySeq(b *testing.B) {
	m := mapAnon(b, 8)
	dsts := BlockSeqFromSlice([]Block{unsafeBlock(m, 0, 100), unsafeBlock(m, pg, 2*pg), unsafeBlock(m, 3*pg, 4*pg-100)})
	srcs := BlockSeqFromSlice([]Block{unsafeBlock(m, 4*pg, 6*pg)})
	b.SetBytes(int64(dsts.NumBytes()))
	for b.Loop() {
		CopySeq(dsts, srcs)
	}
}

func BenchmarkZero4K(b *testing.B) {
	m := mapAnon(b, 1)
	blk := unsafeBlock(m, 0, pg)
	b.SetBytes(int64(pg))
	for b.Loop() {
		Zero(blk)
	}
}

func BenchmarkAtomic(b *testing.B) {
	m := mapAnon(b, 1)
	w := unsafeBlock(m, 0, 4)
	b.Run("Load", func(b *testing.B) {
		for b.Loop() {
			LoadUint32(w)
		}
	})
	b.Run("CAS", func(b *testing.B) {
		for b.Loop() {
			CompareAndSwapUint32(w, 0, 0)
		}
	})
}

// BenchmarkFault is the cost of the slow path: a 64 KiB copy that faults
// half way, found exactly and classified.
func BenchmarkFault(b *testing.B) {
	m := mapAnon(b, 17)
	protect(b, m[8*pg:9*pg], 0)
	dst := make([]byte, 16*pg)
	src := unsafeBlock(m, 0, 16*pg)
	for b.Loop() {
		if n, _ := Copy(BlockFromSafeSlice(dst), src); n != 8*pg {
			b.Fatal(n)
		}
	}
}
