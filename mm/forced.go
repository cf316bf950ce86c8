package mm

import (
	"context"
	"errors"

	"github.com/vmspace/vmspace/hostarch"
)

// Forced access: another process's view of an address space through
// /proc/PID/mem (and ptrace's PEEK/POKE requests), which Linux makes with
// FOLL_FORCE. Such an access may do what the vma's current permissions
// forbid, within what the mapping could ever be given:
//
//   - a read needs the vma to be readable, or only to be allowed to become
//     readable (its maximum permissions: PROT_NONE memory is read);
//   - a write needs the vma to be writable, or to be a private mapping
//     allowed to become writable (Linux's copy-on-write mappings): the
//     write then breaks copy-on-write as a write fault would, and the page
//     stays as unwritable for the program as its vma says. A shared
//     mapping that is not writable is never written;
//   - guard regions, holes and the vDSO's data pages are never accessed.
//
// The access is made page by page in address order and stops at the
// first page it may not access: like Linux's access_remote_vm, the count
// returned says how much was done.

// errForced is the cause of a forced access refused by the rules above.
var errForced = errors.New("forced access not permitted")

// ForcedCopyIn reads len(dst) bytes at addr into dst with the rules of a
// forced access (see above). It returns the number of bytes read; if that
// is short, the error is an *AccessError at the first byte not read.
// The permission check and the copy are separate steps: a concurrent
// mprotect may take effect between them.
func (mm *MemoryManager) ForcedCopyIn(ctx context.Context, addr hostarch.Addr, dst []byte) (int, error) {
	end, err := mm.forcedPrefix(addr, uint64(len(dst)), hostarch.Read)
	n := 0
	if end > addr {
		var cerr error
		n, cerr = mm.CopyIn(ctx, addr, dst[:end-addr], IOOpts{IgnorePermissions: true})
		if cerr != nil {
			return n, cerr
		}
	}
	return n, err
}

// ForcedCopyOut writes src at addr with the rules of a forced access (see
// above). It returns the number of bytes written; if that is short, the
// error is an *AccessError at the first byte not written.
func (mm *MemoryManager) ForcedCopyOut(ctx context.Context, addr hostarch.Addr, src []byte) (int, error) {
	end, err := mm.forcedPrefix(addr, uint64(len(src)), hostarch.Write)
	n := 0
	if end > addr {
		var cerr error
		n, cerr = mm.CopyOut(ctx, addr, src[:end-addr], IOOpts{IgnorePermissions: true})
		if cerr != nil {
			return n, cerr
		}
	}
	return n, err
}

// forcedPrefix returns the end of the longest prefix of [addr, addr+length)
// that a forced access of type at may touch, and, if that is short, the
// *AccessError at its end.
func (mm *MemoryManager) forcedPrefix(addr hostarch.Addr, length uint64, at hostarch.AccessType) (hostarch.Addr, error) {
	end := addr + hostarch.Addr(length)
	if end < addr {
		end = ^hostarch.Addr(0)
	}
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	cur := addr
	for cur < end {
		vseg := mm.vmas.FindSegment(cur)
		if !vseg.Ok() {
			return cur, segv(cur, errNoVMA)
		}
		v := vseg.ValuePtr()
		if !v.forcedAllows(at) {
			return cur, segv(cur, errForced)
		}
		r := hostarch.AddrRange{Start: cur, End: min(vseg.End(), end)}
		if g := mm.firstGuardLocked(r); g < r.End {
			return g, segv(g, errGuard)
		}
		cur = r.End
	}
	return end, nil
}

// forcedAllows reports whether a forced access of type at may touch v.
func (v *vma) forcedAllows(at hostarch.AccessType) bool {
	if v.pfnMap() {
		return false
	}
	if at.Write && !v.realPerms.Write && !(v.private() && v.maxPerms.Write) {
		return false
	}
	if at.Read && !v.maxPerms.Read {
		return false
	}
	return true
}
