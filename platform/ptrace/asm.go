package ptrace

import "fmt"

// asm is a tiny x86-64 assembler for the stub: it emits the handful of
// instruction forms the stub uses, at a known load address (so that
// RIP-relative operands can name absolute addresses), with labels for
// forward and backward jumps.
type asm struct {
	// base is the address of b[0] when loaded.
	base uint64
	// b is the code emitted so far.
	b []byte
	// labels maps a label to its offset in b.
	labels map[string]int
	// fixups are rel8/rel32 jump operands waiting for their label.
	fixups []fixup
}

// fixup is a jump operand to patch: the operand at off (size 1 or 4
// bytes), relative to the end of the operand, pointing at label.
type fixup struct {
	off   int
	size  int
	label string
}

// x86-64 register numbers.
const (
	rAX = 0
	rCX = 1
	rDX = 2
	rBX = 3
	rSP = 4
	rBP = 5
	rSI = 6
	rDI = 7
	r8  = 8
	r9  = 9
	r10 = 10
)

func newAsm(base uint64) *asm { return &asm{base: base, labels: make(map[string]int)} }

func (a *asm) pc() uint64 { return a.base + uint64(len(a.b)) }

func (a *asm) emit(b ...byte) { a.b = append(a.b, b...) }

func (a *asm) emit32(v uint32) { a.emit(byte(v), byte(v>>8), byte(v>>16), byte(v>>24)) }

// label defines name at the current position.
func (a *asm) label(name string) {
	if _, ok := a.labels[name]; ok {
		panic("asm: duplicate label " + name)
	}
	a.labels[name] = len(a.b)
}

// align pads with int3 to a multiple of n bytes.
func (a *asm) align(n int) {
	for len(a.b)%n != 0 {
		a.emit(0xcc)
	}
}

// ripRel emits a disp32 operand addressing target, given that trailing
// more bytes of the instruction follow the displacement.
func (a *asm) ripRel(target uint64, trailing int) {
	next := a.pc() + 4 + uint64(trailing)
	d := int64(target - next)
	if d != int64(int32(d)) {
		panic(fmt.Sprintf("asm: %#x out of rel32 range of %#x", target, next))
	}
	a.emit32(uint32(int32(d)))
}

// modrmRIP returns the ModRM byte for [rip+disp32] with register reg.
func modrmRIP(reg int) byte { return byte((reg&7)<<3 | 5) }

// rexW returns a REX.W prefix with R set for reg >= 8.
func rexW(reg int) byte {
	if reg >= 8 {
		return 0x4c
	}
	return 0x48
}

// movRegMem64 emits mov reg64, qword [target].
func (a *asm) movRegMem64(reg int, target uint64) {
	a.emit(rexW(reg), 0x8b, modrmRIP(reg))
	a.ripRel(target, 0)
}

// movMemRAX64 emits mov qword [target], rax.
func (a *asm) movMemRAX64(target uint64) {
	a.emit(0x48, 0x89, modrmRIP(rAX))
	a.ripRel(target, 0)
}

// movEAXMem32 emits mov eax, dword [target].
func (a *asm) movEAXMem32(target uint64) {
	a.emit(0x8b, modrmRIP(rAX))
	a.ripRel(target, 0)
}

// leaReg emits lea reg64, [target].
func (a *asm) leaReg(reg int, target uint64) {
	a.emit(rexW(reg), 0x8d, modrmRIP(reg))
	a.ripRel(target, 0)
}

// movRegImm32 emits mov reg32, imm32 (zero-extending), for reg < 8.
func (a *asm) movRegImm32(reg int, imm uint32) {
	a.emit(0xb8 + byte(reg))
	a.emit32(imm)
}

// xorReg32 emits xor reg32, reg32 (zeroing reg).
func (a *asm) xorReg32(reg int) {
	if reg >= 8 {
		a.emit(0x45)
	}
	a.emit(0x31, byte(0xc0|(reg&7)<<3|(reg&7)))
}

// movEDXEAX emits mov edx, eax.
func (a *asm) movEDXEAX() { a.emit(0x89, 0xc2) }

// cmpEAXImm8 emits cmp eax, imm8.
func (a *asm) cmpEAXImm8(imm int8) { a.emit(0x83, 0xf8, byte(imm)) }

// cmpMem64Imm8 emits cmp qword [target], imm8.
func (a *asm) cmpMem64Imm8(target uint64, imm int8) {
	a.emit(0x48, 0x83, modrmRIP(7))
	a.ripRel(target, 1)
	a.emit(byte(imm))
}

// addMem64Imm8 emits add qword [target], imm8.
func (a *asm) addMem64Imm8(target uint64, imm int8) {
	a.emit(0x48, 0x83, modrmRIP(0))
	a.ripRel(target, 1)
	a.emit(byte(imm))
}

// cmpMem32Imm8 emits cmp dword [target], imm8.
func (a *asm) cmpMem32Imm8(target uint64, imm int8) {
	a.emit(0x83, modrmRIP(7))
	a.ripRel(target, 1)
	a.emit(byte(imm))
}

// xchgMem32EAX emits xchg dword [target], eax (a locked, fully ordered
// store).
func (a *asm) xchgMem32EAX(target uint64) {
	a.emit(0x87, modrmRIP(rAX))
	a.ripRel(target, 0)
}

// movMem32Imm32 emits mov dword [target], imm32.
func (a *asm) movMem32Imm32(target uint64, imm uint32) {
	a.emit(0xc7, modrmRIP(0))
	a.ripRel(target, 4)
	a.emit32(imm)
}

func (a *asm) syscall() { a.emit(0x0f, 0x05) }
func (a *asm) int3()    { a.emit(0xcc) }
func (a *asm) ud2()     { a.emit(0x0f, 0x0b) }

// jcc emits a short jump (opcode 0xeb jmp, 0x74 je, 0x75 jne) to label.
func (a *asm) jcc8(op byte, label string) {
	a.emit(op, 0)
	a.fixups = append(a.fixups, fixup{off: len(a.b) - 1, size: 1, label: label})
}

func (a *asm) jmp8(label string) { a.jcc8(0xeb, label) }
func (a *asm) je8(label string)  { a.jcc8(0x74, label) }
func (a *asm) jne8(label string) { a.jcc8(0x75, label) }

// jmp32 emits a near jump to label.
func (a *asm) jmp32(label string) {
	a.emit(0xe9, 0, 0, 0, 0)
	a.fixups = append(a.fixups, fixup{off: len(a.b) - 4, size: 4, label: label})
}

// finish resolves jumps and returns the code.
func (a *asm) finish() []byte {
	for _, f := range a.fixups {
		to, ok := a.labels[f.label]
		if !ok {
			panic("asm: undefined label " + f.label)
		}
		d := to - (f.off + f.size)
		switch f.size {
		case 1:
			if d != int(int8(d)) {
				panic("asm: short jump out of range to " + f.label)
			}
			a.b[f.off] = byte(int8(d))
		case 4:
			v := uint32(int32(d))
			a.b[f.off], a.b[f.off+1], a.b[f.off+2], a.b[f.off+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		}
	}
	a.fixups = nil
	return a.b
}

// offset returns the offset of label from base.
func (a *asm) offset(label string) uint64 {
	o, ok := a.labels[label]
	if !ok {
		panic("asm: undefined label " + label)
	}
	return uint64(o)
}
