package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"golang.org/x/sys/unix"
)

// MSeal implements mseal(2) (Linux 6.10): vmas in the range become sealed;
// afterwards munmap, mprotect, mremap and mmap over them fail with EPERM, as
// do discarding madvises of read-only private memory.
func (mm *MemoryManager) MSeal(ctx context.Context, addr hostarch.Addr, length uint64, flags uint64) error {
	if flags != 0 {
		return unix.EINVAL
	}
	ar, empty, err := checkRange(addr, length)
	if err != nil || empty {
		return err
	}
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	// Check first, so an error seals nothing.
	return mm.changeMappedRangeLocked(ctx, ar, unix.ENOMEM, func(nv *vma) { nv.flags |= vmaSealed })
}
