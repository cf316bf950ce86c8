package sandbox

import (
	"strings"
	"testing"
)

// TestSealedUnmapSplitsInMaps: munmap, MAP_FIXED mmap, mremap
// MREMAP_FIXED and shmat SHM_REMAP that a seal fails with EPERM leave, in /proc/self/maps, the
// vma splits Linux's vms_gather_munmap_vmas made before it reached the
// seal (two lines for two halves of one mapping), as natively.
func TestSealedUnmapSplitsInMaps(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "sealsplit", sealSplitProgram, true)
	if r := runNative(t, "", "", exe); strings.Contains(r.stdout, "unsupported") {
		t.Skip("no mseal on this kernel")
	}
	compare(t, "", "", exe)
}

const sealSplitProgram = `#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>
#define P 4096UL
static char *base;
static void maps(const char *what, long rc) {
	printf("== %s: %s\n", what, rc == -1 ? strerror(errno) : "ok");
	FILE *f = fopen("/proc/self/maps", "r"); char line[512];
	while (fgets(line, sizeof line, f)) {
		unsigned long a, b; sscanf(line, "%lx-%lx", &a, &b);
		if (a >= (unsigned long)base && b <= (unsigned long)base + 64*P) {
			char perm[8]; sscanf(line, "%*s %7s", perm);
			printf("  +%lx-+%lx %s\n", a-(unsigned long)base, b-(unsigned long)base, perm);
		}
	}
	fclose(f);
}
static long seal(void *a, size_t l) { return syscall(462, a, l, 0); }
static void reset(void) {
	/* a free 64-page window, fresh for each case */
	base = mmap(NULL, 64*P, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
	munmap(base, 64*P);
}
/* a fresh window whose first pages are one rw mapping */
static void fresh(unsigned long pages) {
	reset();
	mmap(base, pages*P, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0);
}
int main(void) {
	long rc;
	setvbuf(stdout, NULL, _IOLBF, 0);
	reset();
	mmap(base, P, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0);
	if (seal(base, P)) { printf("mseal unsupported\n"); return 0; }
	/* 1: munmap over the end of a vma into a sealed one */
	fresh(7);
	seal(base+6*P, P);
	rc = munmap(base+5*P, 2*P); maps("1 munmap +5000 2p, +6000 sealed", rc);
	/* 2: MAP_FIXED mmap, same */
	fresh(7);
	seal(base+6*P, P);
	rc = (long)mmap(base+5*P, 2*P, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_ANONYMOUS|MAP_FIXED, -1, 0); maps("2 mmap fixed +5000 2p", rc);
	/* 3: start inside a sealed vma: no split */
	fresh(7);
	seal(base, 3*P);
	rc = munmap(base+1*P, 4*P); maps("3 munmap +1000 4p, +0-+3000 sealed", rc);
	/* 4: sealed in the middle, a vma crossing the end: no end split */
	fresh(8);
	seal(base+3*P, P);
	rc = munmap(base+1*P, 5*P); maps("4 munmap +1000 5p, +3000 sealed", rc);
	/* 5: sealed vma crosses the end, start in an unsealed one */
	fresh(8);
	seal(base+4*P, 4*P);
	rc = munmap(base+2*P, 4*P); maps("5 munmap +2000 4p, +4000-+8000 sealed", rc);
	/* 6: mremap MREMAP_FIXED onto a range with a seal */
	fresh(7);
	seal(base+6*P, P);
	mmap(base+20*P, 2*P, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0);
	rc = (long)mremap(base+20*P, 2*P, 2*P, MREMAP_MAYMOVE|MREMAP_FIXED, base+5*P); maps("6 mremap fixed to +5000", rc);
	/* 8: a gap before the vmas, the sealed one in the middle */
	fresh(3);
	mmap(base+4*P, 4*P, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0);
	seal(base+6*P, P);
	rc = munmap(base+3*P, 4*P); maps("8 munmap +3000 4p (gap, vma, sealed)", rc);
	/* 9: shmat SHM_REMAP replaces what it overlaps; onto a seal, EPERM and the split */
	int id = shmget(IPC_PRIVATE, 2*P, IPC_CREAT|0600);
	fresh(4);
	rc = (long)shmat(id, base+P, SHM_REMAP); maps("9 shmat remap +1000", rc);
	fresh(7);
	seal(base+6*P, P);
	rc = (long)shmat(id, base+5*P, SHM_REMAP); maps("10 shmat remap +5000, +6000 sealed", rc);
	rc = (long)shmat(id, base+2*P, 0); maps("11 shmat +2000 without remap", rc);
	shmctl(id, IPC_RMID, NULL);
	return 0;
}
`
