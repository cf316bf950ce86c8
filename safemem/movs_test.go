package safemem

import (
	"bytes"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLargeCopyFaults checks copies large enough for copyDisjoint's
// fastest kernel (REP MOVSB on amd64) across a hole, in both directions:
// the count, the fault and the prefix copied are exact, as for small
// copies.
func TestLargeCopyFaults(t *testing.T) {
	const pages, hole, lo = 40, 24, 1000
	span := (pages-1)*pg - lo
	if span < largeCopy() {
		t.Fatalf("span %d does not reach the large-copy kernel (%d)", span, largeCopy())
	}
	prefix := hole*pg - lo
	for _, into := range []bool{true, false} {
		m := mapAnon(t, pages)
		for i := range m {
			m[i] = byte(i * 7)
		}
		protect(t, m[hole*pg:(hole+1)*pg], unix.PROT_NONE)
		buf := pattern(span, 0x5a)
		mapped := unsafeBlock(m, lo, lo+span)
		dst, src := mapped, BlockFromSafeSlice(buf)
		if !into {
			dst, src = BlockFromSafeSlice(buf), mapped
		}
		want := bytes.Clone(src.TakeFirst(prefix).ToSlice())
		n, err := Copy(dst, src)
		if n != prefix {
			t.Errorf("into=%v: count = %d, want %d (err %v)", into, n, prefix, err)
		}
		fe := asFault(t, err)
		wantAddr := src.Addr() + uintptr(prefix)
		if into {
			wantAddr = dst.Addr() + uintptr(prefix)
		}
		if fe.Signal != syscall.SIGSEGV || fe.Write != into || fe.Addr != wantAddr || fe.Offset != uint64(prefix) {
			t.Errorf("into=%v: fault = %+v, want SIGSEGV Write %v Addr %#x Offset %d", into, *fe, into, wantAddr, prefix)
		}
		if got := dst.TakeFirst(prefix).ToSlice(); !bytes.Equal(got, want) {
			t.Errorf("into=%v: the %d bytes before the fault were not all copied", into, prefix)
		}
		// Without a fault the whole span is copied.
		protect(t, m[hole*pg:(hole+1)*pg], unix.PROT_READ|unix.PROT_WRITE)
		want = bytes.Clone(src.ToSlice())
		if n, err := Copy(dst, src); n != span || err != nil {
			t.Errorf("into=%v: Copy = %d, %v; want %d, nil", into, n, err, span)
		}
		if !bytes.Equal(dst.ToSlice(), want) {
			t.Errorf("into=%v: large copy differs", into)
		}
	}
}
