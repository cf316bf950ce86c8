package safemem

import (
	"bytes"
	"fmt"
	"testing"
)

// TestMoveDisjointSizes copies every size class moveDisjoint treats
// differently (below, at and past wideFrom, multiples of 256 and not, up to
// and past the runtime's non-temporal size) at several misalignments, both
// ways between a host mapping and Go memory, and checks that exactly the n
// bytes change.
func TestMoveDisjointSizes(t *testing.T) {
	mapped := 6<<20 + 3*pg
	m := mapAnon(t, mapped/pg)
	sizes := []int{1, 8, 255, 256, 257, 300, 511, 512, 513, 1000, 4095, 4096, 4097, 8192 + 17, 1<<20 - 1, 1 << 20, 1<<20 + 255, 4<<20 + 1}
	for _, n := range sizes {
		for _, off := range []int{0, 1, 63, 64, 4000} {
			t.Run(fmt.Sprintf("%d@%d", n, off), func(t *testing.T) {
				src := pattern(n, byte(n+off))
				// Go memory to the mapping.
				fill := pattern(n+2*off+64, 0xa5)
				copy(m, fill)
				if got, err := Copy(unsafeBlock(m, off, off+n), BlockFromSafeSlice(src)); got != n || err != nil {
					t.Fatalf("Copy out = %d, %v", got, err)
				}
				if !bytes.Equal(m[off:off+n], src) {
					t.Fatalf("bytes copied out differ")
				}
				if !bytes.Equal(m[:off], fill[:off]) || !bytes.Equal(m[off+n:off+n+64], fill[off+n:off+n+64]) {
					t.Fatalf("bytes around the copy out changed")
				}
				// The mapping back to Go memory.
				dst := pattern(n+2*off+64, 0x5a)
				want := bytes.Clone(dst)
				copy(want[off:], src)
				if got, err := Copy(BlockFromSafeSlice(dst[off:off+n]), unsafeBlock(m, off, off+n)); got != n || err != nil {
					t.Fatalf("Copy in = %d, %v", got, err)
				}
				if !bytes.Equal(dst, want) {
					t.Fatalf("Copy in: destination differs from the expected bytes")
				}
			})
		}
	}
}
