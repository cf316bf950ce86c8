package mm

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/safemem"
)

// TestHostZeroPageProbe checks hostLacksZeroPage against what it predicts
// in this process: a private anonymous vma that was only read gets an
// anon_vma exactly when the kernel has no zero page, and then no longer
// merges with a written neighbour (another anon_vma) when mprotect makes
// the two alike.
//
// The two pages are fenced by PROT_NONE pages on both sides: a written
// private anonymous vma of the process's own right below the read one
// (Go's runtime maps its memory next to the test's while the test runs,
// and top-down placement puts it just there) took the read vma when it
// merged, and the check, which looks for exactly the two pages, saw no
// merge on a kernel with the zero page (the test failed now and then).
// Such a neighbour is placed below the lower fence on purpose.
func TestHostZeroPageProbe(t *testing.T) {
	const pg = 4096
	// Reserve five pages so that the fixed mappings below land in a
	// range of our own: a written neighbour, then the two pages between
	// two PROT_NONE pages that merge with neither.
	res, err := unix.Mmap(-1, 0, 5*pg, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(res)
	base := safemem.BlockFromSafeSlice(res).Addr() + 2*pg
	mem := res[2*pg:]
	mmapFixed := func(addr uintptr, prot int) {
		t.Helper()
		_, _, e := unix.Syscall6(unix.SYS_MMAP, addr, pg, uintptr(prot), unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED, ^uintptr(0), 0)
		if e != 0 {
			t.Fatal(e)
		}
	}
	// The neighbour below the fence, the written neighbour, then the
	// vma that is only read.
	mmapFixed(base-2*pg, unix.PROT_READ|unix.PROT_WRITE)
	res[0] = 1
	mmapFixed(base+pg, unix.PROT_READ|unix.PROT_WRITE)
	mem[pg] = 1
	mmapFixed(base, unix.PROT_READ)
	zeroPageSink = mem[0]
	if _, _, e := unix.Syscall(unix.SYS_MPROTECT, base, pg, unix.PROT_READ|unix.PROT_WRITE); e != 0 {
		t.Fatal(e)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	merged := strings.Contains(string(maps), fmt.Sprintf("%x-%x rw-p", base, base+2*pg))
	if got := hostLacksZeroPage(); got == merged {
		t.Errorf("hostLacksZeroPage() = %v, but the read vma merged with its written neighbour: %v", got, merged)
	}
	t.Logf("no zero page: %v", !merged)
}
