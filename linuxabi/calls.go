package linuxabi

import (
	"context"
	"errors"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// Errno converts an error of the memory manager to the errno a system
// call returns: its own, EFAULT for an access error, else EINVAL.
func Errno(err error) unix.Errno {
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	var ae *mm.AccessError
	if errors.As(err, &ae) {
		return unix.EFAULT
	}
	return unix.EINVAL
}

// Served reports whether Call serves system call nr.
func Served(nr int) bool {
	switch nr {
	case unix.SYS_MMAP, unix.SYS_MUNMAP, unix.SYS_MPROTECT, unix.SYS_PKEY_MPROTECT, unix.SYS_BRK,
		unix.SYS_MREMAP, unix.SYS_MADVISE, unix.SYS_MLOCK, unix.SYS_MUNLOCK, unix.SYS_MLOCK2,
		unix.SYS_MLOCKALL, unix.SYS_MUNLOCKALL, unix.SYS_MSYNC, unix.SYS_MINCORE, unix.SYS_MSEAL,
		unix.SYS_REMAP_FILE_PAGES, unix.SYS_MAP_SHADOW_STACK:
		return true
	}
	return false
}

// Call serves memory system call nr (see Served) with arguments a for
// m: it returns the call's value, or its error (ENOSYS for a call it does
// not serve). files gives mmap its descriptors' files.
func Call(ctx context.Context, m *mm.MemoryManager, files Files, nr int, a [6]uint64) (uint64, error) {
	switch nr {
	case unix.SYS_MMAP:
		addr, err := MMapFD(ctx, m, files, a[0], a[1], a[2], a[3], a[4], a[5])
		return uint64(addr), err
	case unix.SYS_MUNMAP:
		return 0, Munmap(ctx, m, a[0], a[1])
	case unix.SYS_MPROTECT:
		return 0, Mprotect(ctx, m, a[0], a[1], a[2])
	case unix.SYS_PKEY_MPROTECT:
		return 0, PkeyMprotect(ctx, m, a[0], a[1], a[2], a[3])
	case unix.SYS_BRK:
		return uint64(Brk(ctx, m, a[0])), nil
	case unix.SYS_MREMAP:
		addr, err := Mremap(ctx, m, a[0], a[1], a[2], a[3], a[4])
		return uint64(addr), err
	case unix.SYS_MADVISE:
		return 0, Madvise(ctx, m, a[0], a[1], a[2])
	case unix.SYS_MLOCK:
		return 0, Mlock(ctx, m, a[0], a[1])
	case unix.SYS_MLOCK2:
		return 0, Mlock2(ctx, m, a[0], a[1], a[2])
	case unix.SYS_MUNLOCK:
		return 0, Munlock(ctx, m, a[0], a[1])
	case unix.SYS_MLOCKALL:
		return 0, Mlockall(ctx, m, a[0])
	case unix.SYS_MUNLOCKALL:
		return 0, Munlockall(ctx, m)
	case unix.SYS_MSYNC:
		return 0, Msync(ctx, m, a[0], a[1], a[2])
	case unix.SYS_MINCORE:
		return 0, Mincore(ctx, m, a[0], a[1], a[2])
	case unix.SYS_MSEAL:
		return 0, Mseal(ctx, m, a[0], a[1], a[2])
	case unix.SYS_REMAP_FILE_PAGES:
		return 0, RemapFilePages(ctx, m, a[0], a[1], a[2], a[3], a[4])
	}
	// Including map_shadow_stack: x86-64 has no shadow stacks here.
	return 0, unix.ENOSYS
}

// Munmap is munmap(2).
func Munmap(ctx context.Context, m *mm.MemoryManager, addr, length uint64) error {
	return m.MUnmap(ctx, hostarch.Addr(addr), length)
}

// Mprotect is mprotect(2).
func Mprotect(ctx context.Context, m *mm.MemoryManager, addr, length, prot uint64) error {
	return PkeyMprotect(ctx, m, addr, length, prot, ^uint64(0))
}

// PkeyMprotect is pkey_mprotect(2), as Linux's do_mprotect_pkey: the
// protection's unknown bits (arch_validate_prot) and the key are refused
// (EINVAL) only after the range is checked. No key can be allocated (the
// manager has no protection keys), so any key but -1 is refused.
func PkeyMprotect(ctx context.Context, m *mm.MemoryManager, addr, length, prot, pkey uint64) error {
	return m.MProtect(ctx, hostarch.Addr(addr), length, hostarch.AccessTypeFromProt(int(prot&7)), mm.MProtectOpts{
		GrowsDown: prot&ProtGrowsDown != 0,
		GrowsUp:   prot&ProtGrowsUp != 0,
		Refused:   prot&^(ProtRead|ProtWrite|ProtExec|ProtSem|ProtGrowsDown|ProtGrowsUp) != 0 || int32(pkey) != -1,
	})
}

// Brk is brk(2): it returns the break after the call (the old one if it
// fails).
func Brk(ctx context.Context, m *mm.MemoryManager, addr uint64) hostarch.Addr {
	b, _ := m.Brk(ctx, hostarch.Addr(addr))
	return b
}

// Mremap is mremap(2): flags Linux does not know are EINVAL before any
// other check.
func Mremap(ctx context.Context, m *mm.MemoryManager, addr, oldLen, newLen, flags, newAddr uint64) (hostarch.Addr, error) {
	if flags&^(MremapMayMove|MremapFixed|MremapDontUnmap) != 0 {
		return 0, unix.EINVAL
	}
	return m.MRemap(ctx, hostarch.Addr(addr), oldLen, newLen, mm.MRemapOpts{
		MayMove:   flags&MremapMayMove != 0,
		Fixed:     flags&MremapFixed != 0,
		DontUnmap: flags&MremapDontUnmap != 0,
		NewAddr:   hostarch.Addr(newAddr),
	})
}

// Madvise is madvise(2) (the advice is a C int).
func Madvise(ctx context.Context, m *mm.MemoryManager, addr, length, advice uint64) error {
	return m.MAdvise(ctx, hostarch.Addr(addr), length, mm.Advice(int32(advice)))
}

// Mlock is mlock(2).
func Mlock(ctx context.Context, m *mm.MemoryManager, addr, length uint64) error {
	return m.MLock(ctx, hostarch.Addr(addr), length, memmap.MLockEager)
}

// Mlock2 is mlock2(2): flags (a C int) may only be MLOCK_ONFAULT.
func Mlock2(ctx context.Context, m *mm.MemoryManager, addr, length, flags uint64) error {
	f := uint32(flags)
	if f&^MlockOnFault != 0 {
		return unix.EINVAL
	}
	mode := memmap.MLockEager
	if f&MlockOnFault != 0 {
		mode = memmap.MLockLazy
	}
	return m.MLock(ctx, hostarch.Addr(addr), length, mode)
}

// Munlock is munlock(2).
func Munlock(ctx context.Context, m *mm.MemoryManager, addr, length uint64) error {
	return m.MLock(ctx, hostarch.Addr(addr), length, memmap.MLockNone)
}

// Mlockall is mlockall(2): flags (a C int) must be known, and not none or
// MCL_ONFAULT alone (EINVAL).
func Mlockall(ctx context.Context, m *mm.MemoryManager, flags uint64) error {
	f := uint32(flags)
	if f == 0 || f&^(MclCurrent|MclFuture|MclOnFault) != 0 || f == MclOnFault {
		return unix.EINVAL
	}
	return m.MLockAll(ctx, mm.MLockAllOpts{
		Current: f&MclCurrent != 0,
		Future:  f&MclFuture != 0,
		OnFault: f&MclOnFault != 0,
	})
}

// Munlockall is munlockall(2).
func Munlockall(ctx context.Context, m *mm.MemoryManager) error {
	return m.MUnlockAll(ctx)
}

// Msync is msync(2): flags (a C int) Linux does not know are EINVAL before
// any other check.
func Msync(ctx context.Context, m *mm.MemoryManager, addr, length, flags uint64) error {
	f := uint32(flags)
	if f&^(MsAsync|MsInvalidate|MsSync) != 0 {
		return unix.EINVAL
	}
	return m.MSync(ctx, hostarch.Addr(addr), length, mm.MSyncOpts{
		Sync:       f&MsSync != 0,
		Async:      f&MsAsync != 0,
		Invalidate: f&MsInvalidate != 0,
	})
}

// Mincore is mincore(2), writing the vector to vec in m, in Linux's order:
// addr page-aligned (EINVAL); the range within user addresses (ENOMEM) and
// then the vector (EFAULT), both as x86-64's access_ok; then the pages up
// to the first hole, whose vector is written (EFAULT if it cannot be)
// before the hole's ENOMEM.
func Mincore(ctx context.Context, m *mm.MemoryManager, addr, length, vec uint64) error {
	out, err := MincoreVector(ctx, m, addr, length, vec)
	if len(out) > 0 {
		if _, cerr := m.CopyOut(ctx, hostarch.Addr(vec), out, mm.IOOpts{}); cerr != nil {
			return unix.EFAULT
		}
	}
	return err
}

// MincoreVector is Mincore without writing the vector: it returns it (the
// pages up to the first hole), with the error mincore(2) returns unless
// writing the vector fails.
func MincoreVector(ctx context.Context, m *mm.MemoryManager, addr, length, vec uint64) ([]byte, error) {
	if addr&hostarch.PageMask != 0 {
		return nil, unix.EINVAL
	}
	if !accessOK(addr, length) {
		return nil, unix.ENOMEM
	}
	pages := length >> hostarch.PageShift
	if length&hostarch.PageMask != 0 {
		pages++
	}
	if !accessOK(vec, pages) {
		return nil, unix.EFAULT
	}
	if length == 0 {
		return nil, nil
	}
	return m.MInCore(ctx, hostarch.Addr(addr), length)
}

// accessOK is x86-64's access_ok for a length that is not a small
// constant: addr+length must neither wrap nor pass the top of user
// addresses.
func accessOK(addr, length uint64) bool {
	sum := addr + length
	return sum >= addr && sum <= uint64(hostarch.MaxUserAddress)
}

// Mseal is mseal(2).
func Mseal(ctx context.Context, m *mm.MemoryManager, addr, length, flags uint64) error {
	return m.MSeal(ctx, hostarch.Addr(addr), length, flags)
}

// RemapFilePages is remap_file_pages(2): a non-zero prot is EINVAL before
// any other check; of the flags only MAP_NONBLOCK counts.
func RemapFilePages(ctx context.Context, m *mm.MemoryManager, start, size, prot, pgoff, flags uint64) error {
	if prot != 0 {
		return unix.EINVAL
	}
	return m.RemapFilePages(ctx, hostarch.Addr(start), size, pgoff, flags&MapNonBlock != 0)
}
