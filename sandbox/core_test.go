package sandbox

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const abortSrc = `#include <stdio.h>
#include <stdlib.h>
int answer = 42;
__attribute__((noinline)) void crash(void) { answer = 1234; abort(); }
int main(void) { puts("about to abort"); fflush(stdout); crash(); return 0; }
`

// TestCoreDump runs a program that aborts with Options.Core and reads the
// core with real clients: readelf lists its notes, gdb shows the backtrace
// through crash() and the global's value at the time of the abort.
func TestCoreDump(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "abort", abortSrc, true, "-g", "-O0")
	core := filepath.Join(t.TempDir(), "core")
	f, err := os.Create(core)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	status, _, err := Run(Options{Argv: []string{exe}, Core: f, Stdout: nil})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if status != 128+6 {
		t.Fatalf("status %d, want 134 (SIGABRT)", status)
	}
	if st, err := os.Stat(core); err != nil || st.Size() == 0 {
		t.Fatalf("no core written: %v", err)
	}
	if _, err := exec.LookPath("readelf"); err == nil {
		b, err := exec.Command("readelf", "-n", core).CombinedOutput()
		if err != nil {
			t.Fatalf("readelf -n: %v\n%s", err, b)
		}
		for _, note := range []string{"NT_PRSTATUS", "NT_PRPSINFO", "NT_AUXV", "NT_FILE"} {
			if !strings.Contains(string(b), note) {
				t.Errorf("readelf -n lacks %s:\n%s", note, b)
			}
		}
	}
	if _, err := exec.LookPath("gdb"); err != nil {
		t.Skip("gdb not installed")
	}
	b, _ := exec.Command("gdb", "-batch", "-nx", "-ex", "bt", "-ex", "print answer", exe, core).CombinedOutput()
	out.Write(b)
	for _, want := range []string{"SIGABRT", "crash ()", "main ()", "$1 = 1234"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("gdb output lacks %q:\n%s", want, out.String())
		}
	}
}
