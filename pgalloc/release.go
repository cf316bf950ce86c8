package pgalloc

import (
	"cmp"
	"errors"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/segment"
)

// kickLocked wakes the releaser goroutine, if there is one. Preconditions:
// mu held (not strictly needed, but callers that just queued work hold it).
func (f *MemoryFile) kickLocked() {
	if f.kick == nil {
		return
	}
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// releaser is the body of the releaser goroutine: on each kick it releases
// pending ranges until there are none, until Close stops it.
func (f *MemoryFile) releaser() {
	defer close(f.releaserDone)
	for {
		select {
		case <-f.stop:
			return
		case <-f.kick:
		}
		for f.releaseBatch() {
		}
	}
}

// releaseBatch takes every pending range, returns its host memory, and then
// makes it free. It reports whether there was anything to release.
//
// Preconditions: mu not held.
func (f *MemoryFile) releaseBatch() bool {
	f.mu.Lock()
	if len(f.pending) == 0 || f.closed {
		f.mu.Unlock()
		return false
	}
	batch := f.pending
	f.pending = nil
	f.releasing++
	f.mu.Unlock()

	// Return the memory with as few system calls as possible: freed
	// ranges are often adjacent.
	batch = coalesce(batch)
	for _, fr := range batch {
		f.punch(fr)
	}

	f.mu.Lock()
	for _, fr := range batch {
		f.used.RemoveRange(segment.Range[uint64](fr))
	}
	f.releasing--
	f.released.Broadcast()
	f.mu.Unlock()
	return true
}

// ReleaseHeld releases the pages held since the last call (see
// Options.HoldFreed): the caller declares that no mapping of them made
// outside the memory manager's references remains anywhere. It does
// nothing without Options.HoldFreed, or after Close.
func (f *MemoryFile) ReleaseHeld() {
	f.mu.Lock()
	if len(f.held) == 0 || f.closed {
		f.mu.Unlock()
		return
	}
	queued := false
	for _, fr := range f.held {
		if f.cacheOrQueueLocked(fr) {
			queued = true
		}
	}
	f.held, f.heldBytes = nil, 0
	if queued {
		f.kickLocked()
	}
	f.mu.Unlock()
	if queued && !f.async {
		for f.releaseBatch() {
		}
	}
}

// UsageHeld returns the number of bytes freed and held for the next
// ReleaseHeld.
func (f *MemoryFile) UsageHeld() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.heldBytes
}

// coalesce sorts the disjoint ranges rs and merges adjacent ones, in place.
func coalesce(rs []memmap.FileRange) []memmap.FileRange {
	if len(rs) < 2 {
		return rs
	}
	slices.SortFunc(rs, func(a, b memmap.FileRange) int { return cmp.Compare(a.Start, b.Start) })
	out := rs[:1]
	for _, r := range rs[1:] {
		if last := &out[len(out)-1]; last.End == r.Start {
			last.End = r.End
		} else {
			out = append(out, r)
		}
	}
	return out
}

// WaitReleased waits until every page freed so far has been released (its
// host memory returned, and the page free for reuse), including the pages
// of the reuse cache, except held pages (Options.HoldFreed), which wait for
// ReleaseHeld. It returns at once after Close.
func (f *MemoryFile) WaitReleased() {
	f.mu.Lock()
	if !f.closed && f.flushCacheLocked() && !f.async {
		f.mu.Unlock()
		for f.releaseBatch() {
		}
		f.mu.Lock()
	}
	for !f.closed && (len(f.pending) > 0 || f.releasing > 0) {
		f.kickLocked()
		f.released.Wait()
	}
	f.mu.Unlock()
}

// punch returns the host memory of fr, which then reads as zero. Should the
// host refuse (no known cause for a memfd), it zeroes fr through the
// internal mapping instead, so that the pages read as zero all the same.
//
// Preconditions: mu not held; nobody else accesses fr.
func (f *MemoryFile) punch(fr memmap.FileRange) {
	for {
		err := unix.Fallocate(f.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(fr.Start), int64(fr.Length()))
		if err == nil {
			return
		}
		if err != unix.EINTR {
			break
		}
	}
	bs, err := f.MapInternal(fr, hostarch.Write)
	if err != nil {
		panic("pgalloc: cannot return host memory nor map " + fr.String() + " to zero it: " + err.Error())
	}
	for b := range bs.All {
		clear(b.ToSlice())
	}
}

// populate commits host memory for fr in one batch. It first allocates the
// pages with fallocate, which the host does in one loop without a fault per
// page, and then maps them into the internal mapping with
// madvise(MADV_POPULATE_WRITE), so that later accesses through it do not
// fault either. (Measured on a 6.18 kernel: 1.9 µs per page for both, against
// 2.2 µs for MADV_POPULATE_WRITE alone, which allocates page by page.)
// Kernels before 5.14 lack MADV_POPULATE_WRITE; there populate stops after
// fallocate.
//
// Preconditions: mu not held; the caller holds a reference on fr.
func (f *MemoryFile) populate(fr memmap.FileRange) error {
	if testHookPopulate != nil {
		if err := testHookPopulate(fr); err != nil {
			return &populateError{fr: fr, err: err}
		}
	}
	for {
		err := unix.Fallocate(f.fd, 0, int64(fr.Start), int64(fr.Length()))
		if err == nil {
			break
		}
		if err == unix.ENOSPC {
			// shmem's way of saying it is out of memory.
			err = unix.ENOMEM
		}
		if err != unix.EINTR {
			return &populateError{fr: fr, err: err}
		}
	}
	if f.noPopulateWrite.Load() {
		return nil
	}
	bs, err := f.MapInternal(fr, hostarch.Write)
	if errors.Is(err, ErrAddressSpace) {
		// The memory is committed; the madvise would only have saved
		// the first writes their host faults.
		return nil
	}
	if err != nil {
		return err
	}
	first := true
	for b := range bs.All {
		for {
			err = unix.Madvise(b.ToSlice(), unix.MADV_POPULATE_WRITE)
			if err != unix.EINTR {
				break
			}
		}
		if err == unix.EINVAL && first {
			// Not supported (Linux < 5.14); the memory is committed
			// all the same.
			f.noPopulateWrite.Store(true)
			return nil
		}
		if err != nil {
			return &populateError{fr: fr, err: err}
		}
		first = false
	}
	return nil
}

// testHookPopulate, if set (by tests, before the file is used), is called
// by populate before it commits anything; an error it returns is taken for
// the host's (fault injection).
var testHookPopulate func(fr memmap.FileRange) error

// populateError reports that host memory could not be committed.
type populateError struct {
	// fr is the range being populated.
	fr memmap.FileRange
	// err is the host's error (ENOMEM when out of memory).
	err error
}

// Error implements error.
func (e *populateError) Error() string {
	return "pgalloc: committing host memory for " + e.fr.String() + ": " + e.err.Error()
}

// Unwrap returns the host's error.
func (e *populateError) Unwrap() error { return e.err }
