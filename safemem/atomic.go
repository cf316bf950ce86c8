package safemem

import (
	"errors"
	"runtime/debug"
	"sync/atomic"
	"unsafe"
)

// Errors of the 32-bit atomic operations, returned for a Block they cannot
// operate on. Neither is a *FaultError: no memory was accessed.
var (
	// ErrMisaligned means the Block's address is not a multiple of 4.
	ErrMisaligned = errors.New("safemem: misaligned 32-bit atomic access")
	// ErrShort means the Block is shorter than 4 bytes.
	ErrShort = errors.New("safemem: block too short for a 32-bit atomic access")
)

// check32 returns the error, if any, that makes b unusable for a 32-bit
// atomic.
func check32(b Block) error {
	if b.length < 4 {
		return ErrShort
	}
	if uintptr(b.start)&3 != 0 {
		return ErrMisaligned
	}
	return nil
}

// SwapUint32 atomically stores new in the first 4 bytes of b, in host byte
// order, and returns the value they held. b must be at least 4 bytes long
// (else ErrShort) and 4-byte aligned (else ErrMisaligned). A host fault is
// returned as a *FaultError with Write true and Offset 0; nothing was
// stored.
func SwapUint32(b Block, new uint32) (uint32, error) {
	if err := check32(b); err != nil {
		return 0, err
	}
	p := (*uint32)(b.start)
	if !b.needSafecopy {
		return atomic.SwapUint32(p, new), nil
	}
	return swapUnsafe(p, new)
}

func swapUnsafe(p *uint32, new uint32) (old uint32, err error) {
	done := false
	defer endAtomic(debug.SetPanicOnFault(true), &done, p, true, &err)
	old = swap32(p, new)
	done = true
	return old, nil
}

// CompareAndSwapUint32 atomically compares the first 4 bytes of b, in host
// byte order, with old and, if they are equal, replaces them with new. It
// returns the value they held, which equals old exactly when new was
// stored. b must be at least 4 bytes long (else ErrShort) and 4-byte
// aligned (else ErrMisaligned). A host fault is returned as a *FaultError
// with Write true and Offset 0; nothing was stored. On amd64 the operation
// needs write access even when the value differs from old (as the
// hardware's compare-and-exchange does); elsewhere it may not.
func CompareAndSwapUint32(b Block, old, new uint32) (prev uint32, err error) {
	if err := check32(b); err != nil {
		return 0, err
	}
	p := (*uint32)(b.start)
	if !b.needSafecopy {
		return cas(p, old, new), nil
	}
	return casUnsafe(p, old, new)
}

// cas is CompareAndSwapUint32 on memory that does not fault. sync/atomic's
// CAS does not return the value it found, so load it first; the loop retries
// only when the value changed between the load and the CAS.
func cas(p *uint32, old, new uint32) uint32 {
	for {
		prev := atomic.LoadUint32(p)
		if prev != old || atomic.CompareAndSwapUint32(p, old, new) {
			return prev
		}
	}
}

func casUnsafe(p *uint32, old, new uint32) (prev uint32, err error) {
	done := false
	defer endAtomic(debug.SetPanicOnFault(true), &done, p, true, &err)
	prev = cas32(p, old, new)
	done = true
	return prev, nil
}

// LoadUint32 atomically loads the first 4 bytes of b, in host byte order.
// b must be at least 4 bytes long (else ErrShort) and 4-byte aligned (else
// ErrMisaligned). A host fault is returned as a *FaultError with Write
// false and Offset 0.
func LoadUint32(b Block) (uint32, error) {
	if err := check32(b); err != nil {
		return 0, err
	}
	p := (*uint32)(b.start)
	if !b.needSafecopy {
		return atomic.LoadUint32(p), nil
	}
	return loadUnsafe(p)
}

func loadUnsafe(p *uint32) (v uint32, err error) {
	done := false
	defer endAtomic(debug.SetPanicOnFault(true), &done, p, false, &err)
	v = load32(p)
	done = true
	return v, nil
}

// endAtomic is deferred by the guarded atomics: like endGuard, and after a
// fault it sets the atomic's error (its value result stays 0, as the
// assignment to it did not happen).
func endAtomic(prev bool, done *bool, p *uint32, write bool, err *error) {
	debug.SetPanicOnFault(prev)
	if *done {
		return
	}
	if _, faulted := recovered(recover()); faulted {
		*err = atomicFault(p, write)
	}
}

// atomicFault builds the FaultError of a faulting atomic access to *p. A
// page that the kernel now finds accessible is still reported (as
// SIGSEGV): the caller may retry.
func atomicFault(p *uint32, write bool) *FaultError {
	addr := uintptr(unsafe.Pointer(p))
	sig, _ := classify(addr, write)
	return &FaultError{Signal: sig, Addr: addr, Write: write}
}
