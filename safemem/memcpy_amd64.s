//go:build !race

#include "textflag.h"

// func copyAVX512(dst, src unsafe.Pointer, n uintptr)
//
// Copies n >= 256 bytes from src to dst, which do not overlap, 256 bytes a
// step through four ZMM registers, then the last 256 bytes again (stores
// of bytes already copied, harmless as the spans are disjoint) when n is
// not a multiple of 256; it copies nothing when n < 256 (the caller
// never asks). A fault stops it anywhere (leaving the upper halves of the
// vector registers dirty until the next VZEROUPPER): the caller redoes the
// copy piecewise to find how far it can get.
TEXT ·copyAVX512(SB), NOSPLIT, $0-24
	MOVQ	dst+0(FP), DI
	MOVQ	src+8(FP), SI
	MOVQ	n+16(FP), CX
	LEAQ	-256(SI)(CX*1), R8
	LEAQ	-256(DI)(CX*1), R9
	MOVQ	CX, DX
	CMPQ	CX, $256
	JB	done
	SHRQ	$8, CX
loop:
	VMOVDQU64	0(SI), Z0
	VMOVDQU64	64(SI), Z1
	VMOVDQU64	128(SI), Z2
	VMOVDQU64	192(SI), Z3
	VMOVDQU64	Z0, 0(DI)
	VMOVDQU64	Z1, 64(DI)
	VMOVDQU64	Z2, 128(DI)
	VMOVDQU64	Z3, 192(DI)
	ADDQ	$256, SI
	ADDQ	$256, DI
	DECQ	CX
	JNZ	loop
	TESTQ	$255, DX
	JZ	done
	VMOVDQU64	0(R8), Z0
	VMOVDQU64	64(R8), Z1
	VMOVDQU64	128(R8), Z2
	VMOVDQU64	192(R8), Z3
	VMOVDQU64	Z0, 0(R9)
	VMOVDQU64	Z1, 64(R9)
	VMOVDQU64	Z2, 128(R9)
	VMOVDQU64	Z3, 192(R9)
done:
	VZEROUPPER
	RET
