#include "textflag.h"

// func repMovsb(dst, src unsafe.Pointer, n uintptr)
//
// A forward REP MOVSB: with ERMS and FSRM (every x86-64 CPU of the last
// decade has ERMS) the microcode copies whole cache lines with ordinary
// (cached) stores, which beats the runtime's memmove for the block sizes
// of this package, where memmove switches to non-temporal stores at 1 MiB.
// A fault is taken at the first byte not copied, in Go code, so that
// debug.SetPanicOnFault turns it into a panic as it does for memmove.
TEXT ·repMovsb(SB), NOSPLIT, $0-24
	MOVQ	dst+0(FP), DI
	MOVQ	src+8(FP), SI
	MOVQ	n+16(FP), CX
	REP; MOVSB
	RET
