package vmscript

import (
	"bytes"
	"sort"
	"strings"
	"testing"
)

func TestGenerateDeterministic(t *testing.T) {
	for seed := uint64(0); seed < 50; seed++ {
		a, b := Generate(seed), Generate(seed)
		if !bytes.Equal(a, b) {
			t.Fatalf("seed %d: two generations differ:\n%s\n---\n%s", seed, a, b)
		}
		if c := Generate(seed + 1000); bytes.Equal(a, c) {
			t.Errorf("seeds %d and %d generate the same script", seed, seed+1000)
		}
	}
}

// genSeeds is how many seeds the property tests cover.
func genSeeds() uint64 {
	if testing.Short() {
		return 300
	}
	return 3000
}

// TestGenerateParses checks that every generated script parses, and the
// properties that keep generated scripts host-independent and harmless to the
// native process.
func TestGenerateParses(t *testing.T) {
	for seed := uint64(0); seed < genSeeds(); seed++ {
		src := Generate(seed)
		s, err := Parse("gen", src)
		if err != nil {
			t.Fatalf("seed %d: %v\n%s", seed, err, src)
		}
		if len(s.Stmts) < 5 {
			t.Errorf("seed %d: only %d statements", seed, len(s.Stmts))
		}
		checkGenerated(t, seed, s)
	}
}

func checkGenerated(t *testing.T, seed uint64, s *Script) {
	t.Helper()
	hasFile, hasBrk, hasDataLimit := false, false, false
	for _, st := range s.Stmts {
		switch st.Op {
		case OpFile:
			hasFile = true
		case OpBrk:
			hasBrk = true
		case OpSetrlimit:
			switch st.Resource {
			case RlimitData:
				if st.Limit.Kind == LimitValue && st.Limit.N != 0 {
					t.Errorf("seed %d line %d: absolute RLIMIT_DATA depends on the host: %s", seed, st.Line, st.Text)
				}
				if st.Limit.Kind != LimitInf {
					hasDataLimit = true
				}
			case RlimitAS:
				if st.Limit.Kind == LimitValue {
					t.Errorf("seed %d line %d: absolute RLIMIT_AS depends on the host: %s", seed, st.Line, st.Text)
				}
			case RlimitStack:
				if st.Limit.Kind == LimitPlus {
					t.Errorf("seed %d line %d: relative RLIMIT_STACK depends on the host: %s", seed, st.Line, st.Text)
				}
			case RlimitMemlock:
				if st.Limit.Kind == LimitInf || (st.Limit.Kind == LimitValue && st.Limit.N > 1<<20) {
					t.Errorf("seed %d line %d: large RLIMIT_MEMLOCK: %s", seed, st.Line, st.Text)
				}
			}
		case OpAnonname:
			t.Errorf("seed %d line %d: %s is never generated", seed, st.Line, st.Op)
		case OpIoSetup:
			if st.Len > 512 {
				t.Errorf("seed %d line %d: large AIO context: %s", seed, st.Line, st.Text)
			}
		case OpMincore:
			if hasFile {
				t.Errorf("seed %d line %d: mincore in a script with regular files", seed, st.Line)
			}
		}
		// Lengths are either bounded or fail on every system, or are
		// mmap's terabytes for overcommit, never populated nor locked,
		// within the window if placed there.
		tera := st.Op == OpMmap && st.MapFlags&(MapPopulate|MapLocked) == 0 &&
			(st.Addr.Kind == AddrAbs && st.Addr.Off == 0 || st.Addr.Kind == AddrWindow && st.Addr.Off == 0 && st.Len <= WindowSize)
		if st.Len > 1<<32 && st.Len < 0x800000000000 && !tera {
			t.Errorf("seed %d line %d: length %#x neither small nor past the address space: %s", seed, st.Line, st.Len, st.Text)
		}
		if st.Op == OpMadvise && st.Len > 1<<32 && st.Addr.Kind == AddrBound && st.Len < 0xfffffffffffff000 {
			t.Errorf("seed %d line %d: a huge madvise from a name that may be bound low need not wrap: %s", seed, st.Line, st.Text)
		}
		if st.Op == OpMadvise && st.Len > 1<<32 && st.Addr.Kind == AddrWindow && Window+st.Addr.Off+st.Len >= Window+st.Addr.Off {
			t.Errorf("seed %d line %d: a huge madvise that does not wrap: %s", seed, st.Line, st.Text)
		}
		if st.Op == OpMmap && st.Len > 1<<32 && st.MapFlags&MapPopulate != 0 && st.MapFlags&MapFixed == 0 && st.Len < 0x800000000000 {
			t.Errorf("seed %d line %d: a huge populated mapping: %s", seed, st.Line, st.Text)
		}
		if (st.Op == OpState || st.Op == OpMincore) && st.Len > 1<<32 {
			t.Errorf("seed %d line %d: a huge observation shows the host's mappings: %s", seed, st.Line, st.Text)
		}
		// Accesses stay off the vsyscall page and the top of user memory.
		if st.Addr.Kind == AddrAbs && st.Addr.Off >= 0x7f0000000000 && st.Addr.Off < 0x800000000000 {
			t.Errorf("seed %d line %d: address near the stacks: %s", seed, st.Line, st.Text)
		}
		if st.Addr.Kind == AddrAbs && st.Addr.Off>>21 == 0xffffffffff600000>>21 {
			t.Errorf("seed %d line %d: the vsyscall page: %s", seed, st.Line, st.Text)
		}
		if st.Op == OpMlockall && st.MlockallFlags&MclCurrent != 0 && !memlockSmallBefore(s, st) {
			t.Errorf("seed %d line %d: mlockall current without a small RLIMIT_MEMLOCK: %s", seed, st.Line, st.Text)
		}
	}
	if hasBrk && hasDataLimit {
		t.Errorf("seed %d: brk in a script that limits RLIMIT_DATA", seed)
	}
}

// memlockSmallBefore says some earlier statement set an absolute
// RLIMIT_MEMLOCK of at most 1 MiB (a weak check of the generator's rule, which
// also follows processes).
func memlockSmallBefore(s *Script, at *Stmt) bool {
	for _, st := range s.Stmts {
		if st == at {
			return false
		}
		if st.Op == OpSetrlimit && st.Resource == RlimitMemlock && st.Limit.Kind == LimitValue && st.Limit.N <= 1<<20 {
			return true
		}
	}
	return false
}

// TestGenerateCoverage checks that, over many seeds, the generator uses every
// statement (but anonname and checkpoint), every flag word, advice and
// resource.
func TestGenerateCoverage(t *testing.T) {
	seen := map[string]bool{}
	for seed := uint64(0); seed < genSeeds(); seed++ {
		s, err := Parse("gen", Generate(seed))
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range s.Stmts {
			seen["op "+st.Op.String()] = true
			if st.Op == OpMmap {
				for _, w := range mapFlagWords {
					if w.val != MapSharedValidate && st.MapFlags&w.val == w.val {
						seen["mmap "+w.name] = true
					}
				}
				if st.MapFlags&MapSharedValidate == MapSharedValidate {
					seen["mmap shared_validate"] = true
				}
				if st.HasFile {
					seen["mmap file"] = true
				}
			}
			if st.Op == OpMremap {
				for _, w := range mremapFlagWords {
					if st.MremapFlags&w.val != 0 {
						seen["mremap "+w.name] = true
					}
				}
			}
			if st.Op == OpMlockall {
				for _, w := range mlockallFlagWords {
					if st.MlockallFlags&w.val != 0 {
						seen["mlockall "+w.name] = true
					}
				}
			}
			if st.Op == OpMsync {
				for _, w := range msyncFlagWords {
					if st.MsyncFlags&w.val != 0 {
						seen["msync "+w.name] = true
					}
				}
			}
			if st.Op == OpMadvise {
				seen["madvise "+st.Advice.String()] = true
			}
			if st.Op == OpSetrlimit {
				seen["setrlimit "+st.Resource.String()] = true
			}
			if st.Op == OpMprotect && st.Prot&ProtGrowsDown != 0 {
				seen["mprotect +growsdown"] = true
			}
			if st.Op == OpMprotect && st.Prot&ProtGrowsUp != 0 {
				seen["mprotect +growsup"] = true
			}
			if st.Prefixed {
				seen["prefix"] = true
			}
			if st.Bind != "" {
				seen["bind"] = true
			}
		}
	}
	var want []string
	for o := OpFork; o < numOps; o++ {
		if o != OpAnonname && o != OpCheckpoint {
			want = append(want, "op "+o.String())
		}
	}
	for _, w := range mapFlagWords {
		want = append(want, "mmap "+w.name)
	}
	for _, w := range mremapFlagWords {
		want = append(want, "mremap "+w.name)
	}
	for _, w := range mlockallFlagWords {
		want = append(want, "mlockall "+w.name)
	}
	for _, w := range msyncFlagWords {
		want = append(want, "msync "+w.name)
	}
	for _, w := range adviceWords {
		want = append(want, "madvise "+w.name)
	}
	for _, w := range resourceWords {
		want = append(want, "setrlimit "+w.name)
	}
	want = append(want, "mprotect +growsdown", "mprotect +growsup", "prefix", "bind", "mmap file")
	var missing []string
	for _, w := range want {
		if !seen[w] {
			missing = append(missing, w)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the generator never produced: %s", strings.Join(missing, ", "))
	}
}
