package vmscript

import (
	"context"
	"hash/fnv"
)

// An Executor runs the statements of one script on one system. Run calls
// Start once, then drives the processes it returns, then calls Close once.
//
// Errors: an error that unwraps (errors.As) to a unix.Errno is the system's
// answer and is printed as -ERRNO. Any other error means the executor
// itself failed (a process died, a timeout, a bug); Run stops and returns it.
// Executors must therefore not wrap infrastructure failures with %w around an
// Errno.
type Executor interface {
	// Start creates process p0, in the state the spec describes: nothing
	// mapped in the window, no capabilities, transparent huge pages
	// disabled, the limits of the replaying process.
	Start(ctx context.Context) (Proc, error)
	// Checkpoint saves every live process's address space (and what it
	// reaches), releases it and restores it (vmspace); it does nothing on
	// Linux.
	Checkpoint(ctx context.Context) error
	// Close ends every process that is still alive and releases everything
	// the executor holds (files, shm segments, AIO contexts). It is called
	// exactly once, also after failures.
	Close() error
}

// Fault is the outcome of a memory access.
type Fault struct {
	// Kind is FaultNone when every byte was accessed.
	Kind FaultKind
	// Off is the offset from the access's address of the first byte that
	// could not be accessed; the bytes before it were accessed. Zero when
	// Kind is FaultNone.
	Off uint64
}

// FaultKind is the signal a faulting access raised.
type FaultKind uint8

// Fault kinds.
const (
	FaultNone FaultKind = iota
	FaultSEGV           // SIGSEGV
	FaultBUS            // SIGBUS
)

// VMFlags are the smaps VmFlags a state line reports.
type VMFlags uint16

// The VmFlags of state lines, in the order they are printed.
const (
	VMGrowsDown  VMFlags = 1 << iota // gd: VM_GROWSDOWN
	VMLocked                         // lo: VM_LOCKED
	VMDontCopy                       // dc: VM_DONTCOPY (MADV_DONTFORK)
	VMWipeOnFork                     // wf: VM_WIPEONFORK
	VMDontDump                       // dd: VM_DONTDUMP
	VMSealed                         // sl: VM_SEALED
	VMHugePage                       // hg: VM_HUGEPAGE
	VMNoHugePage                     // nh: VM_NOHUGEPAGE
)

// vmFlagNames are the smaps mnemonics of VMFlags bits, in bit order.
var vmFlagNames = [...]string{"gd", "lo", "dc", "wf", "dd", "sl", "hg", "nh"}

// VMFlagByName returns the VMFlags bit of an smaps mnemonic, or 0 if state
// lines do not report it.
func VMFlagByName(s string) VMFlags {
	for i, n := range vmFlagNames {
		if n == s {
			return 1 << i
		}
	}
	return 0
}

// Region is one mapping (vma) as state sees it.
type Region struct {
	// Start and End bound the mapping: [Start, End), page-aligned.
	Start, End uint64
	// Perms are the four /proc/PID/maps permission letters, e.g. "rw-p".
	Perms string
	// Flags are the VmFlags state reports.
	Flags VMFlags
}

// Usage is a process's memory usage, in kB, as /proc/PID/status reports it.
type Usage struct {
	VmSize uint64 // total mapped (total_vm)
	VmLck  uint64 // locked (locked_vm)
	VmData uint64 // private writable non-stack (data_vm)
	VmStk  uint64 // stack (stack_vm)
}

// MmapArgs are the arguments of mmap, with addresses resolved.
type MmapArgs struct {
	Addr, Len uint64
	Prot      Prot
	Flags     MapFlags
	// File is the FILE name, or "" for none (the executor passes fd -1,
	// which Linux rejects with EBADF unless the mapping is anonymous). A
	// name the process does not know also means fd -1.
	File string
	// Off is the file offset (0 without FILE).
	Off uint64
}

// Proc is one process of a script. Addresses are resolved (absolute).
// Named objects (files, memfds, shm segments, AIO contexts) belong to the
// process and are inherited by Fork; an unknown file name behaves as a bad
// descriptor (EBADF), an unknown shm or AIO name as an invalid id (EINVAL).
type Proc interface {
	// Fork makes a copy-on-write child.
	Fork(ctx context.Context) (Proc, error)
	// Exit ends the process and releases its memory.
	Exit(ctx context.Context) error

	Mmap(ctx context.Context, a MmapArgs) (uint64, error)
	Munmap(ctx context.Context, addr, length uint64) error
	Mprotect(ctx context.Context, addr, length uint64, prot Prot) error
	Mremap(ctx context.Context, addr, oldLen, newLen uint64, flags MremapFlags, newAddr uint64) (uint64, error)
	Madvise(ctx context.Context, addr, length uint64, advice Advice) error
	Mlock(ctx context.Context, addr, length uint64, onFault bool) error
	Munlock(ctx context.Context, addr, length uint64) error
	Mlockall(ctx context.Context, flags MlockallFlags) error
	Munlockall(ctx context.Context) error
	Msync(ctx context.Context, addr, length uint64, flags MsyncFlags) error
	// Mincore returns the mincore vector, one byte per page.
	Mincore(ctx context.Context, addr, length uint64) ([]byte, error)
	Mseal(ctx context.Context, addr, length uint64) error
	// SetAnonName is prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME); clear means
	// a NULL name.
	SetAnonName(ctx context.Context, addr, length uint64, name string, clear bool) error
	// Brk is the brk system call: it returns the break after the call
	// (which is the old break when it fails).
	Brk(ctx context.Context, addr uint64) (uint64, error)
	// Setrlimit sets the soft limit of res; the hard limit is unchanged.
	Setrlimit(ctx context.Context, res Resource, soft uint64) error
	// Usage reports the process's memory usage.
	Usage(ctx context.Context) (Usage, error)

	// Write, Fill, Read and Sum access memory as the process itself does,
	// in increasing address order, stopping at the first byte that cannot
	// be accessed.
	Write(ctx context.Context, addr uint64, data []byte) (Fault, error)
	Fill(ctx context.Context, addr, length uint64, b byte) (Fault, error)
	// Read returns the bytes read before any fault (len == Fault.Off when
	// it faults).
	Read(ctx context.Context, addr, length uint64) ([]byte, Fault, error)
	// Sum returns the FNV-1a 64 hash (see NewHash) of the bytes read
	// before any fault.
	Sum(ctx context.Context, addr, length uint64) (uint64, Fault, error)

	// File creates a temporary file of size bytes, byte i being
	// (i*131 + seed) mod 251, opened read-write or (ro) read-only.
	File(ctx context.Context, name string, size uint64, ro bool, seed uint64) error
	Memfd(ctx context.Context, name string, size uint64) error
	Ftruncate(ctx context.Context, name string, size uint64) error
	Pwrite(ctx context.Context, name string, off uint64, data []byte) error
	// Psum hashes up to length bytes of the file from off as read through
	// the file, returning the hash and how many bytes there were.
	Psum(ctx context.Context, name string, off, length uint64) (hash, n uint64, err error)
	Close(ctx context.Context, name string) error
	Shmget(ctx context.Context, name string, size uint64) error
	Shmat(ctx context.Context, name string, addr uint64, rdonly bool) (uint64, error)
	Shmdt(ctx context.Context, addr uint64) error
	Shmrm(ctx context.Context, name string) error
	// IoSetup creates an AIO context and returns its id (the ring's
	// address).
	IoSetup(ctx context.Context, name string, nr uint32) (uint64, error)
	IoDestroy(ctx context.Context, name string) error

	// State returns the mappings that overlap [addr, addr+length), in
	// address order.
	State(ctx context.Context, addr, length uint64) ([]Region, error)
}

// FNV-1a 64 parameters.
const (
	FNVOffset uint64 = 0xcbf29ce484222325
	fnvPrime  uint64 = 0x100000001b3
)

// NewHash returns the hash that sum and psum print (FNV-1a 64), for
// executors that hash bytes themselves.
var NewHash = fnv.New64a

// FNV1a extends an FNV-1a 64 hash h (FNVOffset to start) with b: the hash
// that sum and psum print, for executors that hash as they go.
func FNV1a(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

// FileByte is byte i of a file made by `file NAME SIZE seed=N`.
func FileByte(i, seed uint64) byte {
	// (i*131 + seed) mod 251, without overflow for any i and seed.
	return byte((i%251*131 + seed%251) % 251)
}
