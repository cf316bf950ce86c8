package vmscript

import (
	"slices"
	"strings"
)

// Window is W, the base of the address window that @OFF addresses are
// relative to.
const Window uint64 = 0x200000000000

// WindowSize is the size of the window [W, W+1 TiB); results inside it print
// as = @OFF.
const WindowSize uint64 = 1 << 40

// PageSize is the page size scripts assume.
const PageSize uint64 = 4096

// Op is the kind of a statement.
type Op uint8

// The statement kinds, one per keyword of the spec.
const (
	OpInvalid Op = iota
	OpFork
	OpUse
	OpExit
	OpMmap
	OpMunmap
	OpMprotect
	OpMremap
	OpMadvise
	OpMlock
	OpMunlock
	OpMlockall
	OpMunlockall
	OpMsync
	OpMincore
	OpMseal
	OpAnonname
	OpBrk
	OpSetrlimit
	OpWrite
	OpFill
	OpRead
	OpSum
	OpFile
	OpMemfd
	OpFtruncate
	OpPwrite
	OpPsum
	OpClose
	OpShmget
	OpShmat
	OpShmdt
	OpShmrm
	OpIoSetup
	OpIoDestroy
	OpState
	OpVmsize
	OpVmlck
	OpCheckpoint

	// NumOps is the number of statement kinds: Op values are below it.
	NumOps
)

var opNames = [NumOps]string{
	OpInvalid:    "invalid",
	OpFork:       "fork",
	OpUse:        "use",
	OpExit:       "exit",
	OpMmap:       "mmap",
	OpMunmap:     "munmap",
	OpMprotect:   "mprotect",
	OpMremap:     "mremap",
	OpMadvise:    "madvise",
	OpMlock:      "mlock",
	OpMunlock:    "munlock",
	OpMlockall:   "mlockall",
	OpMunlockall: "munlockall",
	OpMsync:      "msync",
	OpMincore:    "mincore",
	OpMseal:      "mseal",
	OpAnonname:   "anonname",
	OpBrk:        "brk",
	OpSetrlimit:  "setrlimit",
	OpWrite:      "write",
	OpFill:       "fill",
	OpRead:       "read",
	OpSum:        "sum",
	OpFile:       "file",
	OpMemfd:      "memfd",
	OpFtruncate:  "ftruncate",
	OpPwrite:     "pwrite",
	OpPsum:       "psum",
	OpClose:      "close",
	OpShmget:     "shmget",
	OpShmat:      "shmat",
	OpShmdt:      "shmdt",
	OpShmrm:      "shmrm",
	OpIoSetup:    "io_setup",
	OpIoDestroy:  "io_destroy",
	OpState:      "state",
	OpVmsize:     "vmsize",
	OpVmlck:      "vmlck",
	OpCheckpoint: "checkpoint",
}

// String returns the statement keyword.
func (o Op) String() string {
	if o < NumOps {
		return opNames[o]
	}
	return "invalid"
}

// opByName maps keywords to ops.
var opByName = func() map[string]Op {
	m := make(map[string]Op, NumOps)
	for o := OpFork; o < NumOps; o++ {
		m[opNames[o]] = o
	}
	return m
}()

// AddrKind says how an address argument is written.
type AddrKind uint8

const (
	// AddrAbs is a plain number: that absolute address (0 means "no
	// address, let the system choose").
	AddrAbs AddrKind = iota
	// AddrWindow is @OFF: Window + Off.
	AddrWindow
	// AddrBound is $NAME, $NAME+OFF or $NAME-OFF.
	AddrBound
	// AddrBrk is brk, brk+OFF or brk-OFF: relative to the program break at
	// script start.
	AddrBrk
)

// Addr is an unresolved address argument. Arithmetic is modulo 2^64.
type Addr struct {
	// Kind says which base Off is relative to.
	Kind AddrKind
	// Name is the binding name for AddrBound (without the '$').
	Name string
	// Off is the absolute address (AddrAbs) or the offset from the base.
	Off uint64
	// Neg says the offset is subtracted (only $NAME-OFF and brk-OFF).
	Neg bool
}

// String formats the address as written in a script.
func (a Addr) String() string {
	sign := "+"
	if a.Neg {
		sign = "-"
	}
	switch a.Kind {
	case AddrWindow:
		return "@" + hx(a.Off)
	case AddrBound:
		if a.Off == 0 && !a.Neg {
			return "$" + a.Name
		}
		return "$" + a.Name + sign + hx(a.Off)
	case AddrBrk:
		if a.Off == 0 && !a.Neg {
			return "brk"
		}
		return "brk" + sign + hx(a.Off)
	default:
		if a.Off == 0 {
			return "0"
		}
		return hx(a.Off)
	}
}

// Prot is a set of PROT_* bits with Linux's values.
type Prot uint32

// PROT_* values.
const (
	ProtNone      Prot = 0
	ProtRead      Prot = 0x1
	ProtWrite     Prot = 0x2
	ProtExec      Prot = 0x4
	ProtGrowsDown Prot = 0x01000000
	ProtGrowsUp   Prot = 0x02000000
)

// MapFlags is a set of MAP_* bits with Linux's values.
type MapFlags uint32

// MAP_* values of the spec's FLAGS words.
const (
	MapShared         MapFlags = 0x01
	MapPrivate        MapFlags = 0x02
	MapSharedValidate MapFlags = 0x03
	MapFixed          MapFlags = 0x10
	MapAnonymous      MapFlags = 0x20
	Map32Bit          MapFlags = 0x40
	MapGrowsDown      MapFlags = 0x100
	MapLocked         MapFlags = 0x2000
	MapNoReserve      MapFlags = 0x4000
	MapPopulate       MapFlags = 0x8000
	MapStack          MapFlags = 0x20000
	MapFixedNoReplace MapFlags = 0x100000
)

// MremapFlags is a set of MREMAP_* bits.
type MremapFlags uint32

// MREMAP_* values.
const (
	MremapMaymove   MremapFlags = 1
	MremapFixed     MremapFlags = 2
	MremapDontunmap MremapFlags = 4
)

// MlockallFlags is a set of MCL_* bits.
type MlockallFlags uint32

// MCL_* values.
const (
	MclCurrent MlockallFlags = 1
	MclFuture  MlockallFlags = 2
	MclOnfault MlockallFlags = 4
)

// MsyncFlags is a set of MS_* bits.
type MsyncFlags uint32

// MS_* values.
const (
	MsAsync      MsyncFlags = 1
	MsInvalidate MsyncFlags = 2
	MsSync       MsyncFlags = 4
)

// Advice is a madvise advice value (MADV_*).
type Advice int32

// MADV_* values of the spec's ADVICE words.
const (
	MadvNormal        Advice = 0
	MadvRandom        Advice = 1
	MadvSequential    Advice = 2
	MadvWillneed      Advice = 3
	MadvDontneed      Advice = 4
	MadvFree          Advice = 8
	MadvRemove        Advice = 9
	MadvDontfork      Advice = 10
	MadvDofork        Advice = 11
	MadvMergeable     Advice = 12
	MadvUnmergeable   Advice = 13
	MadvHugepage      Advice = 14
	MadvNohugepage    Advice = 15
	MadvDontdump      Advice = 16
	MadvDodump        Advice = 17
	MadvWipeonfork    Advice = 18
	MadvKeeponfork    Advice = 19
	MadvCold          Advice = 20
	MadvPageout       Advice = 21
	MadvPopulateRead  Advice = 22
	MadvPopulateWrite Advice = 23
	MadvGuardInstall  Advice = 102
	MadvGuardRemove   Advice = 103
)

// Resource is an RLIMIT_* resource.
type Resource int

// RLIMIT_* values of the spec's RES words.
const (
	RlimitData    Resource = 2
	RlimitStack   Resource = 3
	RlimitMemlock Resource = 8
	RlimitAS      Resource = 9
)

// LimitKind says how a setrlimit VALUE is written.
type LimitKind uint8

const (
	// LimitValue is a plain number of bytes.
	LimitValue LimitKind = iota
	// LimitInf is inf (RLIM_INFINITY).
	LimitInf
	// LimitPlus is +N: current usage plus N bytes.
	LimitPlus
)

// Limit is a setrlimit VALUE.
type Limit struct {
	// Kind says how N is used.
	Kind LimitKind
	// N is the value (LimitValue) or the increment (LimitPlus).
	N uint64
}

// A Word is one entry of a keyword table: a spec keyword and its value.
// Order in the tables is the canonical order used when formatting.
type Word[T any] struct {
	Name string
	Val  T
}

var mapFlagWords = []Word[MapFlags]{
	{"private", MapPrivate}, {"shared", MapShared}, {"shared_validate", MapSharedValidate},
	{"anon", MapAnonymous}, {"fixed", MapFixed}, {"fixed_noreplace", MapFixedNoReplace},
	{"growsdown", MapGrowsDown}, {"populate", MapPopulate}, {"noreserve", MapNoReserve},
	{"locked", MapLocked}, {"stack", MapStack}, {"32bit", Map32Bit},
}

var mremapFlagWords = []Word[MremapFlags]{
	{"maymove", MremapMaymove}, {"fixed", MremapFixed}, {"dontunmap", MremapDontunmap},
}

var mlockallFlagWords = []Word[MlockallFlags]{
	{"current", MclCurrent}, {"future", MclFuture}, {"onfault", MclOnfault},
}

var msyncFlagWords = []Word[MsyncFlags]{
	{"async", MsAsync}, {"sync", MsSync}, {"invalidate", MsInvalidate},
}

var adviceWords = []Word[Advice]{
	{"normal", MadvNormal}, {"random", MadvRandom}, {"sequential", MadvSequential},
	{"willneed", MadvWillneed}, {"dontneed", MadvDontneed}, {"free", MadvFree},
	{"remove", MadvRemove}, {"dontfork", MadvDontfork}, {"dofork", MadvDofork},
	{"mergeable", MadvMergeable}, {"unmergeable", MadvUnmergeable},
	{"hugepage", MadvHugepage}, {"nohugepage", MadvNohugepage},
	{"dontdump", MadvDontdump}, {"dodump", MadvDodump},
	{"wipeonfork", MadvWipeonfork}, {"keeponfork", MadvKeeponfork},
	{"cold", MadvCold}, {"pageout", MadvPageout},
	{"populate_read", MadvPopulateRead}, {"populate_write", MadvPopulateWrite},
	{"guard_install", MadvGuardInstall}, {"guard_remove", MadvGuardRemove},
}

var resourceWords = []Word[Resource]{
	{"as", RlimitAS}, {"data", RlimitData}, {"memlock", RlimitMemlock}, {"stack", RlimitStack},
}

// MapFlagWords returns mmap's flag words.
func MapFlagWords() []Word[MapFlags] { return slices.Clone(mapFlagWords) }

// MremapFlagWords returns mremap's flag words.
func MremapFlagWords() []Word[MremapFlags] { return slices.Clone(mremapFlagWords) }

// MlockallFlagWords returns mlockall's flag words.
func MlockallFlagWords() []Word[MlockallFlags] { return slices.Clone(mlockallFlagWords) }

// MsyncFlagWords returns msync's flag words.
func MsyncFlagWords() []Word[MsyncFlags] { return slices.Clone(msyncFlagWords) }

// AdviceWords returns madvise's advice words.
func AdviceWords() []Word[Advice] { return slices.Clone(adviceWords) }

// ResourceWords returns setrlimit's resource words.
func ResourceWords() []Word[Resource] { return slices.Clone(resourceWords) }

// Keywords lists what a script can say, for the coverage checks of the
// corpus and of the generator: "op NAME" for every operation, "mmap W",
// "mremap W", "mlockall W", "msync W", "madvise W" and "setrlimit W" for
// every word of those calls, and "mprotect +growsdown" and "+growsup".
func Keywords() []string {
	var ks []string
	for o := OpFork; o < NumOps; o++ {
		ks = append(ks, "op "+o.String())
	}
	ks = appendWords(ks, "mmap ", mapFlagWords)
	ks = appendWords(ks, "mremap ", mremapFlagWords)
	ks = appendWords(ks, "mlockall ", mlockallFlagWords)
	ks = appendWords(ks, "msync ", msyncFlagWords)
	ks = appendWords(ks, "madvise ", adviceWords)
	ks = appendWords(ks, "setrlimit ", resourceWords)
	return append(ks, "mprotect +growsdown", "mprotect +growsup")
}

func appendWords[T any](ks []string, prefix string, ws []Word[T]) []string {
	for _, w := range ws {
		ks = append(ks, prefix+w.Name)
	}
	return ks
}

func lookupWord[T any](ws []Word[T], s string) (T, bool) {
	for _, w := range ws {
		if w.Name == s {
			return w.Val, true
		}
	}
	var z T
	return z, false
}

func wordNames[T any](ws []Word[T]) string {
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = w.Name
	}
	return strings.Join(names, " ")
}

// String returns the advice's spec keyword, or its number.
func (a Advice) String() string {
	for _, w := range adviceWords {
		if w.Val == a {
			return w.Name
		}
	}
	return dec(uint64(a))
}

// String returns the resource's spec keyword.
func (r Resource) String() string {
	for _, w := range resourceWords {
		if w.Val == r {
			return w.Name
		}
	}
	return dec(uint64(r))
}

// Stmt is one parsed statement. Which fields are meaningful depends on Op;
// the rest are zero. A Stmt is immutable once Parse returns it.
type Stmt struct {
	// Line is the 1-based line number in the script.
	Line int
	// Text is the statement as written, without comment and surrounding
	// blanks.
	Text string
	// Proc is the process the statement runs in: the PROC: prefix if given,
	// else the current process at this point of the script (known
	// statically, since scripts have no control flow). Empty for use, exit
	// and checkpoint, which do not run in a process.
	Proc string
	// Prefixed says the statement had an explicit PROC: prefix.
	Prefixed bool
	// Op is the statement kind.
	Op Op

	// Addr is the ADDR argument (mmap, munmap, mprotect, mremap's old
	// address, madvise, mlock, munlock, msync, mincore, mseal, anonname,
	// brk, write, fill, read, sum, shmat, shmdt, state).
	Addr Addr
	// Len is LEN (or mremap's OLDLEN, SIZE of file/memfd/ftruncate/shmget,
	// io_setup's NR, psum's LEN).
	Len uint64
	// NewLen is mremap's NEWLEN.
	NewLen uint64
	// NewAddr is mremap's NEWADDR; HasNewAddr says it was given.
	NewAddr    Addr
	HasNewAddr bool

	// Prot is mmap's or mprotect's PROT (mprotect's may include
	// ProtGrowsDown/ProtGrowsUp).
	Prot Prot
	// MapFlags is mmap's FLAGS.
	MapFlags MapFlags
	// MremapFlags is mremap's FLAGS.
	MremapFlags MremapFlags
	// MlockallFlags is mlockall's FLAGS.
	MlockallFlags MlockallFlags
	// MsyncFlags is msync's FLAGS.
	MsyncFlags MsyncFlags
	// Advice is madvise's ADVICE.
	Advice Advice
	// OnFault is mlock's onfault.
	OnFault bool

	// Name is the NAME argument: the process of fork/use/exit, the object
	// of file/memfd/ftruncate/pwrite/psum/close/shmget/shmat/shmrm/
	// io_setup/io_destroy, mmap's FILE (when HasFile), or anonname's NAME
	// (empty when ClearName).
	Name string
	// HasFile says mmap has FILE and OFF.
	HasFile bool
	// ClearName says anonname's NAME was "-".
	ClearName bool
	// Off is the file offset of mmap, pwrite and psum.
	Off uint64
	// ReadOnly is file's ro or shmat's rdonly.
	ReadOnly bool
	// Seed is file's seed=N.
	Seed uint64
	// Data is the bytes of write's or pwrite's HEX.
	Data []byte
	// Byte is fill's BYTE.
	Byte byte
	// Resource and Limit are setrlimit's RES and VALUE.
	Resource Resource
	Limit    Limit

	// Bind is the NAME of a trailing "-> NAME", or empty.
	Bind string
}

// String returns the statement as written.
func (s *Stmt) String() string { return s.Text }

// Script is a parsed script.
type Script struct {
	// Name is the script's name (usually its file name), used in errors.
	Name string
	// Stmts are the statements in line order.
	Stmts []*Stmt
	// Lines is the number of lines of the source.
	Lines int
}

// StmtAt returns the statement on the given line, or nil.
func (s *Script) StmtAt(line int) *Stmt {
	for _, st := range s.Stmts {
		if st.Line == line {
			return st
		}
	}
	return nil
}
