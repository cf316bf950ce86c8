package safemem

// swap32 atomically stores new at *p and returns the old value.
//
//go:noescape
func swap32(p *uint32, new uint32) (old uint32)

// cas32 atomically stores new at *p if *p == old, and returns the value *p
// held. It needs write access to *p even when the values differ (LOCK
// CMPXCHG always writes).
//
//go:noescape
func cas32(p *uint32, old, new uint32) (prev uint32)

// load32 atomically loads *p.
//
//go:noescape
func load32(p *uint32) (v uint32)
