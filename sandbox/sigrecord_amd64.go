package sandbox

import (
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Who sent vmspace its signals.
//
// os/signal says which signal came, never who sent it, and the forwarder
// must know it to tell a signal sent to vmspace alone (to pass on) from
// its copy of one sent to a whole process group that holds the program's
// processes too (which got their own). So, for the signals it forwards,
// the forwarder puts sigRecorder (sigrecord_amd64.s) in front of the Go
// runtime's handler: it appends each delivery's signal, si_code and si_pid
// to sigRing, then runs the runtime's handler as if it had been entered
// directly, which passes the signal on to os/signal's channels as
// before. Records are appended before the channel hears of the signal, so
// a forwarder woken by the channel finds the record in the ring.

// sigRingSize is the number of records sigRing holds (a power of two).
const sigRingSize = 256

// sigRing holds the records of the latest deliveries: slot i&(size-1)
// holds the record of the i-th, 0 once taken (or before it is written).
// sigRingHead counts the deliveries. The handler writes both (atomically:
// XADD and XCHG); the reader uses sync/atomic and the owner's lock.
var (
	sigRing     [sigRingSize]uint64
	sigRingHead uint64
)

// sigChain holds, per signal, the handler that sigRecorder replaced and
// jumps to. Written before sigRecorder is installed for the signal and
// never cleared (a delivery may still be running on another thread when
// the handler is put back), under recorderMu.
var sigChain [64]uintptr

// recorderMu protects recorderOwned and the installation of handlers.
var recorderMu sync.Mutex

// recorderOwned is set while a forwarder uses the ring: one at a time
// (two sandboxes running at once in one process would take each other's
// records; the second forwards without sender records).
var recorderOwned bool

// sigRecorder is the handler (assembly); its address is sigRecorderPC().
func sigRecorder()

// sigRecorderPC returns sigRecorder's entry address.
func sigRecorderPC() uintptr

// sigRecord is one delivery of a signal to vmspace.
type sigRecord struct {
	sig  unix.Signal
	from sender
}

// sender identifies who sent a signal: si_code and si_pid.
type sender struct {
	code int32
	pid  int32
}

// decode unpacks a ring slot: sig in bits 0-7, si_code's low 16 bits in
// 8-23, si_pid in 32-63.
func decodeRecord(v uint64) sigRecord {
	return sigRecord{
		sig:  unix.Signal(v & 0xff),
		from: sender{code: int32(int16(v >> 8)), pid: int32(v >> 32)},
	}
}

// saSiginfo is SA_SIGINFO.
const saSiginfo = 4

// recorder is a forwarder's hold on the ring: the signals it put
// sigRecorder in front of, and where it reads.
type recorder struct {
	// wrapped has a bit (1<<sig) for each signal recorded. Immutable.
	wrapped uint64
	// tail is the index of the next record to read. Owner's lock.
	tail uint64
}

// startRecorder puts sigRecorder in front of the Go runtime's handler of
// each of sigs that has one (os/signal's, installed by signal.Notify),
// and returns the hold, or nil if another forwarder holds the ring.
func startRecorder(sigs []unix.Signal) *recorder {
	recorderMu.Lock()
	defer recorderMu.Unlock()
	if recorderOwned {
		return nil
	}
	r := &recorder{tail: atomic.LoadUint64(&sigRingHead)}
	pc := sigRecorderPC()
	for _, sig := range sigs {
		var cur kernelSigaction
		if rtSigaction(sig, nil, &cur) != nil || cur.flags&saSiginfo == 0 || cur.handler <= 1 || cur.handler == pc {
			continue
		}
		atomic.StoreUintptr(&sigChain[sig], cur.handler)
		act := cur
		act.handler = pc
		if rtSigaction(sig, &act, nil) == nil {
			r.wrapped |= 1 << sig
		}
	}
	recorderOwned = true
	return r
}

// stop puts the runtime's handlers back (unless something replaced
// sigRecorder meanwhile) and gives up the ring.
func (r *recorder) stop() {
	recorderMu.Lock()
	defer recorderMu.Unlock()
	pc := sigRecorderPC()
	for sig := unix.Signal(1); sig < 64; sig++ {
		if r.wrapped&(1<<sig) == 0 {
			continue
		}
		var cur kernelSigaction
		if rtSigaction(sig, nil, &cur) != nil || cur.handler != pc {
			continue
		}
		cur.handler = atomic.LoadUintptr(&sigChain[sig])
		rtSigaction(sig, &cur, nil)
	}
	recorderOwned = false
}

// take returns the records appended since the last take, oldest first,
// and whether some were lost (overwritten before being read). It stops at
// a record being written (its slot still 0), to be read next time.
func (r *recorder) take() (recs []sigRecord, lost bool) {
	head := atomic.LoadUint64(&sigRingHead)
	if head-r.tail > sigRingSize {
		r.tail = head - sigRingSize
		lost = true
	}
	for ; r.tail != head; r.tail++ {
		v := atomic.SwapUint64(&sigRing[r.tail%sigRingSize], 0)
		if v == 0 {
			break
		}
		recs = append(recs, decodeRecord(v))
	}
	return recs, lost
}

// has reports whether a record of sig from from is in the ring, not yet
// taken.
func (r *recorder) has(sig unix.Signal, from sender) bool {
	head := atomic.LoadUint64(&sigRingHead)
	i := r.tail
	if head-i > sigRingSize {
		i = head - sigRingSize
	}
	for ; i != head; i++ {
		v := atomic.LoadUint64(&sigRing[i%sigRingSize])
		if v != 0 && decodeRecord(v) == (sigRecord{sig, from}) {
			return true
		}
	}
	return false
}
