package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// buildCore builds a static C program that exits with status 3, or aborts
// if given an argument.
func buildCore(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "p.c")
	os.WriteFile(src, []byte("#include <stdlib.h>\nint main(int c, char **v) { if (c > 1) abort(); return 3; }\n"), 0o644)
	exe := filepath.Join(dir, "p")
	if out, err := exec.Command("gcc", "-static", "-O2", "-o", exe, src).CombinedOutput(); err != nil {
		t.Skipf("gcc: %v\n%s", err, out)
	}
	return exe
}

// runCaptured runs "vmspace run" with args and returns its status and
// standard error.
func runCaptured(t *testing.T, args ...string) (int, string) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := os.Stderr
	os.Stderr = f
	status := runMain(args)
	os.Stderr = old
	b, _ := os.ReadFile(f.Name())
	return status, string(b)
}

// TestRunCoreFile: --core FILE opens FILE only for a core: a normal exit
// leaves an existing file as it was and creates none; a device node is
// never removed, and a write error (ENOSPC from a full device) is
// reported on stderr while the status stays the program's.
func TestRunCoreFile(t *testing.T) {
	exe := buildCore(t)
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing")
	os.WriteFile(existing, []byte("keep me"), 0o644)
	if status, errs := runCaptured(t, "--core", existing, "--", exe); status != 3 {
		t.Fatalf("status %d: %s", status, errs)
	}
	if b, err := os.ReadFile(existing); err != nil || string(b) != "keep me" {
		t.Errorf("existing file now %q, %v", b, err)
	}
	missing := filepath.Join(dir, "missing")
	if status, errs := runCaptured(t, "--core", missing, "--", exe); status != 3 {
		t.Fatalf("status %d: %s", status, errs)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("a core file was left by a normal exit")
	}

	// An abort writes the core over an existing regular file.
	status, errs := runCaptured(t, "--core", existing, "--", exe, "abort")
	if b, _ := os.ReadFile(existing); status != 134 || !strings.HasPrefix(string(b), "\x7fELF") || errs != "" {
		t.Errorf("abort: status %d, core starts %q, stderr %q", status, b[:min(len(b), 8)], errs)
	}

	full := filepath.Join(dir, "full")
	if err := unix.Mknod(full, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 7))); err != nil {
		t.Skipf("cannot make a device node: %v", err)
	}
	for _, args := range [][]string{{exe}, {exe, "abort"}} {
		status, errs := runCaptured(t, append([]string{"--core", full, "--"}, args...)...)
		if fi, err := os.Stat(full); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
			t.Fatalf("%q: device node after the run: %v, %v", args, fi, err)
		}
		if len(args) == 1 && (status != 3 || errs != "") {
			t.Errorf("exit: status %d, stderr %q", status, errs)
		}
		if len(args) == 2 && (status != 134 || !strings.Contains(errs, "no space left on device")) {
			t.Errorf("abort to a full device: status %d, stderr %q", status, errs)
		}
	}
}
