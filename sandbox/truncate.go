package sandbox

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// Truncation of mapped host files.
//
// The host kernel truncates files for the program (ftruncate, truncate,
// open with O_TRUNC, creat, fallocate's COLLAPSE_RANGE and INSERT_RANGE),
// and Linux's truncate_pagecache then unmaps the pages from the new end on
// from every mapping of the file, private copy-on-write copies included,
// so that the next access faults and, past the end, gets SIGBUS. The host
// does that for the host mappings of the file, but the private copies of a
// directly mapped host file are memory-file pages that only vmspace knows
// to belong to the file. So these calls, when they name a host file that
// the sandbox's table holds, run to their exit-stop, and if they
// succeeded, the table invalidates every mapping of the file from the
// truncation point on (hostfile.Table.HostTruncated). Truncations by
// processes outside the sandbox are seen through inotify and applied the
// same way between two stops (outside.go).

// Flags of fallocate that move the file's contents (truncate_pagecache
// from the offset).
const (
	fallocCollapseRange = 0x08
	fallocInsertRange   = 0x20
)

// watchTruncation is called at the entry of a system call that the host
// will run for t. If the call may truncate a host file the sandbox has
// mapped, it makes t stop at the call's exit, where truncated invalidates
// the file's mappings past the truncation point if the call succeeded.
func (s *Sandbox) watchTruncation(t *task, nr int, a [6]uint64) {
	p := t.p
	var name string
	from := ^uint64(0) // the host file's end, whatever it is then
	switch nr {
	case unix.SYS_FTRUNCATE:
		name = fmt.Sprintf("/proc/%d/fd/%d", p.pid, int32(a[0]))
	case unix.SYS_FALLOCATE:
		if mode := uint32(a[1]); mode != fallocCollapseRange && mode != fallocInsertRange {
			return
		}
		name = fmt.Sprintf("/proc/%d/fd/%d", p.pid, int32(a[0]))
		from = a[2]
	case unix.SYS_TRUNCATE:
		name = s.programPath(t, unix.AT_FDCWD, a[0])
	case unix.SYS_CREAT:
		name = s.programPath(t, unix.AT_FDCWD, a[0])
	case unix.SYS_OPEN:
		if a[1]&unix.O_TRUNC != 0 {
			name = s.programPath(t, unix.AT_FDCWD, a[0])
		}
	case unix.SYS_OPENAT:
		if a[2]&unix.O_TRUNC != 0 {
			name = s.programPath(t, int32(a[0]), a[1])
		}
	case unix.SYS_OPENAT2:
		var how [8]byte
		if p.mm != nil && a[2] != 0 {
			if n, _ := p.mm.CopyIn(s.ctx, hostarch.Addr(a[2]), how[:], mm.IOOpts{}); n == len(how) &&
				binary.LittleEndian.Uint64(how[:])&unix.O_TRUNC != 0 {
				name = s.programPath(t, int32(a[0]), a[1])
			}
		}
	}
	if name == "" {
		return
	}
	var st unix.Stat_t
	if unix.Stat(name, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || !s.files.Has(uint64(st.Dev), st.Ino) {
		return
	}
	dev, ino := uint64(st.Dev), st.Ino
	t.atExit = func(t *task) { s.truncated(t, dev, ino, from) }
}

// truncated is called at the exit of a system call that watchTruncation
// watched: if it succeeded, the mappings of the host file (dev, ino) from
// offset from on, or from its end, lose their pages.
func (s *Sandbox) truncated(t *task, dev, ino, from uint64) {
	if s.fetchRegs(t) != nil {
		return
	}
	if _, bad := errnoOf(uintptr(t.regs.Rax)); bad {
		return
	}
	s.files.HostTruncated(dev, ino, from)
	s.outside.resync(dev, ino) // applied: no late low-water mark (outside.go)
}

// programPath returns the host path, for vmspace, of the path at pathp in
// t's memory as t would resolve it relative to dirfd, or "" if it cannot
// be read.
func (s *Sandbox) programPath(t *task, dirfd int32, pathp uint64) string {
	p := t.p
	if p.mm == nil || pathp == 0 {
		return ""
	}
	buf := make([]byte, unix.PathMax)
	n, _ := p.mm.CopyIn(s.ctx, hostarch.Addr(pathp), buf, mm.IOOpts{})
	path, _, ok := strings.Cut(string(buf[:n]), "\x00")
	if !ok || path == "" {
		return ""
	}
	for _, r := range []struct{ from, to string }{
		{"/proc/self/", fmt.Sprintf("/proc/%d/", p.pid)},
		{"/proc/thread-self/", fmt.Sprintf("/proc/%d/task/%d/", p.pid, t.tid)},
	} {
		if rest, ok := strings.CutPrefix(path, r.from); ok {
			return r.to + rest
		}
	}
	switch {
	case strings.HasPrefix(path, "/"):
		return fmt.Sprintf("/proc/%d/root%s", p.pid, path)
	case dirfd == unix.AT_FDCWD:
		return fmt.Sprintf("/proc/%d/cwd/%s", p.pid, path)
	default:
		return fmt.Sprintf("/proc/%d/fd/%d/%s", p.pid, dirfd, path)
	}
}
