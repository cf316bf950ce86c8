package mm

import (
	"encoding/binary"

	"github.com/vmspace/vmspace/safemem"
	"golang.org/x/sys/unix"
)

const (
	rlimitAS      = unix.RLIMIT_AS
	rlimitData    = unix.RLIMIT_DATA
	rlimitMemLock = unix.RLIMIT_MEMLOCK
	rlimitStack   = unix.RLIMIT_STACK
)

func getrlimit(res int) (cur, max uint64, err error) {
	var r unix.Rlimit
	if err := unix.Getrlimit(res, &r); err != nil {
		return 0, 0, err
	}
	return r.Cur, r.Max, nil
}

// zeroPageSink keeps the probe's read from being optimised away.
var zeroPageSink byte

// hostLacksZeroPage reports whether the host kernel has no shared zero
// page: a page of fresh private anonymous memory that was only read is then
// mapped exclusively (pagemap bit 56, readable without privileges), where
// the zero page is shared by everyone. It answers false when it cannot
// tell.
func hostLacksZeroPage() bool {
	const pageSize = 4096
	mem, err := unix.Mmap(-1, 0, pageSize, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return false
	}
	defer unix.Munmap(mem)
	zeroPageSink = mem[0]
	fd, err := unix.Open("/proc/self/pagemap", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var b [8]byte
	addr := safemem.BlockFromSafeSlice(mem).Addr()
	if n, err := unix.Pread(fd, b[:], int64(addr/pageSize*8)); err != nil || n != len(b) {
		return false
	}
	e := binary.LittleEndian.Uint64(b[:])
	const present, exclusive = 1 << 63, 1 << 56
	return e&present != 0 && e&exclusive != 0
}
