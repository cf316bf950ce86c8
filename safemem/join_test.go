package safemem

import "testing"

// TestJoin checks that Join joins only contiguous Blocks of the same kind.
func TestJoin(t *testing.T) {
	buf := make([]byte, 64)
	a, b := BlockFromSafeSlice(buf[:16]), BlockFromSafeSlice(buf[16:40])
	if j, ok := a.Join(b); !ok || j.Addr() != a.Addr() || j.Len() != 40 || j.NeedSafecopy() {
		t.Errorf("a.Join(b) = %v, %v; want 40 bytes at a", j, ok)
	}
	if _, ok := b.Join(a); ok {
		t.Errorf("b.Join(a) joined blocks in the wrong order")
	}
	if _, ok := a.Join(BlockFromSafeSlice(buf[17:20])); ok {
		t.Errorf("joined blocks with a gap")
	}
	if _, ok := a.Join(BlockFromUnsafeSlice(buf[16:20])); ok {
		t.Errorf("joined a safe block with one that needs safecopy")
	}
	if j, ok := a.Join(Block{}); !ok || j != a {
		t.Errorf("a.Join(empty) = %v, %v", j, ok)
	}
	if j, ok := (Block{}).Join(b); !ok || j != b {
		t.Errorf("empty.Join(b) = %v, %v", j, ok)
	}
}
