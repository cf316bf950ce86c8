package safemem

import "unsafe"

// An Origin is where a Block of fault-tolerant memory (NeedSafecopy: a
// host mapping of a file) starts, without its length: a cache of a mapping
// whose length its holder knows already (mm's pmas, whose range gives it)
// keeps 8 bytes instead of a Block's 24. The zero Origin is none.
type Origin struct {
	start unsafe.Pointer
}

// OriginOf returns where b starts, and false if b is empty or not
// fault-tolerant memory (an Origin makes only such Blocks).
func OriginOf(b Block) (Origin, bool) {
	if b.length == 0 || !b.needSafecopy {
		return Origin{}, false
	}
	return Origin{start: b.start}, true
}

// IsZero reports whether o is none.
func (o Origin) IsZero() bool { return o.start == nil }

// Block returns the Block of n bytes at o: empty if o is none or n is 0.
func (o Origin) Block(n uint64) Block {
	if o.start == nil || n == 0 {
		return Block{}
	}
	return Block{start: o.start, length: int(n), needSafecopy: true}
}

// Add returns the Origin n bytes after o (none if o is none).
func (o Origin) Add(n uint64) Origin {
	if o.start == nil {
		return o
	}
	return Origin{start: unsafe.Add(o.start, n)}
}
