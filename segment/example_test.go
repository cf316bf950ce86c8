package segment_test

import (
	"fmt"

	"github.com/vmspace/vmspace/segment"
)

// mapping is the value of each segment: which file the range maps, and at
// what offset its start lies.
type mapping struct {
	file string
	off  uint64
}

// mappingFunctions tells the Set how mappings behave: neighbours merge when
// they map contiguous parts of the same file, and splitting advances the
// second half's offset.
type mappingFunctions struct{}

func (mappingFunctions) MinKey() uint64        { return 0 }
func (mappingFunctions) MaxKey() uint64        { return 1 << 32 }
func (mappingFunctions) ClearValue(m *mapping) { *m = mapping{} }

func (mappingFunctions) Merge(r1 segment.Range[uint64], m1 mapping, r2 segment.Range[uint64], m2 mapping) (mapping, bool) {
	if m1.file != m2.file || m1.off+r1.Length() != m2.off {
		return mapping{}, false
	}
	return m1, true
}

func (mappingFunctions) Split(r segment.Range[uint64], m mapping, split uint64) (mapping, mapping) {
	m2 := m
	m2.off += split - r.Start
	return m, m2
}

type mappingSet = segment.Set[uint64, mapping, mappingFunctions]

func Example() {
	var s mappingSet // the zero value is an empty set

	// Map three pages of a.so, then the next page of it: the two merge.
	s.Add(segment.Range[uint64]{0x1000, 0x4000}, mapping{"a.so", 0})
	s.Add(segment.Range[uint64]{0x4000, 0x5000}, mapping{"a.so", 0x3000})
	// A different file next to it stays separate.
	s.Add(segment.Range[uint64]{0x5000, 0x6000}, mapping{"b.so", 0})
	fmt.Println("segments:", s.Len())

	// Look up an address.
	if seg := s.FindSegment(0x4800); seg.Ok() {
		v := seg.Value()
		fmt.Printf("0x4800 is in %v: %s at offset %#x\n", seg.Range(), v.file, v.off+0x4800-seg.Start())
	}

	// Find room for two pages at 64 KiB alignment, as mmap would.
	if addr, ok := s.FindLowestGap(segment.Range[uint64]{0, 1 << 32}, 0x2000, 0x10000); ok {
		fmt.Printf("free at %#x\n", addr)
	}

	// Unmap the middle of the first mapping: it splits in two.
	s.RemoveRange(segment.Range[uint64]{0x2000, 0x3000})
	for seg := range s.Segments(segment.Range[uint64]{0, 1 << 32}) {
		fmt.Printf("%v %s+%#x\n", seg.Range(), seg.Value().file, seg.Value().off)
	}
	// Gaps yields whole gaps, including the parts outside the range asked
	// about.
	for gap := range s.Gaps(segment.Range[uint64]{0, 0x8000}) {
		fmt.Println("gap", gap.Range())
	}

	// Output:
	// segments: 2
	// 0x4800 is in [0x1000, 0x5000): a.so at offset 0x3800
	// free at 0x10000
	// [0x1000, 0x2000) a.so+0x0
	// [0x3000, 0x5000) a.so+0x2000
	// [0x5000, 0x6000) b.so+0x0
	// gap [0x0, 0x1000)
	// gap [0x2000, 0x3000)
	// gap [0x6000, 0x100000000)
}
