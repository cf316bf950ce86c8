//go:build !amd64

package safemem

import "sync/atomic"

// The 32-bit atomics on memory that may fault, from sync/atomic. In
// race-detector builds sync/atomic runs the access in the detector's C
// runtime, where a fault kills the process: the detector loads a byte of
// the word first, so only a store to memory without write permission does.

// swap32 atomically stores new at *p and returns the old value.
func swap32(p *uint32, new uint32) (old uint32) { return atomic.SwapUint32(p, new) }

// cas32 atomically stores new at *p if *p == old, and returns the value *p
// held. It needs only read access when the values differ.
func cas32(p *uint32, old, new uint32) (prev uint32) { return cas(p, old, new) }

// load32 atomically loads *p.
func load32(p *uint32) (v uint32) { return atomic.LoadUint32(p) }
