package sandbox

import (
	"testing"
)

// hugetlbProgram asks for huge pages where this machine has none reserved
// (vm.nr_hugepages 0): System V segments with SHM_HUGETLB, as root and
// then as an unprivileged user outside vm.hugetlb_shm_group.
const hugetlbProgram = `
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <grp.h>

#ifndef SHM_HUGETLB
#define SHM_HUGETLB 04000
#endif
#ifndef SHM_NORESERVE
#define SHM_NORESERVE 010000
#endif

static void shm(const char *what, size_t len, int fl) {
	int id = shmget(IPC_PRIVATE, len, IPC_CREAT | 0600 | fl);
	printf("shmget %s: %s\n", what, id < 0 ? strerrorname_np(errno) : "ok");
	if (id >= 0) shmctl(id, IPC_RMID, 0);
}

static void shms(void) {
	shm("huge 2M", 2 << 20, SHM_HUGETLB);
	shm("huge 1 byte", 1, SHM_HUGETLB);
	shm("huge noreserve", 2 << 20, SHM_HUGETLB | SHM_NORESERVE);
	shm("huge 2M size", 2 << 20, SHM_HUGETLB | SHM_NORESERVE | (21 << 26));
	shm("huge 1G size", 2 << 20, SHM_HUGETLB | SHM_NORESERVE | (30 << 26));
	shm("huge 64K size", 2 << 20, SHM_HUGETLB | (16 << 26));
	shm("huge size 0", 0, SHM_HUGETLB);
	shm("plain", 2 << 20, 0);
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IONBF, 0);
	if (geteuid() != 0) {
		printf("not root\n");
		return 0;
	}
	printf("as root\n");
	shms();
	if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)) {
		perror("setresuid");
		return 1;
	}
	printf("as nobody\n");
	shms();
	return 0;
}
`

// TestHugeTLBShm: shmget with SHM_HUGETLB fails as natively on a machine
// with no huge pages: EINVAL for a huge page size there is not, EPERM for
// a user without CAP_IPC_LOCK outside vm.hugetlb_shm_group, else ENOMEM
// unless SHM_NORESERVE (found by the hugepage-shm selftest, which
// vmspace let an unprivileged user run).
func TestHugeTLBShm(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "hugetlb", hugetlbProgram, true)
	if r := runNative(t, "", "", exe); r.stdout == "not root\n" {
		t.Skip("needs root")
	}
	compare(t, "", "", exe)
}
