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
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
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

/* Without glibc's own rseq registration (the tunable is set by running the
   program again), the thread registers an area of its own in a page of its
   own. */
#define RSEQ_SIG_X86 0x53053053
struct area { uint32_t cpu_id_start, cpu_id; uint64_t rseq_cs; uint32_t flags, pad[3]; } __attribute__((aligned(32)));

static struct area *own_rseq(char **argv) {
	if (!getenv("GLIBC_TUNABLES")) {
		setenv("GLIBC_TUNABLES", "glibc.pthread.rseq=0", 1);
		execv("/proc/self/exe", argv);
		die("execv");
	}
	struct area *a = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED) die("mmap");
	if (syscall(SYS_rseq, a, sizeof *a, 0, RSEQ_SIG_X86) != 0) die("rseq");
	return a;
}

/* The page holding the rseq area is taken away, replaced, moved back: the
   kernel's next update of the area faults it in again. */
static int rseq(char **argv) {
	struct area *a = own_rseq(argv);
	for (int i = 0; i < 20; i++) {
		if (madvise(a, 4096, MADV_DONTNEED) != 0) die("madvise");
		sched_yield();
		if (mmap(a, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != a) die("mmap fixed");
		sched_yield();
		if (mprotect(a, 4096, PROT_READ | PROT_WRITE) != 0) die("mprotect");
		getppid();
	}
	/* An area in the page that holds this thread's stack. */
	if (syscall(SYS_rseq, a, sizeof *a, 1, RSEQ_SIG_X86) != 0) die("rseq unregister");
	struct area local;
	memset(&local, 0, sizeof local);
	if (syscall(SYS_rseq, &local, sizeof local, 0, RSEQ_SIG_X86) != 0) die("rseq stack");
	sched_yield();
	if (syscall(SYS_rseq, &local, sizeof local, 1, RSEQ_SIG_X86) != 0) die("rseq unregister stack");
	puts("ok");
	return 0;
}

static volatile int *ctid;
static int ready[2], go[2];

static void *clearer(void *arg) {
	(void)arg;
	syscall(SYS_set_tid_address, ctid);
	char c = 1;
	if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1) die("pipe");
	return NULL;
}

/* The clear_child_tid word of a thread is in a private file page that is
   only read (mapped read-only) when the thread exits: the kernel's write
   of 0 copies it and wakes the waiter. */
static int cleartid(void) {
	int fd = memfd_create("ctid", 0);
	int one[1024] = {1};
	if (fd < 0 || write(fd, one, sizeof one) != sizeof one) die("memfd");
	ctid = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (ctid == MAP_FAILED) die("mmap");
	*ctid = 7;
	if (pipe(ready) || pipe(go)) die("pipe");
	pthread_t t;
	if (pthread_create(&t, NULL, clearer, NULL) != 0) die("pthread_create");
	pthread_detach(t);
	char c;
	if (read(ready[0], &c, 1) != 1) die("read");
	if (madvise((void *)ctid, 4096, MADV_DONTNEED) != 0) die("madvise");
	printf("before %d\n", *ctid);
	if (write(go[1], &c, 1) != 1) die("write");
	int v;
	while ((v = __atomic_load_n(ctid, __ATOMIC_ACQUIRE)) != 0)
		syscall(SYS_futex, ctid, FUTEX_WAIT, v, NULL, NULL, 0);
	printf("after %d\n", *ctid);
	return 0;
}

static volatile int handled;
static void on_usr1(int sig) {
	(void)sig;
	handled = 1;
}

/* The alternate signal stack is taken away before a signal. */
static int altstack(void) {
	char *st = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (st == MAP_FAILED) die("mmap");
	stack_t ss = { .ss_sp = st, .ss_size = 1 << 16 };
	if (sigaltstack(&ss, NULL) != 0) die("sigaltstack");
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGUSR1, &sa, NULL);
	for (int i = 0; i < 5; i++) {
		memset(st, 1, 1 << 16);
		if (madvise(st, 1 << 16, MADV_DONTNEED) != 0) die("madvise");
		handled = 0;
		raise(SIGUSR1);
		if (!handled) die("not handled");
	}
	puts("ok");
	return 0;
}

#define TOP 0x7ffffffff000UL

/* f in a child; prints how the child ended. */
static void child(const char *what, void (*f)(void)) {
	pid_t pid = fork();
	if (pid < 0) die("fork");
	if (pid == 0) {
		f();
		_exit(0);
	}
	int st;
	if (waitpid(pid, &st, 0) != pid) die("waitpid");
	printf("%s: %s %d\n", what, WIFSIGNALED(st) ? "signal" : "exit", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

/* Every page of the user range, vmspace's own included (Linux: EINVAL for
   the vvar pages, after zapping the rest). */
static void zap(void) { syscall(SYS_madvise, 0, TOP, MADV_DONTNEED); }

static int zapall(void) {
	child("madvise(0, TASK_SIZE, MADV_DONTNEED)", zap);
	return 0;
}

static void unmap(void) { syscall(SYS_munmap, 0, TOP); }

static int unmapall(void) {
	child("munmap(0, TASK_SIZE)", unmap);
	return 0;
}

static void poke(void) { *(volatile char *)(TOP - 0x2000) = 1; }

static void report(const char *what, long v) {
	printf("%s: %ld %s\n", what, v, v < 0 ? strerror(errno) : "");
}

/* The last two pages of the user range: unmapped on Linux (the stack is
   elsewhere), vmspace's own pages under vmspace. */
static int topcalls(void) {
	unsigned long a = TOP - 0x2000;
	unsigned char vec[2];
	report("munmap", syscall(SYS_munmap, a, 0x2000));
	report("mprotect", syscall(SYS_mprotect, a, 0x2000, PROT_READ));
	report("madvise", syscall(SYS_madvise, a, 0x2000, MADV_DONTNEED));
	report("mlock", syscall(SYS_mlock, a, 0x2000));
	report("munlock", syscall(SYS_munlock, a, 0x2000));
	report("msync", syscall(SYS_msync, a, 0x2000, MS_SYNC));
	report("mincore", syscall(SYS_mincore, a, 0x2000, vec));
	report("munmap past the top", syscall(SYS_munmap, a, 0x2001));
	/* jmp $ over the code vmspace would run next. */
	int fd = open("/proc/self/mem", O_RDWR);
	if (fd < 0) die("open /proc/self/mem");
	char jmp[2] = {(char)0xeb, (char)0xfe};
	for (unsigned long off = 0; off < 0x2000; off += 0x100)
		if (pwrite(fd, jmp, 2, a + off) != -1 || errno != EIO) die("pwrite /proc/self/mem");
	struct iovec l = {jmp, 2}, r = {(void *)a, 2};
	report("process_vm_writev", process_vm_writev(getpid(), &l, 1, &r, 1, 0));
	child("store", poke);
	char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) die("mmap");
	memset(p, 1, 1 << 20);
	if (munmap(p, 1 << 20) != 0) die("munmap");
	puts("ok");
	return 0;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc < 2) return 1;
	if (!strcmp(argv[1], "rseq")) return rseq(argv);
	if (!strcmp(argv[1], "cleartid")) return cleartid();
	if (!strcmp(argv[1], "altstack")) return altstack();
	if (!strcmp(argv[1], "zapall")) return zapall();
	if (!strcmp(argv[1], "unmapall")) return unmapall();
	if (!strcmp(argv[1], "topcalls")) return topcalls();
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

// TestKernelAreas: the areas the kernel writes on a thread's behalf (the
// rseq area, the clear_child_tid word, the signal stack) stay serviceable
// whatever the program does to their pages.
func TestKernelAreas(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "faults", faultsProgram, false)
	for _, c := range []string{"rseq", "cleartid", "altstack"} {
		t.Run(c, func(t *testing.T) { compare(t, "", "", exe, c) })
	}
}

// TestStubOutOfReach: vmspace's own pages at the top of the user range are
// out of the program's reach: what it does there ends as on Linux, where
// nothing is mapped, never in a loop of vmspace.
func TestStubOutOfReach(t *testing.T) {
	needPtrace(t)
	if b, err := os.ReadFile("/proc/sys/kernel/randomize_va_space"); err != nil || strings.TrimSpace(string(b)) == "0" {
		t.Skip("without address space randomization the native stack is at the top of the user range")
	}
	exe := buildC(t, "faults", faultsProgram, false)
	for _, c := range []string{"zapall", "unmapall", "topcalls"} {
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
