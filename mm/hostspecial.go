package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
)

// PFNMapper is implemented by the Mappables of special mappings that
// MapHostSpecial maps (the host's vDSO under vmspace run): PFNMap reports
// whether the mapping is one Linux maps VM_PFNMAP|VM_IO (the vDSO's data,
// [vvar] and [vvar_vclock]), whose pages madvise may not drop or reclaim
// and no forced access reads.
type PFNMapper interface {
	PFNMap() bool
}

// MapHostSpecial maps opts.Mappable as a special mapping, as the kernel
// maps its vDSO at exec: not expandable by mremap, never locked, not
// mergeable, and, if the Mappable is a PFNMapper that says so, VM_PFNMAP,
// VM_IO and VM_DONTDUMP as Linux's [vvar]. It is MMap otherwise (opts
// says where, with which permissions and name); the caller's Mappable
// decides what the pages are.
func (mm *MemoryManager) MapHostSpecial(ctx context.Context, opts memmap.MMapOpts) (hostarch.Addr, error) {
	extra := vmaDontExpand
	if p, ok := opts.Mappable.(PFNMapper); ok && p.PFNMap() {
		extra |= vmaDontDump
	}
	return mm.mmap(ctx, opts, nil, extra)
}
