package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// faultsProgram exercises page faults that come back, the areas the kernel
// writes on a thread's behalf, and the top of the user range; argv[1]
// selects a case.
const faultsProgram = `
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what) { printf("FAIL %s: %s\n", what, strerror(errno)); exit(2); }

/* The same store first-touches the same page again and again. */
static int dontneed(void) {
	volatile char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) die("mmap");
	for (int i = 0; i < 10; i++) {
		if (p[0] != 0) die("not zero after MADV_DONTNEED");
		p[0] = 1;
		if (madvise((void *)p, 4096, MADV_DONTNEED) != 0) die("madvise");
	}
	puts("ok");
	return 0;
}

/* mmap, touch and munmap 1 MiB at the same address, again and again. */
static int remap(void) {
	void *at = NULL;
	for (int i = 0; i < 20; i++) {
		char *p = mmap(at, 1 << 20, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | (at ? MAP_FIXED : 0), -1, 0);
		if (p == MAP_FAILED) die("mmap");
		at = p;
		for (int j = 0; j < (1 << 20); j += 4096) {
			if (p[j] != 0) die("not zero");
			p[j] = 1;
		}
		if (munmap(p, 1 << 20) != 0) die("munmap");
	}
	puts("ok");
	return 0;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc < 2) return 1;
	if (!strcmp(argv[1], "dontneed")) return dontneed();
	if (!strcmp(argv[1], "remap")) return remap();
	return 1;
}
`

// TestFaultsComeBack: a fault that comes back after the memory was taken
// away (MADV_DONTNEED, munmap and mmap again) is served every time, as on
// Linux, not taken for a fault that makes no progress.
func TestFaultsComeBack(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "faults", faultsProgram, false)
	for _, c := range []string{"dontneed", "remap"} {
		t.Run(c, func(t *testing.T) { compare(t, "", "", exe, c) })
	}
}

// TestGitGC runs git gc with two pack threads in a small repository: glibc
// shrinks the threads' arenas with MADV_DONTNEED and grows them again.
func TestGitGC(t *testing.T) {
	needPtrace(t)
	need(t, "git")
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(testEnv(), "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t", "GIT_AUTHOR_DATE=2020-01-01T00:00:00Z",
			"GIT_COMMITTER_DATE=2020-01-01T00:00:00Z")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %q: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	git("config", "pack.threads", "2")
	// Files that change a little from commit to commit: deltas to find.
	var lines []string
	for i := 0; i < 4000; i++ {
		lines = append(lines, strings.Repeat(string(rune('a'+i%26)), 20+i%50))
	}
	for c := 0; c < 12; c++ {
		for f := 0; f < 4; f++ {
			lines[(c*131+f*17)%len(lines)] = strings.Repeat("z", c+f+1)
			name := filepath.Join(dir, "f"+string(rune('0'+f)))
			if err := os.WriteFile(name, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		git("add", ".")
		git("commit", "-q", "-m", "c")
	}
	gitPath, _ := exec.LookPath("git")
	// gc rewrites the repository: run it under vmspace on a copy first,
	// then natively on the original, each from the same state.
	copyDir := t.TempDir()
	if out, err := exec.Command("cp", "-a", dir+"/.", copyDir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	argv := []string{gitPath, "-c", "pack.threads=2", "gc", "--quiet", "--aggressive"}
	want := runNative(t, dir, "", argv...)
	got, _ := sandboxRun(t, copyDir, "", Options{}, argv...)
	if got.code != want.code || got.stdout != want.stdout || got.stderr != want.stderr {
		t.Errorf("git gc: vmspace %d %q %q, native %d %q %q", got.code, got.stdout, got.stderr, want.code, want.stdout, want.stderr)
	}
	check := []string{gitPath, "fsck", "--no-progress"}
	if r := runNative(t, copyDir, "", check...); r.code != 0 {
		t.Errorf("git fsck after git gc under vmspace: %d %s %s", r.code, r.stdout, r.stderr)
	}
}
