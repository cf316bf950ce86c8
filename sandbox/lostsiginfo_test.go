package sandbox

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// lostProg stores to a page it maps at 0x300000000000: a fault.
const lostProg = `
#include <stdio.h>
#include <sys/mman.h>

int main(void) {
	char *p = mmap((void *)0x300000000000, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED) return 2;
	p[0] = 7;
	printf("stored %d\n", p[0]);
	return 0;
}
`

// TestLostSiginfo checks that a fault whose SIGSEGV reaches vmspace with
// the siginfo the kernel makes up when it lost the signal's own (SI_USER,
// no sender, no address: made here by siginfoHook for the fault at
// 0x300000000000) is retried as a fault, not delivered as a sent signal
// (the program died of it), with the fast path off and on.
func TestLostSiginfo(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "lostinfo", lostProg, false)
	for _, fast := range []bool{false, true} {
		lost := 0
		siginfoHook = func(tk *task, sig unix.Signal, si *siginfo) {
			if sig == unix.SIGSEGV && si.code() > 0 && si.addr() == 0x300000000000 && lost == 0 {
				lost++
				*si = siginfo{}
				binary.LittleEndian.PutUint32(si[0:], uint32(unix.SIGSEGV))
			}
		}
		old := fastpathOn
		fastpathOn = fast
		compare(t, "", "", exe)
		fastpathOn = old
		siginfoHook = nil
		if lost != 1 {
			t.Errorf("fast path %v: %d faults made to lose their siginfo, want 1", fast, lost)
		}
	}
}
