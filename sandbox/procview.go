package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// Views of managed processes' memory through /proc.
//
// The host kernel knows a managed process's memory only as vmspace maps it
// (shared mappings of the memory file, made as late as possible), so its
// /proc/PID/maps, smaps, pagemap, mem, ... would describe the stub, not
// the program's memory. vmspace serves those files itself: an open of one
// of them (by any path: /proc/self, /proc/thread-self, /proc/PID,
// /proc/PID/task/TID, relative to a directory descriptor) runs on the host
// as usual, so that its errors are Linux's, and stops at its exit
// (watchProcOpen), where the descriptor the kernel returned names the file
// it opened (its /proc/PID/fd link). If that is one of the files below of a
// process the sandbox manages, vmspace replaces the descriptor, at the same
// number and with the same flags, by one of a memfd of its own (a view),
// and remembers the memfd's inode (Sandbox.views). Every read, write or
// ioctl with a buffer already stops for the tracer (seccomp.go), and
// finds out from the descriptor's inode whether it is a view: nothing
// needs to follow descriptors through dup, fork, exec or close.
//
//   - Text views (maps, smaps, smaps_rollup, numa_maps, status, statm)
//     hold their text in the memfd, which the host reads: vmspace writes
//     it at the open and again before every read from offset 0, like
//     Linux's seq_file, which regenerates the text when a reader starts
//     over; later reads continue in that text. A read or pread returns
//     as much as Linux's seq_file would (whole records filling a page:
//     seqRead), by lowering its count before the host runs it; readv,
//     preadv and preadv2 (without flags) are served by vmspace
//     the same way, from the text (textReadv). status
//     is the host's with the Vm and Rss lines taken from the memory
//     manager.
//   - pagemap and mem are served entirely by vmspace: reads and writes at
//     the descriptor's position (or the call's), which the memfd keeps
//     (lseek works as on any file), are made through the memory
//     managers, and PAGEMAP_SCAN on pagemap and PROCMAP_QUERY on maps are
//     answered by vmspace.
//
// Like Linux's, the files that describe an address space (all but status
// and statm) keep describing the one the process had when they were
// opened: after that process execs or exits they read as empty.
//
// fstat, statx, fstatfs and readlink of a view's descriptor describe the
// host's /proc file (procview_stat.go). While views are remembered, every
// read, write, ioctl or stat of a descriptor that stops costs the tracer
// a host stat of the descriptor's link (viewOf); views whose descriptors
// are all closed are forgotten after a few hundred such checks.
//
// Limits: the views are not updated for reads that do not stop
// (sendfile, splice, copy_file_range with no offset pointer, io_uring).
// lseek with SEEK_SET or SEEK_CUR does not stop and runs on the memfd,
// which gives the values Linux's seq_lseek and mem_lseek give but for
// mem and pagemap positions of 2^63 and above ("negative"), which the
// memfd refuses with EINVAL where Linux's mem_lseek takes them (and a
// later read there is served from the memfd's position instead); lseek
// with SEEK_END, SEEK_DATA or SEEK_HOLE stops and fails with EINVAL as
// Linux's. Reopening a view's descriptor link (/proc/self/fd/N) opens the
// memfd again, which is the same view: its reads share one seq_file
// state, where Linux's reopen has its own (the counts read come out the
// same, as seqRead follows jumps).

// viewKind is which /proc file a view shows.
type viewKind uint8

const (
	viewMaps viewKind = iota + 1
	viewSmaps
	viewSmapsRollup
	viewNumaMaps
	viewStatus
	viewStatm
	viewPagemap
	viewMem
	// viewFdinfo is /proc/PID/fdinfo/N of a descriptor N that is a view.
	viewFdinfo
)

// viewNames are the /proc/PID files served as views.
var viewNames = map[string]viewKind{
	"maps": viewMaps, "smaps": viewSmaps, "smaps_rollup": viewSmapsRollup, "numa_maps": viewNumaMaps,
	"status": viewStatus, "statm": viewStatm, "pagemap": viewPagemap, "mem": viewMem,
}

// binary reports whether the kind is served by vmspace at every access.
func (k viewKind) binary() bool { return k == viewPagemap || k == viewMem }

// procView is one open /proc file of a managed process.
type procView struct {
	kind viewKind
	// m is the address space the file was opened on.
	m *mm.MemoryManager
	// pid and tid are the process and thread its path named (tid ==
	// pid for /proc/PID/...).
	pid, tid int
	// showPFN is whether the opener could see page frame numbers in
	// pagemap (CAP_SYS_ADMIN).
	showPFN bool
	// seq is the state of a text view's reads (seqRead).
	seq seqState
	// host is vmspace's O_PATH descriptor of the host's /proc file the
	// program opened (-1 if none), and path that file's path as its
	// descriptor link reads: what stat-like calls and readlink describe
	// (procview_stat.go).
	host int
	path string
	// fd is the descriptor of process pid whose fdinfo a viewFdinfo
	// view shows.
	fd int32
}

// seqState follows what Linux's seq_file would hold for a text view, so
// that each read returns as much as Linux's would: whole records (lines of
// maps, vma blocks of smaps, the whole text of status) filling a buffer of
// a page, or more for one larger record.
type seqState struct {
	// text is the text the memfd holds, and ends the end offsets of its
	// records.
	text []byte
	ends []int
	// pos is the position after the last read served, bufEnd the end of
	// what Linux's buffer holds (bytes from pos to bufEnd are pending).
	pos, bufEnd int64
	// bufSize is the size of Linux's buffer (a page, doubled for a
	// larger record, and kept).
	bufSize int
}

// viewKey identifies a view's memfd.
type viewKey struct{ dev, ino uint64 }

// procViews are the views of a sandbox. Like everything the Sandbox holds,
// they are used only by the tracer goroutine.
type procViews struct {
	// byFile maps a memfd's inode to its view.
	byFile map[viewKey]*procView
	// pruneAt is the size of byFile at which views no program descriptor
	// refers to any more are forgotten.
	pruneAt int
	// misses counts the descriptors found not to be views since the
	// last pruning, which pruneEvery of them start again (in
	// proportion to the pruning's own cost: the descriptors it
	// looked at).
	misses, pruneEvery int
}

// viewPruneEvery is the least pruneEvery.
const viewPruneEvery = 256

// viewPruneMin is the least pruneAt.
const viewPruneMin = 64

// watchProcOpen is called at the entry of a system call that the host
// will run for t: an open whose last path component names a file served
// as a view stops at its exit, where procOpened looks at what it opened.
func (s *Sandbox) watchProcOpen(t *task, nr int, a [6]uint64) {
	var pathp, flags uint64
	switch nr {
	case unix.SYS_OPEN:
		pathp, flags = a[0], a[1]
	case unix.SYS_OPENAT:
		pathp, flags = a[1], a[2]
	case unix.SYS_OPENAT2:
		w, ok := s.readWords(t, a[2], 1)
		if !ok {
			return
		}
		pathp, flags = a[1], w[0]
	default:
		return
	}
	if flags&unix.O_PATH != 0 || t.p.mm == nil || pathp == 0 {
		return
	}
	buf := make([]byte, unix.PathMax)
	n, _ := t.p.mm.CopyIn(s.ctx, hostarch.Addr(pathp), buf, mm.IOOpts{})
	path, _, ok := strings.Cut(string(buf[:n]), "\x00")
	if !ok {
		return
	}
	_, named := viewNames[path[strings.LastIndexByte(path, '/')+1:]]
	if !named && (len(s.views.byFile) == 0 || !strings.Contains(path, "fdinfo/")) {
		return
	}
	prev := t.atExit
	t.atExit = func(t *task) {
		if prev != nil {
			prev(t)
		}
		s.procOpened(t, flags)
	}
}

// procOpened is called at the exit of an open that watchProcOpen watched:
// if it opened a view's file of a managed process, the descriptor is
// replaced by a view.
func (s *Sandbox) procOpened(t *task, flags uint64) {
	if s.fetchRegs(t) != nil {
		return
	}
	if _, bad := errnoOf(uintptr(t.regs.Rax)); bad {
		return
	}
	fd := int(t.regs.Rax)
	link := fmt.Sprintf("/proc/%d/fd/%d", t.p.pid, fd)
	var sfs unix.Statfs_t
	if unix.Statfs(link, &sfs) != nil || sfs.Type != unix.PROC_SUPER_MAGIC {
		return
	}
	target, err := os.Readlink(link)
	if err != nil {
		return
	}
	kind, pid, tid, ok := parseViewPath(target)
	if !ok {
		s.fdinfoOpened(t, fd, flags, link, target)
		return
	}
	tt := s.tasks[tid]
	if tt != nil && pid == tid && tt.p.pid != pid && !strings.Contains(target, "/task/") {
		// /proc/TID/NAME of a thread other than its group's leader,
		// which Linux serves as /proc/PID/task/TID/NAME.
		pid = tt.p.pid
	}
	if tt == nil || tt.p.pid != pid || tt.p.mm == nil {
		return
	}
	v := &procView{kind: kind, m: tt.p.mm, pid: pid, tid: tid, path: target, host: openViewHost(link)}
	if kind == viewPagemap {
		v.showPFN = hasCapSysAdmin(t)
	}
	if err := s.installView(t, fd, flags, v); err != nil {
		v.forget()
		if debug {
			fmt.Fprintf(os.Stderr, "vmspace-debug: /proc view %s of %d: %v\n", target, pid, err)
		}
	}
}

// fdinfoOpened makes the descriptor fd, just opened at target (a /proc
// file), a view if target is /proc/PID/fdinfo/N (or
// /proc/PID/task/TID/fdinfo/N) of a descriptor N that is a view: its
// mnt_id and ino lines are then the /proc file's, not the memfd's.
func (s *Sandbox) fdinfoOpened(t *task, fd int, flags uint64, link, target string) {
	parts := strings.Split(strings.TrimPrefix(target, "/proc/"), "/")
	if len(parts) == 5 && parts[1] == "task" {
		parts = []string{parts[2], parts[3], parts[4]}
	}
	if len(parts) != 3 || parts[1] != "fdinfo" {
		return
	}
	tid, err1 := strconv.Atoi(parts[0])
	n, err2 := strconv.Atoi(parts[2])
	tt := s.tasks[tid]
	if err1 != nil || err2 != nil || tt == nil || tt.p.mm == nil || s.viewOf(tt, int32(n)) == nil {
		return
	}
	v := &procView{kind: viewFdinfo, m: tt.p.mm, pid: tt.p.pid, tid: tid, fd: int32(n), path: target, host: openViewHost(link)}
	if err := s.installView(t, fd, flags, v); err != nil {
		v.forget()
	}
}

// fdinfoText is the text of a viewFdinfo view: the host's fdinfo of the
// descriptor (its pos and flags are the memfd's, which follow the
// view's), with the mnt_id and ino of the /proc file it views.
func (s *Sandbox) fdinfoText(v *procView) []byte {
	host, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", v.pid, v.fd))
	tt := s.tasks[v.tid]
	if err != nil || tt == nil {
		return host
	}
	tv := s.viewOf(tt, v.fd)
	if tv == nil || tv.host < 0 {
		return host
	}
	var stx unix.Statx_t
	if unix.Statx(tv.host, "", unix.AT_EMPTY_PATH, unix.STATX_INO|unix.STATX_MNT_ID, &stx) != nil {
		return host
	}
	host = withStatusLine(host, "mnt_id", strconv.FormatUint(stx.Mnt_id, 10))
	return withStatusLine(host, "ino", strconv.FormatUint(stx.Ino, 10))
}

// parseViewPath parses the path of an open /proc file:
// /proc/PID/NAME or /proc/PID/task/TID/NAME.
func parseViewPath(path string) (kind viewKind, pid, tid int, ok bool) {
	rest, ok := strings.CutPrefix(path, "/proc/")
	if !ok {
		return 0, 0, 0, false
	}
	parts := strings.Split(rest, "/")
	var err error
	switch {
	case len(parts) == 2:
		pid, err = strconv.Atoi(parts[0])
		tid = pid
	case len(parts) == 4 && parts[1] == "task":
		pid, err = strconv.Atoi(parts[0])
		if err == nil {
			tid, err = strconv.Atoi(parts[2])
		}
	default:
		return 0, 0, 0, false
	}
	kind = viewNames[parts[len(parts)-1]]
	if err != nil || kind == 0 || pid <= 0 || tid <= 0 {
		return 0, 0, 0, false
	}
	return kind, pid, tid, true
}

// hasCapSysAdmin reports whether t has CAP_SYS_ADMIN in effect.
func hasCapSysAdmin(t *task) bool {
	caps, ok := effectiveCaps(fmt.Sprintf("/proc/%d/task/%d/status", t.p.pid, t.tid))
	return ok && caps&(1<<unix.CAP_SYS_ADMIN) != 0
}

// installView puts a view's memfd at descriptor fd of t's process, in
// place of the host file the program opened with flags.
func (s *Sandbox) installView(t *task, fd int, flags uint64, v *procView) error {
	mfd, err := unix.MemfdCreate("vmspace-proc-view", unix.MFD_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	var st unix.Stat_t
	if err := unix.Fstat(mfd, &st); err != nil {
		return err
	}
	if !v.kind.binary() {
		v.setText(s.viewText(v))
		if _, err := unix.Pwrite(mfd, v.seq.text, 0); err != nil {
			return err
		}
	}
	open := int(flags)&(unix.O_ACCMODE|unix.O_NONBLOCK|unix.O_APPEND) | unix.O_CLOEXEC
	nfd, err := s.openIn(t, fmt.Sprintf("/proc/%d/fd/%d", s.selfPid, mfd), open)
	if err != nil {
		return err
	}
	dflags := uintptr(0)
	if flags&unix.O_CLOEXEC != 0 {
		dflags = unix.O_CLOEXEC
	}
	r, err := s.inject(t, unix.SYS_DUP3, uintptr(nfd), uintptr(fd), dflags)
	s.closeIn(t, nfd)
	if err != nil {
		return err
	}
	if e, bad := errnoOf(r); bad {
		return e
	}
	vs := &s.views
	if vs.byFile == nil {
		vs.byFile = make(map[viewKey]*procView)
		vs.pruneAt = viewPruneMin
	}
	vs.byFile[viewKey{uint64(st.Dev), st.Ino}] = v
	if len(vs.byFile) >= vs.pruneAt {
		s.pruneViews()
	}
	return nil
}

// pruneViews forgets the views that no descriptor of a managed process
// refers to any more.
func (s *Sandbox) pruneViews() {
	vs := &s.views
	vs.misses = 0
	live := make(map[viewKey]bool)
	examined := 0
	for _, p := range s.procs {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid))
		if err != nil {
			// Cannot tell: keep everything.
			vs.pruneAt = 2 * len(vs.byFile)
			return
		}
		examined += len(ents)
		for _, e := range ents {
			var st unix.Stat_t
			if unix.Stat(fmt.Sprintf("/proc/%d/fd/%s", p.pid, e.Name()), &st) == nil {
				live[viewKey{uint64(st.Dev), st.Ino}] = true
			}
		}
	}
	for k, v := range vs.byFile {
		if !live[k] {
			v.forget()
			delete(vs.byFile, k)
		}
	}
	vs.pruneAt = max(viewPruneMin, 2*len(vs.byFile))
	vs.pruneEvery = max(viewPruneEvery, 4*examined)
}

// viewOf returns the view that descriptor fd of t's process holds, or nil.
func (s *Sandbox) viewOf(t *task, fd int32) *procView {
	if fd < 0 || len(s.views.byFile) == 0 {
		return nil
	}
	var st unix.Stat_t
	if unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", t.p.pid, fd), &st) != nil {
		return nil
	}
	vs := &s.views
	v := vs.byFile[viewKey{uint64(st.Dev), st.Ino}]
	if v == nil {
		// This check costs every read, write or stat of any
		// descriptor while views are remembered: forget closed ones
		// soon (programs open /proc/self/maps once and close it).
		if vs.misses++; vs.misses >= max(vs.pruneEvery, viewPruneEvery) {
			s.pruneViews()
		}
	}
	return v
}

// viewCall serves system call nr if it reads, writes or controls a view;
// ok is false if it does not concern a view.
func (s *Sandbox) viewCall(t *task, nr int, a [6]uint64) (res sysResult, ok bool) {
	if len(s.views.byFile) == 0 {
		return sysResult{}, false
	}
	if res, ok := s.viewStatCall(t, nr, a); ok {
		return res, true
	}
	switch nr {
	case unix.SYS_READ, unix.SYS_PREAD64, unix.SYS_READV, unix.SYS_PREADV, unix.SYS_PREADV2,
		unix.SYS_WRITE, unix.SYS_PWRITE64, unix.SYS_WRITEV, unix.SYS_PWRITEV, unix.SYS_PWRITEV2,
		unix.SYS_IOCTL, unix.SYS_LSEEK:
	default:
		return sysResult{}, false
	}
	v := s.viewOf(t, int32(a[0]))
	if v == nil || t.p.mm == nil {
		return sysResult{}, false
	}
	fd := int(int32(a[0]))
	if nr == unix.SYS_LSEEK {
		// Linux's mem_lseek and seq_lseek know only SEEK_SET and
		// SEEK_CUR (the filter stops the others).
		if w := int(int32(a[2])); w != unix.SEEK_SET && w != unix.SEEK_CUR {
			return retErr(unix.EINVAL), true
		}
		return pass(), true
	}
	if nr == unix.SYS_IOCTL {
		switch {
		case v.kind == viewMaps && uint32(a[1]) == procmapQuery:
			return s.procmapQuery(t, v, a[2]), true
		case v.kind == viewPagemap && uint32(a[1]) == pagemapScan:
			return s.pagemapScan(t, v, a[2]), true
		}
		return pass(), true
	}
	if v.kind.binary() {
		return s.viewIO(t, nr, a, v), true
	}
	// A text view: regenerated by a read from offset 0.
	var off int64
	switch nr {
	case unix.SYS_PREAD64, unix.SYS_PREADV:
		off = int64(a[3])
	case unix.SYS_PREADV2:
		off = int64(a[3])
		if off == -1 {
			off = s.viewPos(t, fd)
		}
	case unix.SYS_READ, unix.SYS_READV:
		off = s.viewPos(t, fd)
	default:
		return pass(), true
	}
	if off == 0 {
		s.refreshView(t, fd, v)
	}
	if nr == unix.SYS_READ || nr == unix.SYS_PREAD64 {
		// Return what Linux's read would: whole records, a buffer
		// at a time.
		if n := v.seqRead(off, a[2]); n != a[2] && off >= 0 {
			t.regs.Rdx = n
			if ptraceSetRegs(t.tid, &t.regs) != nil {
				return sysResult{act: actDone}, true
			}
		}
	} else if nr != unix.SYS_PREADV2 || a[5] == 0 {
		return s.textReadv(t, nr, a, v, off), true
	} else {
		// preadv2 with flags: the host's answer, not followed (the next
		// read starts over).
		v.seq.pos = -1
	}
	return pass(), true
}

// viewPos returns the position of descriptor fd of t's process, or -1.
func (s *Sandbox) viewPos(t *task, fd int) int64 {
	hfd, err := s.getFD(t.p, fd)
	if err != nil {
		return -1
	}
	defer unix.Close(hfd)
	off, err := unix.Seek(hfd, 0, unix.SEEK_CUR)
	if err != nil {
		return -1
	}
	return off
}

// refreshView writes the present text of v into the memfd at descriptor fd
// of t's process.
func (s *Sandbox) refreshView(t *task, fd int, v *procView) {
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/%d", t.p.pid, fd), os.O_RDWR|os.O_TRUNC, 0)
	if err != nil {
		return
	}
	defer f.Close()
	v.setText(s.viewText(v))
	f.WriteAt(v.seq.text, 0)
}

// setText makes text the view's text, read from its start.
func (v *procView) setText(text []byte) {
	q := &v.seq
	q.text, q.ends, q.pos, q.bufEnd = text, nil, 0, 0
	if q.bufSize == 0 {
		q.bufSize = hostarch.PageSize
	}
	switch v.kind {
	case viewMaps, viewNumaMaps, viewSmaps:
		// A record per line, or per vma block of smaps (which starts
		// with the vma's maps line, the only line starting with a
		// hexadecimal digit).
		for i := 0; i < len(text); {
			j := bytes.IndexByte(text[i:], '\n')
			if j < 0 {
				j = len(text) - i - 1
			}
			next := i + j + 1
			if v.kind == viewSmaps {
				for next < len(text) && !isHexDigit(text[next]) {
					k := bytes.IndexByte(text[next:], '\n')
					if k < 0 {
						next = len(text)
						break
					}
					next += k + 1
				}
			}
			q.ends = append(q.ends, next)
			i = next
		}
	default:
		if len(text) > 0 {
			q.ends = []int{len(text)}
		}
	}
}

func isHexDigit(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

// seqRead returns how many bytes a read of count bytes at offset off
// returns from Linux's seq_file holding the view's text, and updates the
// state as that read would.
func (v *procView) seqRead(off int64, count uint64) uint64 {
	q := &v.seq
	n := int64(len(q.text))
	if count == 0 || off < 0 {
		return 0
	}
	if off != q.pos {
		// A jump: Linux walks the records to off, and holds the rest
		// of the one containing it.
		q.bufEnd = off
		for _, e := range q.ends {
			if int64(e) > off {
				q.bufEnd = int64(e)
				break
			}
		}
	}
	var copied int64
	if pending := q.bufEnd - off; pending > 0 {
		copied = min(pending, int64(min(count, 1<<40)))
		if copied < pending {
			q.pos = off + copied
			return uint64(copied)
		}
	}
	at := off + copied
	if at >= n {
		q.pos, q.bufEnd = at, at
		return uint64(copied)
	}
	// Fill the buffer: the record at at (growing the buffer to hold
	// it), then more while they fit and the reader wants more.
	i := 0
	for i < len(q.ends) && int64(q.ends[i]) <= at {
		i++
	}
	total := int64(q.ends[i]) - at
	for int64(q.bufSize) <= total {
		q.bufSize *= 2
	}
	want := int64(min(count, 1<<40)) - copied
	for i+1 < len(q.ends) && total < want {
		r := int64(q.ends[i+1] - q.ends[i])
		if total+r >= int64(q.bufSize) {
			break
		}
		total += r
		i++
	}
	c := min(total, want)
	q.bufEnd = at + total
	q.pos = at + c
	return uint64(copied + c)
}

// viewText returns the present text of a text view.
func (s *Sandbox) viewText(v *procView) []byte {
	if v.kind == viewStatus || v.kind == viewStatm {
		// These follow the thread, whatever its address space is now.
		host, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/%s", v.pid, v.tid, map[viewKind]string{viewStatus: "status", viewStatm: "statm"}[v.kind]))
		if err != nil {
			return nil
		}
		tt := s.tasks[v.tid]
		if tt == nil || tt.p.mm == nil {
			return host
		}
		if v.kind == viewStatm {
			return []byte(tt.p.mm.StatmText())
		}
		text := mergeStatus(host, tt.p.mm.StatusText())
		if state := s.uffdTaskState(tt); state != "" {
			text = withStatusLine(text, "State", state)
		}
		return text
	}
	if v.kind == viewFdinfo {
		return s.fdinfoText(v)
	}
	m := v.m
	if m.Users() == 0 {
		return nil
	}
	switch v.kind {
	case viewMaps:
		return []byte(m.MapsText(s.ctx) + gateVMA().maps)
	case viewSmaps:
		return []byte(m.SmapsText(s.ctx) + gateVMA().smaps)
	case viewSmapsRollup:
		return []byte(m.SmapsRollupText(s.ctx))
	case viewNumaMaps:
		return []byte(m.NumaMapsText(s.ctx))
	}
	return nil
}

// mergeStatus returns the host's /proc/PID/status text with the lines that
// vm (the memory manager's Vm and Rss lines) has replaced.
func mergeStatus(host []byte, vm string) []byte {
	ours := make(map[string]string)
	var order []string
	for _, l := range strings.SplitAfter(vm, "\n") {
		if name, _, ok := strings.Cut(l, ":"); ok {
			ours[name] = l
			order = append(order, name)
		}
	}
	var out bytes.Buffer
	done := false
	sc := bufio.NewScanner(bytes.NewReader(host))
	for sc.Scan() {
		l := sc.Text()
		name, _, _ := strings.Cut(l, ":")
		if _, mine := ours[name]; mine {
			if !done {
				// All of ours where the host's first one was.
				for _, n := range order {
					out.WriteString(ours[n])
				}
				done = true
			}
			continue
		}
		out.WriteString(l)
		out.WriteByte('\n')
	}
	return out.Bytes()
}

// withStatusLine returns status text with the value of its line name
// replaced by value.
func withStatusLine(text []byte, name, value string) []byte {
	prefix := []byte(name + ":")
	var out bytes.Buffer
	for _, l := range bytes.SplitAfter(text, []byte("\n")) {
		if bytes.HasPrefix(l, prefix) {
			out.WriteString(name + ":\t" + value + "\n")
			continue
		}
		out.Write(l)
	}
	return out.Bytes()
}

// gateText is the host's gate vma ([vsyscall]), which Linux lists in maps
// and smaps after every vma of the address space.
type gateText struct{ maps, smaps string }

// gateVMA returns the host's gate vma lines (empty if it has none), read
// once from vmspace's own smaps.
var gateVMA = sync.OnceValue(func() gateText {
	g := gateText{}
	if b, err := os.ReadFile("/proc/self/smaps"); err == nil {
		if i := bytes.LastIndex(b, []byte("[vsyscall]\n")); i >= 0 {
			start := bytes.LastIndexByte(b[:i], '\n') + 1
			g.smaps = string(b[start:])
			g.maps = string(b[start : i+len("[vsyscall]\n")])
		}
	}
	return g
})

// textReadv serves a vectored read (readv, preadv, preadv2 without
// flags) of a text view at offset off as Linux does for its /proc files,
// which have a read and no read_iter: one read per iovec in turn
// (seqRead: whole records, a buffer at a time, what is left of a buffer
// first), until one comes back short. It copies the text into the iovecs
// and moves the descriptor's position unless the call gave one. (The
// host's read of the memfd would fill every iovec, cutting records.)
func (s *Sandbox) textReadv(t *task, nr int, a [6]uint64, v *procView, off int64) sysResult {
	hfd, fl, e := s.viewFD(t, a[0])
	if e != 0 {
		return retErr(e)
	}
	defer unix.Close(hfd)
	if fl&unix.O_ACCMODE == unix.O_WRONLY {
		return retErr(unix.EBADF)
	}
	segs, e := s.readIOVs(t, a[1], a[2])
	if e != 0 {
		return retErr(e)
	}
	if off < 0 {
		return retErr(unix.EINVAL)
	}
	text := v.seq.text
	var done uint64
	for _, seg := range segs {
		at := uint64(off) + done
		n := v.seqRead(int64(at), seg.Length())
		if n == 0 {
			if seg.Length() == 0 {
				continue
			}
			break
		}
		chunk := text[min(at, uint64(len(text))):min(uint64(len(text)), at+n)]
		c, err := t.p.mm.CopyOut(s.ctx, seg.Start, chunk, mm.IOOpts{})
		done += uint64(c)
		if err != nil || c < len(chunk) {
			v.seq.pos = -1 // Linux would keep the rest pending: start over
			if done == 0 {
				return retErr(unix.EFAULT)
			}
			break
		}
		if n < seg.Length() {
			break
		}
	}
	positional := nr == unix.SYS_PREADV || (nr == unix.SYS_PREADV2 && int64(a[3]) != -1)
	if !positional && done > 0 {
		unix.Seek(hfd, off+int64(done), unix.SEEK_SET)
	}
	return ret(uintptr(done))
}
