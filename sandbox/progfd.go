package sandbox

import (
	"fmt"

	"github.com/vmspace/vmspace/hostarch"
	"golang.org/x/sys/unix"
)

// The host mappings of a file need a descriptor of it in the program's
// process, which mapFD opens there for the moment (an injected openat and
// close around the injected mmap). At a program's mmap of a file, the
// program's own descriptor, the one it passed to mmap, is that file: the
// host mappings made at that stop (eager population of small file
// mappings, as the dynamic loader's of a library's segments) use it
// instead, saving two injected calls a mapping.

// progFD is a descriptor of the program that mapFD may use for the host
// mappings of its file, made while it is set (withProgFD).
type progFD struct {
	// t is the task at whose stop the descriptor is lent. Immutable.
	t *task
	// fd is the program's descriptor. Immutable.
	fd int
	// dev and ino identify its file. Immutable.
	dev, ino uint64
}

// populateFileMap populates ar (for writing if write), a program's new
// mapping of its descriptor fd at file offset off, at the mmap's stop:
// the pages up to the file's end (past it the host would fail the whole
// population, and Linux raises SIGBUS there anyway), with the program's
// descriptor lent to mapFD.
func (s *Sandbox) populateFileMap(t *task, fd int32, off uint64, ar hostarch.AddrRange, write bool) {
	var st unix.Stat_t
	if fd < 0 || unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", t.p.pid, fd), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		s.populate(t.p, ar, write)
		return
	}
	size := uint64(st.Size)
	if off >= size {
		return
	}
	if n := pageUp(size - off); n < ar.Length() {
		ar.End = ar.Start + hostarch.Addr(n)
	}
	s.withProgFD(t, int(fd), &st, func() { s.populate(t.p, ar, write) })
}

// withProgFD runs fn (host mappings made at t's stop) with the program's
// descriptor fd, of the file st describes, lent to mapFD for read-only
// host mappings of its file. It lends it only while t is the only task of
// its process, so that no other thread can close or replace the
// descriptor meanwhile.
func (s *Sandbox) withProgFD(t *task, fd int, st *unix.Stat_t, fn func()) {
	if fd < 0 || len(t.p.tasks) != 1 || s.progFD != nil || t.p.memFDLent || (fd == s.memFDNum && t.p.memFDOurs) {
		fn()
		return
	}
	s.progFD = &progFD{t: t, fd: fd, dev: st.Dev, ino: st.Ino}
	defer func() { s.progFD = nil }()
	fn()
}

// lentFD returns the program's descriptor lent by withProgFD if it is the
// file that vmspace opens at proc (/proc/.../fd/N) and the host mapping
// needs no write access (the program's descriptor may be read-only; mmap
// of a file needs it readable).
func (s *Sandbox) lentFD(t *task, proc string, write bool) (int, bool) {
	l := s.progFD
	if l == nil || l.t != t || write {
		return -1, false
	}
	var st unix.Stat_t
	if unix.Stat(proc, &st) != nil || st.Dev != l.dev || st.Ino != l.ino {
		return -1, false
	}
	return l.fd, true
}
