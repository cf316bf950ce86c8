package mm

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
)

// TestMapAhead: MapAhead maps a range into the AddressSpace, writable,
// without a fault counted and without any page resident; the pages the
// program then writes (through the host mapping: here the manager's own
// I/O) are the resident ones, as natively. Guard pages are left alone.
func TestMapAhead(t *testing.T) {
	m, p := newRecordingMM(t)
	a := mustMap(t, m, anon(window, 16*hostarch.PageSize, hostarch.ReadWrite))
	if err := m.MAdvise(ctx, pageAt(a, 12), hostarch.PageSize, AdvGuardInstall); err != nil {
		t.Fatalf("guard: %v", err)
	}
	m.MapAhead(ctx, a, 16*hostarch.PageSize, hostarch.Write)
	for i := 0; i < 12; i++ {
		if at, ok := p.as.perms(pageAt(a, i)); !ok || !at.Write {
			t.Errorf("page %d mapped %v (%v), want writable", i, at, ok)
		}
	}
	for i := 12; i < 16; i++ {
		if _, ok := p.as.perms(pageAt(a, i)); ok {
			t.Errorf("page %d, at or past the guard, is mapped", i)
		}
	}
	if f := m.Faults(); f != 0 {
		t.Errorf("MapAhead counted %d faults", f)
	}
	if got, want := mincoreString(t, m, a, 16), "0000000000000000"; got != want {
		t.Errorf("mincore after MapAhead: %s, want %s", got, want)
	}
	if s := m.Stats(); s.VmRSS != 0 {
		t.Errorf("VmRSS %d after MapAhead, want 0", s.VmRSS)
	}
	write(t, m, pageAt(a, 3), []byte{1})
	if got, want := mincoreString(t, m, a, 16), "0001000000000000"; got != want {
		t.Errorf("mincore after writing page 3: %s, want %s", got, want)
	}
	if s := m.Stats(); s.VmRSS != hostarch.PageSize {
		t.Errorf("VmRSS %d after one write, want one page", s.VmRSS)
	}
}
