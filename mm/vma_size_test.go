package mm

import (
	"reflect"
	"testing"
)

// TestSetValueSizes guards the layout of the values of the vma and pma
// sets. At 104 bytes a vma-set leaf of 16 vmas is in the Go allocator's
// 2048-byte size class; 8 bytes more put it in the 2304-byte class, 16
// bytes more a vma (bench's vma_bytes_100k). At 56 bytes a pma-set leaf is
// in the 1280-byte class; a 24-byte Block for the cached mapping instead
// of an 8-byte safemem.Origin put it in the 1536-byte class (16 bytes more
// a pma, and more cache misses for vma_lookup_100k's reads). A new field
// should go where it adds no padding, or a limit here be raised knowingly.
func TestSetValueSizes(t *testing.T) {
	if reflect.TypeOf(uintptr(0)).Size() != 8 {
		t.Skip("the limits are for 64-bit platforms")
	}
	for _, c := range []struct {
		ty    reflect.Type
		limit uintptr
	}{
		{reflect.TypeOf(vma{}), 104},
		{reflect.TypeOf(pma{}), 56},
	} {
		ty := c.ty
		if n := ty.Size(); n > c.limit {
			var pad []string
			for i := 0; i < ty.NumField(); i++ {
				f := ty.Field(i)
				next := ty.Size()
				if i+1 < ty.NumField() {
					next = ty.Field(i + 1).Offset
				}
				if gap := next - f.Offset - f.Type.Size(); gap != 0 {
					pad = append(pad, f.Name)
				}
			}
			t.Errorf("%s is %d bytes, want at most %d (padded after: %v)", ty.Name(), n, c.limit, pad)
		}
	}
}
