package sandbox

import "testing"

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

/* waits until thread t is in a read (0) or recvmsg (47). */
static void in_call(int t) {
	char path[64], b[64];
	snprintf(path, sizeof path, "/proc/self/task/%d/syscall", t);
	for (int i = 0; i < 5000; i++) {
		FILE *f = fopen(path, "r");
		if (f) {
			int ok = fgets(b, sizeof b, f) && (strncmp(b, "0 ", 2) == 0 || strncmp(b, "47 ", 3) == 0);
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
		in_call(tid);
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
	compare(t, "", "", exe)
}
