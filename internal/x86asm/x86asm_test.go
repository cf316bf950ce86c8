package x86asm

import (
	"bytes"
	"testing"
)

// TestLabelReferences: backward and forward references of both sizes and
// RIP-relative label addresses resolve to the bytes GNU as gives.
func TestLabelReferences(t *testing.T) {
	a := New(0x1000)
	a.Label("top")
	a.Jcc8(CondB, "top")      // 72 fe
	a.Jcc32(CondNE, "end")    // 0f 85 rel32
	a.LeaRegLabel(RSI, "end") // 48 8d 35 rel32
	a.Jmp32("top")            // e9 rel32
	a.Label("end")
	a.MovRegImm32(R10, 0x22) // 41 ba 22 00 00 00
	got, err := a.Finish()
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0x72, 0xfe,
		0x0f, 0x85, 0x0c, 0, 0, 0,
		0x48, 0x8d, 0x35, 0x05, 0, 0, 0,
		0xe9, 0xec, 0xff, 0xff, 0xff,
		0x41, 0xba, 0x22, 0, 0, 0,
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}
	if off, ok := a.Offset("end"); !ok || off != 20 {
		t.Errorf("Offset(end) = %d, %v; want 20", off, ok)
	}
}

// TestErrors: a bad program is an error from Finish, never a panic.
func TestErrors(t *testing.T) {
	for name, build := range map[string]func(a *Asm){
		"undefined": func(a *Asm) { a.Jmp8("nowhere") },
		"duplicate": func(a *Asm) { a.Label("x"); a.Label("x") },
		"short range": func(a *Asm) {
			a.Label("x")
			a.Emit(make([]byte, 200)...)
			a.Jmp8("x")
		},
		"absolute range": func(a *Asm) { a.MovEAXMem32(0x1000 + 1<<40) },
	} {
		a := New(0x1000)
		build(a)
		if _, err := a.Finish(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestRegisterMoves: the 64-bit register moves give GNU as's bytes.
func TestRegisterMoves(t *testing.T) {
	a := New(0x1000)
	a.MovRegReg64(R12, RAX)    // mov %rax,%r12: 49 89 c4
	a.MovRegReg64(RDI, R13)    // mov %r13,%rdi: 4c 89 ef
	a.MovMemReg64(0x2000, R12) // mov %r12,0x2000(%rip-relative): 4c 89 25 rel32
	a.MovMemReg64(0x2000, RAX) // 48 89 05 rel32
	got, err := a.Finish()
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x49, 0x89, 0xc4, 0x4c, 0x89, 0xef, 0x4c, 0x89, 0x25, 0xf3, 0x0f, 0, 0, 0x48, 0x89, 0x05, 0xec, 0x0f, 0, 0}
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}
}
