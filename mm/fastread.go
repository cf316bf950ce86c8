package mm

import (
	"runtime"
	"sync/atomic"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/safemem"
)

// The lock-free read path of CopyIn
//
// A read of a page the last CopyIn read (copyin_8's case, and any loop
// reading one buffer) takes no lock: CopyIn's locked fast path remembers
// the readable pma it used, with its whole internal mapping, in
// MemoryManager.lastRead, stamped with activeMu's write sequence count
// (shardedRWMutex.seq). A later CopyIn within that pma copies from the
// mapping with no lock held and keeps the result only if the count is
// still the stamp afterwards: no writer held activeMu since the pma was
// looked up, so the pma and its pages were the same throughout the copy.
// Otherwise the copy is discarded and CopyIn takes its locked path. Reading
// a page that a writer meanwhile freed is harmless: the internal mappings
// of the memory file last as long as the file, other mappings are read
// fault-tolerantly, and the bytes are thrown away. Writes (CopyOut) keep
// the lock: a store to a page freed meanwhile could land in another
// address space's memory.

// unlockedReads is true where the lock-free read is sound: the count read
// after the copy must not be satisfied before the copy's plain loads are.
// x86-64 keeps loads in order; elsewhere (arm64) an atomic load is only
// an acquire, which later loads may pass but earlier ones may not finish
// after, so the check could miss a writer.
const unlockedReads = runtime.GOARCH == "amd64"

// readCache is a pma remembered for lock-free reads. Immutable.
type readCache struct {
	// seq is activeMu.seq when the pma was looked up (even).
	seq uint64
	// start and end are the pma's range.
	start, end hostarch.Addr
	// im is the internal mapping of the whole pma.
	im safemem.Block
}

// pmaMemo remembers one pma, with its whole internal mapping, for I/O
// that then needs no pma lookup: CopyIn's lock-free reads (lastRead) and
// CopyOut's locked writes (lastWrite). What it holds is valid only while
// activeMu.seq equals the entry's seq: no writer has held activeMu since
// the pma was looked up, so the pma, its permissions and its pages are
// unchanged.
type pmaMemo struct {
	// last is the pma remembered; nil if none. Set with activeMu held for
	// reading; read atomically.
	last atomic.Pointer[readCache]
	// hint is the start of the pma looked up last when last held another
	// (remember). Read and written atomically, by readers of activeMu,
	// racing harmlessly.
	hint atomic.Uintptr
}

// remember records pseg, whose whole internal mapping is cached, in m.
// Preconditions: activeMu held for reading, whose seq is seq.
//
// A valid entry for another pma is replaced only when the same pma was
// looked up twice in a row, so that I/O scattered over many pmas (bench's
// vma_lookup_100k) does not allocate an entry each.
func (m *pmaMemo) remember(seq uint64, pseg pmaIterator) {
	start := pseg.Start()
	if c := m.last.Load(); c != nil && c.seq == seq {
		if c.start == start {
			return
		}
		if m.hint.Load() != uintptr(start) {
			m.hint.Store(uintptr(start))
			return
		}
	}
	m.last.Store(&readCache{seq: seq, start: start, end: pseg.End(), im: pseg.ValuePtr().imBlock(pseg)})
}

// lookup returns the entry of m if [addr, end) lies in its pma and it is
// still valid for seq, activeMu's current count; otherwise nil.
func (m *pmaMemo) lookup(seq uint64, addr, end hostarch.Addr) *readCache {
	if c := m.last.Load(); c != nil && c.seq == seq && addr >= c.start && end <= c.end {
		return c
	}
	return nil
}

// at returns the internal mapping from addr, which lies in c's pma, to the
// end of the pma.
func (c *readCache) at(addr hostarch.Addr) safemem.Block {
	return c.im.DropFirst64(uint64(addr - c.start))
}

// rememberRead records pseg, a pma that permits reading and whose whole
// internal mapping is cached, for lock-free reads. Preconditions: activeMu
// held for reading.
func (mm *MemoryManager) rememberRead(pseg pmaIterator) {
	mm.lastRead.remember(mm.activeMu.seq.Load(), pseg)
}

// rememberWrite records pseg, a pma that permits writing and whose whole
// internal mapping is cached, for CopyOut's locked path, which then needs
// no lookup. Preconditions: activeMu held for reading.
func (mm *MemoryManager) rememberWrite(pseg pmaIterator) {
	mm.lastWrite.remember(mm.activeMu.seq.Load(), pseg)
}

// copyInUnlocked copies into dst from [addr, end) without taking activeMu,
// as described above. ok is false if it could not (the range is not in
// the remembered pma, or a writer came); the caller then takes the locked
// path, whatever dst holds.
func (mm *MemoryManager) copyInUnlocked(addr, end hostarch.Addr, dst []byte) (n int, err error, ok bool) {
	if !unlockedReads {
		return 0, nil, false
	}
	seq := mm.activeMu.seq.Load()
	c := mm.lastRead.lookup(seq, addr, end)
	if c == nil {
		return 0, nil, false
	}
	n, err = safemem.Copy(safemem.BlockFromSafeSlice(dst), c.at(addr))
	if testHookUnlockedReadCopied != nil {
		testHookUnlockedReadCopied(mm)
	}
	if mm.activeMu.seq.Load() != seq {
		return 0, nil, false
	}
	return n, err, true
}
