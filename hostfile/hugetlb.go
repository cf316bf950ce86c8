package hostfile

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// hugetlbfsMagic is HUGETLBFS_MAGIC, hugetlbfs's statfs f_type.
const hugetlbfsMagic = 0x958458f6

// hugetlbWithoutPages reports whether fd is a file of hugetlbfs (an
// MFD_HUGETLB memfd, a file of a hugetlbfs mount) on a host whose pool of
// huge pages is empty and may not grow (vm.nr_hugepages and
// vm.nr_overcommit_hugepages both 0). Such a file never holds a page: a
// mapping of it exists only with MAP_NORESERVE, and Linux's faults there
// are SIGBUS.
func hugetlbWithoutPages(fd int) bool {
	var sfs unix.Statfs_t
	if unix.Fstatfs(fd, &sfs) != nil || uint32(sfs.Type) != hugetlbfsMagic {
		return false
	}
	for _, name := range []string{"nr_hugepages", "nr_overcommit_hugepages"} {
		b, err := os.ReadFile("/proc/sys/vm/" + name)
		if err != nil {
			return false
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err != nil || n != 0 {
			return false
		}
	}
	return true
}

// HasHugePageSize reports whether the host's kernel has a pool of huge
// pages of 1<<shift bytes (a directory hugepages-NkB in
// /sys/kernel/mm/hugepages, even with no pages in it): x86-64's 2 MiB
// pages, and its 1 GiB pages where the CPU and the kernel's configuration
// give them. Linux's mmap (MAP_HUGE_*) and shmget (SHM_HUGE_*) refuse a
// size it has no pool for with EINVAL; the pool of a size it has decides
// the rest.
func HasHugePageSize(shift uint64) bool {
	if shift < 12 || shift > 40 {
		return false
	}
	_, err := os.Stat("/sys/kernel/mm/hugepages/hugepages-" + strconv.FormatUint(uint64(1)<<shift>>10, 10) + "kB")
	return err == nil
}
