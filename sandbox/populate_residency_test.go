package sandbox

import "testing"

// populateResidencyProgram populates a few pages of large anonymous
// mappings (MADV_POPULATE_READ/WRITE, MAP_POPULATE, mlock) and prints which
// pages mincore then reports resident around them.
const populateResidencyProgram = `
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>

static char *big(int flags) {
	char *p = mmap(NULL, 64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
	return (char *)(((unsigned long)p + (4 << 20)) & ~((2UL << 20) - 1));
}

static void show(const char *what, char *p) {
	unsigned char v[32];
	if (mincore(p - 16 * 4096, sizeof v * 4096, v) != 0) { perror("mincore"); return; }
	printf("%-16s ", what);
	for (int i = 0; i < (int)sizeof v; i++) putchar('0' + (v[i] & 1));
	putchar('\n');
}

int main(void) {
	char *a = big(0);
	madvise(a + 4096, 4096, MADV_POPULATE_READ);
	show("populate_read", a);
	char *b = big(0);
	madvise(b, 3 * 4096, MADV_POPULATE_WRITE);
	show("populate_write", b);
	char *c = big(0);
	c[5 * 4096] = 1;
	madvise(c + 9 * 4096, 4096, MADV_POPULATE_READ);
	show("fault+populate", c);
	char *d = big(0);
	mlock(d - 2 * 4096, 4 * 4096);
	show("mlock", d);
	return 0;
}
`

// TestPopulateResidency: populating a few pages of a large anonymous
// mapping makes those pages resident and no others, under vmspace run as
// natively: the memory manager had the host commit the whole pma (the huge
// page around them), so mincore reported 512 pages for one populated and
// each cost 2 MiB of host memory (found by the virtual_address_range
// selftest, whose reads of one byte per 1 GiB mapping took 16 GiB).
func TestPopulateResidency(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "populate_residency", populateResidencyProgram, false)
	compare(t, "", "", exe)
}
