package mm

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
)

// wpLetters describes the pages of states as pagemap would: p present, W
// present and write-protected, M a write-protect marker, . nothing.
func wpLetters(states []PageState) string {
	b := make([]byte, len(states))
	for i, st := range states {
		switch {
		case st&PagePresent != 0 && st&PageUffdWP != 0:
			b[i] = 'W'
		case st&PagePresent != 0:
			b[i] = 'p'
		case st&PageUffdWP != 0:
			b[i] = 'M'
		default:
			b[i] = '.'
		}
	}
	return string(b)
}

// TestUffdMarkersAroundFault checks that a fault next to write-protect
// markers populates only its page: the marked pages around it stay
// unpopulated and protected (a write there is a write-protect fault), as
// on Linux, where a fault never populates more than its page.
func TestUffdMarkersAroundFault(t *testing.T) {
	mm := newTestMM(t)
	w := uint64(window)
	ar := hostarch.AddrRange{Start: window, End: window + 8*pg}
	mustMap(t, mm, anon(window, 8*pg, hostarch.ReadWrite))
	u := newUffd(t, mm, UffdFeaturePagefaultFlagWP|UffdFeatureWPUnpopulated)
	if _, err := u.Register(ctx, w, 8*pg, UffdioRegisterModeWP); err != nil {
		t.Fatal(err)
	}
	if err := u.WriteProtect(ctx, w, 8*pg, UffdioWriteprotectModeWP); err != nil {
		t.Fatal(err)
	}
	if got := wpLetters(mm.PageStates(ar)); got != "MMMMMMMM" {
		t.Fatalf("after WRITEPROTECT: %s, want MMMMMMMM", got)
	}
	// Unprotect page 2 only, and write it: the fault there must not
	// take its marked neighbours along.
	if err := u.WriteProtect(ctx, w+2*pg, pg, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := mm.CopyOut(ctx, window+2*pg, []byte("b"), IOOpts{}); err != nil {
		t.Fatalf("write to the unprotected page: %v", err)
	}
	if got := wpLetters(mm.PageStates(ar)); got != "MMpMMMMM" {
		t.Errorf("after writing page 2: %s, want MMpMMMMM", got)
	}
	mustUserfault(t, mm, window+3*pg, hostarch.Write)
}

// TestScanProtect checks PAGEMAP_SCAN's write protection: only the pages
// match returns, and only in vmas with asynchronous write protection; a
// present page gets the protection, an unpopulated one a marker, and a
// later write resolves it at once.
func TestScanProtect(t *testing.T) {
	mm := newTestMM(t)
	w := uint64(window)
	ar := hostarch.AddrRange{Start: window, End: window + 8*pg}
	mustMap(t, mm, anon(window, 8*pg, hostarch.ReadWrite))
	if _, err := mm.CopyOut(ctx, window, []byte("a"), IOOpts{}); err != nil {
		t.Fatal(err)
	}
	protect := func(r hostarch.AddrRange) {
		t.Helper()
		mm.ScanProtect(ar, func(states []PageState) []hostarch.AddrRange {
			if len(states) != 8 {
				t.Errorf("match got %d states, want 8", len(states))
			}
			return []hostarch.AddrRange{r}
		})
	}
	// Not registered: nothing is protected.
	protect(ar)
	if got := wpLetters(mm.PageStates(ar)); got != "p......." {
		t.Fatalf("unregistered: %s, want p.......", got)
	}
	u := newUffd(t, mm, UffdFeatureWPAsync)
	if _, err := u.Register(ctx, w, 8*pg, UffdioRegisterModeWP); err != nil {
		t.Fatal(err)
	}
	if st := mm.PageStates(ar); st[0]&PageWPAsync == 0 || st[5]&PageUffdWPVMA == 0 {
		t.Fatalf("registered vma states %#x %#x lack PageWPAsync or PageUffdWPVMA", st[0], st[5])
	}
	protect(hostarch.AddrRange{Start: window, End: window + 4*pg})
	if got := wpLetters(mm.PageStates(ar)); got != "WMMM...." {
		t.Fatalf("after protecting pages 0-3: %s, want WMMM....", got)
	}
	if _, err := mm.CopyOut(ctx, window, []byte("bc"+string(make([]byte, pg-2))+"d"), IOOpts{}); err != nil {
		t.Fatalf("async writes to a protected page and a marker: %v", err)
	}
	if got := wpLetters(mm.PageStates(ar)); got != "ppMM...." {
		t.Errorf("after writing pages 0 and 1: %s, want ppMM....", got)
	}
}
