package safemem

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Mincore reports, as mincore(2), which pages of b (a page-aligned host
// mapping) are resident in the host's memory: one byte per page into vec,
// whose length must be at least the number of pages.
func Mincore(b Block, vec []byte) error {
	if b.length == 0 {
		return nil
	}
	if len(vec) < (b.length+4095)/4096 {
		return unix.EINVAL
	}
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(b.start), uintptr(b.length), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		return errno
	}
	return nil
}
