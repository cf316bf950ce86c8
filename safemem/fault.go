package safemem

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"syscall"
	"unsafe"
)

// FaultError reports that a host fault stopped an operation of this
// package. It is always returned as a *FaultError.
//
// The operation transferred exactly Offset bytes before the fault: for
// Copy, Zero, CopySeq, ZeroSeq and the Readers and Writers of this package,
// Offset equals the count returned together with the error, and the first
// Offset bytes of the destination hold the source's bytes. For the 32-bit
// atomics Offset is 0. A FaultError is not changed after it is returned
// (functions that add to Offset return a copy).
type FaultError struct {
	// Signal is the signal the host raised for the faulting access:
	// syscall.SIGSEGV for an address that is unmapped or whose protection
	// forbids the access, syscall.SIGBUS for a page that is mapped with the
	// needed permission but cannot be provided (typically a MAP_SHARED file
	// page past end-of-file).
	Signal syscall.Signal
	// Addr is the host address of the first byte, on the faulting side,
	// that was not transferred: the source Block's address plus the bytes
	// transferred from that Block for a faulting load (Write false), the
	// destination Block's for a faulting store (Write true). It lies in the
	// host page that faulted. For the atomics it is the Block's address.
	Addr uintptr
	// Offset is the number of bytes the operation transferred before the
	// fault (see the type's comment).
	Offset uint64
	// Write is true if the faulting access was a store to the destination
	// (or, for SwapUint32 and CompareAndSwapUint32, an access needing write
	// permission), false if it was a load from the source.
	Write bool
}

// Error implements error.
func (e *FaultError) Error() string {
	access := "read"
	if e.Write {
		access = "write"
	}
	return fmt.Sprintf("safemem: %s on %s at %#x after %d bytes", signalName(e.Signal), access, e.Addr, e.Offset)
}

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGSEGV:
		return "SIGSEGV"
	case syscall.SIGBUS:
		return "SIGBUS"
	}
	return fmt.Sprintf("signal %d", int(s))
}

// withOffset sets the Offset of err, if it is a *FaultError, to off, and
// returns err. Only call it with errors this package has just made.
func withOffset(err error, off uint64) error {
	if fe, ok := err.(*FaultError); ok {
		fe.Offset = off
	}
	return err
}

// pageSize is the host page size: the unit of protection, and so of
// faults. It is a power of two.
var pageSize = uintptr(os.Getpagesize())

// faultAddress is implemented by the runtime.Error that the runtime panics
// with after a fault while debug.SetPanicOnFault is enabled.
type faultAddress interface {
	Addr() uintptr
}

// endGuard is deferred by every guarded access, whose last statement sets
// *done. It restores the goroutine's panic-on-fault setting to prev and, if
// the access did not get to the end (it faulted), stops the panic and
// stores what recovered says in *addr and *faulted. Testing *done first
// keeps recover (a runtime call) off the success path.
func endGuard(prev bool, done *bool, addr *uintptr, faulted *bool) {
	debug.SetPanicOnFault(prev)
	if *done {
		return
	}
	// recover works only when called by the deferred function itself.
	*addr, *faulted = recovered(recover())
}

// recovered interprets r, the value recover returned after a guarded
// access: faulted is true for a memory fault, with the faulting address
// the runtime gave (0 if it gave none, which it does for addresses in the
// first 4 KiB). A panic other than a memory fault continues.
func recovered(r any) (addr uintptr, faulted bool) {
	if r == nil {
		return 0, false
	}
	if _, ok := r.(runtime.Error); !ok {
		panic(r)
	}
	// The guarded code is a single copy, clear, load or atomic (copies
	// of nil Blocks are refused before), whose only possible runtime error
	// is a memory fault. A fault at an address below 4 KiB comes as a "nil
	// pointer dereference" without Addr.
	if fa, ok := r.(faultAddress); ok {
		return fa.Addr(), true
	}
	return 0, true
}

// memmove copies n bytes from src to dst; they may overlap.
func memmove(dst, src unsafe.Pointer, n int) {
	copy(unsafe.Slice((*byte)(dst), n), unsafe.Slice((*byte)(src), n))
}

// guardedMove is memmove that reports a fault instead of crashing.
func guardedMove(dst, src unsafe.Pointer, n int) (addr uintptr, faulted bool) {
	done := false
	defer endGuard(debug.SetPanicOnFault(true), &done, &addr, &faulted)
	memmove(dst, src, n)
	done = true
	return
}

// guardedClear zeroes n bytes at dst, reporting a fault instead of
// crashing.
func guardedClear(dst unsafe.Pointer, n int) (addr uintptr, faulted bool) {
	done := false
	defer endGuard(debug.SetPanicOnFault(true), &done, &addr, &faulted)
	clear(unsafe.Slice((*byte)(dst), n))
	done = true
	return
}

// guardedLoad reads the byte at p, reporting a fault instead of crashing.
// The byte is returned so that the load cannot be optimized away.
func guardedLoad(p unsafe.Pointer) (v byte, faulted bool) {
	var addr uintptr
	done := false
	defer endGuard(debug.SetPanicOnFault(true), &done, &addr, &faulted)
	v = *(*byte)(p)
	done = true
	return
}

// samePage reports whether host addresses a and b lie in the same page.
func samePage(a, b uintptr) bool { return a&^(pageSize-1) == b&^(pageSize-1) }

// maxTransientRetries bounds how often one operation redoes a piece that
// faulted but that the kernel then says is accessible (the mapping changed
// under us), before reporting the fault anyway.
const maxTransientRetries = 4

// pieceFault builds the FaultError for a piece of a copy from src to dst
// (or of a clear of dst, when src is nil) that faulted at the runtime's
// address addr (0 if unknown) after off bytes of the operation. The piece
// lies within one host page on each side, so it transferred nothing, and
// the first byte of the faulting side is the one reported. transient
// reports that the kernel now finds the faulting page accessible.
func pieceFault(dst, src unsafe.Pointer, addr uintptr, off uint64) (fe *FaultError, transient bool) {
	d, s := uintptr(dst), uintptr(src)
	var write bool
	switch {
	case src == nil:
		write = true
	case addr != 0 && samePage(addr, d) && !samePage(addr, s):
		write = true
	case addr != 0 && samePage(addr, s) && !samePage(addr, d):
		write = false
	default:
		// Unknown address, or both sides in the same page: the store
		// faulted if the source can be read.
		_, srcFaults := guardedLoad(src)
		write = !srcFaults
	}
	at := s
	if write {
		at = d
	}
	sig, transient := classify(at, write)
	return &FaultError{Signal: sig, Addr: at, Offset: off, Write: write}, transient
}

// moveForward copies n bytes from src to dst, lowest address first, in
// pieces that each lie within one host page on both sides, and stops at the
// first piece that faults, returning the bytes copied before it. It is
// correct for overlapping spans when dst <= src. With src nil it zeroes dst
// instead.
func moveForward(dst, src unsafe.Pointer, n int) (int, error) {
	done, retries := 0, 0
	for done < n {
		d := unsafe.Add(dst, done)
		c := int(pageSize - uintptr(d)&(pageSize-1))
		var s unsafe.Pointer
		if src != nil {
			s = unsafe.Add(src, done)
			c = min(c, int(pageSize-uintptr(s)&(pageSize-1)))
		}
		c = min(c, n-done)
		var addr uintptr
		var faulted bool
		if s == nil {
			addr, faulted = guardedClear(d, c)
		} else {
			addr, faulted = guardedMove(d, s, c)
		}
		if !faulted {
			done += c
			continue
		}
		fe, transient := pieceFault(d, s, addr, uint64(done))
		if transient && retries < maxTransientRetries {
			retries++
			continue
		}
		return done, fe
	}
	return n, nil
}

// moveBackward copies n bytes from src to dst where dst > src and the spans
// overlap, so the copy must run from the highest address down. It returns
// the same result as moveForward would for non-overlapping spans: the
// length of the longest prefix it copied completely, and the fault at the
// first piece after it.
//
// A backward pass that faults at the piece [a, b) has copied [b, n) but not
// the prefix. The source bytes [0, a) are still intact (every store so far
// went to dst+b and above, which is above src+a), so a new backward pass
// over [0, a) copies that prefix; passes repeat until one completes, and the
// last fault seen is the first faulting piece.
func moveBackward(dst, src unsafe.Pointer, n int) (int, error) {
	var fe *FaultError
	retries := 0
	end := n
	for end > 0 {
		b := end
		for b > 0 {
			dEnd, sEnd := uintptr(dst)+uintptr(b), uintptr(src)+uintptr(b)
			c := min(int((dEnd-1)&(pageSize-1)+1), int((sEnd-1)&(pageSize-1)+1), b)
			a := b - c
			d, s := unsafe.Add(dst, a), unsafe.Add(src, a)
			addr, faulted := guardedMove(d, s, c)
			if !faulted {
				b = a
				continue
			}
			f, transient := pieceFault(d, s, addr, uint64(a))
			if transient && retries < maxTransientRetries {
				retries++
				continue
			}
			fe = f
			break
		}
		if b == 0 {
			break
		}
		end = int(fe.Offset)
	}
	if fe != nil {
		return int(fe.Offset), fe
	}
	return n, nil
}
