package mm

import (
	"github.com/vmspace/vmspace/hostarch"
	"golang.org/x/sys/unix"
)

// MDWE is a process's memory-deny-write-execute state, as
// prctl(PR_SET_MDWE) sets it and PR_GET_MDWE reports it.
type MDWE uint64

const (
	// MDWERefuseExecGain is PR_MDWE_REFUSE_EXEC_GAIN: no new mapping may
	// be writable and executable, and no mapping may become executable
	// unless it already is (and stays non-writable).
	MDWERefuseExecGain MDWE = 1 << 0
	// MDWENoInherit is PR_MDWE_NO_INHERIT: a forked child, or the image
	// an exec loads, starts without MDWE.
	MDWENoInherit MDWE = 1 << 1
)

// SetMDWE is prctl(PR_SET_MDWE, bits, arg3, arg4, arg5): EINVAL for
// non-zero arg3..arg5, unknown bits, or PR_MDWE_NO_INHERIT alone; EPERM for
// any change once MDWE is set (it cannot be relaxed).
func (mm *MemoryManager) SetMDWE(bits, arg3, arg4, arg5 uint64) error {
	if arg3 != 0 || arg4 != 0 || arg5 != 0 {
		return unix.EINVAL
	}
	b := MDWE(bits)
	if b&^(MDWERefuseExecGain|MDWENoInherit) != 0 || (b&MDWENoInherit != 0 && b&MDWERefuseExecGain == 0) {
		return unix.EINVAL
	}
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	if mm.mdwe != 0 && mm.mdwe != b {
		return unix.EPERM
	}
	mm.mdwe = b
	return nil
}

// GetMDWE is prctl(PR_GET_MDWE, arg2, arg3, arg4, arg5): the MDWE bits, or
// EINVAL for non-zero arguments.
func (mm *MemoryManager) GetMDWE(arg2, arg3, arg4, arg5 uint64) (MDWE, error) {
	if arg2 != 0 || arg3 != 0 || arg4 != 0 || arg5 != 0 {
		return 0, unix.EINVAL
	}
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	return mm.mdwe, nil
}

// InheritMDWE gives mm (the image an exec makes) the MDWE state that an
// exec by a process with address space from passes on: from's, unless it
// has PR_MDWE_NO_INHERIT.
func (mm *MemoryManager) InheritMDWE(from *MemoryManager) {
	from.mappingMu.RLock()
	b := from.mdwe.inherited()
	from.mappingMu.RUnlock()
	mm.mappingMu.Lock()
	mm.mdwe = b
	mm.mappingMu.Unlock()
}

// inherited is the state a child or new image gets.
func (b MDWE) inherited() MDWE {
	if b&MDWENoInherit != 0 {
		return 0
	}
	return b
}

// denyWriteExecLocked reports whether MDWE refuses a vma whose permissions
// change from old to perms (old == perms for a new mapping): with MDWE, an
// executable vma must not be writable, and only a vma that is already
// executable may stay so. Preconditions: mappingMu held.
func (mm *MemoryManager) denyWriteExecLocked(old, perms hostarch.AccessType) bool {
	if mm.mdwe&MDWERefuseExecGain == 0 || !perms.Execute {
		return false
	}
	return perms.Write || !old.Execute
}
