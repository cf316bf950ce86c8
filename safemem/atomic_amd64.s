#include "textflag.h"

// The 32-bit atomics on memory that may fault. They are assembly so that
// the access is made here, in Go code the runtime can turn a fault in into
// a panic, even in race-detector builds (where sync/atomic calls into the
// detector's C runtime, in which a fault kills the process).

// func swap32(p *uint32, new uint32) (old uint32)
TEXT ·swap32(SB), NOSPLIT, $0-20
	MOVQ	p+0(FP), BX
	MOVL	new+8(FP), AX
	XCHGL	AX, 0(BX)
	MOVL	AX, old+16(FP)
	RET

// func cas32(p *uint32, old, new uint32) (prev uint32)
TEXT ·cas32(SB), NOSPLIT, $0-20
	MOVQ	p+0(FP), BX
	MOVL	old+8(FP), AX
	MOVL	new+12(FP), CX
	LOCK
	CMPXCHGL	CX, 0(BX)
	MOVL	AX, prev+16(FP)
	RET

// func load32(p *uint32) (v uint32)
TEXT ·load32(SB), NOSPLIT, $0-12
	MOVQ	p+0(FP), BX
	MOVL	0(BX), AX
	MOVL	AX, v+8(FP)
	RET
