package ptrace

import (
	"bytes"
	"debug/elf"
	"encoding/hex"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
)

// gnuAsStub is the stub program assembled by GNU as 2.x from the assembly
// in buildStub's comment (with jmp.d32 where buildStub uses a near jump),
// linked at StubCode+codeOff: the golden output for our assembler.
const gnuAsStub = "b8e700000031ff0f050f0bcccccccccc0f05cc0f0bcccccccccccccccccccccc" +
	"488b05e9eeffff488b3deaeeffff488b35ebeeffff488b15eceeffff4c8b15edeeffff" +
	"4c8b05eeeeffff4c8b0defeeffff0f05488905eeeeffff488305eeeeffff01ccebbb" +
	"cccccccccccccccccccccc8b058aeeffff83f801741789c2488d3d7ceeffff31f645" +
	"31d2b8ca0000000f05ebde48833d6eeeffff00756b488b056deeffff488b3d6eeeffff" +
	"488b356feeffff488b1570eeffff4c8b1571eeffff4c8b0572eeffff4c8b0d73eeffff" +
	"0f0548890572eeffffb80200000087051feeffff833d1ceeffff007486488d3d0feeffff" +
	"be01000000ba01000000b8ca0000000f05e969ffffffc705efedffff00000000cce959ffffff"

func TestStubMatchesGNUAs(t *testing.T) {
	want, err := hex.DecodeString(gnuAsStub)
	if err != nil {
		t.Fatal(err)
	}
	// The helper thread's code follows (buildHelper).
	if len(prog.code) < len(want) || !bytes.Equal(prog.code[:len(want)], want) {
		for i := range want {
			if i >= len(prog.code) || prog.code[i] != want[i] {
				t.Fatalf("stub code differs from GNU as at byte %#x:\n got %x\nwant %x", i, prog.code, want)
			}
		}
	}
	for name, off := range map[string]uint64{
		"entry": prog.entry, "regsys": prog.regsys, "inject": prog.inject, "serve": prog.serve,
	} {
		if off%16 != 0 {
			t.Errorf("%s at %#x is not 16-byte aligned", name, off)
		}
	}
	// The traps follow an int3.
	for name, off := range map[string]uint64{"regTrap": prog.regTrap, "injTrap": prog.injTrap, "srvTrap": prog.srvTrap} {
		if prog.code[off-codeOff-1] != 0xcc {
			t.Errorf("%s at %#x does not follow an int3", name, off)
		}
	}
}

func TestStubELF(t *testing.T) {
	f, err := elf.NewFile(bytes.NewReader(stubELF()))
	if err != nil {
		t.Fatal(err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		t.Fatalf("class %v machine %v type %v", f.Class, f.Machine, f.Type)
	}
	if f.Entry != stubLinkAddr+prog.entry {
		t.Errorf("entry %#x, want %#x", f.Entry, stubLinkAddr+prog.entry)
	}
	var loads, stacks int
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_LOAD:
			loads++
			if p.Vaddr != stubLinkAddr || p.Off != 0 || p.Flags != elf.PF_R|elf.PF_X || p.Filesz > hostarch.PageSize {
				t.Errorf("PT_LOAD %+v", p.ProgHeader)
			}
		case elf.PT_GNU_STACK:
			stacks++
			if p.Flags&elf.PF_X != 0 {
				t.Errorf("executable stack requested")
			}
		}
	}
	if loads != 1 || stacks != 1 {
		t.Errorf("%d PT_LOAD, %d PT_GNU_STACK; want 1 and 1", loads, stacks)
	}
	page := stubCodePage()
	if len(page) != hostarch.PageSize || !bytes.Equal(page[codeOff:codeOff+len(prog.code)], prog.code) {
		t.Errorf("code page does not hold the program at codeOff")
	}
}

// TestStubSyscallEntry: the exported offsets name "syscall; int3" in the
// code page, and the image's page holds the same code, so that a tracer of
// its own (the sandbox) injects calls at StubLinkAddr+StubSyscallOff
// during start-up and at StubCode+StubSyscallOff after.
func TestStubSyscallEntry(t *testing.T) {
	page, img := StubCodePage(), StubImage()
	want := []byte{0x0f, 0x05, 0xcc} // syscall; int3
	if got := page[StubSyscallOff : StubSyscallOff+StubTrapDelta]; !bytes.Equal(got, want) {
		t.Errorf("code page at StubSyscallOff: %x, want %x", got, want)
	}
	if StubSyscallLen != 2 || StubTrapDelta != 3 {
		t.Errorf("StubSyscallLen %d, StubTrapDelta %d", StubSyscallLen, StubTrapDelta)
	}
	if !bytes.Equal(img[codeOff:], page[codeOff:len(img)]) {
		t.Errorf("the image's code differs from the code page's")
	}
}
