package safemem

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// repMovsb copies n bytes forward from src to dst with REP MOVSB. The
// spans must not overlap with dst above src.
//
//go:noescape
func repMovsb(dst, src unsafe.Pointer, n uintptr)

// repMovsbMin is the size from which a disjoint copy uses REP MOVSB rather
// than the runtime's memmove; 0 (never) without ERMS, where the microcoded
// copy is slow. Below it memmove's vector loops win; from it REP MOVSB
// does, clearly so from 64 KiB (BenchmarkCopyKernel: about 10 GB/s
// against 7-8 at 1 and 2 MiB; even at 4 KiB).
var repMovsbMin = func() int {
	if cpu.X86.HasERMS {
		return 8192
	}
	return 0
}()

// copyDisjoint copies n bytes from src to dst, which do not overlap, with
// the fastest kernel the CPU has for that size.
func copyDisjoint(dst, src unsafe.Pointer, n int) {
	if repMovsbMin != 0 && n >= repMovsbMin {
		repMovsb(dst, src, uintptr(n))
		return
	}
	memmove(dst, src, n)
}

// largeCopy is the smallest copy that uses REP MOVSB (for tests).
func largeCopy() int { return repMovsbMin }
