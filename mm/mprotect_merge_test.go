package mm

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
)

// TestMProtectMergesBeforeSplitAtMapLimit checks that mprotect, which
// merges the vmas it changes in one go at the end, merges what it has
// changed before it splits a vma: at the map count limit, Linux (which
// merges each vma as it goes) has room for the split because the earlier
// vmas merged; so must vmspace.
func TestMProtectMergesBeforeSplitAtMapLimit(t *testing.T) {
	m := newTestMM(t)
	const pg = hostarch.PageSize
	a := window
	mustMap(t, m, anon(a, pg, hostarch.Read))         // A
	mustMap(t, m, anon(a+pg, pg, hostarch.ReadWrite)) // B
	mustMap(t, m, anon(a+2*pg, 2*pg, hostarch.Read))  // C
	n := m.vmas.Len()
	l := m.Limits()
	l.MaxMapCount = n
	m.SetLimits(l)
	// A turns RW and merges with B; C is split at its middle, which the
	// limit allows only once A and B have merged.
	if err := m.MProtect(ctx, a, 3*pg, hostarch.ReadWrite, MProtectOpts{}); err != nil {
		t.Fatalf("MProtect at the map count limit: %v, want success as on Linux", err)
	}
	var got []string
	for vseg := m.vmas.FirstSegment(); vseg.Ok(); vseg = vseg.NextSegment() {
		got = append(got, hostarch.AddrRange(vseg.Range()).String()+" "+vseg.ValuePtr().realPerms.String())
	}
	want := []string{
		hostarch.AddrRange{Start: a, End: a + 3*pg}.String() + " " + hostarch.ReadWrite.String(),
		hostarch.AddrRange{Start: a + 3*pg, End: a + 4*pg}.String() + " " + hostarch.Read.String(),
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("vmas after mprotect = %q, want %q", got, want)
	}
	check(t, m)
}
