package mm

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
)

// TestForkResidencyWindow checks that a fork child gets exactly the pages
// its parent touched when fork reads residency through a residencyWindow:
// many pmas, spread over more of the memory file than one window covers,
// each with its own pattern of touched pages; the child's mincore must
// show each vma's pattern.
func TestForkResidencyWindow(t *testing.T) {
	mm := newTestMM(t)
	const vmas, size = 24, 4 << 20 // 96 MiB of pmas: three windows
	pages := size / hostarch.PageSize
	touched := func(v, p int) bool { return (p*7+v*3)%5 == 0 || p == pages-1 }
	var addrs []hostarch.Addr
	for v := 0; v < vmas; v++ {
		a := mustMap(t, mm, anon(0x300000000000+hostarch.Addr(v)*(2*size), size, hostarch.ReadWrite))
		addrs = append(addrs, a)
		for p := 0; p < pages; p++ {
			if touched(v, p) {
				if _, err := mm.CopyOut(ctx, a+hostarch.Addr(p)*hostarch.PageSize, []byte{byte(v + 1)}, IOOpts{}); err != nil {
					t.Fatalf("CopyOut: %v", err)
				}
			}
		}
	}
	child, err := mm.Fork(ctx)
	if err != nil {
		t.Fatalf("Fork: %v", err)
	}
	defer child.DecUsers(ctx)
	// The child's pmas are exactly the touched pages.
	want := uint64(0)
	for v := 0; v < vmas; v++ {
		for p := 0; p < pages; p++ {
			if touched(v, p) {
				want += hostarch.PageSize
			}
		}
	}
	if got := child.ResidentSetSize(); got != want {
		t.Errorf("child's RSS = %#x, want the %#x bytes touched", got, want)
	}
	for v, a := range addrs {
		vec, err := child.MInCore(ctx, a, size)
		if err != nil {
			t.Fatalf("MInCore: %v", err)
		}
		bad := 0
		for p := range vec {
			if want := touched(v, p); (vec[p] != 0) != want {
				if bad < 3 {
					t.Errorf("vma %d page %d: child resident %v, want %v", v, p, vec[p] != 0, want)
				}
				bad++
			}
		}
		var b [1]byte
		if _, err := child.CopyIn(ctx, a+hostarch.Addr(pages-1)*hostarch.PageSize, b[:], IOOpts{}); err != nil || b[0] != byte(v+1) {
			t.Errorf("vma %d: child reads %d (%v), want %d", v, b[0], err, v+1)
		}
	}
}
