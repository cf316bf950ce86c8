package sandbox

import (
	"encoding/binary"
	"fmt"
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

// demoAsm is a minimal assembler: raw bytes, labels, and rel8/rel32/RIP
// references to labels.
type demoAsm struct {
	// b is the code so far.
	b []byte
	// labels maps labels to offsets in b.
	labels map[string]int
	// fix are the displacements to fill in by finish.
	fix []demoFix
}

// demoFix is a displacement to a label.
type demoFix struct {
	// at and size are the operand's offset in the code and size.
	at, size int
	// end is the offset the displacement is relative to (the end of the
	// instruction).
	end int
	// label is the target.
	label string
}

func (a *demoAsm) emit(b ...byte) { a.b = append(a.b, b...) }

func (a *demoAsm) imm32(v uint32) { a.b = binary.LittleEndian.AppendUint32(a.b, v) }

func (a *demoAsm) label(l string) { a.labels[l] = len(a.b) }

// ref emits a size-byte displacement to label, relative to the end of the
// instruction, which ends trailing bytes after the operand.
func (a *demoAsm) ref(label string, size, trailing int) {
	a.fix = append(a.fix, demoFix{at: len(a.b), size: size, end: len(a.b) + size + trailing, label: label})
	a.b = append(a.b, make([]byte, size)...)
}

func (a *demoAsm) movEAX(v uint32) { a.emit(0xb8); a.imm32(v) }
func (a *demoAsm) movEDI(v uint32) { a.emit(0xbf); a.imm32(v) }
func (a *demoAsm) movESI(v uint32) { a.emit(0xbe); a.imm32(v) }
func (a *demoAsm) movEDX(v uint32) { a.emit(0xba); a.imm32(v) }
func (a *demoAsm) syscall()        { a.emit(0x0f, 0x05) }

// write emits write(1, msg, len(msg)) for a message label.
func (a *demoAsm) write(msg string, n int) {
	a.movEAX(1)
	a.movEDI(1)
	a.emit(0x48, 0x8d, 0x35) // lea rsi, [rip+msg]
	a.ref(msg, 4, 0)
	a.movEDX(uint32(n))
	a.syscall()
}

func (a *demoAsm) exit(code uint32) {
	a.movEAX(231)
	a.movEDI(code)
	a.syscall()
}

func (a *demoAsm) finish() ([]byte, error) {
	for _, f := range a.fix {
		to, ok := a.labels[f.label]
		if !ok {
			return nil, fmt.Errorf("demo: undefined label %q", f.label)
		}
		d := to - f.end
		switch f.size {
		case 1:
			if d != int(int8(d)) {
				return nil, fmt.Errorf("demo: jump to %q out of range", f.label)
			}
			a.b[f.at] = byte(int8(d))
		case 4:
			binary.LittleEndian.PutUint32(a.b[f.at:], uint32(int32(d)))
		}
	}
	return a.b, nil
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
	a := &demoAsm{labels: map[string]int{}}
	a.write("hello", lens["hello"])
	// rbx = mmap(NULL, 4 MiB, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
	a.movEAX(9)
	a.emit(0x31, 0xff) // xor edi, edi
	a.movESI(4 << 20)
	a.movEDX(3)
	a.emit(0x41, 0xba) // mov r10d, 0x22
	a.imm32(0x22)
	a.emit(0x49, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff) // mov r8, -1
	a.emit(0x45, 0x31, 0xc9)                         // xor r9d, r9d
	a.syscall()
	a.emit(0x48, 0x89, 0xc3) // mov rbx, rax
	a.emit(0x31, 0xc9)       // xor ecx, ecx
	a.label("fill")
	a.emit(0xc6, 0x04, 0x0b, 'A') // mov byte [rbx+rcx], 'A'
	a.emit(0x48, 0x81, 0xc1)      // add rcx, 4096
	a.imm32(4096)
	a.emit(0x48, 0x81, 0xf9) // cmp rcx, 4 MiB
	a.imm32(4 << 20)
	a.emit(0x72) // jb fill
	a.ref("fill", 1, 0)
	a.write("touched", lens["touched"])
	// r12 = brk(0); brk(r12 + 256 KiB); byte [r12] = 'B'
	a.movEAX(12)
	a.emit(0x31, 0xff) // xor edi, edi
	a.syscall()
	a.emit(0x49, 0x89, 0xc4) // mov r12, rax
	a.movEAX(12)
	a.emit(0x49, 0x8d, 0xbc, 0x24) // lea rdi, [r12+256 KiB]
	a.imm32(256 << 10)
	a.syscall()
	a.emit(0x41, 0xc6, 0x04, 0x24, 'B') // mov byte [r12], 'B'
	a.write("heap", lens["heap"])
	// fork
	a.movEAX(57)
	a.syscall()
	a.emit(0x48, 0x85, 0xc0) // test rax, rax
	a.emit(0x0f, 0x84)       // jz child
	a.ref("childcode", 4, 0)
	a.emit(0x49, 0x89, 0xc5) // mov r13, rax
	// wait4(r13, rsp, 0, NULL)
	a.emit(0x48, 0x83, 0xec, 0x10) // sub rsp, 16
	a.movEAX(61)
	a.emit(0x4c, 0x89, 0xef) // mov rdi, r13
	a.emit(0x48, 0x89, 0xe6) // mov rsi, rsp
	a.emit(0x31, 0xd2)       // xor edx, edx
	a.emit(0x45, 0x31, 0xd2) // xor r10d, r10d
	a.syscall()
	a.emit(0x80, 0x3b, 'A') // cmp byte [rbx], 'A'
	a.emit(0x0f, 0x85)      // jne broken
	a.ref("brokencode", 4, 0)
	a.write("cow", lens["cow"])
	a.emit(0x8b, 0x04, 0x24)    // mov eax, [rsp]
	a.emit(0xc1, 0xe8, 0x08)    // shr eax, 8
	a.emit(0x25, 0xff, 0, 0, 0) // and eax, 0xff
	a.emit(0x83, 0xf8, 0x07)    // cmp eax, 7
	a.emit(0x0f, 0x85)          // jne broken
	a.ref("brokencode", 4, 0)
	a.write("status", lens["status"])
	// munmap(rbx, 4 MiB)
	a.movEAX(11)
	a.emit(0x48, 0x89, 0xdf) // mov rdi, rbx
	a.movESI(4 << 20)
	a.syscall()
	a.write("bye", lens["bye"])
	a.exit(0)
	a.label("childcode")
	a.emit(0xc6, 0x03, 'Z') // mov byte [rbx], 'Z'
	a.write("child", lens["child"])
	a.exit(7)
	a.label("brokencode")
	a.write("broken", lens["broken"])
	a.exit(1)
	for _, m := range msgs {
		a.label(m.label)
		a.emit([]byte(m.text)...)
	}
	code, err := a.finish()
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
