package fuzz

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmspace/vmspace/vmscript"
	"github.com/vmspace/vmspace/vmscript/vmspace"
)

// TestFuzzShort runs the differential fuzzer for a few seconds. Differences
// are allowed (they are vmspace bugs, saved for the memory-manager owner);
// native failures and unstable Linux transcripts are not: they would mean the
// generator makes scripts Linux cannot answer reliably. Every saved
// reproducer parses, has a transcript line per statement, and still differs.
func TestFuzzShort(t *testing.T) {
	d := 4 * time.Second
	if testing.Short() {
		d = 2 * time.Second
	}
	out := t.TempDir()
	var progress, report bytes.Buffer
	st, err := Run(context.Background(), Options{
		Seed:         12345,
		Duration:     d,
		OutDir:       out,
		TempDir:      t.TempDir(),
		ShrinkBudget: 200,
		MaxFindings:  2,
		Progress:     &progress,
		Report:       &report,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d scripts in %s, %d differing, %d distinct\n%s", st.Scripts, st.Elapsed, st.Differences, len(st.Findings), progress.String())
	if st.Scripts == 0 {
		t.Fatal("no script ran")
	}
	if st.NativeFailures != 0 || st.Unstable != 0 {
		t.Errorf("%d native failures, %d unstable transcripts:\n%s", st.NativeFailures, st.Unstable, progress.String())
	}
	if st.Elapsed > d+30*time.Second {
		t.Errorf("ran %s for a %s budget", st.Elapsed, d)
	}
	for _, f := range st.Findings {
		if f.Path == "" {
			t.Errorf("finding %q not saved", f.Key)
			continue
		}
		src, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		s, err := vmscript.Parse(f.Path, src)
		if err != nil {
			t.Fatalf("saved reproducer: %v", err)
		}
		lin, err := os.ReadFile(strings.TrimSuffix(f.Path, ".vms") + ".out")
		if err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(lin, []byte("\n")); n != len(s.Stmts) {
			t.Errorf("%s: %d transcript lines for %d statements", f.Path, n, len(s.Stmts))
		}
		if !strings.Contains(string(src), knownKeyPrefix+f.Key+"\n") {
			t.Errorf("%s: no key line", f.Path)
		}
		o := Compare(context.Background(), s, 0, t.TempDir())
		if !o.Differs() {
			t.Errorf("%s no longer differs", f.Path)
		}
		if !strings.Contains(report.String(), filepath.Base(f.Path)) {
			t.Errorf("%s not reported", f.Path)
		}
	}
}

// TestFuzzDeterministicScripts: the same run seed generates the same
// scripts.
func TestFuzzDeterministicScripts(t *testing.T) {
	for i := 0; i < 10; i++ {
		if ScriptSeed(1, i) != ScriptSeed(1, i) {
			t.Fatal("ScriptSeed is not a function")
		}
		if ScriptSeed(1, i) == ScriptSeed(2, i) || ScriptSeed(1, i) == ScriptSeed(1, i+1) {
			t.Errorf("script seeds collide at %d", i)
		}
	}
}

// TestCompareAgrees: a script both systems handle alike compares equal.
func TestCompareAgrees(t *testing.T) {
	s, err := vmscript.Parse("t", []byte("mmap @0x0 0x2000 rw private,anon\nwrite @0x0 01\nread @0x0 2\nstate @0x0 0x3000\n"))
	if err != nil {
		t.Fatal(err)
	}
	o := Compare(context.Background(), s, 0, t.TempDir())
	if o.LinuxErr != nil || o.VmspaceErr != nil || o.Differs() {
		t.Fatalf("linux err %v, vmspace err %v, diff %v", o.LinuxErr, o.VmspaceErr, o.Diff)
	}
	if string(o.Linux) != "1 = @0x0\n2 ok\n3 0100\n4 +0x0 0x2000 rw-p | +0x2000 0x1000 unmapped\n" {
		t.Errorf("linux transcript:\n%s", o.Linux)
	}
}

func TestFindingKey(t *testing.T) {
	s, err := vmscript.Parse("t", []byte("mmap @0x0 0x1000 rw private,anon\nstate @0x0 0x2000\nread @0x0 4\nmprotect @0x0 0x1000 r\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		o    Outcome
		want string
	}{
		{Outcome{Diff: &vmscript.Difference{Line: 2, A: "+0x0 0x1000 rw-p | +0x1000 0x1000 unmapped", B: "+0x0 0x2000 unmapped"}}, "diff state linux:rw-p"},
		{Outcome{Diff: &vmscript.Difference{Line: 2, A: "+0x0 0x1000 rw-p:lo", B: "+0x0 0x1000 rw-p"}}, "diff state linux:rw-p:lo vmspace:rw-p"},
		{Outcome{Diff: &vmscript.Difference{Line: 2, A: "+0x0 0x1000 rw-p | +0x1000 0x1000 unmapped", B: "+0x0 0x800 rw-p | +0x800 0x1800 unmapped"}}, "diff state boundaries"},
		{Outcome{Diff: &vmscript.Difference{Line: 3, A: "00000000", B: "0000 segv +0x2"}}, "diff read linux=bytes vmspace=bytes segv"},
		{Outcome{Diff: &vmscript.Difference{Line: 4, A: "ok", B: "-ENOMEM"}}, "diff mprotect linux=ok vmspace=-ENOMEM"},
		{Outcome{Diff: &vmscript.Difference{Line: 1, A: "= @0x0", B: "= new"}}, "diff mmap linux== @ vmspace== new"},
		{Outcome{VmspaceErr: &vmscript.RunError{Line: 4, Err: os.ErrInvalid}}, "error mprotect"},
		{Outcome{VmspaceErr: &panicError{val: "boom"}}, "panic"},
		{Outcome{VmspaceErr: errVmspaceHung}, "hang"},
	} {
		if got := findingKey(s, &tc.o); got != tc.want {
			t.Errorf("findingKey(%+v) = %q, want %q", tc.o.Diff, got, tc.want)
		}
	}
}

// TestZeroPageFeature: a reproducer whose transcript depends on whether the
// kernel has the shared zero page is saved with the host's kind as a
// requirement, so that the corpus replays it only on kernels of that kind;
// one that does not depend on it gets no mark.
func TestZeroPageFeature(t *testing.T) {
	host := "zeropage"
	if vmspace.HostNoZeroPage() {
		host = "nozeropage"
	}
	ctx := context.Background()
	// The child sees the read page only where the read prepared the
	// vma's anon_vma: on a kernel without the zero page.
	dep := []byte("mmap @0x0 0x1000 r private,anon\nsum @0x0 0x1000\nfork p1\np1: mincore @0x0 0x1000\n")
	if got := zeroPageFeature(ctx, dep, 0); got != host {
		t.Errorf("read, fork, mincore: %q, want %q", got, host)
	}
	indep := []byte("mmap @0x0 0x1000 rw private,anon\nwrite @0x0 01\nfork p1\np1: mincore @0x0 0x1000\n")
	if got := zeroPageFeature(ctx, indep, 0); got != "" {
		t.Errorf("write, fork, mincore: %q, want no mark", got)
	}
	h := string(withHeader(Finding{Script: dep, ZeroPage: host, Key: "k"}, 1))
	if !strings.Contains(h, "\n# requires: "+host+"\n") {
		t.Errorf("the saved reproducer does not require %s:\n%s", host, h)
	}
}
