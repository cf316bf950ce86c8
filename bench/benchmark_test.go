package bench

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// benchGroup runs the workload group name b.N times, each run exactly as
// the spec's harness does (fixed counts, fresh MemoryManager), and reports
// the mean over runs of each output: the first as ns/op (overriding the
// testing package's figure, which includes setup), the others under their
// own units. Run with -count for benchstat; -bench.scale shrinks the runs.
func benchGroup(b *testing.B, name string, units ...string) {
	g := lookupGroup(name)
	if g == nil || g.name != name {
		b.Fatalf("no workload group %q", name)
	}
	if len(units) != len(g.outputs) {
		b.Fatalf("%d units for %d outputs", len(units), len(g.outputs))
	}
	e := &env{
		ctx:         context.Background(),
		mf:          memoryFile(b),
		scale:       *benchScale,
		pin:         true,
		newPlatform: DefaultPlatform,
		log:         io.Discard,
	}
	sums := make([]float64, len(g.outputs))
	for i := 0; i < b.N; i++ {
		e.mf.WaitReleased()
		ms, err := g.run(e)
		if err != nil {
			if errors.Is(err, errNoPlatform) || (name == "fault_as" && platformUnavailable(err)) {
				b.Skipf("%s: %v", name, err)
			}
			b.Fatalf("%s: %v", name, err)
		}
		for j, m := range ms {
			sums[j] += m.value
		}
	}
	for j, u := range units {
		b.ReportMetric(sums[j]/float64(b.N), u)
	}
}

// The units of secondary outputs say what they are: "merge-ns" is the
// merge phase of mprotect_frag, "ns/cowpage" fork_cow_break.

func BenchmarkMmapMunmap64k(b *testing.B) { benchGroup(b, "mmap_munmap_64k", "ns/op") }
func BenchmarkPopulate256m(b *testing.B)  { benchGroup(b, "populate_256m", "ns/op") }
func BenchmarkFault256m(b *testing.B)     { benchGroup(b, "fault_256m", "ns/op") }
func BenchmarkCopyin8(b *testing.B)       { benchGroup(b, "copyin_8", "ns/op") }
func BenchmarkCopyout4k(b *testing.B)     { benchGroup(b, "copyout_4k", "ns/op", "MB/s") }
func BenchmarkCopyin1m(b *testing.B)      { benchGroup(b, "copyin_1m", "ns/op", "MB/s") }
func BenchmarkMprotectFrag(b *testing.B)  { benchGroup(b, "mprotect_frag", "ns/op", "merge-ns") }
func BenchmarkVMALookup100k(b *testing.B) { benchGroup(b, "vma_lookup_100k", "ns/op", "B/vma") }
func BenchmarkFork256m(b *testing.B)      { benchGroup(b, "fork_256m", "ns/op", "ns/cowpage") }
func BenchmarkBrkGrow64m(b *testing.B)    { benchGroup(b, "brk_grow_64m", "ns/op") }
func BenchmarkMremapGrow(b *testing.B)    { benchGroup(b, "mremap_grow", "ns/op") }
func BenchmarkParallelCopyin8(b *testing.B) {
	benchGroup(b, "parallel_copyin_8", "ns/op")
}
func BenchmarkFaultAS(b *testing.B) { benchGroup(b, "fault_as", "ns/op") }

// TestBenchmarksCoverGroups checks that every group has a benchmark above
// (by name), so that a new workload is not forgotten.
func TestBenchmarksCoverGroups(t *testing.T) {
	have := map[string]bool{
		"mmap_munmap_64k": true, "populate_256m": true, "fault_256m": true,
		"copyin_8": true, "copyout_4k": true, "copyin_1m": true,
		"mprotect_frag": true, "vma_lookup_100k": true, "fork_256m": true,
		"brk_grow_64m": true, "mremap_grow": true, "parallel_copyin_8": true,
		"fault_as": true,
	}
	for _, g := range groups {
		if !have[g.name] {
			t.Errorf("group %s has no benchmark", g.name)
		}
		if strings.ContainsAny(g.name, " \t") {
			t.Errorf("group name %q has white space", g.name)
		}
	}
	if len(have) != len(groups) {
		t.Errorf("%d benchmarks for %d groups", len(have), len(groups))
	}
}
