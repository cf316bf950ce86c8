package mm

import (
	"context"
	"errors"
	"fmt"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/safemem"
	"golang.org/x/sys/unix"
)

// IOOpts qualify I/O into the address space.
type IOOpts struct {
	// IgnorePermissions makes the access succeed where the vma's
	// permissions forbid it, as ptrace(PTRACE_POKEDATA) and
	// /proc/PID/mem do (writes to private mappings still copy on write).
	IgnorePermissions bool

	// AsApplication makes the access behave as the application's own
	// instructions would: a fault below a growsdown vma grows it. System
	// calls copying a user buffer leave it false, as Linux's
	// copy_{to,from}_user do not grow stacks.
	AsApplication bool
}

// CopyOut copies src to the application's memory at addr, as the
// application writing it. It returns the number of bytes copied; if that
// is short, the error is an *AccessError at the first byte not copied, or
// one wrapping unix.ENOMEM if vmspace had no address space left to map the
// memory there (pgalloc.ErrAddressSpace).
func (mm *MemoryManager) CopyOut(ctx context.Context, addr hostarch.Addr, src []byte, opts IOOpts) (int, error) {
	if len(src) == 0 {
		return 0, nil
	}
	end := addr + hostarch.Addr(len(src))
	if end > addr && !opts.IgnorePermissions {
		rt := mm.activeMu.RLock()
		var dst safemem.Block
		c := mm.lastWrite.lookup(mm.activeMu.seq.Load(), addr, end)
		ok := c != nil
		if ok {
			dst = c.at(addr)
		} else {
			if pseg := mm.pmas.FindSegment(addr); pseg.Ok() && end <= pseg.End() {
				if dst, ok = fastMapping(pseg, addr, len(src), true); ok && !pseg.ValuePtr().im.IsZero() {
					mm.rememberWrite(pseg)
				}
			}
		}
		if ok {
			n, err := safemem.Copy(dst, safemem.BlockFromSafeSlice(src))
			mm.activeMu.RUnlock(rt)
			if err != nil {
				return n, accessErrorFor(addr+hostarch.Addr(n), err)
			}
			return n, nil
		}
		mm.activeMu.RUnlock(rt)
	}
	n, err := mm.withInternalMappings(ctx, addr, uint64(len(src)), hostarch.Write, opts, func(ims safemem.BlockSeq, done uint64) (uint64, error) {
		return safemem.CopySeq(ims, safemem.BlockSeqOf(safemem.BlockFromSafeSlice(src[done:])))
	})
	return int(n), err
}

// CopyIn copies the application's memory at addr into dst, as the
// application reading it. It returns the number of bytes copied; if that is
// short, the error is an *AccessError at the first byte not copied, or
// one wrapping unix.ENOMEM if vmspace had no address space left to map the
// memory there (pgalloc.ErrAddressSpace).
func (mm *MemoryManager) CopyIn(ctx context.Context, addr hostarch.Addr, dst []byte, opts IOOpts) (int, error) {
	if len(dst) == 0 {
		return 0, nil
	}
	end := addr + hostarch.Addr(len(dst))
	if end > addr && !opts.IgnorePermissions {
		if n, err, ok := mm.copyInUnlocked(addr, end, dst); ok {
			if err != nil {
				return n, accessErrorFor(addr+hostarch.Addr(n), err)
			}
			return n, nil
		}
		rt := mm.activeMu.RLock()
		if pseg := mm.pmas.FindSegment(addr); pseg.Ok() && end <= pseg.End() {
			if src, ok := fastMapping(pseg, addr, len(dst), false); ok {
				if !pseg.ValuePtr().im.IsZero() {
					mm.rememberRead(pseg)
				}
				n, err := safemem.Copy(safemem.BlockFromSafeSlice(dst), src)
				mm.activeMu.RUnlock(rt)
				if err != nil {
					return n, accessErrorFor(addr+hostarch.Addr(n), err)
				}
				return n, nil
			}
		}
		mm.activeMu.RUnlock(rt)
	}
	n, err := mm.withInternalMappings(ctx, addr, uint64(len(dst)), hostarch.Read, opts, func(ims safemem.BlockSeq, done uint64) (uint64, error) {
		return safemem.CopySeq(safemem.BlockSeqOf(safemem.BlockFromSafeSlice(dst[done:])), ims)
	})
	return int(n), err
}

// fastMapping returns the internal mapping of the n bytes at addr, which
// lie within pseg, for the I/O fast path: false if the pma does not permit
// the access (a write if write, else a read) or the mapping is not at
// hand. It is the pma's cached mapping, or, for private memory whose pma
// has none (a pma spanning several of the memory file's internal
// mappings, which merges of adjacent allocations make), the memory file's
// own mapping of those bytes when it is one Block (MapInternal takes no
// lock then), so that I/O to a large pma does not take the slow path every
// time. Preconditions: activeMu held for reading.
func fastMapping(pseg pmaIterator, addr hostarch.Addr, n int, write bool) (safemem.Block, bool) {
	p := pseg.ValuePtr()
	if (write && !p.effectivePerms.Write) || (!write && !p.effectivePerms.Read) {
		return safemem.Block{}, false
	}
	off := uint64(addr - pseg.Start())
	if !p.im.IsZero() {
		return p.im.Add(off).Block(uint64(min(uint64(n), uint64(pseg.End()-addr)))), true
	}
	if !p.private {
		return safemem.Block{}, false
	}
	ims, err := p.file.MapInternal(memmap.FileRange{Start: p.off + off, End: p.off + off + uint64(n)}, p.internalPerms())
	if err != nil || ims.NumBlocks() != 1 {
		return safemem.Block{}, false
	}
	return ims.Head(), true
}

// ZeroOut writes length zero bytes at addr, as the application would.
func (mm *MemoryManager) ZeroOut(ctx context.Context, addr hostarch.Addr, length uint64, opts IOOpts) (uint64, error) {
	return mm.withInternalMappings(ctx, addr, length, hostarch.Write, opts, func(ims safemem.BlockSeq, _ uint64) (uint64, error) {
		return safemem.ZeroSeq(ims)
	})
}

// CopyOutFrom writes to the application's memory in the ranges ars, in
// order, reading from src; it returns the number of bytes written. It stops
// at the first range that cannot be written in full.
func (mm *MemoryManager) CopyOutFrom(ctx context.Context, ars []hostarch.AddrRange, src safemem.Reader, opts IOOpts) (uint64, error) {
	return mm.vectorIO(ctx, ars, hostarch.Write, opts, src.ReadToBlocks)
}

// CopyInTo reads the application's memory in the ranges ars, in order,
// writing it to dst; it returns the number of bytes read.
func (mm *MemoryManager) CopyInTo(ctx context.Context, ars []hostarch.AddrRange, dst safemem.Writer, opts IOOpts) (uint64, error) {
	return mm.vectorIO(ctx, ars, hostarch.Read, opts, dst.WriteFromBlocks)
}

// vectorIO runs f on the internal mappings of each of ars in turn, as
// CopyOutFrom and CopyInTo do. f runs with the manager's locks held for
// reading and must neither call into the manager nor block for long.
func (mm *MemoryManager) vectorIO(ctx context.Context, ars []hostarch.AddrRange, at hostarch.AccessType, opts IOOpts, f func(safemem.BlockSeq) (uint64, error)) (uint64, error) {
	var total uint64
	for _, ar := range ars {
		if ar.Length() == 0 {
			continue
		}
		n, err := mm.withInternalMappings(ctx, ar.Start, ar.Length(), at, opts, func(ims safemem.BlockSeq, _ uint64) (uint64, error) {
			return f(ims)
		})
		total += n
		if err != nil {
			return total, err
		}
		if n < ar.Length() {
			return total, nil
		}
	}
	return total, nil
}

// SwapUint32 atomically stores new at addr (4-byte aligned) and returns the
// old value.
func (mm *MemoryManager) SwapUint32(ctx context.Context, addr hostarch.Addr, new uint32, opts IOOpts) (uint32, error) {
	var old uint32
	err := mm.atomicAt(ctx, addr, hostarch.ReadWrite, opts, func(b safemem.Block) error {
		var err error
		old, err = safemem.SwapUint32(b, new)
		return err
	})
	return old, err
}

// CompareAndSwapUint32 atomically replaces old by new at addr and returns
// the value found.
func (mm *MemoryManager) CompareAndSwapUint32(ctx context.Context, addr hostarch.Addr, old, new uint32, opts IOOpts) (uint32, error) {
	var prev uint32
	err := mm.atomicAt(ctx, addr, hostarch.ReadWrite, opts, func(b safemem.Block) error {
		var err error
		prev, err = safemem.CompareAndSwapUint32(b, old, new)
		return err
	})
	return prev, err
}

// LoadUint32 atomically loads the value at addr.
func (mm *MemoryManager) LoadUint32(ctx context.Context, addr hostarch.Addr, opts IOOpts) (uint32, error) {
	var v uint32
	err := mm.atomicAt(ctx, addr, hostarch.Read, opts, func(b safemem.Block) error {
		var err error
		v, err = safemem.LoadUint32(b)
		return err
	})
	return v, err
}

// atomicAt runs f on the 4 bytes at addr. An unaligned addr is EINVAL.
func (mm *MemoryManager) atomicAt(ctx context.Context, addr hostarch.Addr, at hostarch.AccessType, opts IOOpts, f func(safemem.Block) error) error {
	if addr&3 != 0 {
		return unix.EINVAL
	}
	var ferr error
	_, err := mm.withInternalMappings(ctx, addr, 4, at, opts, func(ims safemem.BlockSeq, _ uint64) (uint64, error) {
		ferr = f(ims.Head())
		if ferr != nil {
			return 0, ferr
		}
		return 4, nil
	})
	if err == nil {
		err = ferr
	}
	return err
}

// withInternalMappings is the slow path of I/O: it makes sure pmas with
// permission at cover [addr, addr+length), as far as possible, and calls f
// on the host mappings of each pma's part in address order, with done, the
// number of bytes handled so far. f returns how much it handled. It
// returns the total, and an *AccessError if the range could not all be
// handled because of a fault.
func (mm *MemoryManager) withInternalMappings(ctx context.Context, addr hostarch.Addr, length uint64, at hostarch.AccessType, opts IOOpts, f func(ims safemem.BlockSeq, done uint64) (uint64, error)) (uint64, error) {
	if length == 0 {
		return 0, nil
	}
	ar, ok := addr.ToRange(length)
	maxAddr := mm.p.MaxUserAddress()
	var rangeErr *AccessError
	if !ok || ar.End > maxAddr {
		if addr >= maxAddr {
			return 0, segv(addr, errNoVMA)
		}
		rangeErr = segv(maxAddr, errNoVMA)
		ar.End = maxAddr
	}
	var done uint64
	for {
		n, err, grow, growOK := mm.ioOnce(ctx, hostarch.AddrRange{Start: ar.Start + hostarch.Addr(done), End: ar.End}, at, opts, done, f)
		done += n
		if !growOK {
			if err == nil && rangeErr != nil {
				err = rangeErr
			}
			return done, err
		}
		// A fault below a stack: grow it, then go on.
		mm.mappingMu.Lock()
		gerr := mm.growStackLocked(ctx, grow)
		mm.mappingMu.Unlock()
		if gerr != nil {
			return done, gerr
		}
	}
}

// ioOnce does as much of withInternalMappings as it can under one lock
// acquisition, as gVisor's I/O path: with activeMu held for writing it
// makes sure pmas with their internal mappings cover as much of ar as
// possible, then downgrades activeMu to a read lock (other faults and I/O
// proceed) and calls f on those pmas. Errors are reported in order of
// progress: one from f, which stops before the end of the pmas, comes
// before the one that stopped the pmas. If the pmas stop at an unmapped
// address where the application would grow a stack, it returns that
// address as grow, and growOK.
func (mm *MemoryManager) ioOnce(ctx context.Context, ar hostarch.AddrRange, at hostarch.AccessType, opts IOOpts, done uint64, f func(safemem.BlockSeq, uint64) (uint64, error)) (n uint64, err error, grow hostarch.Addr, growOK bool) {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	mm.activeMu.Lock()
	end, stopErr, grow, growOK := mm.prepareIOLocked(ctx, ar, at, opts)
	if testHookIODowngraded != nil {
		testHookIODowngraded(mm)
	}
	rt := mm.activeMu.DowngradeLock()
	defer mm.activeMu.RUnlock(rt)
	if testHookIODowngraded != nil {
		testHookIODowngraded(mm)
	}
	addr := ar.Start
	for pseg := mm.pmas.FindSegment(addr); addr < end; pseg = pseg.NextSegment() {
		sub := hostarch.AddrRange{Start: addr, End: min(pseg.End(), end)}
		m, err := f(internalMappingsOf(pseg, sub), done+n)
		n += m
		addr += hostarch.Addr(m)
		if err != nil {
			if _, ok := err.(*safemem.FaultError); ok {
				return n, accessErrorFor(addr, err), 0, false
			}
			return n, err, 0, false
		}
		if m < sub.Length() {
			return n, nil, 0, false
		}
	}
	return n, stopErr, grow, growOK
}

// prepareIOLocked makes sure that pmas permitting at, with cached internal
// mappings, cover a prefix [ar.Start, end) of ar, as long as possible.
// Where end < ar.End, err says why the rest could not be covered (nil only
// with growOK: the application would grow a stack at grow == end).
// Preconditions: mappingMu held for reading; activeMu held for writing.
func (mm *MemoryManager) prepareIOLocked(ctx context.Context, ar hostarch.AddrRange, at hostarch.AccessType, opts IOOpts) (end hostarch.Addr, err error, grow hostarch.Addr, growOK bool) {
	addr := ar.Start
	for addr < ar.End {
		vseg := mm.vmas.FindSegment(addr)
		if !vseg.Ok() {
			if opts.AsApplication {
				if next := mm.vmas.LowerBoundSegment(addr); next.Ok() && next.ValuePtr().growsDown() {
					return addr, nil, addr, true
				}
			}
			return addr, segv(addr, errNoVMA), 0, false
		}
		v := vseg.ValuePtr()
		if !opts.IgnorePermissions && !v.effectivePerms().SupersetOf(at) {
			return addr, segv(addr, errPerms), 0, false
		}
		r := hostarch.AddrRange{Start: addr, End: min(vseg.End(), ar.End)}
		guard := mm.firstGuardLocked(r)
		r.End = guard
		if r.Length() == 0 {
			return addr, segv(addr, errGuard), 0, false
		}
		_, perr := mm.getPMAsLocked(ctx, vseg, r, at)
		// Take whatever pmas cover a prefix of r.
		for pseg := mm.pmas.FindSegment(addr); pseg.Ok() && pseg.Start() <= addr && addr < r.End; pseg = pseg.NextSegment() {
			if p := pseg.ValuePtr(); (at.Write && (p.needCOW || p.uffdWP)) || p.poison {
				break
			}
			end := min(pseg.End(), r.End)
			if err := mm.internalMappingsForLocked(pseg, hostarch.AddrRange{Start: addr, End: end}); err != nil {
				if errors.Is(err, unix.ENOMEM) {
					// vmspace has no address space left to map the
					// memory: not the application's fault.
					return addr, fmt.Errorf("mm: accessing %v: %w", addr, err), 0, false
				}
				return addr, accessErrorFor(addr, err), 0, false
			}
			addr = end
		}
		if addr < r.End {
			if perr == nil {
				perr = errNoVMA
			}
			return addr, accessErrorFor(addr, perr), 0, false
		}
		if guard < min(vseg.End(), ar.End) {
			return addr, segv(addr, errGuard), 0, false
		}
	}
	return addr, nil, 0, false
}
