package sandbox

import "testing"

// TestFaultWrites checks the decoder that tells a userfault's access type
// on encodings whose operands are known (as GNU as assembles them).
func TestFaultWrites(t *testing.T) {
	regs := insnRegs{rsp: 0x7000, rsi: 0x10000, rdi: 0x20000, rcx: 100}
	for _, c := range []struct {
		name      string
		code      []byte
		addr      uint64
		write, ok bool
	}{
		{"mov eax,[rdi]", []byte{0x8b, 0x07}, 0x20000, false, true},
		{"mov [rdi],eax", []byte{0x89, 0x07}, 0x20000, true, true},
		{"mov byte [rdi],1", []byte{0xc6, 0x07, 0x01}, 0x20000, true, true},
		{"cmp qword [rdi],0", []byte{0x48, 0x83, 0x3f, 0x00}, 0x20000, false, true},
		{"add qword [rdi],1", []byte{0x48, 0x83, 0x07, 0x01}, 0x20000, true, true},
		{"lock xadd [rdi],eax", []byte{0xf0, 0x0f, 0xc1, 0x07}, 0x20000, true, true},
		{"movzx eax,byte [rdi]", []byte{0x0f, 0xb6, 0x07}, 0x20000, false, true},
		{"movups [rdi],xmm0", []byte{0x0f, 0x11, 0x07}, 0x20000, true, true},
		{"movdqu xmm0,[rdi]", []byte{0xf3, 0x0f, 0x6f, 0x07}, 0x20000, false, true},
		{"movq xmm0,[rdi]", []byte{0xf3, 0x0f, 0x7e, 0x07}, 0x20000, false, true},
		{"movq [rdi],xmm0", []byte{0x66, 0x0f, 0xd6, 0x07}, 0x20000, true, true},
		{"vmovdqu ymm0,[rdi]", []byte{0xc5, 0xfe, 0x6f, 0x07}, 0x20000, false, true},
		{"vmovdqu [rdi],ymm0", []byte{0xc5, 0xfe, 0x7f, 0x07}, 0x20000, true, true},
		{"vmovdqu64 [rdi],ymm16", []byte{0x62, 0xe1, 0xfe, 0x28, 0x7f, 0x07}, 0x20000, true, true},
		{"vmovdqu64 ymm16,[rdi]", []byte{0x62, 0xe1, 0xfe, 0x28, 0x6f, 0x07}, 0x20000, false, true},
		{"vextracti128 [rdi],ymm0,1", []byte{0xc4, 0xe3, 0x7d, 0x39, 0x07, 0x01}, 0x20000, true, true},
		{"rep stosb", []byte{0xf3, 0xaa}, 0x20010, true, true},
		{"rep movsb (source)", []byte{0xf3, 0xa4}, 0x10010, false, true},
		{"rep movsb (destination)", []byte{0xf3, 0xa4}, 0x20010, true, true},
		{"push rax", []byte{0x50}, 0x6ff8, true, true},
		{"push qword [rdi]", []byte{0xff, 0x37}, 0x20000, false, true},
		{"push qword [rdi] (stack)", []byte{0xff, 0x37}, 0x6ff8, true, true},
		{"pop qword [rdi]", []byte{0x8f, 0x07}, 0x20000, true, true},
		{"ret", []byte{0xc3}, 0x7000, false, true},
		{"fstp qword [rdi]", []byte{0xdd, 0x1f}, 0x20000, true, true},
		{"fld qword [rdi]", []byte{0xdd, 0x07}, 0x20000, false, true},
		{"sete byte [rdi]", []byte{0x0f, 0x94, 0x07}, 0x20000, true, true},
		{"ud2", []byte{0x0f, 0x0b}, 0x20000, false, false},
		{"truncated", []byte{0x48}, 0x20000, false, false},
		{"empty", nil, 0x20000, false, false},
	} {
		w, ok := faultWrites(c.code, c.addr, regs)
		if w != c.write || ok != c.ok {
			t.Errorf("%s: write %v ok %v, want %v %v", c.name, w, ok, c.write, c.ok)
		}
	}
}
