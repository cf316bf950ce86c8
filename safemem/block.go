package safemem

import (
	"fmt"
	"unsafe"
)

// Block is a span of host memory [start, start+length).
//
// A Block made from a Go slice or Go pointer is "safe": the Go runtime owns
// it and it never faults. A Block made from an arbitrary pointer (a host
// mapping) needs fault-tolerant access; all the copy functions of this
// package provide it.
//
// The zero value is an empty Block. A Block is an immutable value: methods
// return new Blocks.
type Block struct {
	// start is the host address of the first byte. Every empty Block is
	// the zero Block, so start is nil when length is 0.
	start unsafe.Pointer
	// length is the number of bytes, >= 0.
	length int
	// needSafecopy is true if the memory may fault when accessed, so that
	// every access must be guarded. It is false for every empty Block.
	needSafecopy bool
}

// BlockFromSafeSlice returns a Block over the Go slice b.
func BlockFromSafeSlice(b []byte) Block {
	if len(b) == 0 {
		return Block{}
	}
	return Block{start: unsafe.Pointer(&b[0]), length: len(b)}
}

// BlockFromUnsafeSlice returns a Block over b, which may be backed by host
// memory that faults (for example an mmap of a file).
func BlockFromUnsafeSlice(b []byte) Block {
	if len(b) == 0 {
		return Block{}
	}
	return Block{start: unsafe.Pointer(&b[0]), length: len(b), needSafecopy: true}
}

// BlockFromSafePointer returns a Block over n bytes of memory the Go runtime
// keeps valid.
func BlockFromSafePointer(p unsafe.Pointer, n int) Block {
	if n < 0 {
		panic(fmt.Sprintf("safemem: negative length %d", n))
	}
	if n == 0 {
		return Block{}
	}
	return Block{start: p, length: n}
}

// BlockFromUnsafePointer returns a Block over n bytes of host memory at p
// that may fault when accessed.
func BlockFromUnsafePointer(p unsafe.Pointer, n int) Block {
	b := BlockFromSafePointer(p, n)
	b.needSafecopy = n != 0
	return b
}

// Len returns the length of b in bytes.
func (b Block) Len() int { return b.length }

// IsEmpty reports whether b has length 0.
func (b Block) IsEmpty() bool { return b.length == 0 }

// Addr returns the host address of b's first byte.
func (b Block) Addr() uintptr { return uintptr(b.start) }

// Pointer returns the host address of b's first byte as a pointer.
func (b Block) Pointer() unsafe.Pointer { return b.start }

// NeedSafecopy reports whether access to b must be fault-tolerant.
func (b Block) NeedSafecopy() bool { return b.needSafecopy }

// ToSlice returns b as a byte slice. Accesses through it are not
// fault-tolerant when b.NeedSafecopy().
func (b Block) ToSlice() []byte {
	if b.length == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(b.start), b.length)
}

// DropFirst returns b without its first n bytes (empty if n >= Len).
func (b Block) DropFirst(n int) Block {
	if n < 0 {
		panic(fmt.Sprintf("safemem: DropFirst(%d)", n))
	}
	if n >= b.length {
		return Block{}
	}
	return Block{start: unsafe.Add(b.start, n), length: b.length - n, needSafecopy: b.needSafecopy}
}

// DropFirst64 is DropFirst with a 64-bit count.
func (b Block) DropFirst64(n uint64) Block {
	if n >= uint64(b.length) {
		return Block{}
	}
	return b.DropFirst(int(n))
}

// TakeFirst returns the first n bytes of b (all of b if n >= Len).
func (b Block) TakeFirst(n int) Block {
	if n < 0 {
		panic(fmt.Sprintf("safemem: TakeFirst(%d)", n))
	}
	if n == 0 {
		return Block{}
	}
	if n < b.length {
		b.length = n
	}
	return b
}

// TakeFirst64 is TakeFirst with a 64-bit count.
func (b Block) TakeFirst64(n uint64) Block {
	if n >= uint64(b.length) {
		return b
	}
	return b.TakeFirst(int(n))
}

// Join returns the Block of b followed by c when c starts where b ends and
// both need the same access (ok true); else ok is false. An empty Block
// joins with anything.
func (b Block) Join(c Block) (joined Block, ok bool) {
	switch {
	case c.length == 0:
		return b, true
	case b.length == 0:
		return c, true
	case uintptr(c.start) != uintptr(b.start)+uintptr(b.length) || c.needSafecopy != b.needSafecopy:
		return Block{}, false
	}
	b.length += c.length
	return b, true
}

// String describes b for debugging.
func (b Block) String() string {
	return fmt.Sprintf("Block{%#x, %d, safecopy=%v}", uintptr(b.start), b.length, b.needSafecopy)
}
