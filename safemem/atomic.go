package safemem

import (
	"errors"
	"sync/atomic"
)

// Errors of the atomic operations.
var (
	// ErrMisaligned: the block's address is not 4-byte aligned.
	ErrMisaligned = errors.New("safemem: misaligned atomic access")
	// ErrShort: the block is shorter than 4 bytes.
	ErrShort = errors.New("safemem: block too short for a 32-bit atomic")
)

func check32(b Block) error {
	if b.length < 4 {
		return ErrShort
	}
	if uintptr(b.start)&3 != 0 {
		return ErrMisaligned
	}
	return nil
}

func atomic32(b Block, f func(p *uint32)) error {
	if err := check32(b); err != nil {
		return err
	}
	p := (*uint32)(b.start)
	if !b.needSafecopy {
		f(p)
		return nil
	}
	if addr, ok := guarded(func() { f(p) }); !ok {
		return &FaultError{Signal: classify(addr), Addr: addr}
	}
	return nil
}

// SwapUint32 atomically stores new in the first 4 bytes of b and returns
// the previous value.
func SwapUint32(b Block, new uint32) (uint32, error) {
	var old uint32
	err := atomic32(b, func(p *uint32) { old = atomic.SwapUint32(p, new) })
	return old, err
}

// CompareAndSwapUint32 atomically replaces old by new in the first 4 bytes
// of b if they hold old, and returns the value they held.
func CompareAndSwapUint32(b Block, old, new uint32) (uint32, error) {
	var prev uint32
	err := atomic32(b, func(p *uint32) {
		for {
			prev = atomic.LoadUint32(p)
			if prev != old || atomic.CompareAndSwapUint32(p, old, new) {
				return
			}
		}
	})
	return prev, err
}

// LoadUint32 atomically loads the first 4 bytes of b.
func LoadUint32(b Block) (uint32, error) {
	var v uint32
	err := atomic32(b, func(p *uint32) { v = atomic.LoadUint32(p) })
	return v, err
}
