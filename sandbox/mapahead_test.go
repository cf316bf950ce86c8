package sandbox

import "testing"

// heapResidencyProgram grows its heap with sbrk, writes a few of the new
// pages, and prints its anonymous RSS growth and which heap pages mincore
// reports resident: a heap just grown is not resident until written.
const heapResidencyProgram = `
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static long rss_anon(void) {
	FILE *f = fopen("/proc/self/status", "r");
	char l[256];
	long v = -1;
	while (fgets(l, sizeof l, f))
		if (!strncmp(l, "RssAnon:", 8)) v = atol(l + 8);
	fclose(f);
	return v;
}

static void show(const char *what, char *p, int pages) {
	unsigned char v[512];
	if (mincore(p, pages * 4096L, v) != 0) { perror("mincore"); return; }
	printf("%-12s ", what);
	for (int i = 0; i < pages; i++) putchar('0' + (v[i] & 1));
	putchar('\n');
}

int main(void) {
	char *start = sbrk(0);
	/* Align the break to a page so that the pages counted are the new ones. */
	char *p = sbrk((4096 - (long)start % 4096) % 4096);
	p = sbrk(0);
	long a = rss_anon();
	if (sbrk(256 * 4096) == (void *)-1) { perror("sbrk"); return 1; }
	long b = rss_anon();
	show("grown", p, 64);
	p[0] = 1;
	p[7 * 4096] = 1;
	p[200 * 4096] = 1;
	long c = rss_anon();
	show("written", p, 64);
	printf("grow +%ld kB, three writes +%ld kB\n", b - a, c - b);
	if (sbrk(-128 * 4096) == (void *)-1) { perror("sbrk"); return 1; }
	if (sbrk(128 * 4096) == (void *)-1) { perror("sbrk"); return 1; }
	show("regrown", p + 128 * 4096, 128);
	printf("after shrink and regrow +%ld kB\n", rss_anon() - c);
	return 0;
}
`

// TestHeapResidency: brk maps a grown heap ahead (no fault stop at the
// program's first writes) without making it resident: RSS and mincore
// count the pages written only, as natively. Before MapAhead the whole
// growth was committed and counted (+1024 kB where Linux shows +0).
func TestHeapResidency(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "heapres", heapResidencyProgram, false)
	for _, fast := range []bool{false, true} {
		name := "slow"
		if fast {
			name = "fast"
		}
		t.Run(name, func(t *testing.T) {
			fastPathFor(t, fast)
			compare(t, "", "", exe)
		})
	}
}
