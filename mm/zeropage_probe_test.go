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
func TestHostZeroPageProbe(t *testing.T) {
	const pg = 4096
	// Reserve three pages so that the fixed mappings below land in a
	// range of our own.
	res, err := unix.Mmap(-1, 0, 3*pg, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(res)
	base := safemem.BlockFromSafeSlice(res).Addr()
	mmapFixed := func(addr uintptr, prot int) {
		t.Helper()
		_, _, e := unix.Syscall6(unix.SYS_MMAP, addr, pg, uintptr(prot), unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED, ^uintptr(0), 0)
		if e != 0 {
			t.Fatal(e)
		}
	}
	// The written neighbour, then the vma that is only read.
	mmapFixed(base+pg, unix.PROT_READ|unix.PROT_WRITE)
	res[pg] = 1
	mmapFixed(base, unix.PROT_READ)
	zeroPageSink = res[0]
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
