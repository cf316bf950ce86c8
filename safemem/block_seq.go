package safemem

import (
	"fmt"
	"strings"
)

// BlockSeq is an ordered sequence of Blocks, none of them empty. It is a
// value type: operations return new BlockSeqs and never modify the backing
// slice, so a BlockSeq may be shared freely.
//
// A single Block is stored inline, without allocating, and Head, Tail,
// DropFirst64 and TakeFirst64 never allocate: a BlockSeq is a window onto an
// immutable slice of Blocks, cut at both ends.
//
// The zero value is an empty BlockSeq.
type BlockSeq struct {
	// head is the first Block of the sequence, already cut to the
	// sequence's bounds (by DropFirst64 at its start and TakeFirst64 at its
	// end). It is empty if and only if length == 0.
	head Block
	// rest holds the Blocks that follow head, none of them empty. Only the
	// first length-head.length bytes of rest belong to the sequence; Blocks,
	// or the end of a Block, beyond that are ignored. rest is never
	// modified: it may be shared with the caller of BlockSeqFromSlice and
	// between BlockSeqs. It is nil when length == head.length.
	rest []Block
	// length is the total number of bytes in the sequence.
	length uint64
}

// makeSeq returns the BlockSeq of head followed by the first length -
// head.length bytes of rest, normalizing rest to nil when it holds none.
func makeSeq(head Block, rest []Block, length uint64) BlockSeq {
	if length == uint64(head.length) {
		rest = nil
	}
	return BlockSeq{head: head, rest: rest, length: length}
}

// BlockSeqOf returns a BlockSeq holding just b (empty if b is empty).
func BlockSeqOf(b Block) BlockSeq {
	if b.length == 0 {
		return BlockSeq{}
	}
	return BlockSeq{head: b, length: uint64(b.length)}
}

// BlockSeqFromSlice returns a BlockSeq of the non-empty Blocks of bs, in
// order. It does not copy bs when all of its Blocks are non-empty; the
// caller must not change bs afterwards.
func BlockSeqFromSlice(bs []Block) BlockSeq {
	nonEmpty := 0
	var total uint64
	for _, b := range bs {
		if !b.IsEmpty() {
			nonEmpty++
			total += uint64(b.length)
		}
	}
	if nonEmpty == 0 {
		return BlockSeq{}
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
	return makeSeq(bs[0], bs[1:], total)
}

// IsEmpty reports whether s holds no bytes.
func (s BlockSeq) IsEmpty() bool { return s.length == 0 }

// NumBytes returns the total length of s in bytes.
func (s BlockSeq) NumBytes() uint64 { return s.length }

// NumBlocks returns the number of Blocks in s. It takes time proportional
// to that number, except that a sequence of zero or one Block answers at
// once.
func (s BlockSeq) NumBlocks() int {
	if s.length == 0 {
		return 0
	}
	n := 1
	for rem, i := s.length-uint64(s.head.length), 0; rem > 0; i++ {
		rem -= min(rem, uint64(s.rest[i].length))
		n++
	}
	return n
}

// Head returns the first Block of s. It panics if s is empty.
func (s BlockSeq) Head() Block {
	if s.length == 0 {
		panic("safemem: Head of empty BlockSeq")
	}
	return s.head
}

// Tail returns s without its first Block. It panics if s is empty.
func (s BlockSeq) Tail() BlockSeq {
	if s.length == 0 {
		panic("safemem: Tail of empty BlockSeq")
	}
	rem := s.length - uint64(s.head.length)
	if rem == 0 {
		return BlockSeq{}
	}
	return makeSeq(s.rest[0].TakeFirst64(rem), s.rest[1:], rem)
}

// DropFirst64 returns s without its first n bytes (empty if n >=
// NumBytes). It takes time proportional to the number of Blocks dropped.
func (s BlockSeq) DropFirst64(n uint64) BlockSeq {
	if n >= s.length {
		return BlockSeq{}
	}
	for n >= uint64(s.head.length) {
		n -= uint64(s.head.length)
		s = s.Tail()
	}
	if n == 0 {
		return s
	}
	return makeSeq(s.head.DropFirst64(n), s.rest, s.length-n)
}

// TakeFirst64 returns the first n bytes of s (all of s if n >= NumBytes).
func (s BlockSeq) TakeFirst64(n uint64) BlockSeq {
	if n >= s.length {
		return s
	}
	if n == 0 {
		return BlockSeq{}
	}
	return makeSeq(s.head.TakeFirst64(n), s.rest, n)
}

// All calls yield for each Block of s in order until yield returns false.
// It is a range-over-func iterator: for b := range s.All { ... }.
func (s BlockSeq) All(yield func(Block) bool) {
	if s.length == 0 || !yield(s.head) {
		return
	}
	rem := s.length - uint64(s.head.length)
	for i := 0; rem > 0; i++ {
		b := s.rest[i].TakeFirst64(rem)
		rem -= uint64(b.length)
		if !yield(b) {
			return
		}
	}
}

// String describes s for debugging.
func (s BlockSeq) String() string {
	var sb strings.Builder
	sb.WriteByte('[')
	first := true
	for b := range s.All {
		if !first {
			sb.WriteByte(' ')
		}
		first = false
		sb.WriteString(b.String())
	}
	fmt.Fprintf(&sb, "] (%d bytes)", s.length)
	return sb.String()
}
