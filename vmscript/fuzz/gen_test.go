package fuzz

import (
	"bytes"
	"context"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/vmspace/vmspace/vmscript"
	"github.com/vmspace/vmspace/vmscript/vmspace"
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
		s, err := vmscript.Parse("gen", src)
		if err != nil {
			t.Fatalf("seed %d: %v\n%s", seed, err, src)
		}
		if len(s.Stmts) < 5 {
			t.Errorf("seed %d: only %d statements", seed, len(s.Stmts))
		}
		checkGenerated(t, seed, s)
	}
}

func checkGenerated(t *testing.T, seed uint64, s *vmscript.Script) {
	t.Helper()
	hasFile, hasBrk, hasDataLimit := false, false, false
	for _, st := range s.Stmts {
		switch st.Op {
		case vmscript.OpFile:
			hasFile = true
		case vmscript.OpBrk:
			hasBrk = true
		case vmscript.OpSetrlimit:
			switch st.Resource {
			case vmscript.RlimitData:
				if st.Limit.Kind == vmscript.LimitValue && st.Limit.N != 0 {
					t.Errorf("seed %d line %d: absolute RLIMIT_DATA depends on the host: %s", seed, st.Line, st.Text)
				}
				if st.Limit.Kind != vmscript.LimitInf {
					hasDataLimit = true
				}
			case vmscript.RlimitAS:
				if st.Limit.Kind == vmscript.LimitValue {
					t.Errorf("seed %d line %d: absolute RLIMIT_AS depends on the host: %s", seed, st.Line, st.Text)
				}
			case vmscript.RlimitStack:
				if st.Limit.Kind == vmscript.LimitPlus {
					t.Errorf("seed %d line %d: relative RLIMIT_STACK depends on the host: %s", seed, st.Line, st.Text)
				}
			case vmscript.RlimitMemlock:
				if st.Limit.Kind == vmscript.LimitInf || (st.Limit.Kind == vmscript.LimitValue && st.Limit.N > 1<<20) {
					t.Errorf("seed %d line %d: large RLIMIT_MEMLOCK: %s", seed, st.Line, st.Text)
				}
			}
		case vmscript.OpAnonname:
			t.Errorf("seed %d line %d: %s is never generated", seed, st.Line, st.Op)
		case vmscript.OpIoSetup:
			if st.Len > 512 {
				t.Errorf("seed %d line %d: large AIO context: %s", seed, st.Line, st.Text)
			}
		case vmscript.OpMincore:
			if hasFile {
				t.Errorf("seed %d line %d: mincore in a script with regular files", seed, st.Line)
			}
		}
		// Lengths are either bounded or fail on every system, or are
		// mmap's terabytes for overcommit, never populated nor locked,
		// within the window if placed there.
		tera := st.Op == vmscript.OpMmap && st.MapFlags&(vmscript.MapPopulate|vmscript.MapLocked) == 0 &&
			(st.Addr.Kind == vmscript.AddrAbs && st.Addr.Off == 0 || st.Addr.Kind == vmscript.AddrWindow && st.Addr.Off == 0 && st.Len <= vmscript.WindowSize)
		if st.Len > 1<<32 && st.Len < 0x800000000000 && !tera {
			t.Errorf("seed %d line %d: length %#x neither small nor past the address space: %s", seed, st.Line, st.Len, st.Text)
		}
		if st.Op == vmscript.OpMadvise && st.Len > 1<<32 && st.Addr.Kind == vmscript.AddrBound && st.Len < 0xfffffffffffff000 {
			t.Errorf("seed %d line %d: a huge madvise from a name that may be bound low need not wrap: %s", seed, st.Line, st.Text)
		}
		if st.Op == vmscript.OpMadvise && st.Len > 1<<32 && st.Addr.Kind == vmscript.AddrWindow && vmscript.Window+st.Addr.Off+st.Len >= vmscript.Window+st.Addr.Off {
			t.Errorf("seed %d line %d: a huge madvise that does not wrap: %s", seed, st.Line, st.Text)
		}
		if st.Op == vmscript.OpMmap && st.Len > 1<<32 && st.MapFlags&vmscript.MapPopulate != 0 && st.MapFlags&vmscript.MapFixed == 0 && st.Len < 0x800000000000 {
			t.Errorf("seed %d line %d: a huge populated mapping: %s", seed, st.Line, st.Text)
		}
		if (st.Op == vmscript.OpState || st.Op == vmscript.OpMincore) && st.Len > 1<<32 {
			t.Errorf("seed %d line %d: a huge observation shows the host's mappings: %s", seed, st.Line, st.Text)
		}
		// Accesses stay off the vsyscall page and the top of user memory.
		if st.Addr.Kind == vmscript.AddrAbs && st.Addr.Off >= 0x7f0000000000 && st.Addr.Off < 0x800000000000 {
			t.Errorf("seed %d line %d: address near the stacks: %s", seed, st.Line, st.Text)
		}
		if st.Addr.Kind == vmscript.AddrAbs && st.Addr.Off>>21 == 0xffffffffff600000>>21 {
			t.Errorf("seed %d line %d: the vsyscall page: %s", seed, st.Line, st.Text)
		}
		if st.Op == vmscript.OpMlockall && st.MlockallFlags&vmscript.MclCurrent != 0 && !memlockSmallBefore(s, st) {
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
func memlockSmallBefore(s *vmscript.Script, at *vmscript.Stmt) bool {
	for _, st := range s.Stmts {
		if st == at {
			return false
		}
		if st.Op == vmscript.OpSetrlimit && st.Resource == vmscript.RlimitMemlock && st.Limit.Kind == vmscript.LimitValue && st.Limit.N <= 1<<20 {
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
		s, err := vmscript.Parse("gen", Generate(seed))
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range s.Stmts {
			seen["op "+st.Op.String()] = true
			if st.Op == vmscript.OpMmap {
				for _, w := range vmscript.MapFlagWords() {
					if w.Val != vmscript.MapSharedValidate && st.MapFlags&w.Val == w.Val {
						seen["mmap "+w.Name] = true
					}
				}
				if st.MapFlags&vmscript.MapSharedValidate == vmscript.MapSharedValidate {
					seen["mmap shared_validate"] = true
				}
				if st.HasFile {
					seen["mmap file"] = true
				}
			}
			if st.Op == vmscript.OpMremap {
				for _, w := range vmscript.MremapFlagWords() {
					if st.MremapFlags&w.Val != 0 {
						seen["mremap "+w.Name] = true
					}
				}
			}
			if st.Op == vmscript.OpMlockall {
				for _, w := range vmscript.MlockallFlagWords() {
					if st.MlockallFlags&w.Val != 0 {
						seen["mlockall "+w.Name] = true
					}
				}
			}
			if st.Op == vmscript.OpMsync {
				for _, w := range vmscript.MsyncFlagWords() {
					if st.MsyncFlags&w.Val != 0 {
						seen["msync "+w.Name] = true
					}
				}
			}
			if st.Op == vmscript.OpMadvise {
				seen["madvise "+st.Advice.String()] = true
			}
			if st.Op == vmscript.OpSetrlimit {
				seen["setrlimit "+st.Resource.String()] = true
			}
			if st.Op == vmscript.OpMprotect && st.Prot&vmscript.ProtGrowsDown != 0 {
				seen["mprotect +growsdown"] = true
			}
			if st.Op == vmscript.OpMprotect && st.Prot&vmscript.ProtGrowsUp != 0 {
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
	// anonname and checkpoint are never generated (see above).
	want := slices.DeleteFunc(vmscript.Keywords(), func(k string) bool {
		return k == "op "+vmscript.OpAnonname.String() || k == "op "+vmscript.OpCheckpoint.String()
	})
	want = append(want, "prefix", "bind", "mmap file")
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

// TestGenerateReachesZeroPage: the generator makes scripts whose answer
// depends on whether the kernel has the shared zero page (a read of
// private anonymous memory, a fork, the child's mincore), as vmspace's two
// modes show, so that the fuzzer compares vmspace's mode for the host
// with Linux on machines of either kind. (Before readForkMincore, none of
// 300 scripts did, and the fuzzer ran only where there was no zero page.)
func TestGenerateReachesZeroPage(t *testing.T) {
	const scripts, want = 150, 5
	n := 0
	for i := range scripts {
		s, err := vmscript.Parse("gen", Generate(ScriptSeed(1, i)))
		if err != nil {
			t.Fatal(err)
		}
		out := bothZeroPageModes(t, i, s)
		if !bytes.Equal(out[0], out[1]) {
			n++
		}
	}
	t.Logf("%d of %d scripts depend on the zero page", n, scripts)
	if n < want {
		t.Errorf("%d of %d generated scripts depend on the zero page, want at least %d", n, scripts, want)
	}
}

// bothZeroPageModes returns the transcripts of script i, s, run on
// vmspace with the zero page and without.
func bothZeroPageModes(t *testing.T, i int, s *vmscript.Script) [2][]byte {
	t.Helper()
	var out [2][]byte
	for j, no := range []bool{false, true} {
		b, err := runVmspaceGuarded(context.Background(), s, 0, vmspace.Options{NoZeroPage: &no})
		if err != nil {
			t.Fatalf("script %d (NoZeroPage %v): %v", i, no, err)
		}
		out[j] = b
	}
	return out
}

// TestGenerateReachesZeroPageReclaim: the generator makes scripts that
// read fresh private anonymous memory, then MADV_FREE and MADV_PAGEOUT it
// and look at it with mincore (readReclaimMincore), whose answer depends
// on whether the kernel has the shared zero page (Linux keeps the zero
// page; without it the pages read are lazily freed, then discarded).
func TestGenerateReachesZeroPageReclaim(t *testing.T) {
	const scripts, want = 200, 3
	n := 0
	for i := range scripts {
		src := Generate(ScriptSeed(2, i))
		if !bytes.Contains(src, []byte(" free\n")) && !bytes.Contains(src, []byte(" pageout\n")) {
			continue
		}
		s, err := vmscript.Parse("gen", src)
		if err != nil {
			t.Fatal(err)
		}
		out := bothZeroPageModes(t, i, s)
		if reclaimDiffers(src, out[0], out[1]) {
			n++
		}
	}
	t.Logf("%d of %d scripts reclaim pages only read, with a different answer with and without the zero page", n, scripts)
	if n < want {
		t.Errorf("%d of %d generated scripts reclaim pages only read with an answer that depends on the zero page, want at least %d", n, scripts, want)
	}
}

// reclaimDiffers reports whether the transcripts a and b of src differ at
// a mincore statement that comes right after a free or pageout advice.
// Transcript lines start with their statement's number.
func reclaimDiffers(src, a, b []byte) bool {
	lines := bytes.Split(src, []byte("\n"))
	at := func(t []byte, n int) []byte {
		for _, l := range bytes.Split(t, []byte("\n")) {
			if bytes.HasPrefix(l, []byte(strconv.Itoa(n)+" ")) {
				return l
			}
		}
		return nil
	}
	for i := 1; i < len(lines); i++ {
		prev := lines[i-1]
		if bytes.HasPrefix(lines[i], []byte("mincore ")) && (bytes.HasSuffix(prev, []byte(" free")) || bytes.HasSuffix(prev, []byte(" pageout"))) {
			if !bytes.Equal(at(a, i+1), at(b, i+1)) {
				return true
			}
		}
	}
	return false
}
