package safemem

import (
	"testing"
	"unsafe"
)

// TestOrigin: an Origin remakes the Blocks of fault-tolerant memory it was
// taken from, at any offset, and is none for what it cannot remake.
func TestOrigin(t *testing.T) {
	if n := unsafe.Sizeof(Origin{}); n != 8 {
		t.Errorf("an Origin is %d bytes, want 8", n)
	}
	buf := make([]byte, 64)
	b := BlockFromUnsafeSlice(buf)
	o, ok := OriginOf(b)
	if !ok {
		t.Fatal("no Origin of a fault-tolerant Block")
	}
	if got := o.Block(64); got != b {
		t.Errorf("Block(64) = %+v, want %+v", got, b)
	}
	if got, want := o.Add(16).Block(8), b.DropFirst(16).TakeFirst(8); got != want {
		t.Errorf("Add(16).Block(8) = %+v, want %+v", got, want)
	}
	if _, ok := OriginOf(BlockFromSafeSlice(buf)); ok {
		t.Error("an Origin of Go memory, which an Origin would remake as fault-tolerant")
	}
	if _, ok := OriginOf(Block{}); ok {
		t.Error("an Origin of the empty Block")
	}
	var none Origin
	if !none.IsZero() || !none.Add(4096).IsZero() || !none.Block(4096).IsEmpty() {
		t.Error("the zero Origin makes something")
	}
}
