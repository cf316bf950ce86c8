//go:build !race

package safemem

import (
	"bytes"
	"fmt"
	"testing"
	"unsafe"
)

// TestCopyVector runs both of copyVector's kernels that the CPU has
// (moveDisjoint picks one by size) over sizes around its 256-byte step,
// and checks that exactly the n bytes change.
func TestCopyVector(t *testing.T) {
	for _, zmm := range []bool{false, true} {
		if (zmm && !wideCopy) || (!zmm && !cachedCopy) {
			continue
		}
		for _, n := range []int{256, 257, 511, 512, 4096, 4096 + 100, 1 << 20, 1<<20 + 255} {
			for _, off := range []int{0, 1, 33} {
				t.Run(fmt.Sprintf("zmm=%v/%d@%d", zmm, n, off), func(t *testing.T) {
					src := pattern(n+off, byte(n))
					dst := pattern(n+off+64, 0x5a)
					want := bytes.Clone(dst)
					copy(want[off:off+n], src[off:])
					copyVector(unsafe.Pointer(&dst[off]), unsafe.Pointer(&src[off]), uintptr(n), zmm)
					if !bytes.Equal(dst, want) {
						t.Fatalf("destination differs from the expected bytes")
					}
				})
			}
		}
	}
}
