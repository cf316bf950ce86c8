package sandbox

import (
	"encoding/binary"

	"github.com/vmspace/vmspace/internal/x86asm"
	"golang.org/x/sys/unix"
)

// The built-in demonstration is a tiny static x86-64 program assembled
// here, so that "vmspace run" shows something on a machine with nothing
// installed. It:
//
//  1. writes a greeting;
//  2. maps 4 MiB of anonymous memory and writes 'A' into each of its 1024
//     pages (page faults served by the memory manager);
//  3. grows its heap with brk and writes into it;
//  4. forks: the child writes 'Z' into the first page and exits with 7;
//     the parent waits, checks that its page still holds 'A' (fork's
//     copy-on-write) and that the child's status is 7;
//  5. unmaps the 4 MiB and exits with 0 (1 if a check failed).

// demoBase is where the demo is linked.
const demoBase = 0x400000

// demo wraps the assembler with the demo's two system-call idioms.
type demo struct{ *x86asm.Asm }

// write emits write(1, msg, n) for a message label.
func (a demo) write(msg string, n int) {
	a.MovRegImm32(x86asm.RAX, unix.SYS_WRITE)
	a.MovRegImm32(x86asm.RDI, 1)
	a.LeaRegLabel(x86asm.RSI, msg)
	a.MovRegImm32(x86asm.RDX, uint32(n))
	a.Syscall()
}

// exit emits exit_group(code).
func (a demo) exit(code uint32) {
	a.MovRegImm32(x86asm.RAX, unix.SYS_EXIT_GROUP)
	a.MovRegImm32(x86asm.RDI, code)
	a.Syscall()
}

// DemoImage returns the built-in demonstration program, a static x86-64
// ELF executable.
func DemoImage() []byte {
	const hdr = 0x100 // code starts after the ELF headers
	msgs := []struct{ label, text string }{
		{"hello", "vmspace demo: a program whose whole address space is vmspace's\n"},
		{"touched", "demo: mapped 4 MiB and wrote a byte into each of its 1024 pages\n"},
		{"heap", "demo: grew the heap by 256 KiB with brk and wrote into it\n"},
		{"child", "demo (child): wrote 'Z' into the first page, exiting with 7\n"},
		{"cow", "demo (parent): my first page still holds 'A': copy-on-write works\n"},
		{"status", "demo (parent): the child exited with status 7\n"},
		{"bye", "demo: unmapped the 4 MiB; bye\n"},
		{"broken", "demo: a check FAILED\n"},
	}
	lens := map[string]int{}
	for _, m := range msgs {
		lens[m.label] = len(m.text)
	}
	a := demo{x86asm.New(demoBase + hdr)}
	a.write("hello", lens["hello"])
	// rbx = mmap(NULL, 4 MiB, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
	a.MovRegImm32(x86asm.RAX, unix.SYS_MMAP)
	a.XorReg32(x86asm.RDI)
	a.MovRegImm32(x86asm.RSI, 4<<20)
	a.MovRegImm32(x86asm.RDX, unix.PROT_READ|unix.PROT_WRITE)
	a.MovRegImm32(x86asm.R10, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	a.Emit(0x49, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff) // mov r8, -1
	a.XorReg32(x86asm.R9)
	a.Syscall()
	a.Emit(0x48, 0x89, 0xc3) // mov rbx, rax
	a.XorReg32(x86asm.RCX)
	a.Label("fill")
	a.Emit(0xc6, 0x04, 0x0b, 'A') // mov byte [rbx+rcx], 'A'
	a.Emit(0x48, 0x81, 0xc1)      // add rcx, 4096
	a.Imm32(4096)
	a.Emit(0x48, 0x81, 0xf9) // cmp rcx, 4 MiB
	a.Imm32(4 << 20)
	a.Jcc8(x86asm.CondB, "fill")
	a.write("touched", lens["touched"])
	// r12 = brk(0); brk(r12 + 256 KiB); byte [r12] = 'B'
	a.MovRegImm32(x86asm.RAX, unix.SYS_BRK)
	a.XorReg32(x86asm.RDI)
	a.Syscall()
	a.Emit(0x49, 0x89, 0xc4) // mov r12, rax
	a.MovRegImm32(x86asm.RAX, unix.SYS_BRK)
	a.Emit(0x49, 0x8d, 0xbc, 0x24) // lea rdi, [r12+256 KiB]
	a.Imm32(256 << 10)
	a.Syscall()
	a.Emit(0x41, 0xc6, 0x04, 0x24, 'B') // mov byte [r12], 'B'
	a.write("heap", lens["heap"])
	// fork
	a.MovRegImm32(x86asm.RAX, unix.SYS_FORK)
	a.Syscall()
	a.Emit(0x48, 0x85, 0xc0) // test rax, rax
	a.Jcc32(x86asm.CondE, "childcode")
	a.Emit(0x49, 0x89, 0xc5) // mov r13, rax
	// wait4(r13, rsp, 0, NULL)
	a.Emit(0x48, 0x83, 0xec, 0x10) // sub rsp, 16
	a.MovRegImm32(x86asm.RAX, unix.SYS_WAIT4)
	a.Emit(0x4c, 0x89, 0xef) // mov rdi, r13
	a.Emit(0x48, 0x89, 0xe6) // mov rsi, rsp
	a.XorReg32(x86asm.RDX)
	a.XorReg32(x86asm.R10)
	a.Syscall()
	a.Emit(0x80, 0x3b, 'A') // cmp byte [rbx], 'A'
	a.Jcc32(x86asm.CondNE, "brokencode")
	a.write("cow", lens["cow"])
	a.Emit(0x8b, 0x04, 0x24)    // mov eax, [rsp]
	a.Emit(0xc1, 0xe8, 0x08)    // shr eax, 8
	a.Emit(0x25, 0xff, 0, 0, 0) // and eax, 0xff
	a.Emit(0x83, 0xf8, 0x07)    // cmp eax, 7
	a.Jcc32(x86asm.CondNE, "brokencode")
	a.write("status", lens["status"])
	// munmap(rbx, 4 MiB)
	a.MovRegImm32(x86asm.RAX, unix.SYS_MUNMAP)
	a.Emit(0x48, 0x89, 0xdf) // mov rdi, rbx
	a.MovRegImm32(x86asm.RSI, 4<<20)
	a.Syscall()
	a.write("bye", lens["bye"])
	a.exit(0)
	a.Label("childcode")
	a.Emit(0xc6, 0x03, 'Z') // mov byte [rbx], 'Z'
	a.write("child", lens["child"])
	a.exit(7)
	a.Label("brokencode")
	a.write("broken", lens["broken"])
	a.exit(1)
	for _, m := range msgs {
		a.Label(m.label)
		a.Emit([]byte(m.text)...)
	}
	code, err := a.Finish()
	if err != nil {
		panic(err) // the program above is fixed: a bug here is vmspace's
	}
	img := make([]byte, hdr+len(code))
	le := binary.LittleEndian
	copy(img, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
	le.PutUint16(img[16:], 2)  // ET_EXEC
	le.PutUint16(img[18:], 62) // EM_X86_64
	le.PutUint32(img[20:], 1)
	le.PutUint64(img[24:], demoBase+hdr) // e_entry
	le.PutUint64(img[32:], 64)           // e_phoff
	le.PutUint16(img[52:], 64)
	le.PutUint16(img[54:], 56)
	le.PutUint16(img[56:], 2)
	le.PutUint16(img[58:], 64)
	ph := img[64:]
	le.PutUint32(ph[0:], 1) // PT_LOAD
	le.PutUint32(ph[4:], 5) // R+X
	le.PutUint64(ph[16:], demoBase)
	le.PutUint64(ph[24:], demoBase)
	le.PutUint64(ph[32:], uint64(len(img)))
	le.PutUint64(ph[40:], uint64(len(img)))
	le.PutUint64(ph[48:], 0x1000)
	ph = img[64+56:]
	le.PutUint32(ph[0:], 0x6474e551) // PT_GNU_STACK
	le.PutUint32(ph[4:], 6)
	le.PutUint64(ph[48:], 16)
	copy(img[hdr:], code)
	return img
}
