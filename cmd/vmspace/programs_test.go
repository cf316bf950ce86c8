package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/vmspace/vmspace/bench"
)

// TestBenchPrograms runs "vmspace bench --programs" on its smallest
// workload (/bin/true, one round), with this test binary as the vmspace
// that runs it, and checks that both systems produced a figure and that
// vmspace's run statistics were read. It asserts nothing about the
// figures themselves.
func TestBenchPrograms(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("VMSPACE_TEST_MAIN", "1")
	var out, errOut bytes.Buffer
	code := bench.Main([]string{"--programs", "--json", "-w", "true", "--rounds", "1", "--vmspace", self}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit status %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d JSON lines, want 2 (native, vmspace):\n%s", len(lines), out.String())
	}
	for i, sys := range []string{"native", "vmspace"} {
		var r map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &r); err != nil {
			t.Fatalf("line %q: %v", lines[i], err)
		}
		if r["system"] != sys || r["workload"] != "true" || r["unit"] != "ms" || r["iters"] != 1.0 {
			t.Errorf("line %d: %s", i, lines[i])
		}
		if v, _ := r["value"].(float64); !(v > 0) {
			t.Errorf("%s: value %v, want > 0", sys, r["value"])
		}
		if sys == "vmspace" {
			if st, _ := r["stops"].(float64); !(st > 0) {
				t.Errorf("vmspace: stops %v, want > 0 (the --stats output was not read)", r["stops"])
			}
			if q, _ := r["ratio"].(float64); !(q > 0) {
				t.Errorf("vmspace: ratio %v, want > 0", r["ratio"])
			}
		}
	}

	// The table form has the row.
	out.Reset()
	errOut.Reset()
	if code := bench.Main([]string{"--programs", "-w", "true", "--rounds", "1", "--vmspace", self}, &out, &errOut); code != 0 {
		t.Fatalf("table: exit status %d\n%s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "\n true ") && !strings.Contains(out.String(), " true ") {
		t.Errorf("table has no row for true:\n%s", out.String())
	}
}
