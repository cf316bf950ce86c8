package sandbox

import "golang.org/x/sys/unix"

// Files of hugetlbfs (MFD_HUGETLB memfds, files of a hugetlbfs mount) are
// mapped by the memory manager in small pages like any file, but whether
// Linux maps them at all depends on the huge pages the host has: a
// mapping reserves its huge pages at mmap (ENOMEM when the pool lacks
// them, unless MAP_NORESERVE), and offsets and lengths must fit the huge
// page size. So the same mmap is first made in vmspace's own process,
// and its errno is the program's.

// hugetlbfsMagic is HUGETLBFS_MAGIC, hugetlbfs's statfs f_type.
const hugetlbfsMagic = 0x958458f6

// hugetlbProbe returns the errno of mmap with args (those of the
// program's call) of hfd, a regular file on the file system sfs
// describes, made in vmspace's process if the file is on hugetlbfs (else
// 0). The address, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_POPULATE and
// MAP_LOCKED are left out: the trial mapping is not the program's and is
// unmapped at once.
func hugetlbProbe(hfd int, sfs *unix.Statfs_t, args [6]uint64) unix.Errno {
	if uint32(sfs.Type) != hugetlbfsMagic {
		return 0
	}
	flags := args[3] &^ (unix.MAP_FIXED | unix.MAP_FIXED_NOREPLACE | unix.MAP_POPULATE | unix.MAP_LOCKED)
	addr, _, e := unix.Syscall6(unix.SYS_MMAP, 0, uintptr(args[1]), uintptr(args[2]), uintptr(flags), uintptr(hfd), uintptr(args[5]))
	if e != 0 {
		return e
	}
	unix.Syscall(unix.SYS_MUNMAP, addr, uintptr(args[1]), 0)
	return 0
}
