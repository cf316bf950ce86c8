package sandbox

import (
	"testing"

	"github.com/vmspace/vmspace/hostarch"
)

// hostRefusalProgram faults in a page at a fixed address (which the test
// has the host refuse to map until unmaps are pending) while a second thread keeps
// returning to user mode (sched_yield), as does the first one after the
// fault: each return updates the thread's rseq area, which glibc
// registers for every thread.
const hostRefusalProgram = `#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/mman.h>

static volatile int stop;

static void *spin(void *arg) {
	long n = 0;
	while (!stop) { sched_yield(); n++; }
	return (void *)n;
}

int main(void) {
	pthread_t th;
	pthread_create(&th, NULL, spin, NULL);
	for (int i = 0; i < 200; i++) sched_yield();
	char *p = mmap((void *)0x200000000, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED) { perror("mmap"); return 2; }
	p[0] = 7;
	for (int i = 0; i < 200; i++) sched_yield();
	stop = 1;
	pthread_join(th, NULL);
	printf("%d\n", p[0]);
	return 0;
}
`

// TestHostRefusalKeepsKernelAreas: when the host refuses a mapping
// (ENOMEM, as past vm.max_map_count) the manager drops all its host
// mappings and maps again, and stubAS makes the pending unmaps before
// its retry; the pages holding the threads' rseq areas must stay mapped
// through that (the kernel would kill a thread whose rseq update fails),
// until the shootdown has the manager map them again. The program's
// output and exit status match Linux's, and the host mappings agree with
// the manager after every stop.
func TestHostRefusalKeepsKernelAreas(t *testing.T) {
	needPtrace(t)
	bin := buildC(t, "hostrefusal", hostRefusalProgram, false)
	target := hostarch.AddrRange{Start: 0x200000000, End: 0x200001000}
	// Refuse the page until a refusal comes with unmaps pending (the
	// manager's eviction), which has stubAS flush and retry.
	refused, withPending := 0, false
	refuseHostMap = func(as *stubAS, ar hostarch.AddrRange) bool {
		if !ar.Overlaps(target) || withPending {
			return false
		}
		refused++
		_, withPending = as.s.unflushed[as]
		return true
	}
	defer func() { refuseHostMap = nil }()
	var shadowErrs []error
	checkShadow = func(err error) { shadowErrs = append(shadowErrs, err) }
	defer func() { checkShadow = nil }()
	compare(t, t.TempDir(), "", bin)
	if !withPending {
		t.Errorf("the host was made to refuse %d mappings, none with unmaps pending", refused)
	}
	for _, err := range shadowErrs {
		t.Errorf("host mappings disagree with the manager: %v", err)
	}
}
