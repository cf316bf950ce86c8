package sandbox

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
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
	var out bytes.Buffer
	res, err := Run(Options{Argv: []string{exe}, CoreFile: core, Stdout: nil})
	status, st := res.ExitCode(), res.Stats
	if err != nil {
		t.Fatal(err)
	}
	if status != 128+6 {
		t.Fatalf("status %d, want 134 (SIGABRT)", status)
	}
	if !st.CoreDumped || st.CoreErr != nil {
		t.Errorf("CoreDumped %v, CoreErr %v", st.CoreDumped, st.CoreErr)
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

const sparseSrc = `#include <stdlib.h>
#include <sys/mman.h>
char *big;
int main(void) {
	big = mmap(0, 2UL << 30, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE, -1, 0);
	if (big == MAP_FAILED) return 1;
	big[4096] = 'a';
	big[(1UL << 30) + 7] = 'b';
	abort();
}
`

// TestCoreDumpSparse: a program with a 2 GiB mapping of which it touched two
// pages dumps a core whose untouched pages are holes, as Linux's (144 KiB
// of disk there): a few MiB at most, not 2 GiB; gdb still reads it.
func TestCoreDumpSparse(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "sparse", sparseSrc, true, "-g", "-O0")
	core := filepath.Join(t.TempDir(), "core")
	res, err := Run(Options{Argv: []string{exe}, CoreFile: core})
	status, st := res.ExitCode(), res.Stats
	if err != nil {
		t.Fatal(err)
	}
	if status != 128+6 || !st.CoreDumped {
		t.Fatalf("status %d, core dumped %v (%v)", status, st.CoreDumped, st.CoreErr)
	}
	var fst unix.Stat_t
	if err := unix.Stat(core, &fst); err != nil {
		t.Fatal(err)
	}
	if fst.Size < 2<<30 {
		t.Errorf("core is %d bytes, less than the 2 GiB mapping", fst.Size)
	}
	if used := fst.Blocks * 512; used > 8<<20 {
		t.Errorf("core takes %d KiB of disk", used>>10)
	}
	if _, err := exec.LookPath("gdb"); err != nil {
		t.Skip("gdb not installed")
	}
	b, _ := exec.Command("gdb", "-batch", "-nx", "-ex", "print big[4096]", "-ex", "print big[(1UL<<30)+7]", "-ex", "print big[12345]", exe, core).CombinedOutput()
	for _, want := range []string{"$1 = 97 'a'", "$2 = 98 'b'", "$3 = 0 '\\000'"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("gdb output lacks %q:\n%s", want, b)
		}
	}
}

const exitSrc = `#include <stdio.h>
int main(void) { puts("fine"); return 3; }
`

// TestCoreFileUntouched: a core file is opened only to write a core: a
// program that exits normally leaves an existing file as it was and
// creates none.
func TestCoreFileUntouched(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "exit3", exitSrc, true)
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing")
	if err := os.WriteFile(existing, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	for _, path := range []string{existing, missing} {
		res, err := Run(Options{Argv: []string{exe}, CoreFile: path, Stdout: devNull()})
		status, st := res.ExitCode(), res.Stats
		if err != nil || status != 3 || st.CoreDumped || st.CoreErr != nil {
			t.Errorf("%s: status %d, %v; core dumped %v (%v)", path, status, err, st.CoreDumped, st.CoreErr)
		}
	}
	if b, err := os.ReadFile(existing); err != nil || string(b) != "keep me" {
		t.Errorf("existing file now %q, %v", b, err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a core file was created for a normal exit: %v", err)
	}
}

// TestCoreFileFull: a core written to a full device (a copy of /dev/full)
// fails with ENOSPC in Stats.CoreErr; the program's status stays 134 and
// the device node stays.
func TestCoreFileFull(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "abort", abortSrc, true)
	full := filepath.Join(t.TempDir(), "full")
	if err := unix.Mknod(full, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 7))); err != nil {
		t.Skipf("cannot make a device node: %v", err)
	}
	res, err := Run(Options{Argv: []string{exe}, CoreFile: full, Stdout: devNull()})
	status, st := res.ExitCode(), res.Stats
	if err != nil || status != 128+6 {
		t.Fatalf("status %d, %v", status, err)
	}
	if st.CoreDumped || !errors.Is(st.CoreErr, unix.ENOSPC) {
		t.Errorf("core dumped %v, error %v; want ENOSPC", st.CoreDumped, st.CoreErr)
	}
	if fi, err := os.Stat(full); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("device node after the run: %v, %v", fi, err)
	}
}
