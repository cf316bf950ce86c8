package hostfile

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/internal/lockrank"
)

// Descriptors kept aside.
//
// A directly mapped host file needs a host descriptor for as long as it is
// mapped, but a process has only RLIMIT_NOFILE descriptor numbers, and a
// program under vmspace may map more files than that (natively it closes
// each descriptor after mmap). So the Files of a direct Table keep their
// descriptors outside vmspace's file table: in the tables of keeper
// threads. A keeper is an OS thread, locked to its goroutine, that has
// unshared its file table (CLONE_FILES) and holds nothing else; each
// table has RLIMIT_NOFILE numbers of its own, and a new keeper starts when
// the others are full. A kept descriptor is used through a duplicate taken
// for the moment (pidfd_getfd of the keeper's thread pidfd), and opened by
// other processes (the program's, to map the file) through
// /proc/PID/task/TID/fd/N, with the same access checks as vmspace's own
// descriptors. A keeper is never the thread-group leader, whose table is
// the one /proc/PID/fd and a process pidfd name.

// keeper is one keeper thread.
type keeper struct {
	// tid is the keeper's thread id. Immutable.
	tid int
	// pidfd is a pidfd (PIDFD_THREAD) of the keeper thread, in vmspace's
	// table. Immutable.
	pidfd int
	// reqs carries requests to the keeper's goroutine. Immutable.
	reqs chan keeperReq

	// full is set when the keeper's table has no free number left, and
	// cleared when one of its descriptors is closed. Guarded by
	// keepers.mu.
	full bool
}

// keeperReq is a request to a keeper: adopt descriptor fd of vmspace's
// table (reply: the number in the keeper's table, or an error), or, if
// adopt is false, close fd of the keeper's table.
type keeperReq struct {
	adopt bool
	fd    int
	reply chan keeperReply
}

type keeperReply struct {
	n   int
	err error
}

// keptFD is a descriptor in a keeper's table.
type keptFD struct {
	k *keeper
	n int
}

// pidfdThread is PIDFD_THREAD (Linux 6.9): a pidfd of one thread.
const pidfdThread = unix.O_EXCL

// keepers are the keeper threads of the process.
var keepers struct {
	// mu guards the fields below and every keeper's full.
	mu lockrank.Mutex[lockrank.KeepersTag]
	// all are the keepers started, oldest first.
	all []*keeper
	// broken is set if keepers cannot work on this host (no
	// PIDFD_THREAD, no pidfd_getfd): descriptors are then kept in
	// vmspace's own table.
	broken bool
}

// errKeeperFull is a keeper's reply when its table is full.
var errKeeperFull = errors.New("hostfile: keeper's file table is full")

// keep moves descriptor fd of vmspace's table into a keeper's table and
// returns it there; fd itself stays open (the caller closes it). It fails
// with errors.ErrUnsupported if keepers cannot work on this host.
func keep(fd int) (keptFD, error) {
	keepers.mu.Lock()
	defer keepers.mu.Unlock()
	if keepers.broken {
		return keptFD{}, errors.ErrUnsupported
	}
	for {
		var k *keeper
		for _, c := range keepers.all {
			if !c.full {
				k = c
				break
			}
		}
		fresh := k == nil
		if fresh {
			var err error
			if k, err = startKeeper(); err != nil {
				keepers.broken = true
				return keptFD{}, errors.Join(errors.ErrUnsupported, err)
			}
			keepers.all = append(keepers.all, k)
		}
		r := k.do(keeperReq{adopt: true, fd: fd})
		if r.err == nil {
			return keptFD{k: k, n: r.n}, nil
		}
		if !errors.Is(r.err, errKeeperFull) {
			return keptFD{}, r.err
		}
		k.full = true
		if fresh {
			return keptFD{}, fmt.Errorf("hostfile: keeping descriptor %d: %w", fd, unix.EMFILE)
		}
	}
}

// do sends r to k and waits for the reply.
func (k *keeper) do(r keeperReq) keeperReply {
	r.reply = make(chan keeperReply, 1)
	k.reqs <- r
	return <-r.reply
}

// startKeeper starts a keeper thread. Preconditions: keepers.mu held.
func startKeeper() (*keeper, error) {
	type started struct {
		tid int
		err error
	}
	ready := make(chan started, 1)
	reqs := make(chan keeperReq)
	// serve runs on a locked thread that is not the leader: it makes the
	// thread a keeper and serves requests until reqs is closed. It never
	// unlocks the thread, which dies with the goroutine, and its table
	// with it.
	serve := func() {
		if err := unix.Unshare(unix.CLONE_FILES); err != nil {
			ready <- started{err: fmt.Errorf("hostfile: unshare(CLONE_FILES): %w", err)}
			return
		}
		// The table is a copy of vmspace's: keep only a pidfd of the
		// process, through which descriptors are adopted.
		own, err := unix.PidfdOpen(os.Getpid(), 0)
		if err != nil {
			ready <- started{err: fmt.Errorf("hostfile: pidfd_open in a keeper: %w", err)}
			return
		}
		if own > 0 {
			unix.CloseRange(0, uint(own-1), 0)
		}
		unix.CloseRange(uint(own+1), ^uint(0), 0)
		ready <- started{tid: unix.Gettid()}
		for r := range reqs {
			if !r.adopt {
				unix.Close(r.fd)
				r.reply <- keeperReply{}
				continue
			}
			n, err := unix.PidfdGetfd(own, r.fd, 0)
			switch {
			case err == unix.EMFILE:
				r.reply <- keeperReply{err: errKeeperFull}
			case err != nil:
				r.reply <- keeperReply{err: fmt.Errorf("hostfile: keeping descriptor %d: %w", r.fd, err)}
			default:
				r.reply <- keeperReply{n: n}
			}
		}
	}
	var start func()
	start = func() {
		runtime.LockOSThread()
		if unix.Gettid() != os.Getpid() {
			serve()
			return
		}
		// The leader: start again elsewhere (the new goroutine cannot
		// get this thread while it is locked here), then give the
		// leader back.
		go start()
		runtime.UnlockOSThread()
	}
	go start()
	st := <-ready
	if st.err != nil {
		return nil, st.err
	}
	pidfd, err := unix.PidfdOpen(st.tid, pidfdThread)
	if err != nil {
		close(reqs)
		return nil, fmt.Errorf("hostfile: pidfd_open(keeper %d, PIDFD_THREAD): %w", st.tid, err)
	}
	k := &keeper{tid: st.tid, pidfd: pidfd, reqs: reqs}
	// Check that a kept descriptor can be used.
	probe := keeperReq{adopt: true, fd: pidfd}
	r := k.do(probe)
	if r.err != nil {
		close(reqs)
		unix.Close(pidfd)
		return nil, r.err
	}
	kf := keptFD{k: k, n: r.n}
	dup, err := kf.get()
	k.do(keeperReq{fd: r.n})
	if err != nil {
		close(reqs)
		unix.Close(pidfd)
		return nil, err
	}
	unix.Close(dup)
	return k, nil
}

// get returns a duplicate, in vmspace's table, of the kept descriptor; the
// caller closes it.
func (kf keptFD) get() (int, error) {
	fd, err := unix.PidfdGetfd(kf.k.pidfd, kf.n, 0)
	if err != nil {
		return -1, fmt.Errorf("hostfile: taking kept descriptor %d: %w", kf.n, err)
	}
	return fd, nil
}

// close closes the kept descriptor.
func (kf keptFD) close() {
	kf.k.do(keeperReq{fd: kf.n})
	keepers.mu.Lock()
	kf.k.full = false
	keepers.mu.Unlock()
}

// path returns a path through which the kept descriptor's file can be
// opened.
func (kf keptFD) path() string {
	return fmt.Sprintf("/proc/%d/task/%d/fd/%d", os.Getpid(), kf.k.tid, kf.n)
}

// hostDesc is a host descriptor of a File: its own, in vmspace's table (fd
// >= 0), or one kept aside (kept.k != nil), or neither.
type hostDesc struct {
	fd   int
	kept keptFD
}

// open reports whether d is a descriptor.
func (d hostDesc) open() bool { return d.fd >= 0 || d.kept.k != nil }

// path returns a path through which vmspace can open or read the link of
// d's file.
func (d hostDesc) path() string {
	if d.fd >= 0 {
		return fmt.Sprintf("/proc/self/fd/%d", d.fd)
	}
	return d.kept.path()
}

// procPath returns a path through which another process can open d's
// file.
func (d hostDesc) procPath() string {
	if d.fd >= 0 {
		return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), d.fd)
	}
	return d.kept.path()
}

// use returns a descriptor of d's file in vmspace's table, and a function
// to call when done with it.
func (d hostDesc) use() (int, func(), error) {
	switch {
	case d.fd >= 0:
		return d.fd, func() {}, nil
	case d.kept.k != nil:
		fd, err := d.kept.get()
		if err != nil {
			return -1, nil, err
		}
		return fd, func() { unix.Close(fd) }, nil
	}
	return -1, nil, unix.EBADF
}

// close closes d.
func (d hostDesc) close() {
	switch {
	case d.fd >= 0:
		unix.Close(d.fd)
	case d.kept.k != nil:
		d.kept.close()
	}
}

// descLocked returns f's descriptor. Preconditions: dataMu held.
func (f *File) descLocked() hostDesc { return hostDesc{fd: f.fd, kept: f.kept} }

// useFDLocked returns a descriptor of f's host file in vmspace's table,
// and a function to call once done with it: f's own, or a duplicate of the
// one kept aside. Preconditions: dataMu held.
func (f *File) useFDLocked() (int, func(), error) {
	fd, done, err := f.descLocked().use()
	if err != nil {
		return -1, nil, fmt.Errorf("hostfile: descriptor of %q: %w", f.name, err)
	}
	return fd, done, nil
}

// closeFDsLocked closes f's descriptor and the retired ones.
// Preconditions: dataMu held for writing.
func (f *File) closeFDsLocked() {
	f.descLocked().close()
	for _, d := range f.retired {
		d.close()
	}
	f.fd, f.kept, f.retired = -1, keptFD{}, nil
}

// keepAside moves f's own descriptor into a keeper's table if keepers
// work on this host (else f keeps it). Preconditions: f is not shared yet.
func (f *File) keepAside() {
	d := aside(f.fd)
	f.fd, f.kept = d.fd, d.kept
}

// aside returns descriptor fd of vmspace's table as a descriptor kept
// aside, closing fd, if keepers work on this host; else fd itself.
func aside(fd int) hostDesc {
	if fd < 0 {
		return hostDesc{fd: fd}
	}
	kf, err := keep(fd)
	if err != nil {
		return hostDesc{fd: fd}
	}
	unix.Close(fd)
	return hostDesc{fd: -1, kept: kf}
}
