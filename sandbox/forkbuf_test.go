package sandbox

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
)

// inCallSrc has in_call(t, nr1, nr2), which waits until thread t is in
// system call nr1 or nr2 (/proc/self/task/TID/syscall), and spinner, a
// thread that spins until stop is set.
const inCallSrc = `
static void in_call(int t, int nr1, int nr2) {
	char path[64], b[64];
	snprintf(path, sizeof path, "/proc/self/task/%d/syscall", t);
	for (int i = 0; i < 5000; i++) {
		FILE *f = fopen(path, "r");
		if (f) {
			int ok = fgets(b, sizeof b, f) && (atoi(b) == nr1 || atoi(b) == nr2) && b[0] >= '0' && b[0] <= '9';
			fclose(f);
			if (ok) return;
		}
		usleep(1000);
	}
	printf("reader never blocked\n");
	exit(2);
}

static volatile int stop;
static void *spinner(void *arg) {
	while (!stop) ;
	return 0;
}
`

// forkBufSrc has a thread blocked in a system call that will write a
// buffer of private memory (read from a pipe, into a page of its own or
// its stack, and recvmsg into an iovec of two such pages) while another
// thread forks: once the fork is over, the pipe is written and the reader
// must get the bytes. Natively the read always succeeds (Linux's kernel
// breaks copy-on-write in the buffer's page as a user write would); under
// vmspace the fork made the buffer read-only in the host, whose kernel
// then failed the call with EFAULT. Each round waits until the reader is
// in its call (/proc/self/task/TID/syscall) before forking. A third
// thread spins: vmspace stops it, not the reader (which would restart its
// call), to make the fork's calls in the parent.
const forkBufSrc = `
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
` + inCallSrc + `
static int fds[2], kind;
static char *page;
static volatile int tid;
static char got[64];

static void *reader(void *arg) {
	char onstack[64];
	tid = gettid();
	long n;
	switch (kind) {
	case 0:
		n = read(fds[0], page + 100, 32);
		if (n > 0) memcpy(got, page + 100, n);
		break;
	case 1:
		memset(onstack, 0, sizeof onstack);
		n = read(fds[0], onstack, 32);
		if (n > 0) memcpy(got, onstack, n);
		break;
	default: {
		struct iovec iov[2] = {{page + 4096 - 8, 8}, {page + 4096, 24}};
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
		n = recvmsg(fds[0], &mh, 0);
		if (n > 0) memcpy(got, page + 4096 - 8, n);
	}
	}
	if (n < 0) n = -errno;
	return (void *)n;
}

int main(void) {
	/* The first thread after main: the one vmspace stops to make calls
	   while main forks, rather than the reader. */
	pthread_t sp;
	pthread_create(&sp, 0, spinner, 0);
	page = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fails = 0;
	for (int round = 0; round < 12; round++) {
		kind = round % 3;
		if (kind == 2) {
			if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds)) return 1;
		} else if (pipe(fds)) return 1;
		memset(page, 'p', 8192); /* written: private memory a fork shares */
		tid = 0;
		pthread_t th;
		pthread_create(&th, 0, reader, 0);
		while (!tid) usleep(100);
		in_call(tid, 0, 47);
		pid_t c = fork();
		if (c == 0) _exit(0);
		waitpid(c, 0, 0);
		char msg[33];
		snprintf(msg, sizeof msg, "round %02d: the bytes written.....", round);
		if (write(fds[1], msg, 32) != 32) return 1;
		void *r;
		pthread_join(th, &r);
		if ((long)r != 32 || memcmp(got, msg, 32) != 0) {
			printf("round %d (kind %d): read returned %ld\n", round, kind, (long)r);
			fails++;
		}
		close(fds[0]);
		close(fds[1]);
	}
	stop = 1;
	pthread_join(sp, 0);
	printf("%d failed\n", fails);
	return 0;
}
`

// TestSyscallBufferDuringFork runs forkBufSrc natively and under vmspace:
// a buffer a thread's blocked system call will write stays writable in
// the parent through another thread's fork (kernelWrites).
func TestSyscallBufferDuringFork(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "forkbuf", forkBufSrc, false)
	compareReaderRuns(t, exe)
}

// compareReaderRuns is compare for a program of in_call's kind, whose
// fork must find its reader blocked in its call and running: vmspace
// stops another thread (holder) to make the fork's calls in the parent,
// the spinner, which holder takes because its tid is the lower one; if
// tids wrapped around between the two threads' creation, holder would
// take the reader instead (its call restarted, the buffer written after
// the fork: the test would guard nothing). Such a run is made again, up
// to three times in all, and then the test fails.
func compareReaderRuns(t *testing.T, argv ...string) {
	t.Helper()
	want := runNative(t, "", "", argv...)
	var readerHeld atomic.Bool
	holderHook = func(cands []*task) {
		if len(cands) > 0 && inReadCall(cands[0].p.pid, cands[0].tid) {
			readerHeld.Store(true)
		}
	}
	defer func() { holderHook = nil }()
	for try := 1; ; try++ {
		readerHeld.Store(false)
		got, _ := sandboxRun(t, "", "", Options{}, argv...)
		if !readerHeld.Load() {
			compareResults(t, argv, got, want)
			return
		}
		if try == 3 {
			t.Fatalf("%q: in %d runs vmspace stopped the reader, not the spinner, for a fork: the test guards nothing", argv, try)
		}
		t.Logf("%q: vmspace stopped the reader for a fork (tids wrapped around?): run again", argv)
	}
}

// inReadCall reports whether thread tid of process pid is blocked in one
// of the calls the fork-buffer programs' readers make: read, recvfrom,
// recvmsg, recvmmsg.
func inReadCall(pid, tid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/syscall", pid, tid))
	if err != nil {
		return false
	}
	nr, _, ok := strings.Cut(string(b), " ")
	switch {
	case !ok:
		return false
	case nr == "0", nr == "45", nr == "47", nr == "299":
		return true
	}
	return false
}

// forkBigSrc is forkBufSrc's round with calls that write many buffers or
// a large one, once each: "mmsg", a recvmmsg of 1024 datagrams, each
// with its address and bytes in a page of its own (a gap page between
// them: more separate ranges than vmspace once recorded, the later ones
// then left out of the fork's pinned pages); "waitall", a
// recv(MSG_WAITALL) of 8 MiB (more than is populated ahead of a read from
// a socket, once also all that a fork pinned). All the buffers were
// written before (private memory a fork shares). Natively every byte
// arrives.
const forkBigSrc = `
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
` + inCallSrc + `
#define N 1024
#define BIG (8 << 20)
static int fds[2], mmsg;
static char *mem;
static volatile int tid;
static struct mmsghdr msgs[N];
static struct iovec iovs[N];

static void *reader(void *arg) {
	tid = gettid();
	if (mmsg) return (void *)(long)recvmmsg(fds[0], msgs, N, 0, 0);
	return (void *)recv(fds[0], mem, BIG, MSG_WAITALL);
}

int main(int argc, char **argv) {
	pthread_t sp, th;
	pthread_create(&sp, 0, spinner, 0);
	mmsg = strcmp(argv[1], "mmsg") == 0;
	if (socketpair(AF_UNIX, mmsg ? SOCK_DGRAM : SOCK_STREAM, 0, fds)) return 1;
	mem = mmap(0, mmsg ? 2 * N * 4096 : BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(mem, 'p', mmsg ? 2 * N * 4096 : BIG);
	for (int i = 0; i < N; i++) {
		char *pg = mem + 2 * i * 4096;
		iovs[i] = (struct iovec){pg + 512, 64};
		msgs[i].msg_hdr = (struct msghdr){.msg_name = pg, .msg_namelen = 64, .msg_iov = &iovs[i], .msg_iovlen = 1};
	}
	pthread_create(&th, 0, reader, 0);
	while (!tid) usleep(100);
	in_call(tid, mmsg ? 299 : 45, -1);
	pid_t c = fork();
	if (c == 0) _exit(0);
	waitpid(c, 0, 0);
	char *src = malloc(BIG);
	for (long i = 0; i < BIG; i++) src[i] = 'a' + i % 23;
	/* a reader that returned short leaves the rest unread */
	struct timeval tv = {2, 0};
	setsockopt(fds[1], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (mmsg) {
		for (int i = 0; i < N; i++)
			if (send(fds[1], src + i, 16, 0) != 16) break;
	} else {
		for (long off = 0; off < BIG;) {
			long n = write(fds[1], src + off, BIG - off);
			if (n <= 0) break;
			off += n;
		}
	}
	void *r;
	pthread_join(th, &r);
	long bad = 0;
	if (mmsg) {
		for (int i = 0; i < (long)r; i++)
			if (msgs[i].msg_len != 16 || memcmp(mem + 2 * i * 4096 + 512, src + i, 16) != 0) bad++;
	} else if ((long)r > 0) bad = memcmp(mem, src, (long)r) != 0;
	printf("%s returned %ld, %ld bad\n", argv[1], (long)r, bad);
	stop = 1;
	pthread_join(sp, 0);
	return 0;
}
`

// TestLargeSyscallBufferDuringFork runs forkBigSrc natively and under
// vmspace: every range a blocked recvmmsg of 1024 messages may write
// stays writable through another thread's fork (noteKernelWrite merges
// ranges and never drops one), and so does the whole buffer of a
// blocked recv(MSG_WAITALL) of 8 MiB, past what is populated ahead.
func TestLargeSyscallBufferDuringFork(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "forkbig", forkBigSrc, false)
	for _, mode := range []string{"mmsg", "waitall"} {
		t.Run(mode, func(t *testing.T) { compareReaderRuns(t, exe, mode) })
	}
}
