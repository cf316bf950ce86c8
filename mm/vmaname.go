package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"golang.org/x/sys/unix"
)

// maxAnonNameLen is ANON_VMA_NAME_MAX_LEN, including the terminating NUL.
const maxAnonNameLen = 80

// SetVMAName implements prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME): it names
// the anonymous memory in the range ("" clears the name). File mappings
// are EBADF, bad names EINVAL.
func (mm *MemoryManager) SetVMAName(ctx context.Context, addr hostarch.Addr, length uint64, name string) error {
	if len(name) >= maxAnonNameLen {
		return unix.EINVAL
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < ' ' || c > '~' || c == '\\' || c == '`' || c == '$' || c == '[' || c == ']' {
			return unix.EINVAL
		}
	}
	ar, empty, err := checkRange(addr, length)
	if err != nil || empty {
		return err
	}
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	err = mm.walkVMAsLocked(ar, func(vseg vmaIterator, r hostarch.AddrRange) error {
		v := vseg.ValuePtr()
		if v.id != nil && !v.flags.has(vmaShm|vmaAnonShared) {
			return unix.EBADF
		}
		if v.id == nil && v.name != "" && !v.flags.has(vmaAnonName) {
			// A special mapping ([vdso], ...).
			return unix.EBADF
		}
		_, err := mm.modifyVMALocked(ctx, vseg, r, false, func(nv *vma) {
			nv.name = name
			if name == "" {
				nv.flags &^= vmaAnonName
			} else {
				nv.flags |= vmaAnonName
			}
		})
		return err
	})
	return err
}
