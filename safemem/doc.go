// Package safemem describes spans of host memory (Blocks and BlockSeqs) and
// moves bytes between them in a way that survives host faults.
//
// # Safe and unsafe blocks
//
// A Block made from Go memory (BlockFromSafeSlice, BlockFromSafePointer) is
// safe: the Go runtime keeps it valid, and every operation of this package
// on safe Blocks only is a plain copy, clear or atomic with no extra cost.
//
// A Block made with BlockFromUnsafeSlice or BlockFromUnsafePointer may lie in
// a host mapping that faults: a page that is unmapped or whose protection
// forbids the access (SIGSEGV), or a page of a MAP_SHARED file mapping that
// lies past the end of the file (SIGBUS). Operations touching such a Block
// run with runtime/debug.SetPanicOnFault enabled for the calling goroutine,
// so that a fault becomes a recovered panic instead of killing the process,
// and report it as a *FaultError.
//
// # What a fault leaves behind
//
// Copy, Zero, CopySeq and ZeroSeq process bytes in order. When they stop at
// a fault they return n, the number of bytes before the first byte they
// could not transfer, and a *FaultError with Offset == n. The first n bytes
// of the destination hold what the source held (the data is exact, not a
// lower bound). Destination bytes at n and beyond may or may not have been
// written with the source's bytes: the fast path copies the whole span at
// once, and the copy is only redone piecewise after a fault to find n.
//
// Faults are found at the granularity of host pages (the protection and
// end-of-file unit), so n is exact: the copy is redone in pieces that each
// lie within one source page and one destination page, and such a piece
// either transfers entirely or faults before storing anything.
//
// # Cost
//
// On the success path an operation on unsafe Blocks costs one deferred
// call and two calls of debug.SetPanicOnFault (which only touch the current
// goroutine) around the memmove: no allocation and no system call (about
// 9 ns for an 8-byte Copy on the development machine, where copy() takes
// 1.5 ns; for 4 KiB and more the copy itself dominates). A disjoint copy
// of 256 bytes to below 1 MiB uses 64-byte AVX-512 loads and stores where
// the CPU has them (memcpy_amd64.s; not in race-detector builds), others
// the runtime's memmove. Only
// after a fault does the package do real work: redo the copy page by page,
// allocate the *FaultError, and ask the kernel which signal it was
// (madvise MADV_POPULATE_READ/WRITE on the faulting page, or, on kernels
// older than 5.14, a look at /proc/self/maps).
//
// The 32-bit atomics (SwapUint32, CompareAndSwapUint32, LoadUint32) on
// unsafe Blocks are guarded the same way; on amd64 they are written in
// assembly so that a fault is recoverable even in race-detector builds.
//
// # Readers and Writers
//
// Reader and Writer move bytes into and out of BlockSeqs; BlockSeqReader
// and BlockSeqWriter consume BlockSeqs, FromIOReader and FromIOWriter adapt
// io.Reader and io.Writer (through a bounce buffer for unsafe Blocks, so
// that the io side never touches memory that may fault), and ToIOReader and
// ToIOWriter adapt the other way.
//
// # Concurrency
//
// Blocks and BlockSeqs are immutable values and may be shared freely. The
// functions of this package do not synchronize the memory they copy; if
// other threads write it at the same time, the copied bytes are some mix of
// old and new values, as with copy().
package safemem
