package fuzz

import (
	"fmt"
	"strings"
	"testing"

	"github.com/vmspace/vmspace/vmscript"
)

// TestShrinkToOneStatement: with an oracle that says "differs" exactly when
// a given statement is present, Shrink leaves that statement alone.
func TestShrinkToOneStatement(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		src := Generate(seed)
		lines := vmscript.SplitLines(string(src))
		// Pick a statement line (not a comment) as the culprit.
		var culprit string
		for i := len(lines) / 2; i < len(lines); i++ {
			if !strings.HasPrefix(lines[i], "#") && !strings.HasPrefix(lines[i], "use ") {
				culprit = lines[i]
				break
			}
		}
		if culprit == "" {
			continue
		}
		calls := 0
		oracle := func(cand []byte) bool {
			calls++
			for _, l := range vmscript.SplitLines(string(cand)) {
				if l == culprit {
					return true
				}
			}
			return false
		}
		got := string(Shrink(src, oracle, ShrinkOptions{}))
		if got != culprit+"\n" {
			t.Errorf("seed %d: shrunk to\n%s\nwant just\n%s", seed, got, culprit)
		}
		if calls > 2000 {
			t.Errorf("seed %d: %d oracle calls, over the default budget", seed, calls)
		}
	}
}

// TestShrinkKeepsNeededPairs: two statements needed together stay, in order,
// and nothing else.
func TestShrinkKeepsNeededPairs(t *testing.T) {
	src := "# a comment\nmmap @0x0 0x4000 rw private,anon\nwrite @0x0 01\nfork p1\np1: write @0x0 02\nuse p1\nread @0x0 1\nstate @0x0 0x4000\nvmsize\n"
	oracle := func(cand []byte) bool {
		s := string(cand)
		return strings.Contains(s, "fork p1\n") && strings.Contains(s, "p1: write @0x0 02\n")
	}
	got := string(Shrink([]byte(src), oracle, ShrinkOptions{}))
	if want := "fork p1\np1: write @0x0 02\n"; got != want {
		t.Errorf("shrunk to\n%s\nwant\n%s", got, want)
	}
}

// TestShrinkSimplifies: numbers get smaller (keeping page alignment), flag
// words and unused bindings go, as long as the oracle still holds.
func TestShrinkSimplifies(t *testing.T) {
	src := "mmap @0x5000 0x8000 rw private,anon,populate,noreserve -> m\nmprotect @0x7000 0x9000 rw\nwrite @0x123 0102030405\nread @0x10 4\n"
	oracle := func(cand []byte) bool {
		s, err := vmscript.Parse("cand", cand)
		if err != nil {
			return false
		}
		mm, mp, w := false, false, false
		for _, st := range s.Stmts {
			switch st.Op {
			case vmscript.OpMmap:
				mm = st.MapFlags&vmscript.MapPopulate != 0
			case vmscript.OpMprotect:
				mp = st.Len >= 0x3000 && st.Len%vmscript.PageSize == 0
			case vmscript.OpWrite:
				w = st.Addr.Off%vmscript.PageSize != 0
			}
		}
		return mm && mp && w
	}
	got := string(Shrink([]byte(src), oracle, ShrinkOptions{}))
	want := "mmap @0x0 0x0 rw populate\nmprotect @0x0 0x3000 rw\nwrite @0x1 01\n"
	if got != want {
		t.Errorf("shrunk to\n%s\nwant\n%s", got, want)
	}
}

// TestShrinkBudget: Shrink never calls the oracle more than the budget.
func TestShrinkBudget(t *testing.T) {
	src := Generate(7)
	for _, budget := range []int{1, 10, 100} {
		calls := 0
		oracle := func(cand []byte) bool {
			calls++
			return len(cand)%3 != 0 // arbitrary, so shrinking keeps going
		}
		Shrink(src, oracle, ShrinkOptions{Budget: budget})
		if calls > budget {
			t.Errorf("budget %d: %d calls", budget, calls)
		}
	}
}

func TestSimplerNums(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		want string
	}{
		{0, "[]"},
		{1, "[0]"},
		{0x1000, "[0]"},
		{0x3000, "[0 4096 8192]"},
		{0x1234, "[0 1 4096 564 2330]"},
		{0xffffffffffffffff, "[0 1 18446744073709547520 4095 4096]"},
		{0x800000000000, "[0 4096]"},
	} {
		if got := fmt.Sprint(simplerNums(tc.n)); got != tc.want {
			t.Errorf("simplerNums(%#x) = %s, want %s", tc.n, got, tc.want)
		}
	}
}
