package loader

import (
	"encoding/binary"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Auxiliary vector keys (include/uapi/linux/auxvec.h and the x86 ones).
const (
	AT_NULL              = 0
	AT_PHDR              = 3
	AT_PHENT             = 4
	AT_PHNUM             = 5
	AT_PAGESZ            = 6
	AT_BASE              = 7
	AT_FLAGS             = 8
	AT_ENTRY             = 9
	AT_UID               = 11
	AT_EUID              = 12
	AT_GID               = 13
	AT_EGID              = 14
	AT_PLATFORM          = 15
	AT_HWCAP             = 16
	AT_CLKTCK            = 17
	AT_SECURE            = 23
	AT_RANDOM            = 25
	AT_HWCAP2            = 26
	AT_RSEQ_FEATURE_SIZE = 27
	AT_RSEQ_ALIGN        = 28
	AT_EXECFN            = 31
	AT_SYSINFO_EHDR      = 33
	AT_MINSIGSTKSZ       = 51
)

// platformString is ELF_PLATFORM on x86-64 (AT_PLATFORM's string).
const platformString = "x86_64"

// AuxValues are the machine- and kernel-dependent values of the auxiliary
// vector.
type AuxValues struct {
	// HWCAP and HWCAP2 are AT_HWCAP (CPUID leaf 1's EDX) and AT_HWCAP2.
	HWCAP, HWCAP2 uint64
	// ClockTicks is AT_CLKTCK; 0 means 100 (USER_HZ).
	ClockTicks uint64
	// MinSigStkSz is AT_MINSIGSTKSZ, the signal frame size; 0 leaves the
	// entry out.
	MinSigStkSz uint64
	// RSEQFeatureSize and RSEQAlign are AT_RSEQ_FEATURE_SIZE and
	// AT_RSEQ_ALIGN (Linux 6.3+); a zero RSEQFeatureSize leaves both out.
	RSEQFeatureSize, RSEQAlign uint64
}

// hostAux caches HostAuxValues.
var hostAux = sync.OnceValue(readHostAux)

// HostAuxValues returns the host kernel's values, as it gave them to this
// process (/proc/self/auxv), so that a program run under vmspace sees the
// CPU features and kernel interfaces it really has. Values the host does
// not give are left zero, except ClockTicks (100).
func HostAuxValues() AuxValues { return hostAux() }

func readHostAux() AuxValues {
	v := AuxValues{ClockTicks: 100}
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return v
	}
	for ; len(b) >= 16; b = b[16:] {
		key, val := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
		switch key {
		case AT_NULL:
			return v
		case AT_HWCAP:
			v.HWCAP = val
		case AT_HWCAP2:
			v.HWCAP2 = val
		case AT_CLKTCK:
			v.ClockTicks = val
		case AT_MINSIGSTKSZ:
			v.MinSigStkSz = val
		case AT_RSEQ_FEATURE_SIZE:
			v.RSEQFeatureSize = val
		case AT_RSEQ_ALIGN:
			v.RSEQAlign = val
		}
	}
	return v
}

// Credentials are the ids and the secure-mode flag the auxiliary vector
// reports.
type Credentials struct {
	// UID, EUID, GID and EGID are AT_UID, AT_EUID, AT_GID and AT_EGID.
	UID, EUID, GID, EGID uint32
	// Secure is AT_SECURE (set for setuid programs and the like).
	Secure bool
}

// HostCredentials returns the calling process's ids, not secure.
func HostCredentials() Credentials {
	return Credentials{
		UID:  uint32(unix.Getuid()),
		EUID: uint32(unix.Geteuid()),
		GID:  uint32(unix.Getgid()),
		EGID: uint32(unix.Getegid()),
	}
}
