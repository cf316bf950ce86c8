package kernel

import (
	"context"
	"encoding/binary"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// The AIO system calls. io_setup and io_destroy are the manager's (the ring
// is a special mapping); requests are run at once, in the submitting
// thread, by an IORunner, and their events kept in the context for
// io_getevents.

// IOOp is what an AIO request does (Linux's IOCB_CMD_*).
type IOOp uint16

// The requests an IORunner runs.
const (
	IOPread   IOOp = 0
	IOPwrite  IOOp = 1
	IOFsync   IOOp = 2
	IOFdsync  IOOp = 3
	ioNoop    IOOp = 6
	IOPreadv  IOOp = 7
	IOPwritev IOOp = 8
)

// IORequest is one iocb's I/O: Buf and NBytes are the buffer (an iovec
// array and its length for IOPreadv and IOPwritev) in the submitter's
// memory.
type IORequest struct {
	Op     IOOp
	FD     int32
	Buf    uint64
	NBytes uint64
	Offset int64
}

// IORunner runs AIO requests for the submitting thread.
type IORunner interface {
	// RunIO runs req and returns its result (a count, or -errno), or
	// false if the submitter is gone (io_submit then stops, and its
	// result does not matter).
	RunIO(ctx context.Context, req IORequest) (int64, bool)
}

// IoSetup is io_setup(2) in m: nrEvents is a C unsigned, ctxp the address
// of the caller's context id, which must hold 0.
func IoSetup(ctx context.Context, m *mm.MemoryManager, nrEvents, ctxp uint64) error {
	cur, ok := readWords(ctx, m, ctxp, 1)
	if !ok {
		return unix.EFAULT
	}
	if cur[0] != 0 {
		return unix.EINVAL
	}
	id, err := IoSetupID(ctx, m, nrEvents)
	if err != nil {
		return err
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], id)
	if _, err := m.CopyOut(ctx, hostarch.Addr(ctxp), b[:], mm.IOOpts{}); err != nil {
		m.DestroyAIOContext(ctx, id)
		return unix.EFAULT
	}
	return nil
}

// IoSetupID is io_setup(2) in m once the caller's context id is read (and
// 0): it makes a context for nrEvents events and returns its id.
func IoSetupID(ctx context.Context, m *mm.MemoryManager, nrEvents uint64) (uint64, error) {
	if int32(nrEvents) <= 0 {
		return 0, unix.EINVAL
	}
	return m.NewAIOContext(ctx, uint32(nrEvents))
}

// IoDestroy is io_destroy(2) in m.
func IoDestroy(ctx context.Context, m *mm.MemoryManager, id uint64) error {
	if m.DestroyAIOContext(ctx, id) == nil {
		return unix.EINVAL
	}
	return nil
}

// IoSubmit is io_submit(2) in m: it runs each of the nr requests that
// iocbpp points to with run, and returns how many it took.
func IoSubmit(ctx context.Context, m *mm.MemoryManager, run IORunner, id, nr, iocbpp uint64) (uint64, error) {
	ac, ok := m.LookupAIOContext(ctx, id)
	if !ok {
		return 0, unix.EINVAL
	}
	n := int64(nr)
	if n < 0 {
		return 0, unix.EINVAL
	}
	done := int64(0)
	for ; done < n; done++ {
		ptr, ok := readWords(ctx, m, iocbpp+8*uint64(done), 1)
		if !ok {
			break
		}
		cb, ok := readWords(ctx, m, ptr[0], 8)
		if !ok {
			break
		}
		if !ac.Prepare() {
			if done == 0 {
				return 0, unix.EAGAIN
			}
			break
		}
		// struct iocb: data, key and rw_flags, opcode, reqprio and
		// fildes, buf, nbytes, offset, ...
		req := IORequest{
			Op:     IOOp(cb[2] & 0xffff),
			FD:     int32(uint32(cb[2] >> 32)),
			Buf:    cb[3],
			NBytes: cb[4],
			Offset: int64(cb[5]),
		}
		var res int64
		switch req.Op {
		case IOPread, IOPwrite, IOFsync, IOFdsync, IOPreadv, IOPwritev:
			var alive bool
			if res, alive = run.RunIO(ctx, req); !alive {
				return 0, unix.EINTR
			}
		case ioNoop:
		default:
			res = -int64(unix.EINVAL)
		}
		ac.FinishRequest([4]uint64{cb[0], ptr[0], uint64(res), 0})
	}
	if done == 0 && n > 0 {
		return 0, unix.EFAULT
	}
	return uint64(done), nil
}

// IoGetevents is io_getevents(2) and io_pgetevents(2) in m: it copies up to
// nr finished requests' events to events (without waiting: every request
// finished when it was submitted) and returns how many. If they cannot be
// written (EFAULT), they stay in the context, as Linux's stay in the ring.
func IoGetevents(ctx context.Context, m *mm.MemoryManager, id, minNr, nr, events uint64) (uint64, error) {
	ac, ok := m.LookupAIOContext(ctx, id)
	if !ok {
		return 0, unix.EINVAL
	}
	max := int64(nr)
	if int64(minNr) < 0 || max < int64(minNr) {
		return 0, unix.EINVAL
	}
	var b []byte
	for got := int64(0); got < max; got++ {
		d, ok := ac.PeekRequest(int(got))
		if !ok {
			break
		}
		for _, v := range d.([4]uint64) {
			b = binary.LittleEndian.AppendUint64(b, v)
		}
	}
	if len(b) == 0 {
		return 0, nil
	}
	if _, err := m.CopyOut(ctx, hostarch.Addr(events), b, mm.IOOpts{}); err != nil {
		return 0, unix.EFAULT
	}
	n := len(b) / 32
	for range n {
		ac.PopRequest()
	}
	return uint64(n), nil
}

// IoCancel is io_cancel(2): every request finished when it was submitted,
// so there is none to cancel.
func IoCancel(ctx context.Context, m *mm.MemoryManager, id, iocb, result uint64) error {
	return unix.EINVAL
}

// readWords reads n 8-byte words at addr in m.
func readWords(ctx context.Context, m *mm.MemoryManager, addr uint64, n int) ([]uint64, bool) {
	buf := make([]byte, 8*n)
	if _, err := m.CopyIn(ctx, hostarch.Addr(addr), buf, mm.IOOpts{}); err != nil {
		return nil, false
	}
	w := make([]uint64, n)
	for i := range w {
		w[i] = binary.LittleEndian.Uint64(buf[8*i:])
	}
	return w, true
}
