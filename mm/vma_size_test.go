package mm

import (
	"reflect"
	"testing"
)

// TestVMASize guards the vma's layout (see the vma type): at 104 bytes a
// vma-set leaf of 16 vmas is in the Go allocator's 2048-byte size class;
// 8 bytes more put it in the 2304-byte class, 16 bytes more a vma (bench's
// vma_bytes_100k). A new field should go where it adds no padding, or the
// limit here be raised knowingly.
func TestVMASize(t *testing.T) {
	if reflect.TypeOf(uintptr(0)).Size() != 8 {
		t.Skip("the limit is for 64-bit platforms")
	}
	const limit = 104
	if n := reflect.TypeOf(vma{}).Size(); n > limit {
		var pad []string
		ty := reflect.TypeOf(vma{})
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
		t.Errorf("vma is %d bytes, want at most %d (padded after: %v)", n, limit, pad)
	}
}
