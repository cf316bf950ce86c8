package sandbox

import (
	"os"
	"strings"
	"testing"
)

// hugetlbMapProgram maps huge pages where the machine has none: anonymous
// MAP_HUGETLB with and without MAP_NORESERVE, private and shared, and an
// MFD_HUGETLB memfd; it prints what mmap answers, the maps entry (device
// and name: the inode is a new one each time), and what reads, writes, a
// system call writing there, madvise, mincore and munmap find.
const hugetlbMapProgram = `
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HP (2UL << 20)
static sigjmp_buf jb;
static volatile siginfo_t got;
static void onfault(int sig, siginfo_t *si, void *uc) { got = *si; siglongjmp(jb, 1); }

static void touch(const char *what, char *b, char *p, int write) {
	if (sigsetjmp(jb, 1) == 0) {
		if (write) *p = 1; else (void)*(volatile char *)p;
		printf("%s: ok\n", what);
	} else {
		printf("%s: %s code %d at +%ld\n", what, strsignal(got.si_signo), got.si_code, (long)((char *)got.si_addr - b));
	}
}

static void maps(char *p) {
	FILE *f = fopen("/proc/self/maps", "r");
	char l[512];
	while (fgets(l, sizeof l, f)) {
		unsigned long a, e, off, ino;
		char perms[8], dev[16], name[256] = "";
		if (sscanf(l, "%lx-%lx %7s %lx %15s %lu %255[^\n]", &a, &e, perms, &off, dev, &ino, name) >= 6 && a == (unsigned long)p)
			printf("maps: %lx %s %lx %s %s\n", e - a, perms, off, dev, name);
	}
	fclose(f);
}

static void use(const char *what, char *p, int fd) {
	maps(p);
	touch("read", p, p + 5000, 0);
	touch("write", p, p + HP - 1, 1);
	if (fd >= 0) {
		errno = 0;
		ssize_t n = pread(fd, p, 16, 0);
		printf("pread into it: %zd %s\n", n, n < 0 ? strerrorname_np(errno) : "");
	}
	unsigned char v[512] = { 9 };
	int r = mincore(p, HP, v);
	printf("mincore: %d %s v[0]=%d\n", r, r ? strerrorname_np(errno) : "", v[0]);
	r = madvise(p, HP, MADV_DONTNEED);
	printf("DONTNEED: %d %s\n", r, r ? strerrorname_np(errno) : "");
	r = munmap(p, HP);
	printf("munmap: %d %s\n", r, r ? strerrorname_np(errno) : "");
}

static char *map(const char *what, int flags, int fd) {
	char *p = mmap(0, HP, PROT_READ | PROT_WRITE, flags, fd, 0);
	printf("%s: %s\n", what, p == MAP_FAILED ? strerrorname_np(errno) : "ok");
	return p == MAP_FAILED ? 0 : p;
}

int main(void) {
	setvbuf(stdout, 0, _IOLBF, 0);
	struct sigaction sa = { .sa_sigaction = onfault, .sa_flags = SA_SIGINFO };
	sigaction(SIGBUS, &sa, 0);
	sigaction(SIGSEGV, &sa, 0);
	char *p;
	map("anon private", MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1);
	map("anon shared", MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1);
	map("anon 1G pages", MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_NORESERVE | (30 << MAP_HUGE_SHIFT), -1);
	if ((p = map("anon private noreserve", MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_NORESERVE, -1)))
		use("anon private", p, -1);
	if ((p = map("anon shared noreserve", MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB | MAP_NORESERVE, -1)))
		use("anon shared", p, -1);
	int fd = memfd_create("h", MFD_HUGETLB);
	printf("ftruncate: %d\n", ftruncate(fd, HP));
	map("memfd shared", MAP_SHARED, fd);
	if ((p = map("memfd shared noreserve", MAP_SHARED | MAP_NORESERVE, fd)))
		use("memfd", p, fd);
	return 0;
}
`

// TestHugeTLBWithoutPages compares, natively and under vmspace, mappings
// of huge pages on a machine that has none (vm.nr_hugepages and
// vm.nr_overcommit_hugepages 0; skipped elsewhere): mmap fails with
// ENOMEM where Linux reserves the pages, and with MAP_NORESERVE succeeds
// with Linux's maps entry, and every access is SIGBUS (BUS_ADRERR), also
// through an MFD_HUGETLB memfd, where a system call writing into the
// mapping fails with EFAULT.
func TestHugeTLBWithoutPages(t *testing.T) {
	needPtrace(t)
	for _, f := range []string{"nr_hugepages", "nr_overcommit_hugepages"} {
		b, err := os.ReadFile("/proc/sys/vm/" + f)
		if err != nil || strings.TrimSpace(string(b)) != "0" {
			t.Skipf("vm.%s is not 0 here", f)
		}
	}
	exe := buildC(t, "hugetlbmap", hugetlbMapProgram, true)
	compare(t, "", "", exe)
}
