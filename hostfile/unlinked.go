package hostfile

import "golang.org/x/sys/unix"

// Unlinked implements memmap.Linked: whether f has no name left in any
// directory. For a host file that is the host's link count (st_nlink 0,
// read through f's own descriptor: an unlinked file, an O_TMPFILE one);
// memfds, shared anonymous memory and System V segments never have one.
// A host file whose descriptor is gone (released) or cannot be examined
// counts as linked.
func (f *File) Unlinked() bool {
	if f.kind != hostKind {
		return true
	}
	f.dataMu.RLock()
	defer f.dataMu.RUnlock()
	d := f.descLocked()
	if !d.open() {
		return false
	}
	var st unix.Stat_t
	if err := unix.Stat(d.path(), &st); err != nil {
		return false
	}
	return st.Nlink == 0
}
