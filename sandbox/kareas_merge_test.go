package sandbox

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
)

// TestAddPageRange: ranges that overlap, contain or touch are merged;
// past the limit the two closest are joined, nothing is dropped.
func TestAddPageRange(t *testing.T) {
	const pg = hostarch.PageSize
	r := func(s, e uint64) hostarch.AddrRange {
		return hostarch.AddrRange{Start: hostarch.Addr(s * pg), End: hostarch.Addr(e * pg)}
	}
	var rs []hostarch.AddrRange
	for _, ar := range []hostarch.AddrRange{r(10, 12), r(20, 21), r(11, 11+1), r(12, 13), r(0, 1), r(19, 20), r(30, 31)} {
		rs = addPageRange(rs, ar, 3)
	}
	// Four runs with limit 3: the closest two, (10,13) and (19,21), joined.
	want := []hostarch.AddrRange{r(0, 1), r(10, 21), r(30, 31)}
	if len(rs) != len(want) {
		t.Fatalf("got %v, want %v", rs, want)
	}
	for i := range want {
		if rs[i] != want[i] {
			t.Fatalf("got %v, want %v", rs, want)
		}
	}
	// A range containing all of them leaves one.
	if rs = addPageRange(rs, r(0, 40), 3); len(rs) != 1 || rs[0] != r(0, 40) {
		t.Fatalf("got %v after a covering range", rs)
	}
}
