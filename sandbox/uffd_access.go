package sandbox

import (
	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
)

// The access of a fault on a page never mapped.
//
// ptrace's SIGSEGV siginfo does not say whether the faulting access was a
// read or a write, and for a page the host has no mapping of at all the
// fault's si_code (SEGV_MAPERR) does not tell either. Everywhere else
// vmspace serves such a fault as a read and lets a write fault again; but
// in a range registered with a userfaultfd the access type is part of the
// message (UFFD_PAGEFAULT_FLAG_WRITE), and a wrong guess would also make a
// write to a read-only registered range raise a message where Linux
// raises SIGSEGV. There the instruction at the thread's rip is decoded
// (faultWrites): its memory operand, explicit (ModRM) or implicit (the
// stack of push, call and pop, the rsi and rdi of the string
// instructions), says which access faulted. A write, or a
// read-modify-write (which the processor reports as a write), is served
// as a write. What the decoder does not know stays a read.

// insnRegs are the registers an instruction's implicit memory operands
// use.
type insnRegs struct {
	rsp, rsi, rdi, rcx uint64
}

// rmClass is what an instruction does with its ModRM memory operand.
type rmClass uint8

const (
	rmUnknown rmClass = iota
	rmRead
	rmWrite // a write, or a read-modify-write
)

// implicit is an instruction's implicit memory operand.
type implicit uint8

const (
	implNone      implicit = iota
	implPush               // writes below rsp
	implPop                // reads at rsp
	implString             // reads at rsi, writes at rdi (movs)
	implStore              // writes at rdi (stos, maskmov)
	implLoadSI             // reads at rsi (lods)
	implCompareSD          // reads at rsi and rdi (cmps), or rdi (scas)
)

// faultWrites reports whether the instruction at the start of code, which
// faulted at addr with registers r, wrote there; ok is false when it
// cannot be told (unknown or truncated instruction).
func faultWrites(code []byte, addr uint64, r insnRegs) (write, ok bool) {
	d, ok := decodeAccess(code)
	if !ok {
		return false, false
	}
	page := func(a uint64) uint64 { return a &^ 0xfff }
	near := func(a, base uint64) bool {
		// Within the span a string instruction may still cover
		// (rcx elements of up to 8 bytes), in either direction.
		span := r.rcx*8 + 4096
		if d.rep == 0 {
			span = 4096
		}
		return a-base < span || base-a < span
	}
	switch d.impl {
	case implPush:
		if page(addr) == page(r.rsp-8) || (addr < r.rsp && r.rsp-addr <= 4096) {
			return true, true
		}
	case implPop:
		if page(addr) == page(r.rsp) {
			return false, true
		}
	case implString:
		// The source is read before the destination is written.
		if near(addr, r.rsi) {
			return false, true
		}
		if near(addr, r.rdi) {
			return true, true
		}
		return false, false
	case implStore:
		return true, true
	case implLoadSI, implCompareSD:
		return false, true
	}
	if !d.mem {
		return false, false
	}
	switch d.rm {
	case rmRead:
		return false, true
	case rmWrite:
		return true, true
	}
	return false, false
}

// decoded is what decodeAccess finds out about an instruction.
type decoded struct {
	// mem is true if it has a ModRM memory operand, whose use is rm.
	mem bool
	rm  rmClass
	// impl is its implicit memory operand.
	impl implicit
	// rep is the F2 or F3 prefix byte, or 0.
	rep byte
}

// decodeAccess decodes the prefixes, opcode and ModRM of the x86-64
// instruction at the start of code.
func decodeAccess(code []byte) (decoded, bool) {
	var d decoded
	i := 0
	var p66 bool
	for ; i < len(code); i++ {
		switch c := code[i]; c {
		case 0xf0, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65, 0x67:
			continue
		case 0x66:
			p66 = true
			continue
		case 0xf2, 0xf3:
			d.rep = c
			continue
		}
		break
	}
	if i < len(code) && code[i]&0xf0 == 0x40 {
		i++ // REX
	}
	if i >= len(code) {
		return d, false
	}
	op := code[i]
	i++
	// modrm returns the ModRM byte's mod != 3 and reg field.
	modrm := func() (mem bool, reg byte, ok bool) {
		if i >= len(code) {
			return false, 0, false
		}
		m := code[i]
		return m>>6 != 3, m >> 3 & 7, true
	}
	var class rmClass
	var reg byte
	switch op {
	case 0x0f:
		if i >= len(code) {
			return d, false
		}
		op2 := code[i]
		i++
		switch op2 {
		case 0x38, 0x3a:
			if i >= len(code) {
				return d, false
			}
			op3 := code[i]
			i++
			mem, _, ok := modrm()
			if !ok {
				return d, false
			}
			d.mem = mem
			d.rm = legacy0F3x(op2, op3, d.rep)
			return d, true
		case 0x05, 0x0b, 0x31, 0xa2, 0x77:
			return d, false // no memory operand
		case 0xa0, 0xa8:
			d.impl = implPush
			return d, true
		case 0xa1, 0xa9:
			d.impl = implPop
			return d, true
		case 0xf7:
			d.impl = implStore // maskmovq, maskmovdqu
			return d, true
		}
		if op2 >= 0x80 && op2 <= 0x8f || op2 >= 0xc8 && op2 <= 0xcf {
			return d, false // jcc, bswap
		}
		mem, reg, ok := modrm()
		if !ok {
			return d, false
		}
		d.mem = mem
		d.rm = legacy0F(op2, reg, p66, d.rep)
		return d, true
	case 0xc4, 0xc5, 0x62:
		return decodeVEX(code, i-1)
	}
	// The one-byte opcode map.
	switch {
	case op >= 0x50 && op <= 0x57, op == 0x68, op == 0x6a, op == 0x9c, op == 0xe8, op == 0xc8:
		d.impl = implPush
		return d, true
	case op >= 0x58 && op <= 0x5f, op == 0x9d, op == 0xc2, op == 0xc3, op == 0xc9, op == 0xcf:
		d.impl = implPop
		return d, true
	case op == 0xa4 || op == 0xa5:
		d.impl = implString
		return d, true
	case op == 0xaa || op == 0xab:
		d.impl = implStore
		return d, true
	case op == 0xac || op == 0xad:
		d.impl = implLoadSI
		return d, true
	case op >= 0xa6 && op <= 0xa7, op >= 0xae && op <= 0xaf:
		d.impl = implCompareSD
		return d, true
	case op == 0xa0 || op == 0xa1:
		// mov al/eax, moffs
		d.mem, d.rm = true, rmRead
		return d, true
	case op == 0xa2 || op == 0xa3:
		d.mem, d.rm = true, rmWrite
		return d, true
	}
	mem, reg, ok := modrm()
	if !ok {
		return d, false
	}
	switch {
	case op < 0x40 && op&7 < 4:
		// ALU: op r/m, reg (0, 1) writes r/m except cmp; op reg, r/m
		// (2, 3) reads it.
		if op&7 < 2 && op>>3 != 7 {
			class = rmWrite
		} else {
			class = rmRead
		}
	case op == 0x63, op == 0x69, op == 0x6b, op == 0x84, op == 0x85, op == 0x8a, op == 0x8b, op == 0x8e:
		class = rmRead
	case op >= 0x80 && op <= 0x83:
		class = rmWrite
		if reg == 7 { // cmp
			class = rmRead
		}
	case op == 0x86, op == 0x87, op == 0x88, op == 0x89, op == 0x8c, op == 0x8f,
		op == 0xc0, op == 0xc1, op >= 0xd0 && op <= 0xd3, op == 0xc6, op == 0xc7:
		class = rmWrite
	case op >= 0xd8 && op <= 0xdf:
		class = rmRead
		switch op {
		case 0xd9:
			if reg == 2 || reg == 3 || reg == 6 || reg == 7 {
				class = rmWrite
			}
		case 0xdb:
			if reg == 1 || reg == 2 || reg == 3 || reg == 7 {
				class = rmWrite
			}
		case 0xdd, 0xdf:
			if reg == 1 || reg == 2 || reg == 3 || reg == 6 || reg == 7 {
				class = rmWrite
			}
		}
	case op == 0xf6 || op == 0xf7:
		class = rmRead
		if reg == 2 || reg == 3 { // not, neg
			class = rmWrite
		}
	case op == 0xfe:
		class = rmWrite
	case op == 0xff:
		switch reg {
		case 0, 1:
			class = rmWrite
		case 2, 3, 6:
			// call, push: read r/m, write the stack.
			d.impl = implPush
			class = rmRead
		default:
			class = rmRead
		}
	default:
		return d, false
	}
	d.mem, d.rm = mem, class
	return d, true
}

// legacy0F classifies the memory operand of the two-byte opcode 0F op2
// with ModRM reg field reg.
func legacy0F(op2, reg byte, p66 bool, rep byte) rmClass {
	switch op2 {
	case 0x11, 0x13, 0x17, 0x29, 0x2b, 0x7f, 0xe7, 0xd6, 0xc3,
		0xab, 0xb3, 0xbb, 0xa4, 0xa5, 0xac, 0xad, 0xb0, 0xb1, 0xc0, 0xc1:
		return rmWrite
	case 0x7e:
		if rep == 0xf3 { // movq xmm, m64
			return rmRead
		}
		return rmWrite
	case 0xba:
		if reg >= 5 {
			return rmWrite
		}
		return rmRead
	case 0xc7:
		if reg == 1 {
			return rmWrite // cmpxchg8b/16b
		}
		return rmRead
	case 0xae:
		switch reg {
		case 0, 3, 4, 6:
			return rmWrite // fxsave, stmxcsr, xsave, xsaveopt
		}
		return rmRead
	case 0x00:
		if reg <= 1 {
			return rmWrite
		}
		return rmRead
	case 0x01:
		if reg <= 1 || reg == 4 {
			return rmWrite
		}
		return rmRead
	}
	if op2 >= 0x90 && op2 <= 0x9f {
		return rmWrite // setcc
	}
	return rmRead
}

// legacy0F3x classifies the memory operand of the three-byte opcodes
// 0F 38 op3 and 0F 3A op3.
func legacy0F3x(m, op3, rep byte) rmClass {
	if m == 0x38 {
		if op3 == 0xf1 && rep != 0xf2 || op3 == 0xf9 { // movbe store, movdiri
			return rmWrite
		}
		return rmRead
	}
	if op3 >= 0x14 && op3 <= 0x17 { // pextr*, extractps
		return rmWrite
	}
	return rmRead
}

// decodeVEX decodes the VEX (C4, C5) or EVEX (62) instruction at code[at].
func decodeVEX(code []byte, at int) (decoded, bool) {
	var d decoded
	var mmap, pp byte
	i := at + 1
	switch code[at] {
	case 0xc5:
		if i >= len(code) {
			return d, false
		}
		mmap, pp = 1, code[i]&3
		i++
	case 0xc4:
		if i+1 >= len(code) {
			return d, false
		}
		mmap, pp = code[i]&0x1f, code[i+1]&3
		i += 2
	default: // 62: EVEX
		if i+2 >= len(code) {
			return d, false
		}
		mmap, pp = code[i]&7, code[i+1]&3
		i += 3
	}
	evex := code[at] == 0x62
	if i+1 >= len(code) {
		return d, false
	}
	op := code[i]
	m := code[i+1]
	d.mem = m>>6 != 3
	reg := m >> 3 & 7
	d.rm = rmRead
	write := false
	switch mmap {
	case 1:
		switch op {
		case 0x11, 0x13, 0x17, 0x29, 0x2b, 0x7f, 0xd6, 0xe7:
			write = true
		case 0x7e:
			write = pp == 1 // vmovd/vmovq r/m, xmm (F3: a load)
		case 0xae:
			write = !evex && reg == 3 // vstmxcsr
		}
	case 2:
		if evex {
			write = op >= 0xa0 && op <= 0xa3 || op == 0x8a || op == 0x8b || op == 0x63
		} else {
			write = op == 0x2e || op == 0x2f || op == 0x8e
		}
	case 3:
		switch op {
		case 0x14, 0x15, 0x16, 0x17, 0x19, 0x1d, 0x39:
			write = true
		case 0x1b, 0x3b:
			write = evex
		}
	case 5:
		write = evex && (op == 0x11 || op == 0x7e)
	default:
		return d, false
	}
	if write {
		d.rm = rmWrite
	}
	return d, true
}

// uffdFaultWrites reports whether t's fault at addr, in a range registered
// with a userfaultfd, was a write, by decoding the instruction at its rip
// (t.regs are fetched).
func (s *Sandbox) uffdFaultWrites(t *task, addr uint64) bool {
	var code [15]byte
	n, _ := t.p.mm.CopyIn(s.ctx, hostarch.Addr(t.regs.Rip), code[:], mm.IOOpts{})
	w, _ := faultWrites(code[:n], addr, insnRegs{rsp: t.regs.Rsp, rsi: t.regs.Rsi, rdi: t.regs.Rdi, rcx: t.regs.Rcx})
	return w
}
