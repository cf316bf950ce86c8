package vmspace

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/platform"
	"golang.org/x/sys/unix"
)

// committingPlatform makes committingASes: the executor's managers are
// active on an AddressSpace, as a program's under `vmspace run` are, so
// that what the manager asks of its AddressSpace shows in the transcript.
// No memory is mapped for the script (its accesses go through the
// manager's I/O path), but a MapFile with precommit commits the host
// memory behind the range, as the ptrace platform's MAP_POPULATE does, and
// so makes those pages resident for mincore: a manager that precommits
// more than the range populated differs from Linux there.
type committingPlatform struct {
	platform.NoPlatform
}

// NewAddressSpace implements platform.Platform.
func (committingPlatform) NewAddressSpace() (platform.AddressSpace, error) {
	return committingAS{}, nil
}

// committingAS is the AddressSpace of committingPlatform.
type committingAS struct {
	platform.NoAddressSpace
}

// MapFile implements platform.AddressSpace.MapFile: with precommit, the
// pages of fr are faulted in through the file's internal mapping (for
// writing if at allows it), as the host faults in a MAP_POPULATE mapping.
func (committingAS) MapFile(_ hostarch.Addr, f memmap.File, fr memmap.FileRange, at hostarch.AccessType, precommit bool) error {
	if !precommit || !at.Any() {
		return nil
	}
	bs, err := f.MapInternal(fr, at)
	if err != nil {
		return err
	}
	advice := unix.MADV_POPULATE_READ
	if at.Write {
		advice = unix.MADV_POPULATE_WRITE
	}
	for b := range bs.All {
		// Like MAP_POPULATE, a failure to fault in is not the mapping's.
		_ = unix.Madvise(b.ToSlice(), advice)
	}
	return nil
}

// release ends an active manager.
func release(ctx context.Context, m *mm.MemoryManager) {
	m.Deactivate()
	m.DecUsers(ctx)
}
