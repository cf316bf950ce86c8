package safemem

import "fmt"

// BlockSeq is an ordered sequence of Blocks, none of them empty. It is a
// value type: operations return new BlockSeqs and never modify the backing
// slice, so a BlockSeq may be shared freely.
//
// A single Block is stored inline, without allocating.
type BlockSeq struct {
	// one is the only block when blocks is nil and one is not empty.
	one Block
	// blocks holds two or more blocks; it is never modified after the
	// BlockSeq is made.
	blocks []Block
	// length is the total number of bytes.
	length uint64
}

// BlockSeqOf returns a BlockSeq holding just b (empty if b is empty).
func BlockSeqOf(b Block) BlockSeq {
	return BlockSeq{one: b, length: uint64(b.length)}
}

// BlockSeqFromSlice returns a BlockSeq of the non-empty Blocks of bs. It
// does not copy bs when all of its Blocks are non-empty; the caller must not
// change bs afterwards.
func BlockSeqFromSlice(bs []Block) BlockSeq {
	nonEmpty := 0
	var total uint64
	for _, b := range bs {
		if !b.IsEmpty() {
			nonEmpty++
			total += uint64(b.length)
		}
	}
	switch nonEmpty {
	case 0:
		return BlockSeq{}
	case 1:
		for _, b := range bs {
			if !b.IsEmpty() {
				return BlockSeqOf(b)
			}
		}
	}
	if nonEmpty != len(bs) {
		filtered := make([]Block, 0, nonEmpty)
		for _, b := range bs {
			if !b.IsEmpty() {
				filtered = append(filtered, b)
			}
		}
		bs = filtered
	}
	return BlockSeq{blocks: bs, length: total}
}

// IsEmpty reports whether s holds no bytes.
func (s BlockSeq) IsEmpty() bool { return s.length == 0 }

// NumBytes returns the total length of s in bytes.
func (s BlockSeq) NumBytes() uint64 { return s.length }

// NumBlocks returns the number of Blocks in s.
func (s BlockSeq) NumBlocks() int {
	if s.blocks != nil {
		return len(s.blocks)
	}
	if s.length == 0 {
		return 0
	}
	return 1
}

// Head returns the first Block of s; s must not be empty.
func (s BlockSeq) Head() Block {
	if s.blocks != nil {
		return s.blocks[0]
	}
	if s.length == 0 {
		panic("safemem: Head of empty BlockSeq")
	}
	return s.one
}

// Tail returns s without its first Block; s must not be empty.
func (s BlockSeq) Tail() BlockSeq {
	if s.blocks == nil {
		if s.length == 0 {
			panic("safemem: Tail of empty BlockSeq")
		}
		return BlockSeq{}
	}
	rest := s.blocks[1:]
	if len(rest) == 1 {
		return BlockSeqOf(rest[0])
	}
	return BlockSeq{blocks: rest, length: s.length - uint64(s.blocks[0].length)}
}

// DropFirst64 returns s without its first n bytes.
func (s BlockSeq) DropFirst64(n uint64) BlockSeq {
	if n >= s.length {
		return BlockSeq{}
	}
	for n > 0 {
		h := s.Head()
		if n < uint64(h.length) {
			h = h.DropFirst64(n)
			if s.blocks == nil {
				return BlockSeqOf(h)
			}
			blocks := make([]Block, len(s.blocks))
			copy(blocks, s.blocks)
			blocks[0] = h
			return BlockSeq{blocks: blocks, length: s.length - n}
		}
		n -= uint64(h.length)
		s = s.Tail()
	}
	return s
}

// TakeFirst64 returns the first n bytes of s.
func (s BlockSeq) TakeFirst64(n uint64) BlockSeq {
	if n >= s.length {
		return s
	}
	if n == 0 {
		return BlockSeq{}
	}
	if s.blocks == nil {
		return BlockSeqOf(s.one.TakeFirst64(n))
	}
	var out []Block
	for _, b := range s.blocks {
		if n == 0 {
			break
		}
		b = b.TakeFirst64(n)
		out = append(out, b)
		n -= uint64(b.length)
	}
	return BlockSeqFromSlice(out)
}

// All calls yield for each Block of s in order until yield returns false.
func (s BlockSeq) All(yield func(Block) bool) {
	if s.blocks == nil {
		if s.length != 0 {
			yield(s.one)
		}
		return
	}
	for _, b := range s.blocks {
		if !yield(b) {
			return
		}
	}
}

// String describes s for debugging.
func (s BlockSeq) String() string {
	out := "["
	first := true
	for b := range s.All {
		if !first {
			out += " "
		}
		first = false
		out += b.String()
	}
	return out + fmt.Sprintf("] (%d bytes)", s.length)
}
