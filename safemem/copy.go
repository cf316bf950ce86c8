package safemem

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"syscall"
)

// FaultError reports a host fault during a copy: Copy transferred Offset
// bytes, then touching the host address Addr raised Signal (SIGSEGV for an
// unmapped or protected page, SIGBUS for a file page past end-of-file).
type FaultError struct {
	// Signal is syscall.SIGSEGV or syscall.SIGBUS.
	Signal syscall.Signal
	// Addr is the host address of the first byte that could not be
	// accessed.
	Addr uintptr
	// Offset is the number of bytes transferred before the fault.
	Offset int
}

// Error implements error.
func (e *FaultError) Error() string {
	return fmt.Sprintf("safemem: %v at %#x after %d bytes", e.Signal, e.Addr, e.Offset)
}

// faultAddr is the interface of the runtime error raised by a fault while
// debug.SetPanicOnFault is on.
type faultAddr interface {
	runtime.Error
	Addr() uintptr
}

// guarded runs f with faults turned into a returned address instead of a
// crash. ok is false if f faulted at addr.
func guarded(f func()) (addr uintptr, ok bool) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			fa, isFault := r.(faultAddr)
			if !isFault {
				panic(r)
			}
			addr, ok = fa.Addr(), false
		}
	}()
	f()
	return 0, true
}

// Copy copies min(dst.Len(), src.Len()) bytes from src to dst and returns
// the number copied. If a host fault interrupts it, it returns the number
// of bytes copied before the faulting byte and a *FaultError.
func Copy(dst, src Block) (int, error) {
	n := min(dst.length, src.length)
	if n == 0 {
		return 0, nil
	}
	if !dst.needSafecopy && !src.needSafecopy {
		return copy(dst.ToSlice()[:n], src.ToSlice()[:n]), nil
	}
	d, s := dst.ToSlice()[:n], src.ToSlice()[:n]
	if addr, ok := guarded(func() { copy(d, s) }); !ok {
		return copyBytewise(d, s, addr)
	}
	return n, nil
}

// copyBytewise redoes a faulted copy byte by byte to find exactly how much
// can be copied, and reports the fault.
func copyBytewise(d, s []byte, faultAt uintptr) (int, error) {
	i := 0
	addr, ok := guarded(func() {
		for ; i < len(d); i++ {
			d[i] = s[i]
		}
	})
	if ok {
		// The fault did not recur (the mapping changed meanwhile).
		return len(d), nil
	}
	return i, &FaultError{Signal: classify(addr), Addr: addr, Offset: i}
}

// Zero sets every byte of dst to zero and returns how many it zeroed.
func Zero(dst Block) (int, error) {
	if dst.length == 0 {
		return 0, nil
	}
	d := dst.ToSlice()
	if !dst.needSafecopy {
		clear(d)
		return len(d), nil
	}
	if _, ok := guarded(func() { clear(d) }); ok {
		return len(d), nil
	}
	i := 0
	addr, ok := guarded(func() {
		for ; i < len(d); i++ {
			d[i] = 0
		}
	})
	if ok {
		return len(d), nil
	}
	return i, &FaultError{Signal: classify(addr), Addr: addr, Offset: i}
}

// CopySeq copies from srcs to dsts, in order, until either is exhausted or
// a fault stops it, and returns the number of bytes copied.
func CopySeq(dsts, srcs BlockSeq) (uint64, error) {
	var done uint64
	for !dsts.IsEmpty() && !srcs.IsEmpty() {
		d, s := dsts.Head(), srcs.Head()
		n, err := Copy(d, s)
		done += uint64(n)
		if err != nil {
			if fe, ok := err.(*FaultError); ok {
				fe.Offset = int(done)
			}
			return done, err
		}
		dsts = dsts.DropFirst64(uint64(n))
		srcs = srcs.DropFirst64(uint64(n))
	}
	return done, nil
}

// ZeroSeq zeroes every block of dsts and returns the number of bytes
// zeroed.
func ZeroSeq(dsts BlockSeq) (uint64, error) {
	var done uint64
	for !dsts.IsEmpty() {
		n, err := Zero(dsts.Head())
		done += uint64(n)
		if err != nil {
			if fe, ok := err.(*FaultError); ok {
				fe.Offset = int(done)
			}
			return done, err
		}
		dsts = dsts.Tail()
	}
	return done, nil
}
