package mm

import (
	"context"
	"encoding/binary"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/safemem"
	"golang.org/x/sys/unix"
)

// Linux's AIO limits and ring layout.
const (
	// aioMaxNr is fs.aio-max-nr's default: the most events all contexts
	// may have.
	aioMaxNr = 65536
	// aioRingHeader is sizeof(struct aio_ring); aioEventSize is
	// sizeof(struct io_event).
	aioRingHeader = 32
	aioEventSize  = 32
	aioRingMagic  = 0xa10a10a1
)

// aioNr is the system-wide count of AIO events (Linux's aio_nr).
var aioNr struct {
	mu rankedMutex[aioNrRank]
	n  uint64
}

// aioManager holds a manager's AIO contexts.
type aioManager struct {
	// mu is the AIO manager mutex (see the lock order); it protects
	// contexts.
	mu rankedMutex[aioManagerRank]
	// contexts are the live contexts, by their ring's original address.
	contexts map[*AIOContext]struct{}
}

// AIOContext is an io_setup(2) context: a ring mapped in the address space
// whose address is the context's id, and a queue of requests.
type AIOContext struct {
	// mm and ring are immutable.
	mm   *MemoryManager
	ring *SpecialMappable

	// maxReqs is the number of events the caller asked for. Immutable.
	maxReqs uint32

	// index is the context's slot in its manager's table, which the
	// ring's header records (Linux's ctx->id); io_destroy and friends
	// find the context by reading it back from the ring. Immutable.
	index uint32

	// mu is the AIO context mutex; it protects the fields below.
	mu rankedMutex[aioContextRank]
	// addr is the ring's current address (the context id), 0 once the
	// ring has been unmapped.
	addr hostarch.Addr
	// outstanding counts prepared requests not yet finished.
	outstanding uint32
	// done holds finished requests' results, oldest first.
	done []any
	// dead is true once the context is destroyed: no new requests.
	dead bool
	// wait is signalled (non-blocking send) when done gains an entry or
	// the context dies.
	wait chan struct{}
}

// followRing is the ring's onMap hook: mapping the ring in the context's
// own address space (mremap moving it) changes the context's id; moving it
// in another address space (a forked child, which has no such context) is
// EINVAL, as Linux's aio_ring_mremap refuses it.
func (ac *AIOContext) followRing(ms memmap.MappingSpace, src, dst hostarch.AddrRange) error {
	if ms != memmap.MappingSpace(ac.mm) {
		if src != dst {
			return unix.EINVAL
		}
		return nil
	}
	ac.mu.Lock()
	ac.addr = dst.Start
	ac.mu.Unlock()
	return nil
}

// possibleCPUs returns the number of possible CPUs, as Linux's
// num_possible_cpus, which sizes AIO rings.
func possibleCPUs() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return runtime.NumCPU()
	}
	n := 0
	for _, part := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, ok := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		if !ok {
			if err1 == nil {
				n++
			}
			continue
		}
		b, err2 := strconv.Atoi(hi)
		if err1 == nil && err2 == nil && b >= a {
			n += b - a + 1
		}
	}
	if n == 0 {
		return runtime.NumCPU()
	}
	return n
}

// NewAIOContext implements io_setup(2): it maps a ring for events and
// returns its address, the context id. EINVAL for 0 or too many events,
// EAGAIN past the system-wide limit, ENOMEM if the ring cannot be mapped.
func (mm *MemoryManager) NewAIOContext(ctx context.Context, events uint32) (uint64, error) {
	if events == 0 {
		return 0, unix.EINVAL
	}
	nr := uint64(max(events, uint32(possibleCPUs()*4))) * 2
	if nr > 0x10000000/aioEventSize {
		return 0, unix.EINVAL
	}
	if uint64(events) > aioMaxNr {
		return 0, unix.EAGAIN
	}
	aioNr.mu.Lock()
	if aioNr.n+uint64(events) > aioMaxNr {
		aioNr.mu.Unlock()
		return 0, unix.EAGAIN
	}
	aioNr.n += uint64(events)
	aioNr.mu.Unlock()
	release := func() {
		aioNr.mu.Lock()
		aioNr.n -= uint64(events)
		aioNr.mu.Unlock()
	}

	ringEvents := nr + 2
	ring, err := NewSpecialMappable("/[aio] (deleted)", mm.mf, aioRingHeader+aioEventSize*ringEvents)
	if err != nil {
		release()
		return 0, unix.ENOMEM
	}
	ring.msyncErr = unix.EINVAL
	ring.punchErr = unix.ENODEV
	ring.aioRing = true
	ac := &AIOContext{mm: mm, ring: ring, maxReqs: events, index: mm.aio.freeIndex(), wait: make(chan struct{}, 1)}
	ring.onMap = ac.followRing
	// Unmapping the ring does not change the context: like Linux, a
	// lookup reads the ring's header at the context's address, which
	// then fails (or finds whatever is mapped there now).
	var hdr [aioRingHeader]byte
	binary.LittleEndian.PutUint32(hdr[0:], ac.index)
	// Like Linux, the ring holds as many events as its pages fit.
	binary.LittleEndian.PutUint32(hdr[4:], uint32((ring.Length()-aioRingHeader)/aioEventSize))
	binary.LittleEndian.PutUint32(hdr[16:], aioRingMagic)
	binary.LittleEndian.PutUint32(hdr[20:], 1) // compat_features
	binary.LittleEndian.PutUint32(hdr[28:], aioRingHeader)
	if ims, err := ring.Contents(); err == nil {
		safemem.CopySeq(ims, safemem.BlockSeqOf(safemem.BlockFromSafeSlice(hdr[:])))
	}
	addr, err := mm.mmap(ctx, memmap.MMapOpts{
		Length:          ring.Length(),
		Perms:           hostarch.ReadWrite,
		MaxPerms:        hostarch.ReadWrite, // the ring's file is noexec
		Mappable:        ring,
		MappingIdentity: ring,
	}, nil, vmaDontExpand)
	ring.DecRef(ctx) // the vma holds its own reference
	if err != nil {
		release()
		return 0, unix.ENOMEM
	}
	mm.aio.mu.Lock()
	if mm.aio.contexts == nil {
		mm.aio.contexts = map[*AIOContext]struct{}{}
	}
	mm.aio.contexts[ac] = struct{}{}
	mm.aio.mu.Unlock()
	return uint64(addr), nil
}

// LookupAIOContext returns the live context whose ring is at id. Like
// Linux, it reads the context's index from the ring's header in the
// application's memory: a ring that was unmapped or overwritten no longer
// names its context.
func (mm *MemoryManager) LookupAIOContext(ctx context.Context, id uint64) (*AIOContext, bool) {
	var b [4]byte
	if n, _ := mm.CopyIn(ctx, hostarch.Addr(id), b[:], IOOpts{}); n != len(b) {
		return nil, false
	}
	index := binary.LittleEndian.Uint32(b[:])
	mm.aio.mu.Lock()
	defer mm.aio.mu.Unlock()
	for ac := range mm.aio.contexts {
		if ac.index != index {
			continue
		}
		ac.mu.Lock()
		ok := !ac.dead && ac.addr != 0 && uint64(ac.addr) == id
		ac.mu.Unlock()
		if ok {
			return ac, true
		}
	}
	return nil, false
}

// freeIndex returns the lowest index no live context uses.
func (m *aioManager) freeIndex() uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := uint32(0); ; i++ {
		used := false
		for ac := range m.contexts {
			if ac.index == i {
				used = true
				break
			}
		}
		if !used {
			return i
		}
	}
}

// DestroyAIOContext implements io_destroy(2): it kills the context with
// ring at id and unmaps the ring. It returns nil if there is none (EINVAL).
func (mm *MemoryManager) DestroyAIOContext(ctx context.Context, id uint64) *AIOContext {
	ac, ok := mm.LookupAIOContext(ctx, id)
	if !ok {
		return nil
	}
	mm.aio.mu.Lock()
	delete(mm.aio.contexts, ac)
	mm.aio.mu.Unlock()
	ac.mu.Lock()
	addr := ac.addr
	ac.mu.Unlock()
	ac.die()
	if addr != 0 {
		mm.MUnmap(ctx, addr, ac.ring.Length())
	}
	return ac
}

// destroyAllAIOContexts kills every context (the address space is going).
func (mm *MemoryManager) destroyAllAIOContexts() {
	mm.aio.mu.Lock()
	all := mm.aio.contexts
	mm.aio.contexts = nil
	mm.aio.mu.Unlock()
	for ac := range all {
		ac.die()
	}
}

func (ac *AIOContext) die() {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if ac.dead {
		return
	}
	ac.dead = true
	aioNr.mu.Lock()
	aioNr.n -= uint64(ac.maxReqs)
	aioNr.mu.Unlock()
	select {
	case ac.wait <- struct{}{}:
	default:
	}
}

// Prepare reserves room for one request; false if the context is dead or
// full (io_submit's EAGAIN).
func (ac *AIOContext) Prepare() bool {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if ac.dead || ac.outstanding >= ac.maxReqs {
		return false
	}
	ac.outstanding++
	return true
}

// CancelPendingRequest releases a reservation that Prepare made.
func (ac *AIOContext) CancelPendingRequest() {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if ac.outstanding == 0 {
		panic("mm: AIO cancel without Prepare")
	}
	ac.outstanding--
}

// FinishRequest records a request's result for PopRequest.
func (ac *AIOContext) FinishRequest(data any) {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	ac.done = append(ac.done, data)
	select {
	case ac.wait <- struct{}{}:
	default:
	}
}

// PopRequest returns the oldest finished request, if any, and releases its
// reservation.
func (ac *AIOContext) PopRequest() (any, bool) {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if len(ac.done) == 0 {
		return nil, false
	}
	d := ac.done[0]
	ac.done = ac.done[1:]
	ac.outstanding--
	return d, true
}

// PeekRequest returns the i-th oldest finished request (0 the oldest), if
// there is one, leaving it in place: io_getevents copies events out before
// it takes them, so that a fault leaves them all (Linux's
// aio_read_events_ring). The caller serializes its readers.
func (ac *AIOContext) PeekRequest(i int) (any, bool) {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if i < 0 || i >= len(ac.done) {
		return nil, false
	}
	return ac.done[i], true
}

// WaitChannel returns a channel that receives when a request finishes or
// the context dies.
func (ac *AIOContext) WaitChannel() <-chan struct{} { return ac.wait }

// Dead reports whether the context was destroyed.
func (ac *AIOContext) Dead() bool {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	return ac.dead
}

// Drain reports whether every prepared request has been popped, so a
// destroyed context can be freed.
func (ac *AIOContext) Drain() bool {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	return ac.outstanding == 0
}
