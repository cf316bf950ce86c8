package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestProgramsSkipMissingTools checks that a workload whose tools are not
// on PATH is skipped with the reason, in the table and the JSON lines.
func TestProgramsSkipMissingTools(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	rs := RunPrograms(context.Background(), ProgramOptions{Names: []string{"gzip_50m"}, Rounds: 1, Vmspace: "/nonexistent"})
	if len(rs) != 1 || rs[0].Skipped != "missing gzip" || rs[0].Err != nil {
		t.Fatalf("results %+v, want gzip_50m skipped for missing gzip", rs)
	}
	var tab, js bytes.Buffer
	if err := FormatProgramTable(&tab, rs); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tab.String(), "skipped: missing gzip") {
		t.Errorf("table:\n%s", tab.String())
	}
	if err := WriteProgramJSON(&js, rs, []string{SystemNative, SystemVmspace}); err != nil {
		t.Fatal(err)
	}
	want := `{"system":"native","workload":"gzip_50m","skipped":"missing gzip"}` + "\n" +
		`{"system":"vmspace","workload":"gzip_50m","skipped":"missing gzip"}` + "\n"
	if js.String() != want {
		t.Errorf("JSON:\n%s\nwant:\n%s", js.String(), want)
	}
}

// TestProgramsUnknown checks that an unknown name is an error result.
func TestProgramsUnknown(t *testing.T) {
	rs := RunPrograms(context.Background(), ProgramOptions{Names: []string{"nope"}, Rounds: 1})
	if len(rs) != 1 || rs[0].Err == nil || rs[0].Workload != "nope" {
		t.Fatalf("results %+v", rs)
	}
}

// TestFindToolSkipsScripts checks that a script (a version manager's
// shim) on PATH before a binary of the same name loses to the binary.
func TestFindToolSkipsScripts(t *testing.T) {
	bin, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true")
	}
	shims, real := t.TempDir(), t.TempDir()
	if err := os.WriteFile(shims+"/true", []byte("#!/bin/sh\nexec "+bin+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, real+"/true"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", shims+":"+real)
	got, err := findTool("true")
	if err != nil || got != real+"/true" {
		t.Errorf("findTool = %q, %v; want %q", got, err, real+"/true")
	}
}

// TestSummarizeAndStats checks the median of odd and even counts and the
// parsing of vmspace run --stats.
func TestSummarizeAndStats(t *testing.T) {
	if m, lo, hi := summarize([]float64{5, 1, 3}); m != 3 || lo != 1 || hi != 5 {
		t.Errorf("summarize odd = %v %v %v", m, lo, hi)
	}
	if m, _, _ := summarize([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("summarize even median = %v", m)
	}
	st := parseRunStats("noise\n=== vmspace stats ===\npeak RSS:            13948 KiB\nfaults served:       324\nmemory calls served: 45\nsystem call stops:   531\ninjected calls:      77\nprocesses:           1 (1 program images)\ntime in vmspace:     92.17ms of 194.21ms\n")
	if st == nil || st.Faults != 324 || st.MemCalls != 45 || st.Stops != 531 || st.Injected != 77 || st.ManagerMs != 92.17 {
		t.Errorf("parseRunStats = %+v", st)
	}
	if parseRunStats("no stats") != nil {
		t.Error("parseRunStats found stats in text without them")
	}
}
