//go:build !race

#include "textflag.h"

// func copyVector(dst, src unsafe.Pointer, n uintptr, zmm bool)
//
// Copies n >= 256 bytes from src to dst, which do not overlap, 256 bytes a
// step, with ordinary (cached) stores: through four ZMM registers (AVX-512)
// if zmm, else through eight YMM registers (AVX2). When n is not a multiple
// of 256 it then copies the last 256 bytes again (stores of bytes already
// copied, harmless as the spans are disjoint); it copies nothing when n <
// 256 (the caller never asks). A fault stops it anywhere (leaving the
// upper halves of the vector registers dirty until the next VZEROUPPER):
// the caller redoes the copy piecewise to find how far it can get.
TEXT ·copyVector(SB), NOSPLIT, $0-25
	MOVQ	dst+0(FP), DI
	MOVQ	src+8(FP), SI
	MOVQ	n+16(FP), CX
	MOVBLZX	zmm+24(FP), AX
	LEAQ	-256(SI)(CX*1), R8
	LEAQ	-256(DI)(CX*1), R9
	MOVQ	CX, DX
	CMPQ	CX, $256
	JB	done
	SHRQ	$8, CX
	TESTQ	AX, AX
	JZ	ymm
zloop:
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
	JNZ	zloop
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
	JMP	done
ymm:
	VMOVDQU	0(SI), Y0
	VMOVDQU	32(SI), Y1
	VMOVDQU	64(SI), Y2
	VMOVDQU	96(SI), Y3
	VMOVDQU	128(SI), Y4
	VMOVDQU	160(SI), Y5
	VMOVDQU	192(SI), Y6
	VMOVDQU	224(SI), Y7
	VMOVDQU	Y0, 0(DI)
	VMOVDQU	Y1, 32(DI)
	VMOVDQU	Y2, 64(DI)
	VMOVDQU	Y3, 96(DI)
	VMOVDQU	Y4, 128(DI)
	VMOVDQU	Y5, 160(DI)
	VMOVDQU	Y6, 192(DI)
	VMOVDQU	Y7, 224(DI)
	ADDQ	$256, SI
	ADDQ	$256, DI
	DECQ	CX
	JNZ	ymm
	TESTQ	$255, DX
	JZ	done
	VMOVDQU	0(R8), Y0
	VMOVDQU	32(R8), Y1
	VMOVDQU	64(R8), Y2
	VMOVDQU	96(R8), Y3
	VMOVDQU	128(R8), Y4
	VMOVDQU	160(R8), Y5
	VMOVDQU	192(R8), Y6
	VMOVDQU	224(R8), Y7
	VMOVDQU	Y0, 0(R9)
	VMOVDQU	Y1, 32(R9)
	VMOVDQU	Y2, 64(R9)
	VMOVDQU	Y3, 96(R9)
	VMOVDQU	Y4, 128(R9)
	VMOVDQU	Y5, 160(R9)
	VMOVDQU	Y6, 192(R9)
	VMOVDQU	Y7, 224(R9)
done:
	VZEROUPPER
	RET
