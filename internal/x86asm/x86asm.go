// Package x86asm is a tiny x86-64 assembler for the machine code vmspace
// generates itself: the stub that every traced process runs (package
// platform/ptrace) and the built-in demonstration program (package
// sandbox). It emits the handful of instruction forms those use, at a known
// load address (so that RIP-relative operands can name absolute
// addresses), with labels for forward and backward references.
//
// Its output is checked against GNU as (platform/ptrace's stub test).
package x86asm

import (
	"encoding/binary"
	"fmt"
)

// Register numbers.
const (
	RAX = 0
	RCX = 1
	RDX = 2
	RBX = 3
	RSP = 4
	RBP = 5
	RSI = 6
	RDI = 7
	R8  = 8
	R9  = 9
	R10 = 10
	R11 = 11
	R12 = 12
	R13 = 13
)

// Condition codes of Jcc8 and Jcc32 (the low nibble of the opcode).
const (
	CondB  = 0x2 // below (unsigned <)
	CondE  = 0x4 // equal, zero
	CondNE = 0x5 // not equal, not zero
)

// Asm assembles one piece of code. An Asm is used by one goroutine.
type Asm struct {
	// base is the address of b[0] when loaded.
	base uint64
	// b is the code emitted so far.
	b []byte
	// labels maps a label to its offset in b.
	labels map[string]int
	// fixups are displacements waiting for their label.
	fixups []fixup
	// err is the first error met (a duplicate label, an absolute operand
	// out of reach); Finish returns it.
	err error
}

// fixup is a displacement to patch: size bytes (1 or 4) at off, relative
// to offset end (the end of the instruction), pointing at label.
type fixup struct {
	off, size, end int
	label          string
}

// New returns an assembler for code loaded at base.
func New(base uint64) *Asm { return &Asm{base: base, labels: make(map[string]int)} }

// PC returns the load address of the next byte.
func (a *Asm) PC() uint64 { return a.base + uint64(len(a.b)) }

// Emit appends raw bytes (for instruction forms without a method).
func (a *Asm) Emit(b ...byte) { a.b = append(a.b, b...) }

// Imm32 appends a 32-bit little-endian immediate.
func (a *Asm) Imm32(v uint32) { a.b = binary.LittleEndian.AppendUint32(a.b, v) }

func (a *Asm) fail(format string, args ...any) {
	if a.err == nil {
		a.err = fmt.Errorf("x86asm: "+format, args...)
	}
}

// Label defines name at the current position.
func (a *Asm) Label(name string) {
	if _, ok := a.labels[name]; ok {
		a.fail("duplicate label %q", name)
		return
	}
	a.labels[name] = len(a.b)
}

// Align pads with int3 to a multiple of n bytes.
func (a *Asm) Align(n int) {
	for len(a.b)%n != 0 {
		a.Emit(0xcc)
	}
}

// ripAbs emits a disp32 operand addressing the absolute address target,
// given that trailing more bytes of the instruction follow it.
func (a *Asm) ripAbs(target uint64, trailing int) {
	next := a.PC() + 4 + uint64(trailing)
	d := int64(target - next)
	if d != int64(int32(d)) {
		a.fail("%#x out of rel32 range of %#x", target, next)
	}
	a.Imm32(uint32(int32(d)))
}

// Rel emits a size-byte (1 or 4) displacement to label, relative to the
// end of the instruction, which ends trailing bytes after the operand.
func (a *Asm) Rel(label string, size, trailing int) {
	a.fixups = append(a.fixups, fixup{off: len(a.b), size: size, end: len(a.b) + size + trailing, label: label})
	a.b = append(a.b, make([]byte, size)...)
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

// MovRegMem64 emits mov reg64, qword [target].
func (a *Asm) MovRegMem64(reg int, target uint64) {
	a.Emit(rexW(reg), 0x8b, modrmRIP(reg))
	a.ripAbs(target, 0)
}

// MovMemRAX64 emits mov qword [target], rax.
func (a *Asm) MovMemRAX64(target uint64) {
	a.Emit(0x48, 0x89, modrmRIP(RAX))
	a.ripAbs(target, 0)
}

// MovMemReg64 emits mov qword [target], reg.
func (a *Asm) MovMemReg64(target uint64, reg int) {
	a.Emit(rexW(reg), 0x89, modrmRIP(reg))
	a.ripAbs(target, 0)
}

// MovRegReg64 emits mov dst, src (64-bit registers).
func (a *Asm) MovRegReg64(dst, src int) {
	rex := byte(0x48)
	if src >= 8 {
		rex |= 4 // REX.R
	}
	if dst >= 8 {
		rex |= 1 // REX.B
	}
	a.Emit(rex, 0x89, byte(0xc0|(src&7)<<3|(dst&7)))
}

// MovEAXMem32 emits mov eax, dword [target].
func (a *Asm) MovEAXMem32(target uint64) {
	a.Emit(0x8b, modrmRIP(RAX))
	a.ripAbs(target, 0)
}

// LeaReg emits lea reg64, [target].
func (a *Asm) LeaReg(reg int, target uint64) {
	a.Emit(rexW(reg), 0x8d, modrmRIP(reg))
	a.ripAbs(target, 0)
}

// LeaRegLabel emits lea reg64, [rip+label].
func (a *Asm) LeaRegLabel(reg int, label string) {
	a.Emit(rexW(reg), 0x8d, modrmRIP(reg))
	a.Rel(label, 4, 0)
}

// MovRegImm32 emits mov reg32, imm32 (zero-extending into reg64).
func (a *Asm) MovRegImm32(reg int, imm uint32) {
	if reg >= 8 {
		a.Emit(0x41)
	}
	a.Emit(0xb8 + byte(reg&7))
	a.Imm32(imm)
}

// XorReg32 emits xor reg32, reg32 (zeroing reg).
func (a *Asm) XorReg32(reg int) {
	if reg >= 8 {
		a.Emit(0x45)
	}
	a.Emit(0x31, byte(0xc0|(reg&7)<<3|(reg&7)))
}

// MovEDXEAX emits mov edx, eax.
func (a *Asm) MovEDXEAX() { a.Emit(0x89, 0xc2) }

// CmpEAXImm8 emits cmp eax, imm8.
func (a *Asm) CmpEAXImm8(imm int8) { a.Emit(0x83, 0xf8, byte(imm)) }

// CmpMem64Imm8 emits cmp qword [target], imm8.
func (a *Asm) CmpMem64Imm8(target uint64, imm int8) {
	a.Emit(0x48, 0x83, modrmRIP(7))
	a.ripAbs(target, 1)
	a.Emit(byte(imm))
}

// AddMem64Imm8 emits add qword [target], imm8.
func (a *Asm) AddMem64Imm8(target uint64, imm int8) {
	a.Emit(0x48, 0x83, modrmRIP(0))
	a.ripAbs(target, 1)
	a.Emit(byte(imm))
}

// CmpMem32Imm8 emits cmp dword [target], imm8.
func (a *Asm) CmpMem32Imm8(target uint64, imm int8) {
	a.Emit(0x83, modrmRIP(7))
	a.ripAbs(target, 1)
	a.Emit(byte(imm))
}

// XchgMem32EAX emits xchg dword [target], eax (a locked, fully ordered
// store).
func (a *Asm) XchgMem32EAX(target uint64) {
	a.Emit(0x87, modrmRIP(RAX))
	a.ripAbs(target, 0)
}

// MovMem32Imm32 emits mov dword [target], imm32.
func (a *Asm) MovMem32Imm32(target uint64, imm uint32) {
	a.Emit(0xc7, modrmRIP(0))
	a.ripAbs(target, 4)
	a.Imm32(imm)
}

// Syscall emits syscall.
func (a *Asm) Syscall() { a.Emit(0x0f, 0x05) }

// Int3 emits int3.
func (a *Asm) Int3() { a.Emit(0xcc) }

// Ud2 emits ud2.
func (a *Asm) Ud2() { a.Emit(0x0f, 0x0b) }

// Jmp8 emits a short jmp to label.
func (a *Asm) Jmp8(label string) {
	a.Emit(0xeb)
	a.Rel(label, 1, 0)
}

// Jcc8 emits a short conditional jump (CondE...) to label.
func (a *Asm) Jcc8(cond byte, label string) {
	a.Emit(0x70 | cond)
	a.Rel(label, 1, 0)
}

// Jmp32 emits a near jmp to label.
func (a *Asm) Jmp32(label string) {
	a.Emit(0xe9)
	a.Rel(label, 4, 0)
}

// Jcc32 emits a near conditional jump (CondE...) to label.
func (a *Asm) Jcc32(cond byte, label string) {
	a.Emit(0x0f, 0x80|cond)
	a.Rel(label, 4, 0)
}

// Finish resolves the references and returns the code, or the first
// error: an undefined or duplicate label, a displacement out of range.
func (a *Asm) Finish() ([]byte, error) {
	for _, f := range a.fixups {
		to, ok := a.labels[f.label]
		if !ok {
			a.fail("undefined label %q", f.label)
			continue
		}
		d := to - f.end
		switch f.size {
		case 1:
			if d != int(int8(d)) {
				a.fail("short reference to %q out of range", f.label)
				continue
			}
			a.b[f.off] = byte(int8(d))
		case 4:
			binary.LittleEndian.PutUint32(a.b[f.off:], uint32(int32(d)))
		default:
			a.fail("reference of %d bytes to %q", f.size, f.label)
		}
	}
	a.fixups = nil
	if a.err != nil {
		return nil, a.err
	}
	return a.b, nil
}

// Offset returns the offset of label from the start of the code.
func (a *Asm) Offset(label string) (uint64, bool) {
	o, ok := a.labels[label]
	return uint64(o), ok
}
