package sandbox

import (
	"encoding/binary"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostfile"
)

// Truncations of mapped host files by processes outside the sandbox.
//
// truncate.go sees the program's own truncations at their system calls'
// exits. Another process's truncation is seen through inotify: every host
// file the program maps directly is watched for IN_MODIFY from its first
// mapping until its last one goes (hostfile.Table.SetMappedHook; a watch
// is a scarce resource, fs.inotify.max_user_watches), and a goroutine that
// reads the events compares the file's size with the one it last saw
// (every watched file's, when the event queue overflowed). It keeps the
// lowest size seen since the tracer last looked: Linux drops the private
// copies past a truncation's end at once, and a file that grows again
// afterwards reads zeros (or what was written) there, not the copies. A
// truncation that the file's regrowth hides before the goroutine's stat is
// not seen (inotify says only that the file changed).
// When a file shrank, the tracer must drop the private copies past the
// lowest end (hostfile.Table.HostTruncated) between two stops, as it does for the
// program's truncations; it may be blocked in wait4 for a long time (every
// task running or blocked in the host), so the goroutine interrupts that
// wait with wakeSignal, sent to the tracer thread alone, whose handler
// (the Go runtime's, which ignores it) vmspace installs without
// SA_RESTART: the wait fails with EINTR and the tracer applies the
// truncations (waitMain). The goroutine sends it again, with a growing
// pause, until the tracer has taken them (a signal that came just before
// the tracer went into wait4 interrupted nothing).
//
// The signal is sent only while the tracer is in waitMain (waiting, set
// and cleared under mu, the signal sent under mu): without SA_RESTART,
// any other blocking system call of the tracer thread would fail with
// EINTR too, and vmspace's own calls through golang.org/x/sys/unix are
// not made again on EINTR (those of os and of the Go runtime are). A
// signal sent while waiting is set is handled before the tracer gets past
// clearing it: the thread returns to user mode in between (from wait4,
// or from the futex of mu). Other threads never get the signal from
// vmspace (tgkill to the tracer thread); one sent to vmspace's process by
// another process may fail the blocking call of whichever thread takes it.

// wakeSignal is the real-time signal that interrupts the tracer's wait.
const wakeSignal = unix.Signal(60)

// outsideWatch watches the program's directly mapped host files for
// truncations by other processes.
type outsideWatch struct {
	// f is the inotify instance, nil if inotify is not available.
	// Immutable once started.
	f *os.File
	// table is the file table whose mapped files are watched.
	// Immutable once started.
	table *hostfile.Table
	// tid is the tracer thread's id. Immutable once started.
	tid int
	// mu protects the fields below.
	mu sync.Mutex
	// files are the watched files by watch descriptor.
	files map[int32]*watchedFile
	// watching holds the inodes watched, by (dev, ino).
	watching map[[2]uint64]int32
	// shrunk holds the inodes found shorter than before, for the
	// tracer to apply, each with the lowest size seen since the tracer
	// last took them.
	shrunk map[[2]uint64]int64
	// stopped is set once the tracer is done: no more wake-ups.
	stopped bool
	// waiting is set while the tracer is in waitMain's wait4, the only
	// time it may be sent wakeSignal.
	waiting bool
}

// watchedFile is one watched host file.
type watchedFile struct {
	// path reaches it (vmspace's descriptor's path); dev and ino
	// check that the path still does; size is its size when last seen.
	path     string
	dev, ino uint64
	size     int64
}

// outsideApplied, if not nil, is called by the tracer after it applied
// truncations made outside the sandbox (tests wait for it).
var outsideApplied func()

// outsideStarted, if not nil, is called with the watch once it started
// (tests).
var outsideStarted func(*outsideWatch)

// outsideNoted, if not nil, is called by the watching goroutine when it
// found the file at path shorter than before, size bytes long, before
// it wakes the tracer (tests).
var outsideNoted func(path string, size int64)

// start begins watching the mapped files of table, on the tracer thread
// (whose id the wake-ups target). Without inotify, outside truncations
// stay unseen.
func (w *outsideWatch) start(table *hostfile.Table) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return
	}
	var act kernelSigaction
	if rtSigaction(wakeSignal, nil, &act) != nil || act.handler <= 1 {
		unix.Close(fd)
		return
	}
	const saRestart = 0x10000000
	act.flags &^= saRestart
	if rtSigaction(wakeSignal, &act, nil) != nil {
		unix.Close(fd)
		return
	}
	w.tid = unix.Gettid()
	w.files = make(map[int32]*watchedFile)
	w.watching = make(map[[2]uint64]int32)
	w.shrunk = make(map[[2]uint64]int64)
	w.f = os.NewFile(uintptr(fd), "inotify")
	w.table = table
	table.SetMappedHook(func(dev, ino uint64, path string, mapped bool) {
		if mapped {
			w.watch(path)
		} else {
			w.unwatch(dev, ino)
		}
	})
	if outsideStarted != nil {
		outsideStarted(w)
	}
	go w.read()
}

// stop ends the watch.
func (w *outsideWatch) stop() {
	if w.f != nil {
		w.table.SetMappedHook(nil)
		w.mu.Lock()
		w.stopped = true
		w.mu.Unlock()
		w.f.Close()
	}
}

// watch watches the host file at path (vmspace's descriptor of a file
// the program maps directly), if not already.
func (w *outsideWatch) watch(path string) {
	if w.f == nil {
		return
	}
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return
	}
	key := [2]uint64{uint64(st.Dev), st.Ino}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.watching[key]; ok {
		return
	}
	rc, err := w.f.SyscallConn()
	if err != nil {
		return
	}
	wd := -1
	rc.Control(func(fd uintptr) {
		wd, err = unix.InotifyAddWatch(int(fd), path, unix.IN_MODIFY)
	})
	if err != nil || wd < 0 {
		return
	}
	if old := w.files[int32(wd)]; old != nil {
		delete(w.watching, [2]uint64{old.dev, old.ino})
	}
	w.files[int32(wd)] = &watchedFile{path: path, dev: key[0], ino: key[1], size: st.Size}
	w.watching[key] = int32(wd)
}

// read reads inotify's events until the watch is stopped, noting the
// files that shrank and waking the tracer.
func (w *outsideWatch) read() {
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return
		}
		if w.note(buf[:n]) {
			w.wake()
		}
	}
}

// unwatch stops watching the host inode (dev, ino), if watched: the
// program maps it no more.
func (w *outsideWatch) unwatch(dev, ino uint64) {
	w.withWatched(dev, ino, w.unwatchLocked)
}

// withWatched calls f, with w.mu held, with the key and watch descriptor
// of the host inode (dev, ino) if it is watched.
func (w *outsideWatch) withWatched(dev, ino uint64, f func(key [2]uint64, wd int32)) {
	if w.f == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	key := [2]uint64{dev, ino}
	if wd, ok := w.watching[key]; ok {
		f(key, wd)
	}
}

// unwatchLocked removes the watch wd of key. Preconditions: w.mu held.
func (w *outsideWatch) unwatchLocked(key [2]uint64, wd int32) {
	delete(w.watching, key)
	delete(w.files, wd)
	delete(w.shrunk, key) // no mapping left to drop copies from
	if rc, err := w.f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			unix.InotifyRmWatch(int(fd), uint32(wd))
		})
	}
}

// watched returns the number of files watched (tests).
func (w *outsideWatch) watched() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.watching)
}

// resync notes the size that the host inode (dev, ino) has now, after
// the tracer applied a truncation of it by the program: the shrink that
// the watch may see of it is applied already, and copies the program
// makes afterwards must not be dropped by a late low-water mark.
func (w *outsideWatch) resync(dev, ino uint64) {
	w.withWatched(dev, ino, func(key [2]uint64, wd int32) {
		f := w.files[wd]
		var st unix.Stat_t
		if f == nil || unix.Stat(f.path, &st) != nil || uint64(st.Dev) != f.dev || st.Ino != f.ino {
			return
		}
		f.size = st.Size
		delete(w.shrunk, key)
	})
}

// note handles events, and reports whether a file shrank.
func (w *outsideWatch) note(b []byte) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	shrank := false
	for len(b) >= unix.SizeofInotifyEvent {
		wd := int32(binary.LittleEndian.Uint32(b))
		mask := binary.LittleEndian.Uint32(b[4:])
		nameLen := int(binary.LittleEndian.Uint32(b[12:]))
		b = b[min(len(b), unix.SizeofInotifyEvent+nameLen):]
		if mask&unix.IN_Q_OVERFLOW != 0 {
			// Events were lost: any file may have shrunk.
			for _, f := range w.files {
				shrank = w.checkLocked(f) || shrank
			}
			continue
		}
		f := w.files[wd]
		if f == nil {
			continue
		}
		if mask&unix.IN_IGNORED != 0 {
			delete(w.files, wd)
			delete(w.watching, [2]uint64{f.dev, f.ino})
			continue
		}
		shrank = w.checkLocked(f) || shrank
	}
	return shrank
}

// checkLocked compares f's size with the one last seen, notes a shrink
// (with the lowest size seen) for the tracer, and reports it.
// Preconditions: w.mu held.
func (w *outsideWatch) checkLocked(f *watchedFile) bool {
	var st unix.Stat_t
	if unix.Stat(f.path, &st) != nil || uint64(st.Dev) != f.dev || st.Ino != f.ino {
		return false
	}
	shrank := st.Size < f.size
	if shrank {
		key := [2]uint64{f.dev, f.ino}
		if low, ok := w.shrunk[key]; !ok || st.Size < low {
			w.shrunk[key] = st.Size
		}
		if outsideNoted != nil {
			outsideNoted(f.path, st.Size)
		}
	}
	f.size = st.Size
	return shrank
}

// wake interrupts the tracer's wait until it has taken the shrunk files.
func (w *outsideWatch) wake() {
	pid := os.Getpid()
	for pause := 100 * time.Microsecond; ; pause = min(2*pause, 50*time.Millisecond) {
		w.mu.Lock()
		if len(w.shrunk) == 0 || w.stopped {
			w.mu.Unlock()
			return
		}
		if w.waiting && unix.Tgkill(pid, w.tid, wakeSignal) != nil {
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		time.Sleep(pause)
	}
}

// kick interrupts the tracer's wait once if it is in waitMain, for an
// event the main loop notices only between stops (a userfaultfd message
// read by the program, uffd.go). False if the watch cannot signal the
// tracer (no inotify here, or stopped): the caller then stops asking.
func (w *outsideWatch) kick() bool {
	if w.f == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return false
	}
	if w.waiting {
		unix.Tgkill(os.Getpid(), w.tid, wakeSignal)
	}
	return true
}

// shrink is an inode that shrank and the lowest size it had meanwhile.
type shrink struct {
	dev, ino uint64
	low      int64
}

// take returns the inodes that shrank since the last take.
func (w *outsideWatch) take() []shrink {
	if w.f == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []shrink
	for k, low := range w.shrunk {
		out = append(out, shrink{dev: k[0], ino: k[1], low: low})
		delete(w.shrunk, k)
	}
	return out
}

// applyOutside drops the mappings past the lowest end of every host file
// that a process outside the sandbox truncated, private copies included
// (tracer).
func (s *Sandbox) applyOutside() {
	shrinks := s.outside.take()
	if len(shrinks) == 0 {
		return
	}
	for _, k := range shrinks {
		s.files.HostTruncated(k.dev, k.ino, uint64(max(k.low, 0)))
	}
	s.keepUnflushedKernelAreas()
	s.shootdown()
	s.resumeBorrowed()
	if outsideApplied != nil {
		outsideApplied()
	}
}

// waitMain waits for the next state change of any task for the main loop.
// It fails with EINTR when woken to apply outside truncations: the loop
// applies them (which may keep reports in s.deferred) and serves the kept
// reports before it waits again. The fast path's lock is let go only
// around the wait4 itself: the tracer holds it whenever it acts.
func (s *Sandbox) waitMain() (int, unix.WaitStatus, error) {
	var ws unix.WaitStatus
	if !s.outside.enterWait() {
		return 0, 0, unix.EINTR // truncations came since the loop took them
	}
	s.fp.unlock() // the fast path's server may run meanwhile
	wpid, err := unix.Wait4(-1, &ws, unix.WALL|unix.WNOTHREAD, nil)
	s.outside.leaveWait()
	s.fp.lock()
	return wpid, ws, err
}

// enterWait notes that the tracer goes into waitMain's wait4, where it may
// be woken, unless truncations are waiting to be applied (false).
func (w *outsideWatch) enterWait() bool {
	if w.f == nil {
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.shrunk) > 0 {
		return false
	}
	w.waiting = true
	return true
}

// leaveWait notes that the tracer is out of waitMain's wait4: no signal is
// sent to it from then on.
func (w *outsideWatch) leaveWait() {
	if w.f == nil {
		return
	}
	w.mu.Lock()
	w.waiting = false
	w.mu.Unlock()
}
