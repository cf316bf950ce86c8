package sandbox

import "testing"

// waitAllSrc receives 8 MiB with MSG_WAITALL (recv or recvmsg, as argv[1]
// says) into a buffer it wrote before a fork, whose child is still alive:
// its pages are shared copy-on-write, so the host kernel writes them only
// if vmspace has made them the parent's own. Natively every byte arrives.
const waitAllSrc = `
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#define BIG (8 << 20)
static int fds[2];
static char *src;

static void *writer(void *arg) {
	for (long off = 0; off < BIG;) {
		long n = write(fds[1], src + off, BIG - off);
		if (n <= 0) break;
		off += n;
	}
	return 0;
}

int main(int argc, char **argv) {
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds)) return 1;
	/* a receive that returned short leaves the writer blocked: not for ever */
	struct timeval tv = {5, 0};
	setsockopt(fds[1], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	src = malloc(BIG);
	for (long i = 0; i < BIG; i++) src[i] = 'a' + i % 23;
	char *mem = mmap(0, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(mem, 'p', BIG);
	int p[2];
	if (pipe(p)) return 1;
	pid_t c = fork();
	if (c == 0) { char b; read(p[0], &b, 1); _exit(0); }
	pthread_t th;
	pthread_create(&th, 0, writer, 0);
	long r;
	if (strcmp(argv[1], "recvmsg") == 0) {
		struct iovec iov[2] = {{mem, BIG / 2}, {mem + BIG / 2, BIG / 2}};
		struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
		r = recvmsg(fds[0], &m, MSG_WAITALL);
	} else {
		r = recv(fds[0], mem, BIG, MSG_WAITALL);
	}
	pthread_join(th, 0);
	printf("%s %ld, same %d\n", argv[1], r, r > 0 && memcmp(mem, src, r) == 0);
	write(p[1], "x", 1);
	waitpid(c, 0, 0);
	return 0;
}
`

// TestReceiveWaitAll: a receive with MSG_WAITALL into copy-on-write
// memory larger than what vmspace populates ahead of a stream read
// (streamCap) fills its whole buffer, as natively: the host returned
// 4,166,016 of 8,388,608 bytes (EFAULT past the populated part) before
// waitAll.
func TestReceiveWaitAll(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "waitall", waitAllSrc, true)
	for _, mode := range []string{"recv", "recvmsg"} {
		t.Run(mode, func(t *testing.T) { compare(t, "", "", exe, mode) })
	}
}
