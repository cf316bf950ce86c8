package sandbox

import (
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// selfMapSrc maps the first page of its own executable argv[1] times
// (PROT_READ, MAP_PRIVATE, through one descriptor; with argv[3] "eof", the
// whole file and two pages past its end), checks the ELF magic and unmaps
// it; then, with an argv[2] above 0, it executes itself again
// with argv[2] one less, else prints its /proc/self/exe and comm.
const selfMapSrc = `
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
	int n = atoi(argv[1]);
	int fd = open("/proc/self/exe", O_RDONLY);
	if (fd < 0)
		return 1;
	size_t len = 4096;
	if (argc > 3 && !strcmp(argv[3], "eof")) {
		// Two pages past the end of the file.
		len = (lseek(fd, 0, SEEK_END) + 4095) / 4096 * 4096 + 8192;
	}
	for (int i = 0; i < n; i++) {
		char *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
		if (p == MAP_FAILED || memcmp(p, "\177ELF", 4) != 0)
			return 2;
		munmap(p, len);
	}
	int e = argc > 2 ? atoi(argv[2]) : 0;
	if (e > 0) {
		char left[16];
		snprintf(left, sizeof left, "%d", e - 1);
		execl("/proc/self/exe", argv[0], argv[1], left, (char *)0);
		return 5;
	}
	char exe[4096], comm[64] = "";
	ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (k < 0)
		return 3;
	exe[k] = 0;
	FILE *f = fopen("/proc/self/comm", "r");
	if (!f || !fgets(comm, sizeof comm, f))
		return 4;
	printf("mapped %d exe %s comm %s", n, exe, comm);
	return 0;
}
`

// countInjected runs argv under vmspace, comparing it with a native run,
// and returns how many system calls of each number vmspace injected.
func countInjected(t *testing.T, argv ...string) map[uintptr]int {
	t.Helper()
	counts := make(map[uintptr]int)
	injectHook = func(nr uintptr) { counts[nr]++ }
	defer func() { injectHook = nil }()
	compare(t, "", "", argv...)
	return counts
}

// TestMapWithProgramFD checks that the host mappings made at a program's
// mmap of a file use the program's own descriptor: N mappings cost no
// injected open (and close) more than none. The program's view (the
// mapped bytes, /proc/self/exe, comm) is Linux's.
func TestMapWithProgramFD(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "selfmap", selfMapSrc, false)
	none := countInjected(t, exe, "0")
	const n = 16
	many := countInjected(t, exe, strconv.Itoa(n))
	if d := many[unix.SYS_OPENAT] - none[unix.SYS_OPENAT]; d != 0 {
		t.Errorf("%d mmaps of a file took %d injected opens more than none (want 0: the program's descriptor is used)", n, d)
	}
	if d := many[unix.SYS_CLOSE] - none[unix.SYS_CLOSE]; d != 0 {
		t.Errorf("%d mmaps of a file took %d injected closes more than none (want 0)", n, d)
	}
}

// TestExecOpensOnce checks that an exec opens the program's file once in
// the process: its segments' host mappings and PR_SET_MM_MAP's executable
// (/proc/PID/exe) share the descriptor. A static program executing itself
// four times takes at most two injected opens an exec more than once (the
// image's, and that of a fault on one of its file pages), and its
// /proc/self/exe and comm are Linux's.
func TestExecOpensOnce(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "selfmapstatic", selfMapSrc, true)
	once := countInjected(t, exe, "0", "0")
	const execs = 4
	more := countInjected(t, exe, "0", strconv.Itoa(execs))
	opens := more[unix.SYS_OPENAT] - once[unix.SYS_OPENAT]
	if opens > 2*execs {
		t.Errorf("%d execs of a static program took %d injected opens, want at most %d", execs, opens, 2*execs)
	}
}

// TestFreshImageSharedAtOnce checks that a fresh host image (the first
// process, and every exec) gets the shared stub pages at once: no private
// code page made executable with an injected mprotect first, so a run of
// a program that execs takes no injected mprotect at all.
func TestFreshImageSharedAtOnce(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "selfmap", selfMapSrc, false)
	c := countInjected(t, "/bin/sh", "-c", exe+" 1; exec "+exe+" 2")
	if c[unix.SYS_MPROTECT] != 0 {
		t.Errorf("two execs and a fork took %d injected mprotects, want 0", c[unix.SYS_MPROTECT])
	}
}

// TestLoaderDataWrittenAtOnce checks that the writable segments the
// dynamic loader relocates at once (its own, and those it maps of a
// library with MAP_DENYWRITE) are copied for writing when mapped, not a
// fault a page: a dynamically linked program takes at most 4 faults more
// than its static build (without: about 9, one a page of ld.so's and
// libc's GOT, RELRO and data).
func TestLoaderDataWrittenAtOnce(t *testing.T) {
	needPtrace(t)
	dyn := buildC(t, "selfmap", selfMapSrc, false)
	static := buildC(t, "selfmapstatic", selfMapSrc, true)
	sd := compare(t, "", "", dyn, "1", "0")
	ss := compare(t, "", "", static, "1", "0")
	if d := int64(sd.Faults) - int64(ss.Faults); d > 4 {
		t.Errorf("the dynamically linked program took %d faults, %d more than its static build (want at most 4 more)", sd.Faults, d)
	}
}

// TestExecNamesThread checks that the host exec names the thread as
// Linux's exec does (the first 15 bytes of the file name's last
// component), through a link named so, with no injected PR_SET_NAME: a
// program executing itself four times takes at most one injected prctl an
// exec more than once (PR_SET_MM_MAP's), and its comm, long name cut, is
// Linux's.
func TestExecNamesThread(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "selfmap-with-a-long-name", selfMapSrc, true)
	once := countInjected(t, exe, "0", "0")
	const execs = 4
	more := countInjected(t, exe, "0", strconv.Itoa(execs))
	if d := more[unix.SYS_PRCTL] - once[unix.SYS_PRCTL]; d > execs {
		t.Errorf("%d execs took %d injected prctls, want at most %d", execs, d, execs)
	}
}

// TestMapPastEOFPopulated checks that a file mapping reaching past the
// file's end (as the dynamic loader's first mapping of a library, of the
// whole image's size) is populated at the mmap up to the end of the file,
// not left to faults: reading the first page of 8 such mappings takes at
// most 2 faults more than none (without: one a mapping).
func TestMapPastEOFPopulated(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "selfmap", selfMapSrc, false)
	none := compare(t, "", "", exe, "0", "0", "eof")
	const n = 8
	many := compare(t, "", "", exe, strconv.Itoa(n), "0", "eof")
	if d := int64(many.Faults) - int64(none.Faults); d > 2 {
		t.Errorf("reading %d mappings reaching past the end of their file took %d faults more than none, want at most 2", n, d)
	}
}
