package linuxabi

// Linux's (x86-64) protection bits.
const (
	ProtRead      = 0x1
	ProtWrite     = 0x2
	ProtExec      = 0x4
	ProtSem       = 0x8
	ProtGrowsDown = 0x01000000
	ProtGrowsUp   = 0x02000000
)

// Linux's (x86-64) mmap flags.
const (
	MapShared         = 0x01
	MapPrivate        = 0x02
	MapSharedValidate = 0x03
	MapDroppable      = 0x08
	MapType           = 0x0f
	MapFixed          = 0x10
	MapAnonymous      = 0x20
	Map32Bit          = 0x40
	MapAbove4G        = 0x80
	MapGrowsDown      = 0x100
	MapDenyWrite      = 0x800
	MapExecutable     = 0x1000
	MapLocked         = 0x2000
	MapNoReserve      = 0x4000
	MapPopulate       = 0x8000
	MapNonBlock       = 0x10000
	MapStack          = 0x20000
	MapHugeTLB        = 0x40000
	MapSync           = 0x80000
	MapFixedNoReplace = 0x100000
	MapUninitialized  = 0x4000000
	MapHugeShift      = 26
	MapHuge2MB        = 21 << MapHugeShift
	MapHuge1GB        = 30 << MapHugeShift

	// legacyMapMask are the flags MAP_SHARED_VALIDATE accepts (Linux's
	// LEGACY_MAP_MASK: MAP_FIXED_NOREPLACE and MAP_SYNC are not among
	// them; no file vmspace maps has FOP_MMAP_SYNC).
	legacyMapMask = MapShared | MapPrivate | MapFixed | MapAnonymous | MapDenyWrite |
		MapExecutable | MapUninitialized | MapGrowsDown | MapLocked | MapNoReserve |
		MapPopulate | MapNonBlock | MapStack | MapHugeTLB | Map32Bit | MapAbove4G |
		MapHuge2MB | MapHuge1GB
)

// Linux's mremap, mlock2, mlockall and msync flags.
const (
	MremapMayMove   = 0x1
	MremapFixed     = 0x2
	MremapDontUnmap = 0x4

	MlockOnFault = 0x1

	MclCurrent = 0x1
	MclFuture  = 0x2
	MclOnFault = 0x4

	MsAsync      = 0x1
	MsInvalidate = 0x2
	MsSync       = 0x4
)
