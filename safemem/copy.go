package safemem

import (
	"runtime/debug"
	"syscall"
	"unsafe"
)

// Copy copies min(dst.Len(), src.Len()) bytes from src to dst and returns
// the number copied. dst and src may overlap; the result is then that of
// copy().
//
// If a host fault stops it, Copy returns n, the number of bytes before the
// first byte it could not load from src or store to dst, and a *FaultError
// with Offset n. The first n bytes of dst then hold src's; later bytes of
// dst may or may not have been written.
//
// When neither Block needs safecopy, Copy is a plain copy().
func Copy(dst, src Block) (int, error) {
	n := min(dst.length, src.length)
	if !dst.needSafecopy && !src.needSafecopy {
		memmove(dst.start, src.start, n)
		return n, nil
	}
	return copyUnsafe(dst.start, src.start, n)
}

// copyUnsafe is Copy for memory that may fault. The common case, disjoint
// spans that do not fault, is one guarded copy (guardedMoveDisjoint); after
// a fault the copy is redone piecewise (harmless, as the spans are disjoint
// and src unchanged) to find how much of it can be done.
func copyUnsafe(dst, src unsafe.Pointer, n int) (int, error) {
	d, s := uintptr(dst), uintptr(src)
	if n == 0 || dst == nil || src == nil || d-s < uintptr(n) || s-d < uintptr(n) {
		return copyCareful(dst, src, n)
	}
	if !guardedMoveDisjoint(dst, src, n) {
		return n, nil
	}
	return moveForward(dst, src, n)
}

// guardedMoveDisjoint is moveDisjoint that reports a fault instead of
// crashing. It keeps its deferred call's arguments to two, as they are
// stored on every call.
func guardedMoveDisjoint(dst, src unsafe.Pointer, n int) (faulted bool) {
	faulted = true
	defer endMove(debug.SetPanicOnFault(true), &faulted)
	moveDisjoint(dst, src, n)
	faulted = false
	return
}

// endMove is deferred by guardedMoveDisjoint: like endGuard, it restores
// the panic-on-fault setting and, if the copy did not get to its end,
// stops the panic (or lets a panic other than a fault continue).
func endMove(prev bool, faulted *bool) {
	debug.SetPanicOnFault(prev)
	if *faulted {
		recovered(recover())
	}
}

// copyCareful is copyUnsafe for empty, nil or overlapping spans.
func copyCareful(dst, src unsafe.Pointer, n int) (int, error) {
	if n == 0 {
		return 0, nil
	}
	if src == nil || dst == nil {
		// The load from src comes first.
		return 0, nilFault(src != nil)
	}
	// Overlapping: a faulted memmove may have overwritten source bytes, so
	// go piecewise from the start, in the direction that reads each source
	// byte before it is overwritten.
	if uintptr(dst) <= uintptr(src) {
		return moveForward(dst, src, n)
	}
	return moveBackward(dst, src, n)
}

// Zero sets every byte of dst to zero and returns the number zeroed. If a
// host fault stops it, it returns the number of bytes before the first byte
// it could not store and a *FaultError with that Offset; later bytes may
// or may not have been zeroed.
func Zero(dst Block) (int, error) {
	if !dst.needSafecopy {
		clear(dst.ToSlice())
		return dst.length, nil
	}
	return zeroUnsafe(dst.start, dst.length)
}

// zeroUnsafe is Zero for memory that may fault.
func zeroUnsafe(dst unsafe.Pointer, n int) (int, error) {
	if dst == nil {
		return 0, nilFault(true)
	}
	if _, faulted := guardedClear(dst, n); !faulted {
		return n, nil
	}
	return moveForward(dst, nil, n)
}

// CopySeq copies min(dsts.NumBytes(), srcs.NumBytes()) bytes from srcs to
// dsts, in order, and returns the number copied. If a host fault stops it,
// it returns the number of bytes copied before the first byte it could not
// transfer and a *FaultError whose Offset is that number and whose Addr is
// the host address of that byte in the faulting Block, with the same
// guarantees as Copy.
//
// Blocks of dsts may overlap Blocks of srcs only where Copy would be given
// both: the copy runs Block pair by Block pair, and overlap between
// different pairs gives unspecified results.
func CopySeq(dsts, srcs BlockSeq) (uint64, error) {
	var done uint64
	for !dsts.IsEmpty() && !srcs.IsEmpty() {
		n, err := Copy(dsts.head, srcs.head)
		done += uint64(n)
		if err != nil {
			return done, withOffset(err, done)
		}
		dsts = dsts.DropFirst64(uint64(n))
		srcs = srcs.DropFirst64(uint64(n))
	}
	return done, nil
}

// ZeroSeq sets every byte of dsts to zero and returns the number zeroed. A
// host fault stops it as it stops Zero, with Offset counted from the start
// of dsts.
func ZeroSeq(dsts BlockSeq) (uint64, error) {
	var done uint64
	for b := range dsts.All {
		n, err := Zero(b)
		done += uint64(n)
		if err != nil {
			return done, withOffset(err, done)
		}
	}
	return done, nil
}

// nilFault is the fault of an access to a Block at address 0 (a store if
// write, else a load), reported without touching memory: page 0 is never
// mapped (vm.mmap_min_addr), so the access would fault with SIGSEGV.
func nilFault(write bool) *FaultError {
	return &FaultError{Signal: syscall.SIGSEGV, Addr: 0, Write: write}
}
