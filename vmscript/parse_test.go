package vmscript

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func parseOne(t *testing.T, line string) *Stmt {
	t.Helper()
	// Bind the names the good lines use so $a, $b resolve.
	src := "mmap 0 4k rw private,anon -> a\nmmap 0 4k rw private,anon -> b\n" + line + "\n"
	s, err := Parse("t", []byte(src))
	if err != nil {
		t.Fatalf("Parse(%q): %v", line, err)
	}
	if len(s.Stmts) != 3 {
		t.Fatalf("Parse(%q): %d statements", line, len(s.Stmts))
	}
	return s.Stmts[2]
}

func TestParseGood(t *testing.T) {
	W := Addr{Kind: AddrWindow}
	tests := []struct {
		line string
		want Stmt
	}{
		{"mmap @0x0 4k rw private,anon", Stmt{Op: OpMmap, Addr: W, Len: 4096, Prot: ProtRead | ProtWrite, MapFlags: MapPrivate | MapAnonymous}},
		{"mmap @1m 0x3000 none shared,anon,fixed -> x", Stmt{Op: OpMmap, Addr: Addr{Kind: AddrWindow, Off: 1 << 20}, Len: 0x3000, MapFlags: MapShared | MapAnonymous | MapFixed, Bind: "x"}},
		{"mmap 0 1g rwx 0", Stmt{Op: OpMmap, Len: 1 << 30, Prot: ProtRead | ProtWrite | ProtExec}},
		{"mmap @0 8k xr private,shared f 0x1000", Stmt{Op: OpMmap, Addr: W, Len: 8192, Prot: ProtRead | ProtExec, MapFlags: MapSharedValidate, HasFile: true, Name: "f", Off: 0x1000}},
		{"mmap @0 4k r shared_validate,fixed_noreplace,growsdown,populate,noreserve,locked,stack,32bit f 0", Stmt{Op: OpMmap, Addr: W, Len: 4096, Prot: ProtRead,
			MapFlags: MapSharedValidate | MapFixedNoReplace | MapGrowsDown | MapPopulate | MapNoReserve | MapLocked | MapStack | Map32Bit, HasFile: true, Name: "f"}},
		{"mmap 0xffffffffffff0000 4k r private,anon", Stmt{Op: OpMmap, Addr: Addr{Off: 0xffffffffffff0000}, Len: 4096, Prot: ProtRead, MapFlags: MapPrivate | MapAnonymous}},
		{"munmap $a+4k 2k", Stmt{Op: OpMunmap, Addr: Addr{Kind: AddrBound, Name: "a", Off: 4096}, Len: 2048}},
		{"munmap $b-0x10 1", Stmt{Op: OpMunmap, Addr: Addr{Kind: AddrBound, Name: "b", Off: 0x10, Neg: true}, Len: 1}},
		{"mprotect @0 4k r+growsdown", Stmt{Op: OpMprotect, Addr: W, Len: 4096, Prot: ProtRead | ProtGrowsDown}},
		{"mprotect @0 4k none+growsup+growsdown", Stmt{Op: OpMprotect, Addr: W, Len: 4096, Prot: ProtGrowsUp | ProtGrowsDown}},
		{"mremap @0 4k 8k maymove", Stmt{Op: OpMremap, Addr: W, Len: 4096, NewLen: 8192, MremapFlags: MremapMaymove}},
		{"mremap @0 4k 4k maymove,fixed,dontunmap @1m -> r", Stmt{Op: OpMremap, Addr: W, Len: 4096, NewLen: 4096, MremapFlags: 7, HasNewAddr: true, NewAddr: Addr{Kind: AddrWindow, Off: 1 << 20}, Bind: "r"}},
		{"mremap @0 4k 0 0", Stmt{Op: OpMremap, Addr: W, Len: 4096}},
		{"madvise @0 4k guard_install", Stmt{Op: OpMadvise, Addr: W, Len: 4096, Advice: MadvGuardInstall}},
		{"madvise @0 4k populate_write", Stmt{Op: OpMadvise, Addr: W, Len: 4096, Advice: MadvPopulateWrite}},
		{"mlock @0 4k", Stmt{Op: OpMlock, Addr: W, Len: 4096}},
		{"mlock @0 4k onfault", Stmt{Op: OpMlock, Addr: W, Len: 4096, OnFault: true}},
		{"munlock @0 4k", Stmt{Op: OpMunlock, Addr: W, Len: 4096}},
		{"mlockall current,future,onfault", Stmt{Op: OpMlockall, MlockallFlags: 7}},
		{"mlockall 0", Stmt{Op: OpMlockall}},
		{"munlockall", Stmt{Op: OpMunlockall}},
		{"msync @0 4k sync,invalidate", Stmt{Op: OpMsync, Addr: W, Len: 4096, MsyncFlags: MsSync | MsInvalidate}},
		{"msync @0 4k 0", Stmt{Op: OpMsync, Addr: W, Len: 4096}},
		{"mincore @0 16k", Stmt{Op: OpMincore, Addr: W, Len: 16384}},
		{"mseal @0 4k", Stmt{Op: OpMseal, Addr: W, Len: 4096}},
		{"anonname @0 4k heap[1]", Stmt{Op: OpAnonname, Addr: W, Len: 4096, Name: "heap[1]"}},
		{"anonname @0 4k -", Stmt{Op: OpAnonname, Addr: W, Len: 4096, ClearName: true}},
		{"brk brk+64k -> h", Stmt{Op: OpBrk, Addr: Addr{Kind: AddrBrk, Off: 65536}, Bind: "h"}},
		{"brk brk-4k", Stmt{Op: OpBrk, Addr: Addr{Kind: AddrBrk, Off: 4096, Neg: true}}},
		{"brk 0", Stmt{Op: OpBrk}},
		{"brk brk", Stmt{Op: OpBrk, Addr: Addr{Kind: AddrBrk}}},
		{"setrlimit as +1m", Stmt{Op: OpSetrlimit, Resource: RlimitAS, Limit: Limit{Kind: LimitPlus, N: 1 << 20}}},
		{"setrlimit memlock 0", Stmt{Op: OpSetrlimit, Resource: RlimitMemlock, Limit: Limit{Kind: LimitValue}}},
		{"setrlimit stack inf", Stmt{Op: OpSetrlimit, Resource: RlimitStack, Limit: Limit{Kind: LimitInf}}},
		{"setrlimit data 0x1000", Stmt{Op: OpSetrlimit, Resource: RlimitData, Limit: Limit{N: 0x1000}}},
		{"write @0 00fFeE", Stmt{Op: OpWrite, Addr: W, Data: []byte{0, 0xff, 0xee}}},
		{"fill @0 8k 0xab", Stmt{Op: OpFill, Addr: W, Len: 8192, Byte: 0xab}},
		{"fill @0 1 255", Stmt{Op: OpFill, Addr: W, Len: 1, Byte: 255}},
		{"read @0 64", Stmt{Op: OpRead, Addr: W, Len: 64}},
		{"sum @0 1m", Stmt{Op: OpSum, Addr: W, Len: 1 << 20}},
		{"file f 0x3000", Stmt{Op: OpFile, Name: "f", Len: 0x3000}},
		{"file f 3k ro seed=7", Stmt{Op: OpFile, Name: "f", Len: 3072, ReadOnly: true, Seed: 7}},
		{"file f 3k seed=0x10 ro", Stmt{Op: OpFile, Name: "f", Len: 3072, ReadOnly: true, Seed: 16}},
		{"memfd m 8k", Stmt{Op: OpMemfd, Name: "m", Len: 8192}},
		{"ftruncate m 0", Stmt{Op: OpFtruncate, Name: "m"}},
		{"pwrite m 4k 01", Stmt{Op: OpPwrite, Name: "m", Off: 4096, Data: []byte{1}}},
		{"psum m 0 8k", Stmt{Op: OpPsum, Name: "m", Len: 8192}},
		{"close m", Stmt{Op: OpClose, Name: "m"}},
		{"shmget s 8k", Stmt{Op: OpShmget, Name: "s", Len: 8192}},
		{"shmat s @0 rdonly -> sa", Stmt{Op: OpShmat, Name: "s", Addr: W, ReadOnly: true, Bind: "sa"}},
		{"shmat s 0", Stmt{Op: OpShmat, Name: "s"}},
		{"shmdt @0", Stmt{Op: OpShmdt, Addr: W}},
		{"shmrm s", Stmt{Op: OpShmrm, Name: "s"}},
		{"io_setup ctx 512 -> ring", Stmt{Op: OpIoSetup, Name: "ctx", Len: 512, Bind: "ring"}},
		{"io_destroy ctx", Stmt{Op: OpIoDestroy, Name: "ctx"}},
		{"state @0 0x4000", Stmt{Op: OpState, Addr: W, Len: 0x4000}},
		{"vmsize", Stmt{Op: OpVmsize}},
		{"vmlck", Stmt{Op: OpVmlck}},
		{"checkpoint", Stmt{Op: OpCheckpoint}},
		{"fork p1", Stmt{Op: OpFork, Name: "p1"}},
		{"p0: munmap @0\t4k   # trailing comment", Stmt{Op: OpMunmap, Addr: W, Len: 4096, Prefixed: true}},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			got := parseOne(t, tc.line)
			want := tc.want
			want.Line = 3
			want.Text = got.Text
			if want.Op != OpCheckpoint {
				want.Proc = "p0"
			}
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("got  %+v\nwant %+v", *got, want)
			}
		})
	}
}

func TestParseBad(t *testing.T) {
	tests := []struct {
		src  string
		line int
		msg  string
	}{
		{"mmap @0 4k rw private,anon\nfrob @0\n", 2, `expected a statement keyword, got "frob"`},
		{"MMAP @0 4k rw private", 1, `expected a statement keyword, got "MMAP"`},
		{"mmap @0 4k rw", 1, "mmap: expected FLAGS, got end of line"},
		{"mmap @0 4k rwz private", 1, `mmap: expected PROT (none or letters of rwx), got "rwz"`},
		{"mmap @0 4k rr private", 1, `expected PROT`},
		{"mmap @0 4k r+growsdown private", 1, `expected PROT`},
		{"mmap @0 4k r private,bogus", 1, `mmap: expected FLAGS (0 or a comma list of private shared`},
		{"mmap @0 4k r private,private", 1, `expected FLAGS`},
		{"mmap @0 4k r private f", 1, "mmap: expected OFF, got end of line"},
		{"mmap @0 4k r private f 0 extra", 1, `mmap: expected end of line, got "extra"`},
		{"mmap @0 4K r private", 1, `mmap: expected LEN (a number`},
		{"mmap @0 0x1g0 r private", 1, `expected LEN`},
		{"mmap @0 99999999999999999999 r private", 1, `expected LEN`},
		{"mmap @0 0x40000000000000k r private", 1, `expected LEN`},
		{"mmap @0 -1 r private", 1, `expected LEN`},
		{"mmap @0 0x r private", 1, `expected LEN`},
		{"mmap #0 4k r private", 1, "mmap: expected ADDR, got end of line"},
		{"mmap @x 4k r private", 1, `mmap: expected ADDR (@OFF`},
		{"mmap brk* 4k r private", 1, `expected ADDR`},
		{"mmap $ 4k r private", 1, `expected ADDR`},
		{"mmap $a 4k r private", 1, `mmap: $a is not bound by an earlier "-> a"`},
		{"mmap @0 4k r private -> 9x", 1, `mmap: expected a NAME after "->", got "9x"`},
		{"mmap @0 4k r private -> a b", 1, `expected "-> NAME" at the end of the line`},
		{"munmap @0 4k -> a", 1, `munmap: has no address result to bind with "->"`},
		{"munmap @0", 1, "munmap: expected LEN, got end of line"},
		{"mremap @0 4k 8k sideways", 1, `mremap: expected FLAGS (0 or a comma list of maymove fixed dontunmap)`},
		{"madvise @0 4k dontneed_locked", 1, `madvise: expected ADVICE (one of normal`},
		{"mlock @0 4k later", 1, `mlock: expected onfault or end of line, got "later"`},
		{"mlockall all", 1, `mlockall: expected FLAGS`},
		{"msync @0 4k now", 1, `msync: expected FLAGS`},
		{"anonname @0 4k", 1, "anonname: expected NAME (or - to clear), got end of line"},
		{"setrlimit nofile 1", 1, `setrlimit: expected RES (one of as data memlock stack), got "nofile"`},
		{"setrlimit as +", 1, `setrlimit: expected VALUE (inf, a number, or +N), got "+"`},
		{"setrlimit as -1", 1, `expected VALUE`},
		{"write @0 abc", 1, `write: expected HEX (an even number of hex digits), got "abc"`},
		{"write @0 0x00", 1, `expected HEX`},
		{"fill @0 4k 256", 1, `fill: expected BYTE (0 to 255), got "256"`},
		{"fill @0 4k 1k", 1, `expected BYTE`},
		{"read @0 65", 1, "read: expected LEN from 1 to 64, got 65"},
		{"read @0 0", 1, "read: expected LEN from 1 to 64, got 0"},
		{"file 1f 4k", 1, `file: expected NAME (letters, digits and _`},
		{"file f 4k rw", 1, `file: expected ro, seed=N or end of line, got "rw"`},
		{"file f 4k ro ro", 1, `expected ro, seed=N`},
		{"file f 4k seed=x", 1, `file: expected seed=N, got "seed=x"`},
		{"shmat s @0 ro", 1, `shmat: expected rdonly or end of line, got "ro"`},
		{"io_setup c 0x100000000", 1, "io_setup: expected NR below 2^32"},
		{"vmsize now", 1, `vmsize: expected end of line, got "now"`},
		{"use p1", 1, `use: expected an existing process, got "p1"`},
		{"exit p1", 1, `exit: expected an existing process, got "p1"`},
		{"fork p0", 1, `fork: process "p0" already exists`},
		{"p1: vmsize", 1, `expected an existing process before ':', got "p1"`},
		{"p0: use p0", 1, "use: takes no PROC: prefix"},
		{"p0:", 1, `expected a statement after "p0:"`},
		{"a-b: vmsize", 1, `expected a process name before ':', got "a-b:"`},
		{"exit p0\nvmsize", 2, "vmsize: no current process (it exited); use one first"},
		{"fork p1\nexit p1\np1: vmsize", 3, `expected an existing process before ':', got "p1"`},
		{"\n\n# comment\n  \nmunmap @0 4k 4k", 5, `munmap: expected end of line, got "4k"`},
	}
	for _, tc := range tests {
		t.Run(tc.src, func(t *testing.T) {
			s, err := Parse("bad.vms", []byte(tc.src))
			if err == nil {
				t.Fatalf("Parse succeeded with %d statements", len(s.Stmts))
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			if pe.Line != tc.line {
				t.Errorf("line %d, want %d (%v)", pe.Line, tc.line, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not contain %q", err, tc.msg)
			}
			prefix := "bad.vms:" + dec(uint64(tc.line)) + ": "
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
		})
	}
}

func TestParseProcesses(t *testing.T) {
	src := `# processes
fork p1
use p1
vmsize
p0: vmsize
p1: fork p2
exit p1
use p2
vmsize
exit p0
fork p0
checkpoint
`
	s, err := Parse("procs", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, st := range s.Stmts {
		got = append(got, dec(uint64(st.Line))+":"+st.Op.String()+":"+st.Proc)
	}
	want := []string{"2:fork:p0", "3:use:", "4:vmsize:p1", "5:vmsize:p0", "6:fork:p1", "7:exit:",
		"8:use:", "9:vmsize:p2", "10:exit:", "11:fork:p2", "12:checkpoint:"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if s.Lines != 12 {
		t.Errorf("Lines = %d, want 12", s.Lines)
	}
}

func TestParseNum(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true}, {"10", 10, true}, {"0x10", 16, true}, {"0xABCdef", 0xabcdef, true},
		{"4k", 4096, true}, {"2m", 2 << 20, true}, {"1g", 1 << 30, true}, {"0x10k", 16 << 10, true},
		{"18446744073709551615", ^uint64(0), true}, {"18446744073709551616", 0, false},
		{"17179869183g", 17179869183 << 30, true}, {"17179869184g", 0, false},
		{"", false_(), false}, {"k", 0, false}, {"0x", 0, false}, {"1_000", 0, false}, {"+1", 0, false},
		{"0X10", 0, false}, {"1K", 0, false}, {"1t", 0, false}, {"0b1", 0, false},
	}
	for _, tc := range tests {
		got, ok := ParseNum(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("ParseNum(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func false_() uint64 { return 0 }

func TestAddrString(t *testing.T) {
	for _, in := range []string{"@0x0", "@0x1000", "$a", "$a+0x10", "$a-0x10", "brk", "brk+0x1000", "brk-0x1000", "0", "0xffff"} {
		a, ok := parseAddr(in)
		if !ok {
			t.Fatalf("parseAddr(%q) failed", in)
		}
		if a.String() != in {
			t.Errorf("parseAddr(%q).String() = %q", in, a.String())
		}
	}
}
