#include "go_asm.h"
#include "textflag.h"

// func sigRecorder()
//
// A signal handler (SA_SIGINFO) that the kernel enters with the signal
// number in DI and the siginfo in SI: it appends the signal's number,
// si_code and si_pid to sigRing and jumps to the handler it replaced
// (sigChain[sig], the Go runtime's), with every register the kernel set
// and the stack untouched. It uses only AX, R8 and R9, which a handler
// may clobber.
TEXT ·sigRecorder(SB), NOSPLIT|NOFRAME, $0-0
	MOVQ	$1, AX
	LOCK
	XADDQ	AX, ·sigRingHead(SB)
	ANDQ	$(const_sigRingSize-1), AX
	MOVLQZX	16(SI), R8
	SHLQ	$32, R8
	MOVLQZX	8(SI), R9
	ANDQ	$0xffff, R9
	SHLQ	$8, R9
	ORQ	R9, R8
	MOVQ	DI, R9
	ANDQ	$0xff, R9
	ORQ	R9, R8
	LEAQ	·sigRing(SB), R9
	XCHGQ	R8, (R9)(AX*8)
	MOVQ	DI, AX
	ANDQ	$63, AX
	LEAQ	·sigChain(SB), R9
	MOVQ	(R9)(AX*8), AX
	JMP	AX

// func sigRecorderPC() uintptr
TEXT ·sigRecorderPC(SB), NOSPLIT, $0-8
	LEAQ	·sigRecorder(SB), AX
	MOVQ	AX, ret+0(FP)
	RET
