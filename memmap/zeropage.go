package memmap

import (
	"fmt"
	"sync"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/safemem"
	"golang.org/x/sys/unix"
)

// ZeroPage is the File of Linux's shared zero page: every page of it reads
// as zeros, nothing writes it, and it holds no memory. A memory manager
// maps it where a read fault of private anonymous memory would map the
// zero page; platforms map it as private anonymous memory without write
// access (the host's own zero page then answers reads, at no cost), not
// through a descriptor (FD is -1). Its offsets are arbitrary: every range
// maps the same zeros. References cost nothing.
var ZeroPage File = zeroPage{}

// zeroPage is ZeroPage's type.
type zeroPage struct{}

// zeroWindowSize is the length of the read-only window of zeros that
// MapInternal hands out: longer ranges get it several times over.
const zeroWindowSize = 64 << 20

// zeroWindow is a read-only private anonymous mapping of zeroWindowSize
// bytes in vmspace's own address space, made on first use and never
// unmapped.
var zeroWindow = sync.OnceValues(func() (safemem.Block, error) {
	b, err := unix.Mmap(-1, 0, zeroWindowSize, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return safemem.Block{}, fmt.Errorf("memmap: mapping the zero window: %w", err)
	}
	return safemem.BlockFromSafeSlice(b), nil
})

// IncRef implements File: the zero page is never freed.
func (zeroPage) IncRef(FileRange) {}

// DecRef implements File.
func (zeroPage) DecRef(FileRange) {}

// MapInternal implements File: fr.Length() bytes of zeros, read-only (an
// access with Write is refused with EACCES).
func (zeroPage) MapInternal(fr FileRange, at hostarch.AccessType) (safemem.BlockSeq, error) {
	if at.Write {
		return safemem.BlockSeq{}, fmt.Errorf("memmap: writing the zero page: %w", unix.EACCES)
	}
	w, err := zeroWindow()
	if err != nil {
		return safemem.BlockSeq{}, err
	}
	n := fr.Length()
	if n <= zeroWindowSize {
		return safemem.BlockSeqOf(w.TakeFirst64(n)), nil
	}
	var bs []safemem.Block
	for ; n > 0; n -= min(n, zeroWindowSize) {
		bs = append(bs, w.TakeFirst64(min(n, zeroWindowSize)))
	}
	return safemem.BlockSeqFromSlice(bs), nil
}

// FD implements File: the zero page has no descriptor.
func (zeroPage) FD() int { return -1 }

// String names the zero page in messages.
func (zeroPage) String() string { return "zero page" }
