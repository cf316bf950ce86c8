package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/pgalloc"
)

var (
	// sharedMF is the memory file all tests and benchmarks share, as the
	// harness does; made on first use, closed by TestMain.
	sharedMF     *pgalloc.MemoryFile
	sharedMFErr  error
	sharedMFOnce sync.Once

	benchScale = flag.Float64("bench.scale", 1, "scale of the workloads the benchmarks run (see Options.Scale)")
)

func memoryFile(tb testing.TB) *pgalloc.MemoryFile {
	tb.Helper()
	sharedMFOnce.Do(func() {
		sharedMF, sharedMFErr = pgalloc.New(pgalloc.Options{Name: "vmspace-bench-test"})
	})
	if sharedMFErr != nil {
		tb.Fatalf("pgalloc.New: %v", sharedMFErr)
	}
	return sharedMF
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if sharedMF != nil {
		if err := sharedMF.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "closing the memory file: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// quickScale shrinks the workloads so that all of them run in a few
// seconds.
const quickScale = 0.01

// TestQuick runs every workload at quickScale and checks that each produces
// its outputs, in order, with finite positive values and no error (fault_as
// may fail only for want of a real platform).
func TestQuick(t *testing.T) {
	var progress bytes.Buffer
	rs := RunOptions(context.Background(), Options{
		Scale:       quickScale,
		MemoryFile:  memoryFile(t),
		Progress:    &progress,
		SettleSleep: -1,
	}, nil)
	defer func() {
		if t.Failed() {
			t.Logf("progress:\n%s", progress.String())
		}
	}()
	want := Workloads()
	if len(rs) != len(want) {
		t.Fatalf("got %d results, want %d (%v)", len(rs), len(want), want)
	}
	for i, r := range rs {
		if r.Workload != want[i] {
			t.Errorf("result %d is %q, want %q", i, r.Workload, want[i])
		}
		if r.System != System {
			t.Errorf("%s: system %q, want %q", r.Workload, r.System, System)
		}
		if r.Err != nil {
			if r.Workload == "fault_as" && platformUnavailable(r.Err) {
				t.Logf("fault_as skipped: %v", r.Err)
				continue
			}
			t.Errorf("%s: %v", r.Workload, r.Err)
			continue
		}
		if !(r.Value > 0) || math.IsInf(r.Value, 0) {
			t.Errorf("%s: value %v, want finite and positive", r.Workload, r.Value)
		}
		if r.Iters <= 0 {
			t.Errorf("%s: iters %d, want positive", r.Workload, r.Iters)
		}
		ref, ok := ReferenceFor(r.Workload)
		if !ok {
			t.Errorf("%s: no reference figures", r.Workload)
		} else if r.Unit != ref.Unit {
			t.Errorf("%s: unit %q, want %q", r.Workload, r.Unit, ref.Unit)
		}
	}
}

// platformUnavailable reports whether err says fault_as had no usable real
// platform (none linked in, or ptrace refused on this host).
func platformUnavailable(err error) bool {
	if errors.Is(err, errNoPlatform) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "creating the platform") || strings.Contains(s, "Activate")
}

// TestQuickCounts checks the iteration counts a scaled run reports, which
// are what it really timed.
func TestQuickCounts(t *testing.T) {
	rs := RunOptions(context.Background(), Options{
		Scale: quickScale, MemoryFile: memoryFile(t), SettleSleep: -1,
	}, []string{"mprotect_merge_4096", "brk_grow_64m", "parallel_copyin_8", "mremap_grow"})
	want := map[string]int{
		"mprotect_split_4096": 5,
		"mprotect_merge_4096": 5,
		"brk_grow_64m":        3 * 163,
		"parallel_copyin_8":   2 * 5000,
		"mremap_grow":         2 * 14,
	}
	if len(rs) != len(want) {
		t.Fatalf("got %d results, want %d", len(rs), len(want))
	}
	for _, r := range rs {
		if r.Err != nil {
			t.Errorf("%s: %v", r.Workload, r.Err)
			continue
		}
		if r.Iters != want[r.Workload] {
			t.Errorf("%s: iters %d, want %d", r.Workload, r.Iters, want[r.Workload])
		}
	}
}

func TestResultJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Result
		want string
	}{
		{
			name: "spec example",
			r:    Result{System: "vmspace", Workload: "copyin_8", Value: 29.5, Unit: "ns/op", Iters: 500000},
			want: `{"system":"vmspace","workload":"copyin_8","value":29.5,"unit":"ns/op","iters":500000}`,
		},
		{
			name: "rounds down",
			r:    Result{System: "vmspace", Workload: "copyin_8", Value: 29.54, Unit: "ns/op", Iters: 1},
			want: `{"system":"vmspace","workload":"copyin_8","value":29.5,"unit":"ns/op","iters":1}`,
		},
		{
			name: "rounds up",
			r:    Result{System: "vmspace", Workload: "copyin_8", Value: 29.96, Unit: "ns/op", Iters: 1},
			want: `{"system":"vmspace","workload":"copyin_8","value":30.0,"unit":"ns/op","iters":1}`,
		},
		{
			name: "large value not in exponent form",
			r:    Result{System: "vmspace", Workload: "mprotect_split_4096", Value: 1790000.04, Unit: "ns", Iters: 5},
			want: `{"system":"vmspace","workload":"mprotect_split_4096","value":1790000.0,"unit":"ns","iters":5}`,
		},
		{
			name: "error line has no value",
			r:    Result{System: "vmspace", Workload: "fault_as", Unit: "ns/page", Value: 3, Err: errors.New(`ptrace: "no" <perm>` + "\n")},
			want: `{"system":"vmspace","workload":"fault_as","error":"ptrace: \"no\" \u003cperm\u003e\n"}`,
		},
		{
			name: "non-finite value is an error",
			r:    Result{System: "vmspace", Workload: "copyin_8", Unit: "ns/op", Value: math.Inf(1)},
			want: `{"system":"vmspace","workload":"copyin_8","error":"value is not finite: +Inf"}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.r)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("got  %s\nwant %s", b, tc.want)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Errorf("not valid JSON: %v", err)
			}
		})
	}
}

// jsonLine is the shape of one output line: field names and order.
var jsonLine = regexp.MustCompile(`^\{"system":"vmspace","workload":"[a-z0-9_]+",("value":-?[0-9]+\.[0-9],"unit":"[^"]+","iters":[0-9]+|"error":"(?:[^"\\]|\\.)*")\}$`)

func TestMainJSON(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := Main([]string{"--json", "-w", "copyin_8,copyout_4k_mbps", "--scale", "0.01"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	wantNames := []string{"copyin_8", "copyout_4k", "copyout_4k_mbps"}
	if len(lines) != len(wantNames) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(wantNames), stdout.String())
	}
	for i, l := range lines {
		if !jsonLine.MatchString(l) {
			t.Errorf("line %q does not have the spec's form", l)
		}
		var r struct {
			Workload string  `json:"workload"`
			Value    float64 `json:"value"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Errorf("line %q: %v", l, err)
		}
		if r.Workload != wantNames[i] {
			t.Errorf("line %d is %q, want %q", i, r.Workload, wantNames[i])
		}
	}
	if !strings.Contains(stderr.String(), "bench: copyin_8") {
		t.Errorf("no progress on stderr: %q", stderr.String())
	}
}

func TestMainUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string // expected in stdout
		err  string // expected in stderr
	}{
		{args: []string{"-w", "nope"}, code: 2, err: "unknown workload(s): nope"},
		{args: []string{"--bogus"}, code: 2, err: "flag provided but not defined"},
		{args: []string{"extra"}, code: 2, err: `unexpected argument "extra"`},
		{args: []string{"--scale", "0"}, code: 2, err: "--scale"},
		{args: []string{"--list"}, code: 0, out: "mprotect_merge_4096\n"},
		{args: []string{"-h"}, code: 0, err: "usage: vmspace bench"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(tc.args, &stdout, &stderr)
		if code != tc.code {
			t.Errorf("Main(%q) = %d, want %d", tc.args, code, tc.code)
		}
		if !strings.Contains(stdout.String(), tc.out) {
			t.Errorf("Main(%q) stdout %q, want it to contain %q", tc.args, stdout.String(), tc.out)
		}
		if !strings.Contains(stderr.String(), tc.err) {
			t.Errorf("Main(%q) stderr %q, want it to contain %q", tc.args, stderr.String(), tc.err)
		}
	}
}

func TestSelect(t *testing.T) {
	for _, tc := range []struct {
		names   []string
		groups  []string
		unknown []string
	}{
		{names: nil, groups: groupNames(groups)},
		// Canonical order whatever the order asked; a group once.
		{names: []string{"fault_as", "mprotect_merge_4096", "mprotect_split_4096"}, groups: []string{"mprotect_frag", "fault_as"}},
		{names: []string{"mprotect_frag", "vma_bytes_100k"}, groups: []string{"mprotect_frag", "vma_lookup_100k"}},
		{names: []string{"copyin_8", "copyin_9", " "}, groups: []string{"copyin_8"}, unknown: []string{"copyin_9"}},
	} {
		gs, unknown := Select(tc.names)
		if got := groupNames(gs); !equal(got, tc.groups) {
			t.Errorf("Select(%q) groups %q, want %q", tc.names, got, tc.groups)
		}
		if !equal(unknown, tc.unknown) {
			t.Errorf("Select(%q) unknown %q, want %q", tc.names, unknown, tc.unknown)
		}
	}
}

func TestUnknownWorkloadResult(t *testing.T) {
	rs := Run(context.Background(), []string{"nope"}, nil)
	if len(rs) != 1 || rs[0].Workload != "nope" || rs[0].Err == nil {
		t.Fatalf("Run(nope) = %+v, want one error result", rs)
	}
}

func groupNames(gs []*group) []string {
	var ns []string
	for _, g := range gs {
		ns = append(ns, g.name)
	}
	return ns
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestReferences checks that the reference table covers exactly the
// workloads, in canonical order, with the units the workloads report.
func TestReferences(t *testing.T) {
	names := Workloads()
	if len(References) != len(names) {
		t.Fatalf("%d references for %d workloads", len(References), len(names))
	}
	for i, r := range References {
		if r.Workload != names[i] {
			t.Errorf("reference %d is %q, want %q", i, r.Workload, names[i])
		}
		g := lookupGroup(r.Workload)
		for _, o := range g.outputs {
			if o.name == r.Workload && o.unit != r.Unit {
				t.Errorf("%s: reference unit %q, workload unit %q", r.Workload, r.Unit, o.unit)
			}
		}
	}
}

func TestLookupIndexes(t *testing.T) {
	idx := LookupIndexes(100000)
	if len(idx) != 65536 {
		t.Fatalf("len %d, want 65536", len(idx))
	}
	// The first steps of xorshift64 from the spec's seed, worked by hand
	// with the spec's shifts (13, 7, 17).
	s := uint64(0x9E3779B97F4A7C15)
	var first [3]uint32
	for i := range first {
		s ^= s << 13
		s ^= s >> 7
		s ^= s << 17
		first[i] = uint32(s % 100000)
	}
	for i, want := range first {
		if idx[i] != want {
			t.Errorf("idx[%d] = %d, want %d", i, idx[i], want)
		}
	}
	seen := make(map[uint32]bool)
	for _, v := range idx {
		if v >= 100000 {
			t.Fatalf("index %d out of range", v)
		}
		seen[v] = true
	}
	// 65536 draws from 100000 leave about 48000 distinct values.
	if len(seen) < 40000 {
		t.Errorf("only %d distinct indexes", len(seen))
	}
	if got := LookupIndexes(100000); !slicesEqual(got, idx) {
		t.Error("LookupIndexes is not deterministic")
	}
}

func slicesEqual(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFormatTable(t *testing.T) {
	rs := []Result{
		{System: System, Workload: "copyin_8", Value: 16.15, Unit: "ns/op", Iters: 500000},
		{System: System, Workload: "copyout_4k", Value: 97.2, Unit: "ns/op", Iters: 200000},
		{System: System, Workload: "copyout_4k_mbps", Value: 4096 / 97.2 * 1e3, Unit: "MB/s", Iters: 200000},
		{System: System, Workload: "fault_as", Unit: "ns/page", Err: errors.New("no ptrace\nsecond line")},
	}
	var b bytes.Buffer
	if err := FormatTable(&b, rs); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"2.00x", // copyin_8: 32.3 / 16.15
		"0.50x", // copyout_4k: 48.6 / 97.2, and its MB/s the other way round
		"fault_as: error: no ptrace ...",
		"geomean (2 workloads)", // the MB/s row and the error are not counted
		"1.00x",                 // sqrt(2 * 0.5)
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "0.50x"); n != 2 {
		t.Errorf("%d cells of 0.50x, want 2 (copyout_4k and its MB/s):\n%s", n, out)
	}
}

func TestMedianDur(t *testing.T) {
	for _, tc := range []struct {
		in   []int64
		want float64
	}{
		{[]int64{5, 1, 3}, 3},
		{[]int64{4, 1, 3, 2}, 2.5},
		{[]int64{7}, 7},
	} {
		ds := make([]time.Duration, len(tc.in))
		for i, v := range tc.in {
			ds[i] = time.Duration(v)
		}
		if got := medianDur(ds); got != tc.want {
			t.Errorf("medianDur(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestPinProcess(t *testing.T) {
	var before unix.CPUSet
	if err := unix.SchedGetaffinity(0, &before); err != nil {
		t.Fatal(err)
	}
	restore, err := pinProcess(0)
	if err != nil {
		t.Fatalf("pinProcess: %v", err)
	}
	tids, err := threadIDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, tid := range tids {
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &set); err != nil {
			continue // exited
		}
		if set.Count() != 1 || !set.IsSet(0) {
			t.Errorf("thread %d affinity has %d CPUs, want only CPU 0", tid, set.Count())
		}
	}
	if err := restore(); err != nil {
		t.Errorf("restore: %v", err)
	}
	var after unix.CPUSet
	if err := unix.SchedGetaffinity(0, &after); err != nil {
		t.Fatal(err)
	}
	if after.Count() != before.Count() {
		t.Errorf("after restore the thread has %d CPUs, before %d", after.Count(), before.Count())
	}
}
