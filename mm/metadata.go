package mm

// This file holds what exec (the loader) sets up in a MemoryManager beyond
// mappings: the ranges of the argument and environment strings, the
// auxiliary vector, the executable's identity, and the main thread's stack.
// It is owned by the loader's engineer; the mm owner may fold it into the
// package's other files.

import (
	"context"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
)

// SetArgvEnvv records where the initial stack holds the argument strings
// (argv, Linux's [arg_start, arg_end)) and the environment strings (envv,
// [env_start, env_end)), which /proc/PID/cmdline and /proc/PID/environ read.
func (mm *MemoryManager) SetArgvEnvv(argv, envv hostarch.AddrRange) {
	mm.metadataMu.Lock()
	defer mm.metadataMu.Unlock()
	mm.argv = argv
	mm.envv = envv
}

// ArgvEnvv returns the ranges set by SetArgvEnvv.
func (mm *MemoryManager) ArgvEnvv() (argv, envv hostarch.AddrRange) {
	mm.metadataMu.Lock()
	defer mm.metadataMu.Unlock()
	return mm.argv, mm.envv
}

// SetAuxv records the ELF auxiliary vector given to the program: the
// entries before AT_NULL, in the order they are on the stack
// (/proc/PID/auxv shows them followed by AT_NULL). auxv is copied.
func (mm *MemoryManager) SetAuxv(auxv []AuxEntry) {
	c := append([]AuxEntry(nil), auxv...)
	mm.metadataMu.Lock()
	defer mm.metadataMu.Unlock()
	mm.auxv = c
}

// Auxv returns a copy of the auxiliary vector set by SetAuxv.
func (mm *MemoryManager) Auxv() []AuxEntry {
	mm.metadataMu.Lock()
	defer mm.metadataMu.Unlock()
	return append([]AuxEntry(nil), mm.auxv...)
}

// SetExecutable records the program's file (Linux's exe_file, what
// /proc/PID/exe names). The manager takes its own reference on id (nil
// clears it) and drops the one on the previous executable.
func (mm *MemoryManager) SetExecutable(ctx context.Context, id memmap.MappingIdentity) {
	if id != nil {
		id.IncRef()
	}
	mm.metadataMu.Lock()
	old := mm.executable
	mm.executable = id
	mm.metadataMu.Unlock()
	if old != nil {
		old.DecRef(ctx)
	}
}

// Executable returns the program's file with a new reference that the
// caller drops, or nil if none is set.
func (mm *MemoryManager) Executable() memmap.MappingIdentity {
	mm.metadataMu.Lock()
	defer mm.metadataMu.Unlock()
	if mm.executable != nil {
		mm.executable.IncRef()
	}
	return mm.executable
}

// Dumpability returns the process's dumpable state (prctl PR_GET_DUMPABLE).
func (mm *MemoryManager) Dumpability() Dumpability {
	mm.metadataMu.Lock()
	defer mm.metadataMu.Unlock()
	return mm.dumpability
}

// SetDumpability sets the process's dumpable state (prctl
// PR_SET_DUMPABLE, or exec of a set-id program).
func (mm *MemoryManager) SetDumpability(d Dumpability) {
	mm.metadataMu.Lock()
	defer mm.metadataMu.Unlock()
	mm.dumpability = d
}

// AuxEntry is one entry of the ELF auxiliary vector.
type AuxEntry struct {
	Key   uint64
	Value uint64
}

// Dumpability is the process's core-dump and ptrace-access state, as
// prctl(PR_SET_DUMPABLE) sets it.
type Dumpability int

const (
	// NotDumpable: no core dumps, no ptrace access by others.
	NotDumpable Dumpability = iota
	// UserDumpable: the default.
	UserDumpable
	// RootDumpable: dumps readable by root only.
	RootDumpable
)
