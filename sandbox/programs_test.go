package sandbox

// Sources of the programs the tests build.

// cProgram exercises memory system calls, faults, fork, threads, file
// mappings and large I/O into fresh memory; argv[1] selects a case.
const cProgram = `
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what) { printf("FAIL %s: %s\n", what, strerror(errno)); exit(2); }

static void *worker(void *arg) {
	long id = (long)arg, sum = 0;
	for (int i = 0; i < 200; i++) {
		char *p = malloc(4096 + i * 64);
		if (!p) return (void *)-1;
		memset(p, (int)id, 4096 + i * 64);
		sum += p[100];
		free(p);
	}
	return (void *)sum;
}

static int memory(void) {
	size_t n = 64 << 20;
	char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) die("mmap");
	for (size_t i = 0; i < n; i += 4096) p[i] = (char)(i >> 12);
	long sum = 0;
	for (size_t i = 0; i < n; i += 4096) sum += p[i];
	printf("sum %ld\n", sum);
	if (mprotect(p, 4096, PROT_READ) != 0) die("mprotect");
	char *q = mremap(p, n, 2 * n, MREMAP_MAYMOVE);
	if (q == MAP_FAILED) die("mremap");
	q[2 * n - 1] = 1;
	printf("mremap kept %d %d\n", q[4096], q[8192]);
	unsigned char vec[4];
	if (mincore(q, 4 * 4096, vec) != 0) die("mincore");
	printf("mincore %d %d %d %d\n", vec[0] & 1, vec[1] & 1, vec[2] & 1, vec[3] & 1);
	if (madvise(q + 4096, 4096, MADV_DONTNEED) != 0) die("madvise");
	printf("after DONTNEED %d\n", q[4096]);
	if (mlock(q, 8192) != 0) die("mlock");
	if (munlock(q, 8192) != 0) die("munlock");
	if (munmap(q, 2 * n) != 0) die("munmap");
	char *b = sbrk(0);
	if (sbrk(1 << 20) == (void *)-1) die("sbrk");
	memset(b, 7, 1 << 20);
	printf("brk ok %d\n", b[12345]);
	return 0;
}

static int forks(void) {
	char *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	char *priv = malloc(1 << 20);
	memset(priv, 'p', 1 << 20);
	strcpy(shared, "parent");
	for (int i = 0; i < 8; i++) {
		pid_t pid = fork();
		if (pid < 0) die("fork");
		if (pid == 0) {
			priv[i] = 'c';
			sprintf(shared, "child %d", i);
			_exit(i);
		}
		int st;
		if (waitpid(pid, &st, 0) != pid) die("waitpid");
		printf("child %d exited %d, saw \"%s\", my byte %c\n", i, WEXITSTATUS(st), shared, priv[i]);
	}
	pid_t pid = vfork();
	if (pid == 0) {
		execl("/bin/echo", "echo", "vforked echo", NULL);
		_exit(127);
	}
	int st;
	waitpid(pid, &st, 0);
	printf("vfork child %d\n", WEXITSTATUS(st));
	return 0;
}

static int threads(void) {
	pthread_t th[16];
	for (long i = 0; i < 16; i++)
		if (pthread_create(&th[i], NULL, worker, (void *)i) != 0) die("pthread_create");
	long total = 0;
	for (int i = 0; i < 16; i++) {
		void *r;
		pthread_join(th[i], &r);
		total += (long)r;
	}
	printf("threads total %ld\n", total);
	// fork from a multithreaded process
	pid_t pid = fork();
	if (pid == 0) { printf("child of threaded parent\n"); fflush(stdout); _exit(3); }
	int st;
	waitpid(pid, &st, 0);
	printf("child status %d\n", WEXITSTATUS(st));
	return 0;
}

// bigio reads a file into fresh (never touched) memory with one read and
// writes it back out of fresh memory with one write.
static int bigio(const char *path) {
	int fd = open(path, O_RDONLY);
	if (fd < 0) die("open");
	struct stat st;
	fstat(fd, &st);
	char *buf = mmap(NULL, st.st_size + 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) die("mmap");
	ssize_t n = read(fd, buf, st.st_size + 8192);
	if (n != st.st_size) die("read");
	char *zero = mmap(NULL, 8 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int out = open("/dev/null", O_WRONLY);
	if (write(out, zero, 8 << 20) != 8 << 20) die("write of fresh memory");
	ssize_t w = write(1, buf, n);
	if (w != n) die("write");
	char *m = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (m == MAP_FAILED) die("mmap file");
	if (memcmp(m, buf, st.st_size) != 0) { fprintf(stderr, "file mapping differs\n"); return 1; }
	return 0;
}

static int closefds(void) {
	for (int fd = 3; fd < 4096; fd++) close(fd);
	syscall(SYS_close_range, 3, ~0U, 0);
	char *p = malloc(32 << 20);
	memset(p, 1, 32 << 20);
	pid_t pid = fork();
	if (pid == 0) { p[5] = 2; execl("/bin/echo", "echo", "exec after closing every fd", NULL); _exit(127); }
	int st;
	waitpid(pid, &st, 0);
	char *q = mmap(NULL, 16 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(q, 3, 16 << 20);
	printf("closed all fds: %d %d %d\n", p[5], q[100], WEXITSTATUS(st));
	return 0;
}

static int dupover(void) {
	// Take every descriptor from 3 up to the soft limit, replacing
	// whatever is there.
	int fd = open("/dev/null", O_RDONLY);
	for (int i = 3; i < 1024; i++) if (i != fd) dup2(fd, i);
	char *p = mmap(NULL, 8 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(p, 4, 8 << 20);
	pid_t pid = fork();
	if (pid == 0) { p[1] = 5; _exit(p[1] + p[2]); }
	int st;
	waitpid(pid, &st, 0);
	printf("dup2 over every fd: %d %d\n", p[1], WEXITSTATUS(st));
	return 0;
}

static int mapstub(void) {
	void *top = (void *)0x7fffffffd000;
	void *r = mmap(top, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	printf("mmap over the stub: %s\n", r == MAP_FAILED ? strerror(errno) : "mapped");
	r = mmap(top, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	printf("noreplace over the stub: %s\n", r == MAP_FAILED ? strerror(errno) : "mapped");
	printf("mprotect of the stub: %s\n", mprotect(top, 4096, PROT_READ) ? strerror(errno) : "done");
	printf("munmap of the stub: %s\n", munmap(top, 8192) ? strerror(errno) : "done");
	char *p = malloc(1 << 20);
	memset(p, 1, 1 << 20);
	printf("still running %d\n", p[99]);
	return 0;
}

static int killself(void) { printf("bye\n"); fflush(stdout); kill(getpid(), SIGKILL); return 0; }

static int segv(void) { fflush(stdout); *(volatile int *)16 = 1; return 0; }

static int sigbus(void) {
	char path[] = "/tmp/vmspace-sigbus-XXXXXX";
	int fd = mkstemp(path);
	unlink(path);
	ftruncate(fd, 4096);
	char *p = mmap(NULL, 3 * 4096, PROT_READ, MAP_PRIVATE, fd, 0);
	printf("first page %d\n", p[0]);
	fflush(stdout);
	return p[2 * 4096];
}

static void handler(int sig, siginfo_t *si, void *ctx) {
	(void)ctx;
	printf("caught %d code %d at %s\n", sig, si->si_code, si->si_addr == (void *)8 ? "8" : "?");
	fflush(stdout);
	_exit(9);
}

static int segvhandler(void) {
	struct sigaction sa = {0};
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, NULL);
	return *(volatile int *)8;
}

static char *fresh;

static void usr1(int sig) {
	(void)sig;
	for (int i = 0; i < 64; i++) fresh[i * 4096] = 1; // faults with every signal blocked
}

// segvblocked: faults served while SIGSEGV is blocked must not cost the
// program its SIGSEGV handler.
static int segvblocked(void) {
	fresh = mmap(NULL, 64 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct sigaction sa = {0};
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, NULL);
	struct sigaction su = {0};
	su.sa_handler = usr1;
	sigfillset(&su.sa_mask);
	sigaction(SIGUSR1, &su, NULL);
	raise(SIGUSR1);
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	char *more = mmap(NULL, 64 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (int i = 0; i < 64; i++) more[i * 4096] = 2;
	sigprocmask(SIG_UNBLOCK, &all, NULL);
	printf("touched %d %d\n", fresh[4096], more[8192]);
	return *(volatile int *)8;
}

// punch: MADV_REMOVE in one process reaches another's shared mapping of
// the file.
static int punch(void) {
	char path[] = "/tmp/vmspace-punch-XXXXXX";
	int fd = mkstemp(path);
	unlink(path);
	ftruncate(fd, 4 * 4096);
	int go[2], done[2];
	pipe(go);
	pipe(done);
	pid_t pid = fork();
	if (pid == 0) {
		char *c = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		c[4096] = 'c';
		write(done[1], "r", 1);
		char x;
		read(go[0], &x, 1); // the parent punched
		printf("child after punch: %d %d\n", c[4096], c[8192]);
		fflush(stdout);
		_exit(0);
	}
	char *p = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	char x;
	read(done[0], &x, 1);
	p[8192] = 'p';
	printf("parent sees %c, ", p[4096]);
	if (madvise(p + 4096, 2 * 4096, MADV_REMOVE) != 0) die("MADV_REMOVE");
	write(go[1], "g", 1);
	waitpid(pid, NULL, 0);
	printf("parent after punch: %d %d\n", p[4096], p[8192]);
	return 0;
}

static int cow(void) {
	// A private file mapping written before and after fork.
	char path[] = "/tmp/vmspace-cow-XXXXXX";
	int fd = mkstemp(path);
	unlink(path);
	char buf[8192];
	memset(buf, 'f', sizeof buf);
	write(fd, buf, sizeof buf);
	char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	p[0] = 'w';
	pid_t pid = fork();
	if (pid == 0) { p[1] = 'c'; p[4096] = 'c'; printf("child %c%c%c\n", p[0], p[1], p[4096]); fflush(stdout); _exit(0); }
	waitpid(pid, NULL, 0);
	printf("parent %c%c%c\n", p[0], p[1], p[4096]);
	char *s = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	s[0] = 'S';
	msync(s, 8192, MS_SYNC);
	char c;
	pread(fd, &c, 1, 0);
	printf("shared write reached the file: %c, private copy: %c\n", c, p[0]);
	return 0;
}

static void *execer(void *arg) {
	(void)arg;
	usleep(10000);
	execl("/bin/echo", "echo", "exec from a second thread", NULL);
	return NULL;
}

static void *spinner(void *arg) {
	(void)arg;
	for (;;) { char *p = malloc(1 << 16); memset(p, 1, 1 << 16); free(p); }
	return NULL;
}

// threadexec: a thread other than the main one execs while others run.
static int threadexec(void) {
	pthread_t a, b, c;
	pthread_create(&b, NULL, spinner, NULL);
	pthread_create(&c, NULL, spinner, NULL);
	pthread_create(&a, NULL, execer, NULL);
	pthread_join(a, NULL);
	return 1;
}

#include <sys/ipc.h>
#include <sys/shm.h>
#include <linux/aio_abi.h>

static int shm(void) {
	int id = shmget(IPC_PRIVATE, 3 * 4096 + 100, IPC_CREAT | 0600);
	if (id < 0) die("shmget");
	char *p = shmat(id, NULL, 0);
	if (p == (void *)-1) die("shmat");
	strcpy(p, "before fork");
	pid_t pid = fork();
	if (pid == 0) { strcpy(p + 4096, "written by the child"); _exit(0); }
	waitpid(pid, NULL, 0);
	char *q = shmat(id, NULL, SHM_RDONLY);
	if (q == (void *)-1) die("shmat ro");
	printf("%s / %s / %s\n", p, p + 4096, q + 4096);
	struct shmid_ds ds;
	if (shmctl(id, IPC_STAT, &ds) != 0) die("IPC_STAT");
	printf("size %zu mode %o\n", (size_t)ds.shm_segsz, ds.shm_perm.mode & 0777);
	if (shmdt(q) != 0 || shmdt(p) != 0) die("shmdt");
	printf("shmdt again: %s\n", shmdt(p) ? strerror(errno) : "ok");
	if (shmctl(id, IPC_RMID, NULL) != 0) die("IPC_RMID");
	printf("shmat after RMID: %s\n", shmat(id, NULL, 0) == (void *)-1 ? strerror(errno) : "attached");
	return 0;
}

static int aio(void) {
	aio_context_t ctx = 0;
	if (syscall(SYS_io_setup, 8, &ctx) != 0) die("io_setup");
	int fd = open("small.txt", O_RDONLY);
	char buf[64] = {0};
	struct iocb cb = {0};
	cb.aio_data = 42;
	cb.aio_lio_opcode = IOCB_CMD_PREAD;
	cb.aio_fildes = fd;
	cb.aio_buf = (uint64_t)buf;
	cb.aio_nbytes = 11;
	struct iocb *cbs[1] = {&cb};
	if (syscall(SYS_io_submit, ctx, 1, cbs) != 1) die("io_submit");
	printf("events to a bad address: %s\n", syscall(SYS_io_getevents, ctx, 1, 1, (void *)8, NULL) < 0 ? strerror(errno) : "ok");
	struct io_event ev[1];
	long n = syscall(SYS_io_getevents, ctx, 1, 1, ev, NULL);
	printf("events %ld data %llu res %lld buf %s\n", n, (unsigned long long)ev[0].data, (long long)ev[0].res, buf);
	if (syscall(SYS_io_destroy, ctx) != 0) die("io_destroy");
	printf("destroy again: %s\n", syscall(SYS_io_destroy, ctx) ? strerror(errno) : "ok");
	return 0;
}

static int seal(void) {
	char *p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	p[4096] = 1;
	if (syscall(462, p + 4096, 4096, 0) != 0) { printf("mseal unsupported: %s\n", strerror(errno)); return 0; }
	printf("munmap sealed: %s\n", munmap(p, 3 * 4096) ? strerror(errno) : "ok");
	printf("mprotect sealed: %s\n", mprotect(p + 4096, 4096, PROT_READ) ? strerror(errno) : "ok");
	printf("munmap unsealed part: %s\n", munmap(p, 4096) ? strerror(errno) : "ok");
	printf("still there: %d\n", p[4096]);
	return 0;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) return 100;
	const char *c = argv[1];
	if (!strcmp(c, "memory")) return memory();
	if (!strcmp(c, "forks")) return forks();
	if (!strcmp(c, "threads")) return threads();
	if (!strcmp(c, "bigio")) return bigio(argv[2]);
	if (!strcmp(c, "closefds")) return closefds();
	if (!strcmp(c, "dupover")) return dupover();
	if (!strcmp(c, "mapstub")) return mapstub();
	if (!strcmp(c, "killself")) return killself();
	if (!strcmp(c, "segv")) return segv();
	if (!strcmp(c, "sigbus")) return sigbus();
	if (!strcmp(c, "segvhandler")) return segvhandler();
	if (!strcmp(c, "segvblocked")) return segvblocked();
	if (!strcmp(c, "cow")) return cow();
	if (!strcmp(c, "punch")) return punch();
	if (!strcmp(c, "threadexec")) return threadexec();
	if (!strcmp(c, "shm")) return shm();
	if (!strcmp(c, "aio")) return aio();
	if (!strcmp(c, "seal")) return seal();
	return 101;
}
`

// goProgram is a static Go program with many goroutines and GC pressure,
// which also runs a child process (vfork-style clone and exec).
const goProgram = `package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
)

type node struct {
	next *node
	buf  []byte
}

func main() {
	var wg sync.WaitGroup
	results := make([]int, 200)
	for g := range results {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var head *node
			for i := 0; i < 3000; i++ {
				head = &node{next: head, buf: make([]byte, 512+(i*g)%8192)}
				if i%97 == 0 {
					head = nil
				}
			}
			for p := head; p != nil; p = p.next {
				results[g]++
			}
		}(g)
	}
	wg.Wait()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	sum := 0
	for _, r := range results {
		sum += r
	}
	fmt.Println("goroutines done, sum", sum, "gc ran", ms.NumGC > 0)
	if len(os.Args) > 1 {
		out, err := exec.Command(os.Args[1], "from", "a", "child").Output()
		fmt.Printf("child said %q err %v\n", out, err)
	}
	fmt.Fprintln(os.Stderr, "to stderr")
	os.Exit(4)
}
`
