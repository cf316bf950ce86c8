package ptrace

import (
	"encoding/binary"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/internal/x86asm"
	"golang.org/x/sys/unix"
)

// The stub's pages, at the top of the x86-64 user range:
//
//	StubStart = StubComm = 0x7fffffffd000  comm page, rw-s (a memfd page the
//	                                       tracer maps too)
//	StubCode             = 0x7fffffffe000  code page, r-xp
//	StubEnd              = 0x7ffffffff000  = hostarch.MaxUserAddress
//
// Everything below StubStart is the application's.
const (
	// StubEnd is the exclusive end of the stub area: the end of the x86-64
	// user range (TASK_SIZE_MAX).
	StubEnd = hostarch.MaxUserAddress
	// StubCode is the start of the stub's code page, the last user page.
	StubCode = StubEnd - hostarch.PageSize
	// StubComm is the start of the stub's comm page: requests and results
	// of injected system calls, and scratch memory for their arguments. It
	// is a shared mapping of a memfd page that the tracer maps too.
	StubComm = StubCode - hostarch.PageSize
	// StubStart is the start of the stub area and the end of the
	// application's range: Platform.MaxUserAddress.
	StubStart = StubComm
)

// StubLinkAddr is where the stub ELF is linked, so where the kernel loads
// it at exec. The stub only makes a few system calls from there, during
// start-up, before its code is placed at StubCode and the range is
// emptied; the address only needs to be above any sane vm.mmap_min_addr
// and far from the stack at the top of the range.
const StubLinkAddr = 0x400000

// stubLinkAddr is StubLinkAddr (the package's own name for it).
const stubLinkAddr = StubLinkAddr

// The stub's "syscall; int3", for a tracer that sets a stopped thread's
// registers itself (rax and the arguments, rip here in the code page, or
// in the image's page at StubLinkAddr during start-up): the thread makes
// the system call and stops on the int3 (a SIGTRAP signal-delivery-stop)
// with rip at StubSyscallOff+StubTrapDelta and the result in rax. A fault
// on the way back to user mode stops it with rip at
// StubSyscallOff+StubSyscallLen: the call has run.
const (
	// StubSyscallOff is the offset of "syscall; int3" in the code page.
	StubSyscallOff = codeOff + 16
	// StubSyscallLen is the length of the syscall instruction.
	StubSyscallLen = 2
	// StubTrapDelta is rip at the stop after the call, minus the
	// address of the syscall instruction (rip follows the int3).
	StubTrapDelta = StubSyscallLen + 1
)

// Layout of the comm page (see commPage, which mirrors it).
const (
	commState   = 0x00 // uint32: commIdle, commReq, commDone or commDead
	commWaiting = 0x04 // uint32: nonzero if the requester may sleep on state
	commCmd     = 0x08 // uint64: cmdSyscall or cmdTrap
	commNr      = 0x10 // uint64: system call number
	commArgs    = 0x18 // [6]uint64: arguments
	commResult  = 0x48 // uint64: raw result (rax)
	commSeq     = 0x50 // uint64: incremented by inject after each system call

	// The msghdr through which the stub receives descriptors.
	commMsghdr = 0x80 // struct msghdr (56 bytes)
	commIovec  = 0xc0 // struct iovec (16 bytes)
	commByte   = 0xd0 // the data byte
	commCmsg   = 0xe0 // control buffer, CMSG_SPACE(sizeof(int)) = 24 bytes
	commCmsgSz = 24

	// ScratchFree is the first byte of the comm page free for callers of
	// Syscall, for arguments that are pointers (a seccomp filter, a
	// sigaction...); it runs to StubCode (Scratch returns the tracer's view
	// of it). The platform never touches it.
	ScratchFree = StubComm + 0x100
)

// States of the comm page (commState).
const (
	commIdle = 0 // no request; the stub may sleep on state
	commReq  = 1 // a request is ready (written by the requester)
	commDone = 2 // the request is done, result is set (written by the stub)
	commDead = 3 // the stub is dead (written by the tracer)
)

// Commands (commCmd).
const (
	cmdSyscall = 0 // make system call nr with args
	cmdTrap    = 1 // stop with SIGTRAP for the tracer
)

// stubProgram is the stub's machine code and the offsets of its entry
// points within the code page.
type stubProgram struct {
	// code is placed at codeOff in the code page.
	code []byte
	// Offsets in the code page:
	entry   uint64 // exit_group(0), the ELF entry point
	regsys  uint64 // syscall; int3 (registers set by the tracer)
	regTrap uint64 // rip at the stop after regsys
	inject  uint64 // the comm page's request, then int3; loops
	injTrap uint64 // rip at the stop after inject's int3
	serve   uint64 // the futex-driven request loop
	srvTrap uint64 // rip at the stop after a cmdTrap request
	// helperClone is the clone of a helper thread (see
	// StubHelperCloneOff), helperTrap rip at its caller's stop after it.
	helperClone uint64
	helperTrap  uint64
	// helperReport is the offset of the end of a helper's report.
	helperReport uint64
}

// codeOff is the offset of the code in the code page (and in the stub ELF,
// whose first page the code page mirrors): after the ELF headers.
const codeOff = 0x100

// prog is the stub program for the code page at StubCode.
var prog = buildStub(uint64(StubCode), uint64(StubComm))

// buildStub assembles the stub for a code page at codeBase with the comm
// page at commBase.
//
//	entry:   mov eax, 231; xor edi, edi; syscall; ud2   // exit_group(0)
//	regsys:  syscall; int3; ud2
//	inject:  mov rax, [nr]; mov rdi, [a0] ... mov r9, [a5]
//	         syscall; mov [result], rax; add qword [seq], 1
//	         int3; jmp inject
//	serve:   mov eax, [state]; cmp eax, commReq; je run
//	         mov edx, eax; lea rdi, [state]; xor esi, esi  // FUTEX_WAIT
//	         xor r10d, r10d; mov eax, SYS_futex; syscall; jmp serve
//	run:     cmp qword [cmd], cmdSyscall; jne trap
//	         mov rax, [nr]; mov rdi, [a0] ... mov r9, [a5]; syscall
//	         mov [result], rax
//	         mov eax, commDone; xchg [state], eax   // full barrier
//	         cmp dword [waiting], 0; je serve
//	         lea rdi, [state]; mov esi, 1; mov edx, 1 // FUTEX_WAKE 1
//	         mov eax, SYS_futex; syscall; jmp serve
//	trap:    mov dword [state], commIdle; int3; jmp serve
func buildStub(codeBase, commBase uint64) stubProgram {
	a := x86asm.New(codeBase + codeOff)
	c := func(off uint64) uint64 { return commBase + off }
	loadRequest := func() { callRequest(a, commBase) }

	a.Label("entry")
	a.MovRegImm32(x86asm.RAX, unix.SYS_EXIT_GROUP)
	a.XorReg32(x86asm.RDI)
	a.Syscall()
	a.Ud2()
	a.Align(16)

	a.Label("regsys")
	a.Syscall()
	a.Int3()
	a.Label("regTrap")
	a.Ud2()
	a.Align(16)

	a.Label("inject")
	loadRequest()
	a.AddMem64Imm8(c(commSeq), 1)
	a.Int3()
	a.Label("injTrap")
	a.Jmp8("inject")
	a.Align(16)

	a.Label("serve")
	a.MovEAXMem32(c(commState))
	a.CmpEAXImm8(commReq)
	a.Jcc8(x86asm.CondE, "run")
	a.MovEDXEAX()
	a.LeaReg(x86asm.RDI, c(commState))
	a.XorReg32(x86asm.RSI) // FUTEX_WAIT
	a.XorReg32(x86asm.R10) // no timeout
	a.MovRegImm32(x86asm.RAX, unix.SYS_FUTEX)
	a.Syscall()
	a.Jmp8("serve")
	a.Label("run")
	a.CmpMem64Imm8(c(commCmd), cmdSyscall)
	a.Jcc8(x86asm.CondNE, "trap")
	loadRequest()
	doneRequest(a, commBase, "serve")
	a.Label("trap")
	a.MovMem32Imm32(c(commState), commIdle)
	a.Int3()
	a.Label("srvTrap")
	a.Jmp32("serve")

	a.Align(16)
	buildHelper(a, commBase+HelperCommOff)

	code, err := a.Finish()
	if err != nil {
		panic(err) // the program above is fixed: a bug here is ours
	}
	if o, _ := a.Offset("regsys"); codeOff+o != StubSyscallOff {
		panic("ptrace: the stub's syscall; int3 is not at StubSyscallOff")
	}
	if o, _ := a.Offset("regTrap"); codeOff+o != StubSyscallOff+StubTrapDelta {
		panic("ptrace: the stub's trap is not at StubSyscallOff+StubTrapDelta")
	}
	off := func(l string) uint64 {
		o, ok := a.Offset(l)
		if !ok {
			panic("ptrace: stub label " + l + " missing")
		}
		return codeOff + o
	}
	return stubProgram{
		code:    code,
		entry:   off("entry"),
		regsys:  off("regsys"),
		regTrap: off("regTrap"),
		inject:  off("inject"),
		injTrap: off("injTrap"),
		serve:   off("serve"),
		srvTrap: off("srvTrap"),

		helperClone:  off("helperClone"),
		helperTrap:   off("helperTrap"),
		helperReport: off("helperReported"),
	}
}

// A helper thread is a thread of a traced process that its tracer starts
// untraced (CLONE_UNTRACED) with every signal blocked, and that makes
// system calls in the process on request, without any ptrace stop. Its
// comm area (HelperCommOff in the page at StubComm, which must then be
// the process's own, mapped read-only as the scratch page is) has the
// layout of the comm page's first words (HelperState, HelperNr,
// HelperArgs); the helper only reads it. It sleeps on the state word;
// when it reads HelperReq there it makes the request's system call and
// reports its raw result by making a second one, HelperReportNr with the
// result as its first argument, from the code page's address
// StubHelperReportIP: a seccomp filter of the tracer's returns
// SECCOMP_RET_USER_NOTIF for it, so the report reaches the tracer through
// the filter's listener, and the helper waits in the kernel until the
// tracer has set the state word back to HelperIdle (anything but
// HelperReq) and answered. It then sleeps on the state word again: once
// it has reported, it stores nothing, anywhere, and it never changes the
// protection of its page. It exits (exit, the thread only) when it reads
// HelperExit.
const (
	// HelperCommOff is the offset of a helper thread's comm area in the
	// page at StubComm: its last bytes, past the scratch memory callers
	// use for the arguments of injected calls (which must end before it).
	HelperCommOff = 0xf80
	// HelperState, HelperNr and HelperArgs are the offsets of its words
	// in the comm area.
	HelperState = commState
	HelperNr    = commNr
	HelperArgs  = commArgs
	// HelperIdle, HelperReq and HelperExit are the values of the state
	// word.
	HelperIdle = commIdle
	HelperReq  = commReq
	HelperExit = commDead
	// HelperReportNr is the system call of a helper's report (getppid,
	// which takes no arguments: made anywhere else, it is harmless).
	HelperReportNr = unix.SYS_GETPPID
)

// StubHelperCloneOff is the offset in the code page of the syscall
// instruction that starts a helper thread: a tracer injects clone there
// (with CLONE_UNTRACED, the thread's signals all blocked), and the calling
// thread stops on an int3 with rip at StubHelperCloneOff+StubHelperTrapDelta
// and the new thread's id in rax, while the new thread (rax 0) goes on to
// the helper loop.
var (
	StubHelperCloneOff  = prog.helperClone
	StubHelperTrapDelta = prog.helperTrap - prog.helperClone
)

// StubHelperReportIP is the address that follows the syscall instruction
// of a helper thread's report (what seccomp's instruction_pointer says).
var StubHelperReportIP = uint64(StubCode) + prog.helperReport

// callRequest emits the system call of the request in the comm area at
// c, storing its result.
func callRequest(a *x86asm.Asm, c uint64) {
	a.MovRegMem64(x86asm.RAX, c+commNr)
	for i, r := range []int{x86asm.RDI, x86asm.RSI, x86asm.RDX, x86asm.R10, x86asm.R8, x86asm.R9} {
		a.MovRegMem64(r, c+commArgs+8*uint64(i))
	}
	a.Syscall()
	a.MovMemRAX64(c + commResult)
}

// doneRequest emits the end of a request in the comm area at c: the
// state set to commDone, a waiting requester woken, and a jump to loop.
func doneRequest(a *x86asm.Asm, c uint64, loop string) {
	a.MovRegImm32(x86asm.RAX, commDone)
	a.XchgMem32EAX(c + commState)
	a.CmpMem32Imm8(c+commWaiting, 0)
	a.Jcc8(x86asm.CondE, loop)
	a.LeaReg(x86asm.RDI, c+commState)
	a.MovRegImm32(x86asm.RSI, futexWakeOp)
	a.MovRegImm32(x86asm.RDX, 1)
	a.MovRegImm32(x86asm.RAX, unix.SYS_FUTEX)
	a.Syscall()
	a.Jmp32(loop)
}

// buildHelper assembles the helper thread's entry and loop, whose comm
// area is at h:
//
//	helperClone: syscall; test eax, eax; je helper; int3
//	helperTrap:  ud2
//	helper:  mov eax, [state]; cmp eax, commReq; je hrun
//	         cmp eax, commDead; je hexit
//	         mov edx, eax; lea rdi, [state]; xor esi, esi  // FUTEX_WAIT
//	         xor r10d, r10d; mov eax, SYS_futex; syscall; jmp helper
//	hrun:    mov rax, [nr]; mov rdi, [a0] ... mov r9, [a5]; syscall
//	         mov rdi, rax; mov eax, HelperReportNr; syscall  // the report
//	helperReported:
//	         jmp helper
//	hexit:   mov eax, SYS_exit; xor edi, edi; syscall; ud2
func buildHelper(a *x86asm.Asm, h uint64) {
	a.Label("helperClone")
	a.Syscall()
	a.Emit(0x85, 0xc0) // test eax, eax
	a.Jcc8(x86asm.CondE, "helper")
	a.Int3()
	a.Label("helperTrap")
	a.Ud2()
	a.Label("helper")
	a.MovEAXMem32(h + commState)
	a.CmpEAXImm8(commReq)
	a.Jcc8(x86asm.CondE, "hrun")
	a.CmpEAXImm8(commDead)
	a.Jcc8(x86asm.CondE, "hexit")
	a.MovEDXEAX()
	a.LeaReg(x86asm.RDI, h+commState)
	a.XorReg32(x86asm.RSI) // FUTEX_WAIT
	a.XorReg32(x86asm.R10) // no timeout
	a.MovRegImm32(x86asm.RAX, unix.SYS_FUTEX)
	a.Syscall()
	a.Jmp8("helper")
	a.Label("hrun")
	a.MovRegMem64(x86asm.RAX, h+commNr)
	for i, r := range []int{x86asm.RDI, x86asm.RSI, x86asm.RDX, x86asm.R10, x86asm.R8, x86asm.R9} {
		a.MovRegMem64(r, h+commArgs+8*uint64(i))
	}
	a.Syscall()
	// The report: the result in rdi, to the tracer through its filter.
	a.MovRegReg64(x86asm.RDI, x86asm.RAX)
	a.MovRegImm32(x86asm.RAX, HelperReportNr)
	a.Syscall()
	a.Label("helperReported")
	a.Jmp8("helper")
	a.Label("hexit")
	a.MovRegImm32(x86asm.RAX, unix.SYS_EXIT)
	a.XorReg32(x86asm.RDI)
	a.Syscall()
	a.Ud2()
}

// stubELF returns the stub executable: a static x86-64 ELF with one
// read-execute PT_LOAD of its only page at stubLinkAddr, and a PT_GNU_STACK
// asking for a non-executable stack (without it an old kernel could give
// the process READ_IMPLIES_EXEC, making every readable mapping
// executable). Its code is prog's, at the same offset in the page; only
// the position-independent entry and regsys are used there.
func stubELF() []byte {
	const (
		ehdrSize = 64
		phdrSize = 56
		phnum    = 2
	)
	b := make([]byte, codeOff+len(prog.code))
	le := binary.LittleEndian
	// ELF header.
	copy(b[0:], []byte{0x7f, 'E', 'L', 'F', 2 /* ELFCLASS64 */, 1 /* ELFDATA2LSB */, 1 /* EV_CURRENT */, 0 /* ELFOSABI_SYSV */})
	le.PutUint16(b[16:], 2)                       // e_type = ET_EXEC
	le.PutUint16(b[18:], 62)                      // e_machine = EM_X86_64
	le.PutUint32(b[20:], 1)                       // e_version
	le.PutUint64(b[24:], stubLinkAddr+prog.entry) // e_entry
	le.PutUint64(b[32:], ehdrSize)                // e_phoff
	le.PutUint16(b[52:], ehdrSize)                // e_ehsize
	le.PutUint16(b[54:], phdrSize)                // e_phentsize
	le.PutUint16(b[56:], phnum)                   // e_phnum
	le.PutUint16(b[58:], 64)                      // e_shentsize (no sections)
	ph := b[ehdrSize:]                            // PT_LOAD
	le.PutUint32(ph[0:], 1)                       // p_type = PT_LOAD
	le.PutUint32(ph[4:], 5)                       // p_flags = PF_R|PF_X
	le.PutUint64(ph[16:], stubLinkAddr)           // p_vaddr (p_offset = 0)
	le.PutUint64(ph[24:], stubLinkAddr)           // p_paddr
	le.PutUint64(ph[32:], uint64(len(b)))         // p_filesz
	le.PutUint64(ph[40:], uint64(len(b)))         // p_memsz
	le.PutUint64(ph[48:], hostarch.PageSize)      // p_align
	ph = b[ehdrSize+phdrSize:]                    // PT_GNU_STACK
	le.PutUint32(ph[0:], 0x6474e551)              // p_type = PT_GNU_STACK
	le.PutUint32(ph[4:], 6)                       // p_flags = PF_R|PF_W
	le.PutUint64(ph[48:], 16)                     // p_align
	copy(b[codeOff:], prog.code)
	return b
}

// StubImage returns the stub executable (a new copy): a static x86-64 ELF
// loaded at StubLinkAddr whose entry point calls exit_group(0). A tracer
// starts a stub by executing it traced (see Exe), then maps the code page
// (StubCodePage) at StubCode and unmaps the rest.
func StubImage() []byte { return stubELF() }

// StubCodePage returns the contents of the stub's code page at StubCode (a
// new copy).
func StubCodePage() []byte { return stubCodePage() }

// stubCodePage returns the contents of the code page at StubCode: the stub
// ELF's page, so that code offsets are the same there and at stubLinkAddr.
func stubCodePage() []byte {
	p := make([]byte, hostarch.PageSize)
	copy(p, stubELF())
	return p
}

// msghdrTemplate returns the bytes [commMsghdr, commCmsg+commCmsgSz) of the
// comm page as recvmsg of one descriptor and one byte expects them.
func msghdrTemplate() []byte {
	b := make([]byte, commCmsg+commCmsgSz-commMsghdr)
	le := binary.LittleEndian
	m := b[0:]
	le.PutUint64(m[16:], uint64(StubComm+commIovec))                  // msg_iov
	le.PutUint64(m[24:], 1)                                           // msg_iovlen
	le.PutUint64(m[32:], uint64(StubComm+commCmsg))                   // msg_control
	le.PutUint64(m[40:], commCmsgSz)                                  // msg_controllen
	le.PutUint64(b[commIovec-commMsghdr:], uint64(StubComm+commByte)) // iov_base
	le.PutUint64(b[commIovec-commMsghdr+8:], 1)                       // iov_len
	return b
}
