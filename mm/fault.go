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

// AccessError reports an access the application would take a signal for:
// SIGSEGV for an address with no mapping or without the permission, SIGBUS
// for a file page past end-of-file or memory that could not be allocated.
// It unwraps to EFAULT, the error a system call reports for such a buffer.
type AccessError struct {
	// Addr is the first address that could not be accessed.
	Addr hostarch.Addr
	// Signal is unix.SIGSEGV or unix.SIGBUS.
	Signal unix.Signal
	// Cause says why, for diagnostics.
	Cause error
}

// Error implements error.
func (e *AccessError) Error() string {
	return fmt.Sprintf("%v at %v: %v", unix.SignalName(e.Signal), e.Addr, e.Cause)
}

// Unwrap returns EFAULT.
func (e *AccessError) Unwrap() error { return unix.EFAULT }

var (
	errNoVMA      = errors.New("no mapping")
	errPerms      = errors.New("permission denied")
	errGuard      = errors.New("guard page")
	errStackLimit = errors.New("stack cannot grow")
)

func segv(addr hostarch.Addr, cause error) *AccessError {
	return &AccessError{Addr: addr, Signal: unix.SIGSEGV, Cause: cause}
}

// accessErrorFor turns an error from getPMAsLocked at addr into an
// AccessError: bus errors and memory exhaustion are SIGBUS, others SIGSEGV.
func accessErrorFor(addr hostarch.Addr, err error) *AccessError {
	var ae *AccessError
	if errors.As(err, &ae) {
		return ae
	}
	var fe *safemem.FaultError
	if memmap.IsBusError(err) || errors.Is(err, errMemoryExhausted) || (errors.As(err, &fe) && fe.Signal == unix.SIGBUS) {
		return &AccessError{Addr: addr, Signal: unix.SIGBUS, Cause: err}
	}
	return segv(addr, err)
}

// HandleUserFault handles an application page fault at addr for access at,
// with the faulting thread's stack pointer sp (unused on x86-64: Linux
// grows a stack for any fault below it within the limits). On success the
// page is mapped in the AddressSpace, if active. On failure it returns an
// *AccessError saying which signal the application gets, or, in a range
// registered with a userfaultfd, a *UserfaultError whose Fault the
// faulting thread waits on before it retries the access (uffd.go).
func (mm *MemoryManager) HandleUserFault(ctx context.Context, addr hostarch.Addr, at hostarch.AccessType, sp hostarch.Addr) error {
	ar := hostarch.AddrRange{Start: addr.RoundDown(), End: addr.RoundDown() + hostarch.PageSize}
	if ar.End < ar.Start || ar.End > mm.p.MaxUserAddress() {
		return segv(addr, errNoVMA)
	}
	// Fast path: a pma already grants the access; map it (MapFile may
	// run under the read lock: AddressSpaces serialise internally, and
	// Unmap runs under the write lock).
	rt := mm.activeMu.RLock()
	if pseg := mm.pmas.FindSegment(addr); pseg.Ok() && pseg.ValuePtr().effectivePerms.SupersetOf(at) {
		var err error
		if mm.as != nil {
			err = mm.mapASLocked(ar, false)
		}
		mm.activeMu.RUnlock(rt)
		if err == nil {
			mm.faults.Add(1)
			return nil
		}
		if !errors.Is(err, unix.ENOMEM) {
			return accessErrorFor(addr, err)
		}
		// The host refused the mapping: the slow path may evict.
	} else {
		mm.activeMu.RUnlock(rt)
	}

	mm.mappingMu.RLock()
	vseg := mm.vmas.FindSegment(addr)
	if !vseg.Ok() {
		mm.mappingMu.RUnlock()
		mm.mappingMu.Lock()
		err := mm.growStackLocked(ctx, addr)
		mm.mappingMu.Unlock()
		if err != nil {
			return err
		}
		mm.mappingMu.RLock()
		vseg = mm.vmas.FindSegment(addr)
		if !vseg.Ok() {
			mm.mappingMu.RUnlock()
			return segv(addr, errNoVMA)
		}
	}
	defer mm.mappingMu.RUnlock()
	v := vseg.ValuePtr()
	if !v.effectivePerms().SupersetOf(at) {
		return segv(addr, errPerms)
	}
	if mm.isGuardLocked(addr) {
		return segv(addr, errGuard)
	}
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	if _, err := mm.getPMAsLocked(ctx, vseg, ar, at); err != nil {
		if uerr, ok := err.(*UserfaultError); ok {
			// The fault waits for the range's userfaultfd (uffd.go).
			return mm.userfaultLocked(ctx, vseg, addr, uerr)
		}
		return accessErrorFor(addr, err)
	}
	mm.faults.Add(1)
	if mm.as != nil {
		if err := mm.mapASEvictingLocked(ar, false); err != nil {
			return accessErrorFor(addr, err)
		}
	}
	return nil
}

// MapPresent maps into the AddressSpace, with their permissions, the pmas
// that already exist in [addr, addr+length), without faulting in anything
// new: an embedder whose host kernel reads and writes the application's
// memory by itself (system calls run natively) calls it after a change
// that unmapped pages it still holds (a permission change, a move), so
// that the host's view of readable memory never lags the manager's.
func (mm *MemoryManager) MapPresent(ctx context.Context, addr hostarch.Addr, length uint64) error {
	ar, ok := addr.ToRange(length)
	if !ok || length == 0 {
		return nil
	}
	if ar.End > mm.p.MaxUserAddress() {
		ar.End = mm.p.MaxUserAddress()
	}
	ar = hostarch.AddrRange{Start: ar.Start.RoundDown(), End: ar.End.MustRoundUp()}
	if ar.Start >= ar.End {
		return nil
	}
	rt := mm.activeMu.RLock()
	defer mm.activeMu.RUnlock(rt)
	if mm.as == nil {
		return nil
	}
	return mm.mapASLocked(ar, false)
}
