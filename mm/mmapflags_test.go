package mm

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
)

// Linux's protection bits and mmap flags, for tests that state mappings as
// programs do. Package linuxabi decodes them for real, and its tests
// check the decoding against Linux.
const (
	ProtRead          = 0x1
	ProtWrite         = 0x2
	ProtExec          = 0x4
	MapShared         = 0x01
	MapPrivate        = 0x02
	MapDroppable      = 0x08
	MapFixed          = 0x10
	MapAnonymous      = 0x20
	MapGrowsDown      = 0x100
	MapLocked         = 0x2000
	MapNoReserve      = 0x4000
	MapPopulate       = 0x8000
	MapStack          = 0x20000
	MapFixedNoReplace = 0x100000
)

// mmapFlags maps as mmap(2) with the given protection and flags (only the
// ones above) does: file is the mapped file unless flags has
// MapAnonymous.
func (mm *MemoryManager) mmapFlags(ctx context.Context, addr hostarch.Addr, length uint64, prot, flags int, file MappableFile, off uint64) (hostarch.Addr, error) {
	if flags&MapAnonymous != 0 {
		file = nil
	}
	typ := map[int]MapType{MapShared: MapTypeShared, MapPrivate: MapTypePrivate, MapDroppable: MapTypeDroppable}[flags&0xf]
	return mm.DoMMap(ctx, DoMMapOpts{
		Addr:      addr,
		Length:    length,
		Offset:    off,
		Perms:     hostarch.AccessTypeFromProt(prot),
		File:      file,
		Type:      typ,
		Fixed:     flags&MapFixed != 0,
		NoReplace: flags&MapFixedNoReplace != 0,
		GrowsDown: flags&MapGrowsDown != 0,
		Stack:     flags&MapStack != 0,
		NoReserve: flags&MapNoReserve != 0,
		Locked:    flags&MapLocked != 0,
		Populate:  flags&MapPopulate != 0,
	})
}
