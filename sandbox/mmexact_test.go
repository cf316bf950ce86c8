package sandbox

import (
	"strings"
	"testing"
)

// mmexactProgram exercises process-wide memory state that a forked child
// inherits or not; argv[1] selects a case.
const mmexactProgram = `
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_GET_MDWE 66
#endif
#define PG 4096

static const char *err(void *p) { return p == MAP_FAILED ? strerror(errno) : "ok"; }
static const char *rc(long r) { return r < 0 ? strerror(errno) : "ok"; }
static void *anon(void *a, int prot, int flags) { return mmap(a, PG, prot, flags | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); }


// A child makes shared anonymous memory; its own child writes it and the
// child sees the write; the parent hears of it through the exit status.
static int forkshared(void) {
	pid_t pid = fork();
	if (pid == 0) {
		char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		printf("child mmap shared anon: %s\n", err(p));
		if (p == MAP_FAILED) { fflush(stdout); _exit(1); }
		strcpy(p + 4096, "before");
		pid_t g = fork();
		if (g == 0) {
			strcpy(p + 4096, "from the grandchild");
			char *q = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
			printf("grandchild mmap shared anon: %s\n", err(q));
			fflush(stdout);
			_exit(q == MAP_FAILED);
		}
		int st;
		waitpid(g, &st, 0);
		printf("child reads \"%s\" after its child exited %d\n", p + 4096, WEXITSTATUS(st));
		fflush(stdout);
		_exit(strcmp(p + 4096, "from the grandchild") == 0 ? 42 : 3);
	}
	int st;
	waitpid(pid, &st, 0);
	printf("parent: child exited %d\n", WEXITSTATUS(st));
	return 0;
}

// Memory-deny-write-execute: what prctl(PR_SET_MDWE) refuses, and what a
// child and an exec'd program inherit.
static int mdwe(const char *self, int bits) {
	char *base = mmap(NULL, 64 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	printf("get before %d\n", prctl(PR_GET_MDWE, 0, 0, 0, 0));
	printf("set bad bits %s\n", rc(prctl(PR_SET_MDWE, 4, 0, 0, 0)));
	printf("set NO_INHERIT alone %s\n", rc(prctl(PR_SET_MDWE, 2, 0, 0, 0)));
	printf("set arg3 %s\n", rc(prctl(PR_SET_MDWE, 1, 1, 0, 0)));
	printf("get arg2 %s\n", rc(prctl(PR_GET_MDWE, 1, 0, 0, 0)));
	char *rw = anon(base, PROT_READ | PROT_WRITE, MAP_FIXED);
	char *r = anon(base + 2 * PG, PROT_READ, MAP_FIXED);
	char *rx = anon(base + 4 * PG, PROT_READ | PROT_EXEC, MAP_FIXED);
	char *rwx = anon(base + 6 * PG, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_FIXED);
	printf("set 0 %s\n", rc(prctl(PR_SET_MDWE, 0, 0, 0, 0)));
	printf("set %d %s\n", bits, rc(prctl(PR_SET_MDWE, bits, 0, 0, 0)));
	printf("get %d\n", prctl(PR_GET_MDWE, 0, 0, 0, 0));
	printf("set again %s\n", rc(prctl(PR_SET_MDWE, bits, 0, 0, 0)));
	printf("set other %s\n", rc(prctl(PR_SET_MDWE, bits ^ 2, 0, 0, 0)));
	printf("set 0 %s\n", rc(prctl(PR_SET_MDWE, 0, 0, 0, 0)));
	printf("mmap rwx %s\n", err(anon(NULL, 7, 0)));
	printf("mmap wx %s\n", err(anon(NULL, PROT_WRITE | PROT_EXEC, 0)));
	printf("mmap rx %s\n", err(anon(NULL, 5, 0)));
	printf("mmap x %s\n", err(anon(NULL, PROT_EXEC, 0)));
	printf("mmap rw %s\n", err(anon(NULL, 3, 0)));
	printf("mmap fixed rwx over rw %s\n", err(anon(rw, 7, MAP_FIXED)));
	rw[0] = 1;
	printf("rw kept: %d\n", rw[0]);
	printf("mmap fixed_noreplace rwx over rw %s\n", err(anon(rw, 7, MAP_FIXED_NOREPLACE)));
	printf("mmap 0 bytes rwx %s\n", err(mmap(NULL, 0, 7, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)));
	printf("mmap shared rwx %s\n", err(mmap(NULL, PG, 7, MAP_SHARED | MAP_ANONYMOUS, -1, 0)));
	printf("mmap locked rwx %s\n", err(mmap(NULL, PG, 7, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0)));
	printf("mprotect rw->rx %s\n", rc(mprotect(rw, PG, 5)));
	printf("mprotect r->rx %s\n", rc(mprotect(r, PG, 5)));
	printf("mprotect r->x %s\n", rc(mprotect(r, PG, 4)));
	printf("mprotect rx->rwx %s\n", rc(mprotect(rx, PG, 7)));
	printf("mprotect rx->x %s\n", rc(mprotect(rx, PG, 4)));
	printf("mprotect x->rx %s\n", rc(mprotect(rx, PG, 5)));
	printf("mprotect rx->r %s\n", rc(mprotect(rx, PG, 1)));
	printf("mprotect r (was rx)->rx %s\n", rc(mprotect(rx, PG, 5)));
	printf("mprotect rwx->rwx %s\n", rc(mprotect(rwx, PG, 7)));
	printf("mprotect rwx->rx %s\n", rc(mprotect(rwx, PG, 5)));
	printf("mprotect rx (was rwx)->rwx %s\n", rc(mprotect(rwx, PG, 7)));
	printf("mprotect none->none %s\n", rc(mprotect(base + 8 * PG, PG, 0)));
	anon(base + 10 * PG, 5, MAP_FIXED);
	anon(base + 11 * PG, 1, MAP_FIXED);
	anon(base + 12 * PG, 5, MAP_FIXED);
	printf("mprotect rx|r|rx -> x %s\n", rc(mprotect(base + 10 * PG, 3 * PG, 4)));
	int id = shmget(IPC_PRIVATE, PG, 0600);
	printf("shmat exec %s\n", err(shmat(id, NULL, SHM_EXEC)));
	printf("shmat exec rdonly %s\n", err(shmat(id, NULL, SHM_EXEC | SHM_RDONLY)));
	shmctl(id, IPC_RMID, 0);
	pid_t pid = fork();
	if (pid == 0) {
		printf("child: get %d, mmap rwx %s\n", prctl(PR_GET_MDWE, 0, 0, 0, 0), err(anon(NULL, 7, 0)));
		fflush(stdout);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
	pid = fork();
	if (pid == 0) {
		execl(self, self, "mdwe-exec", NULL);
		_exit(9);
	}
	int st;
	waitpid(pid, &st, 0);
	printf("exec'd program exited %d\n", WEXITSTATUS(st));
	return 0;
}

#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif

// MAP_DROPPABLE (Linux 6.11): private anonymous memory that is never
// locked, wiped in a forked child, not dumped.
static int droppable(void) {
	char *p = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_DROPPABLE | MAP_ANONYMOUS, -1, 0);
	printf("droppable %s\n", err(p));
	if (p == MAP_FAILED) return 1;
	memset(p, 'd', 4 * PG);
	printf("no MAP_ANONYMOUS %s\n", err(mmap(NULL, PG, 3, MAP_DROPPABLE, -1, 0)));
	printf("locked %s\n", err(mmap(NULL, PG, 3, MAP_DROPPABLE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0)));
	printf("growsdown %s\n", err(mmap(NULL, PG, 3, MAP_DROPPABLE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0)));
	printf("stack %s\n", err(mmap(NULL, PG, 3, MAP_DROPPABLE | MAP_ANONYMOUS | MAP_STACK, -1, 0)));
	printf("hugetlb %s\n", err(mmap(NULL, 2 << 20, 3, MAP_DROPPABLE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0)));
	for (int typ = 4; typ < 16; typ++)
		if (typ != MAP_DROPPABLE) printf("type %#x %s\n", typ, err(mmap(NULL, PG, 3, typ | MAP_ANONYMOUS, -1, 0)));
	printf("populate %s\n", err(mmap(NULL, PG, 3, MAP_DROPPABLE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)));
	printf("fixed_noreplace over it %s\n", err(mmap(p, PG, 3, MAP_DROPPABLE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)));
	printf("mlock %s\n", rc(mlock(p, 4 * PG)));
	printf("mlock2 onfault %s\n", rc(mlock2(p, 4 * PG, MLOCK_ONFAULT)));
	printf("munlock %s\n", rc(munlock(p, 4 * PG)));
	printf("keeponfork %s\n", rc(madvise(p, PG, MADV_KEEPONFORK)));
	printf("wipeonfork %s\n", rc(madvise(p, PG, MADV_WIPEONFORK)));
	printf("dodump %s\n", rc(madvise(p, PG, MADV_DODUMP)));
	printf("dontdump %s\n", rc(madvise(p, PG, MADV_DONTDUMP)));
	printf("dontfork %s\n", rc(madvise(p + 3 * PG, PG, MADV_DONTFORK)));
	printf("dofork %s\n", rc(madvise(p + 3 * PG, PG, MADV_DOFORK)));
	printf("mprotect %s\n", rc(mprotect(p + 2 * PG, PG, PROT_READ)));
	pid_t pid = fork();
	if (pid == 0) {
		printf("child sees %d %d %d %d\n", p[0], p[PG], p[2 * PG], p[3 * PG]);
		p[0] = 'c';
		fflush(stdout);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
	printf("parent sees %c %c %c %c\n", p[0], p[PG], p[2 * PG], p[3 * PG]);
	printf("mlockall %s\n", rc(mlockall(MCL_CURRENT | MCL_FUTURE)));
	char *q = mmap(NULL, PG, 3, MAP_DROPPABLE | MAP_ANONYMOUS, -1, 0);
	printf("droppable under MCL_FUTURE %s\n", err(q));
	printf("munlockall %s\n", rc(munlockall()));
	// MADV_PAGEOUT drops droppable pages even without swap (reclaim frees
	// them as it frees lazily freed pages); a later read finds zeros. A
	// speculative reference can keep a page for a moment: retry as the
	// kernel's selftest does.
	int dropped = 0;
	for (int i = 0; i < 10 && !dropped; i++) {
		if (madvise(p, 4 * PG, MADV_PAGEOUT)) {
			printf("pageout %s\n", rc(-1));
			break;
		}
		unsigned char vec[4];
		mincore(p, 4 * PG, vec);
		dropped = !(vec[0] | vec[1] | vec[2] | vec[3]) && !memchr(p, 'd', 4 * PG) && !memchr(p, 'c', 4 * PG);
		if (!dropped) usleep(100000);
	}
	printf("pageout dropped %d, then reads %d %d %d %d\n", dropped, p[0], p[PG], p[2 * PG], p[3 * PG]);
	return 0;
}

// setcap sets (on) or clears capability cap in the effective set, and with
// all, in the permitted and bounding sets too.
static long setcap(int cap, int on, int all) {
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d)) return -1;
	unsigned bit = 1u << (cap % 32);
	if (on) d[cap / 32].effective |= bit;
	else d[cap / 32].effective &= ~bit;
	if (all) {
		d[cap / 32].permitted &= ~bit;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)) return -1;
	}
	return syscall(SYS_capset, &h, d);
}

static void memlock(unsigned long n) {
	struct rlimit r = {n, 64 << 10};
	setrlimit(RLIMIT_MEMLOCK, &r);
}

// capsExec reports what an exec'd program may lock.
static int capsExec(void) {
	char *p = mmap(NULL, 1 << 20, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	printf("exec'd: mlock 1 MiB %s\n", rc(mlock(p, 1 << 20)));
	return 0;
}

// caps: a root program that drops CAP_IPC_LOCK (capset, setuid) is held
// to RLIMIT_MEMLOCK from then on, and one that drops CAP_SYS_RAWIO may not
// map below vm.mmap_min_addr.
static int caps(const char *self) {
	if (geteuid() != 0) {
		printf("not root\n");
		return 0;
	}
	memlock(64 << 10);
	char *p = mmap(NULL, 1 << 20, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	printf("mlock 1 MiB as root %s\n", rc(mlock(p, 1 << 20)));
	munlock(p, 1 << 20);
	printf("drop CAP_IPC_LOCK %s\n", rc(setcap(CAP_IPC_LOCK, 0, 0)));
	printf("mlock 1 MiB %s\n", rc(mlock(p, 1 << 20)));
	printf("mlock 16 KiB %s\n", rc(mlock(p, 16 << 10)));
	munlock(p, 16 << 10);
	printf("mmap locked 1 MiB %s\n", err(mmap(NULL, 1 << 20, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0)));
	printf("mlockall %s\n", rc(mlockall(MCL_CURRENT)));
	char *d = mmap(NULL, 48 << 10, 3, MAP_DROPPABLE | MAP_ANONYMOUS, -1, 0);
	if (d != MAP_FAILED) {
		// Droppable memory is never locked, so never counted.
		printf("mlock 48 KiB droppable %s\n", rc(mlock(d, 48 << 10)));
		printf("then mlock 32 KiB %s\n", rc(mlock(p, 32 << 10)));
		munlock(p, 32 << 10);
	}
	pid_t pid = fork();
	if (pid == 0) {
		printf("child: mlock 1 MiB %s\n", rc(mlock(p, 1 << 20)));
		fflush(stdout);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
	printf("raise CAP_IPC_LOCK %s\n", rc(setcap(CAP_IPC_LOCK, 1, 0)));
	printf("mlock 1 MiB %s\n", rc(mlock(p, 1 << 20)));
	munlock(p, 1 << 20);
	memlock(0);
	printf("mlock with RLIMIT_MEMLOCK 0 %s\n", rc(mlock(p, 4096)));
	setcap(CAP_IPC_LOCK, 0, 0);
	printf("without CAP_IPC_LOCK %s\n", rc(mlock(p, 4096)));
	setcap(CAP_IPC_LOCK, 1, 0);
	memlock(64 << 10);

	printf("mmap fixed at 0 %s\n", err(mmap(NULL, 4096, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)));
	munmap(NULL, 4096);
	printf("drop CAP_SYS_RAWIO %s\n", rc(setcap(CAP_SYS_RAWIO, 0, 0)));
	printf("mmap fixed at 0 %s\n", err(mmap(NULL, 4096, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)));
	setcap(CAP_SYS_RAWIO, 1, 0);

	// An exec recomputes the capabilities: root gets its bounding set.
	pid = fork();
	if (pid == 0) {
		setcap(CAP_IPC_LOCK, 0, 0);
		execl(self, self, "caps-exec", NULL);
		_exit(9);
	}
	waitpid(pid, NULL, 0);
	pid = fork();
	if (pid == 0) {
		printf("drop CAP_IPC_LOCK everywhere %s\n", rc(setcap(CAP_IPC_LOCK, 0, 1)));
		fflush(stdout);
		execl(self, self, "caps-exec", NULL);
		_exit(9);
	}
	waitpid(pid, NULL, 0);

	printf("setuid %s\n", rc(setuid(65534)));
	printf("mlock 1 MiB %s\n", rc(mlock(p, 1 << 20)));
	printf("mmap fixed at 0 %s\n", err(mmap(NULL, 4096, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)));
	return 0;
}

// shmlock: shmctl(SHM_LOCK) counts against RLIMIT_MEMLOCK without
// CAP_IPC_LOCK.
static int shmlock(void) {
	if (geteuid() != 0) {
		printf("not root\n");
		return 0;
	}
	struct shmid_ds ds;
	int a = shmget(IPC_PRIVATE, 40 << 10, 0600), b = shmget(IPC_PRIVATE, 40 << 10, 0600);
	printf("bad id %s\n", rc(shmctl(-1, SHM_LOCK, NULL)));
	memlock(64 << 10);
	printf("lock as root %s\n", rc(shmctl(a, SHM_LOCK, NULL)));
	shmctl(a, IPC_STAT, &ds);
	printf("mode %o\n", ds.shm_perm.mode);
	printf("unlock %s\n", rc(shmctl(a, SHM_UNLOCK, NULL)));
	shmctl(a, IPC_STAT, &ds);
	printf("mode %o\n", ds.shm_perm.mode);
	printf("unlock again %s\n", rc(shmctl(a, SHM_UNLOCK, NULL)));
	setcap(CAP_IPC_LOCK, 0, 0);
	printf("lock a %s\n", rc(shmctl(a, SHM_LOCK, NULL)));
	printf("lock a again %s\n", rc(shmctl(a, SHM_LOCK, NULL)));
	printf("lock b over the limit %s\n", rc(shmctl(b, SHM_LOCK, NULL)));
	printf("unlock a %s\n", rc(shmctl(a, SHM_UNLOCK, NULL)));
	printf("lock b %s\n", rc(shmctl(b, SHM_LOCK, NULL)));
	printf("remove b %s\n", rc(shmctl(b, IPC_RMID, NULL)));
	printf("lock a %s\n", rc(shmctl(a, SHM_LOCK, NULL)));
	memlock(0);
	printf("unlock with RLIMIT_MEMLOCK 0 %s\n", rc(shmctl(a, SHM_UNLOCK, NULL)));
	printf("lock with RLIMIT_MEMLOCK 0 %s\n", rc(shmctl(a, SHM_LOCK, NULL)));
	setcap(CAP_IPC_LOCK, 1, 0);
	printf("lock with CAP_IPC_LOCK %s\n", rc(shmctl(a, SHM_LOCK, NULL)));
	shmctl(a, IPC_RMID, NULL);
	return 0;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) return 2;
	if (!strcmp(argv[1], "forkshared")) return forkshared();
	if (!strcmp(argv[1], "droppable")) return droppable();
	if (!strcmp(argv[1], "caps")) return caps(argv[0]);
	if (!strcmp(argv[1], "shmlock")) return shmlock();
	if (!strcmp(argv[1], "caps-exec")) return capsExec();
	if (!strcmp(argv[1], "mdwe")) return mdwe(argv[0], 1);
	if (!strcmp(argv[1], "mdwe-noinherit")) return mdwe(argv[0], 3);
	if (!strcmp(argv[1], "mdwe-exec")) {
		printf("exec'd: get %d, mmap rwx %s\n", prctl(PR_GET_MDWE, 0, 0, 0, 0), err(anon(NULL, 7, 0)));
		return 0;
	}
	return 2;
}
`

// TestForkedChildSharedAnonymous: a forked child (and its child) can make
// MAP_SHARED|MAP_ANONYMOUS memory, shared with its own children.
func TestForkedChildSharedAnonymous(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "mmexact", mmexactProgram, true)
	compare(t, "", "", exe, "forkshared")
}

// TestMDWE: prctl(PR_SET_MDWE) as natively: mmap and mprotect refuse what
// memory-deny-write-execute forbids, a child and an exec'd program inherit
// it unless PR_MDWE_NO_INHERIT.
func TestMDWE(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "mmexact", mmexactProgram, true)
	if r := runNative(t, "", "", exe, "mdwe"); !strings.Contains(r.stdout, "get 1\n") {
		t.Skipf("no MDWE on this kernel:\n%s", r.stdout)
	}
	for _, c := range []string{"mdwe", "mdwe-noinherit"} {
		t.Run(c, func(t *testing.T) { compare(t, "", "", exe, c) })
	}
}

// TestMapDroppable: MAP_DROPPABLE memory as natively (on kernels that
// have it).
func TestMapDroppable(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "mmexact", mmexactProgram, true)
	if r := runNative(t, "", "", exe, "droppable"); r.code != 0 {
		t.Skipf("no MAP_DROPPABLE on this kernel:\n%s", r.stdout)
	}
	compare(t, "", "", exe, "droppable")
}

// TestCapabilities: a root program that drops CAP_IPC_LOCK or
// CAP_SYS_RAWIO (capset, setuid, exec) is held to RLIMIT_MEMLOCK and
// vm.mmap_min_addr from then on, as natively.
func TestCapabilities(t *testing.T) { compareAsRoot(t, "caps") }

// TestShmLock: shmctl(SHM_LOCK) and SHM_UNLOCK as natively, with and
// without CAP_IPC_LOCK.
func TestShmLock(t *testing.T) { compareAsRoot(t, "shmlock") }

// compareAsRoot compares case c of mmexactProgram, which needs root.
func compareAsRoot(t *testing.T, c string) {
	needPtrace(t)
	exe := buildC(t, "mmexact", mmexactProgram, true)
	if r := runNative(t, "", "", exe, c); r.stdout == "not root\n" {
		t.Skip("needs root")
	}
	compare(t, "", "", exe, c)
}
