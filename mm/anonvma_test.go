package mm

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
)

// TestDontUnmapAnonVMA: MREMAP_DONTUNMAP leaves the old vma accounted
// (VM_ACCOUNT) and drops its anon_vma only when the whole vma moved, as
// Linux 6.18's move_vma does (corpus: fuzz_11_2248,
// anon_vma_dontunmap_whole).
func TestDontUnmapAnonVMA(t *testing.T) {
	m := newTestMM(t)
	for _, tc := range []struct {
		name        string
		at          hostarch.Addr
		pages, move int
		written     bool
	}{
		{"whole", window, 2, 2, false},
		{"part", window + 0x100000, 3, 1, true},
	} {
		a := mustMap(t, m, anon(tc.at, uint64(tc.pages)*hostarch.PageSize, hostarch.ReadWrite))
		write(t, m, a, []byte{1})
		to := tc.at + 0x40000
		if _, err := m.MRemap(ctx, a, uint64(tc.move)*hostarch.PageSize, uint64(tc.move)*hostarch.PageSize, MRemapOpts{MayMove: true, DontUnmap: true, NewAddr: to}); err != nil {
			t.Fatalf("%s: MRemap: %v", tc.name, err)
		}
		v := m.vmas.FindSegment(a).ValuePtr()
		if v.written() != tc.written {
			t.Errorf("%s: old vma has an anon_vma: %v, want %v", tc.name, v.written(), tc.written)
		}
		if !v.flags.has(vmaAccount) {
			t.Errorf("%s: old vma lost VM_ACCOUNT", tc.name)
		}
		if nv := m.vmas.FindSegment(to).ValuePtr(); !nv.written() || !nv.flags.has(vmaAccount) {
			t.Errorf("%s: the copy: anon_vma %v, VM_ACCOUNT %v", tc.name, nv.written(), nv.flags.has(vmaAccount))
		}
	}
	check(t, m)
}

// TestFailedStackGrowthPreparesAnonVMA: a fault below a growsdown vma
// that the stack limit refuses still gives the vma its anon_vma, as
// Linux's expand_downwards prepares it before the checks (corpus:
// fuzz_12_944).
func TestFailedStackGrowthPreparesAnonVMA(t *testing.T) {
	m := newTestMM(t)
	opts := anon(window, hostarch.PageSize, hostarch.NoAccess)
	opts.GrowsDown = true
	a := mustMap(t, m, opts)
	if err := m.HandleUserFault(ctx, 0x10000000, hostarch.Read, 0); err == nil {
		t.Fatal("a fault 32 TiB below the stack succeeded")
	}
	if v := m.vmas.FindSegment(a).ValuePtr(); !v.written() {
		t.Error("the growsdown vma has no anon_vma after the failed growth")
	}
	check(t, m)
}
