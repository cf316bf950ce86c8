package vmscript

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeExec is an Executor whose processes give canned answers, for testing
// the driver's formatting.
type fakeExec struct {
	p0          *fakeProc
	closed      int
	checkpoints int
	startErr    error
}

func (e *fakeExec) Start(ctx context.Context) (Proc, error) {
	if e.startErr != nil {
		return nil, e.startErr
	}
	return e.p0, nil
}
func (e *fakeExec) Checkpoint(ctx context.Context) error { e.checkpoints++; return nil }
func (e *fakeExec) Close() error                         { e.closed++; return nil }

// fakeProc answers from its fields and records calls.
type fakeProc struct {
	log      *[]string
	name     string
	brk      uint64
	usage    Usage
	mmapRet  uint64
	mmapErr  error
	remapRet uint64
	// mem is readable memory starting at memAddr; accesses past it fault
	// with faultKind.
	memAddr   uint64
	mem       []byte
	faultKind FaultKind
	regions   []Region
	vec       []byte
	psumN     uint64
	errs      map[string]error
	children  int
	fatal     error
}

func (p *fakeProc) call(format string, args ...any) error {
	s := fmt.Sprintf(format, args...)
	*p.log = append(*p.log, p.name+": "+s)
	if p.fatal != nil {
		return p.fatal
	}
	return p.errs[strings.Fields(s)[0]]
}

func (p *fakeProc) Fork(ctx context.Context) (Proc, error) {
	if err := p.call("fork"); err != nil {
		return nil, err
	}
	p.children++
	c := *p
	c.name = fmt.Sprintf("%s.%d", p.name, p.children)
	c.children = 0
	return &c, nil
}
func (p *fakeProc) Exit(ctx context.Context) error { return p.call("exit") }
func (p *fakeProc) Mmap(ctx context.Context, a MmapArgs) (uint64, error) {
	if err := p.call("mmap %#x %#x %d %#x %q %#x", a.Addr, a.Len, a.Prot, a.Flags, a.File, a.Off); err != nil {
		return 0, err
	}
	return p.mmapRet, p.mmapErr
}
func (p *fakeProc) Munmap(ctx context.Context, addr, length uint64) error {
	return p.call("munmap %#x %#x", addr, length)
}
func (p *fakeProc) Mprotect(ctx context.Context, addr, length uint64, prot Prot) error {
	return p.call("mprotect %#x %#x %#x", addr, length, prot)
}
func (p *fakeProc) Mremap(ctx context.Context, addr, oldLen, newLen uint64, flags MremapFlags, newAddr uint64) (uint64, error) {
	return p.remapRet, p.call("mremap %#x %#x %#x %d %#x", addr, oldLen, newLen, flags, newAddr)
}
func (p *fakeProc) Madvise(ctx context.Context, addr, length uint64, advice Advice) error {
	return p.call("madvise %#x %#x %v", addr, length, advice)
}
func (p *fakeProc) Mlock(ctx context.Context, addr, length uint64, onFault bool) error {
	return p.call("mlock %#x %#x %v", addr, length, onFault)
}
func (p *fakeProc) Munlock(ctx context.Context, addr, length uint64) error {
	return p.call("munlock %#x %#x", addr, length)
}
func (p *fakeProc) Mlockall(ctx context.Context, flags MlockallFlags) error {
	return p.call("mlockall %d", flags)
}
func (p *fakeProc) Munlockall(ctx context.Context) error { return p.call("munlockall") }
func (p *fakeProc) Msync(ctx context.Context, addr, length uint64, flags MsyncFlags) error {
	return p.call("msync %#x %#x %d", addr, length, flags)
}
func (p *fakeProc) Mincore(ctx context.Context, addr, length uint64) ([]byte, error) {
	return p.vec, p.call("mincore %#x %#x", addr, length)
}
func (p *fakeProc) Mseal(ctx context.Context, addr, length uint64) error {
	return p.call("mseal %#x %#x", addr, length)
}
func (p *fakeProc) SetAnonName(ctx context.Context, addr, length uint64, name string, clear bool) error {
	return p.call("anonname %#x %#x %q %v", addr, length, name, clear)
}
func (p *fakeProc) Brk(ctx context.Context, addr uint64) (uint64, error) {
	if addr != 0 {
		p.brk = addr
	}
	return p.brk, p.call("brk %#x", addr)
}
func (p *fakeProc) Setrlimit(ctx context.Context, res Resource, soft uint64) error {
	return p.call("setrlimit %v %#x", res, soft)
}
func (p *fakeProc) Usage(ctx context.Context) (Usage, error) { return p.usage, nil }

// access simulates an access of n bytes at addr to mem.
func (p *fakeProc) access(addr, n uint64) (uint64, Fault) {
	if addr < p.memAddr {
		return 0, Fault{Kind: p.faultKind}
	}
	end := p.memAddr + uint64(len(p.mem))
	if addr+n <= end {
		return n, Fault{}
	}
	ok := uint64(0)
	if addr < end {
		ok = end - addr
	}
	return ok, Fault{Kind: p.faultKind, Off: ok}
}

func (p *fakeProc) Write(ctx context.Context, addr uint64, data []byte) (Fault, error) {
	n, f := p.access(addr, uint64(len(data)))
	copy(p.mem[addr-p.memAddr:], data[:n])
	return f, p.call("write %#x %x", addr, data)
}
func (p *fakeProc) Fill(ctx context.Context, addr, length uint64, b byte) (Fault, error) {
	n, f := p.access(addr, length)
	for i := uint64(0); i < n; i++ {
		p.mem[addr-p.memAddr+i] = b
	}
	return f, p.call("fill %#x %#x %d", addr, length, b)
}
func (p *fakeProc) Read(ctx context.Context, addr, length uint64) ([]byte, Fault, error) {
	n, f := p.access(addr, length)
	var b []byte
	if n > 0 {
		b = append(b, p.mem[addr-p.memAddr:][:n]...)
	}
	return b, f, p.call("read %#x %#x", addr, length)
}
func (p *fakeProc) Sum(ctx context.Context, addr, length uint64) (uint64, Fault, error) {
	n, f := p.access(addr, length)
	h := NewHash()
	if n > 0 {
		h.Write(p.mem[addr-p.memAddr:][:n])
	}
	return h.Sum64(), f, p.call("sum %#x %#x", addr, length)
}
func (p *fakeProc) File(ctx context.Context, name string, size uint64, ro bool, seed uint64) error {
	return p.call("file %s %#x %v %d", name, size, ro, seed)
}
func (p *fakeProc) Memfd(ctx context.Context, name string, size uint64) error {
	return p.call("memfd %s %#x", name, size)
}
func (p *fakeProc) Ftruncate(ctx context.Context, name string, size uint64) error {
	return p.call("ftruncate %s %#x", name, size)
}
func (p *fakeProc) Pwrite(ctx context.Context, name string, off uint64, data []byte) error {
	return p.call("pwrite %s %#x %x", name, off, data)
}
func (p *fakeProc) Psum(ctx context.Context, name string, off, length uint64) (uint64, uint64, error) {
	h := uint64(0)
	for i := uint64(0); i < p.psumN; i++ {
		h = FNV1a(h, []byte{FileByte(off+i, 0)})
	}
	return 0x0123456789abcdef, p.psumN, p.call("psum %s %#x %#x", name, off, length)
}
func (p *fakeProc) Close(ctx context.Context, name string) error { return p.call("close %s", name) }
func (p *fakeProc) Shmget(ctx context.Context, name string, size uint64) error {
	return p.call("shmget %s %#x", name, size)
}
func (p *fakeProc) Shmat(ctx context.Context, name string, addr uint64, rdonly bool) (uint64, error) {
	return p.mmapRet, p.call("shmat %s %#x %v", name, addr, rdonly)
}
func (p *fakeProc) Shmdt(ctx context.Context, addr uint64) error { return p.call("shmdt %#x", addr) }
func (p *fakeProc) Shmrm(ctx context.Context, name string) error { return p.call("shmrm %s", name) }
func (p *fakeProc) IoSetup(ctx context.Context, name string, nr uint32) (uint64, error) {
	return 0x7f0000001000, p.call("io_setup %s %d", name, nr)
}
func (p *fakeProc) IoDestroy(ctx context.Context, name string) error {
	return p.call("io_destroy %s", name)
}
func (p *fakeProc) State(ctx context.Context, addr, length uint64) ([]Region, error) {
	return p.regions, p.call("state %#x %#x", addr, length)
}

const brk0 = 0x5555_0000_0000

func newFake() (*fakeExec, *[]string) {
	log := &[]string{}
	p := &fakeProc{log: log, name: "p0", brk: brk0, usage: Usage{VmSize: 1000, VmLck: 8, VmData: 100, VmStk: 132},
		errs: map[string]error{}}
	return &fakeExec{p0: p}, log
}

func runFake(t *testing.T, ex *fakeExec, src string) string {
	t.Helper()
	s, err := Parse("fake", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Run(context.Background(), s, ex, &buf); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if ex.closed != 1 {
		t.Errorf("Close called %d times", ex.closed)
	}
	return buf.String()
}

func TestRunFormatting(t *testing.T) {
	W := Window
	tests := []struct {
		name  string
		setup func(p *fakeProc)
		src   string
		want  string
		calls []string // expected calls after Start (a prefix match per entry)
	}{
		{
			name:  "mmap in window",
			setup: func(p *fakeProc) { p.mmapRet = W + 0x3000 },
			src:   "# c\n\nmmap @0x3000 4k rw private,anon -> a\nmunmap $a+4k 4k\n",
			want:  "3 = @0x3000\n4 ok\n",
			calls: []string{"p0: mmap 0x200000003000 0x1000 3 0x22 \"\" 0x0", "p0: munmap 0x200000004000 0x1000"},
		},
		{
			name:  "mmap outside window",
			setup: func(p *fakeProc) { p.mmapRet = 0x7f00_0000_0000 },
			src:   "mmap 0 4k r shared f 0x1000 -> a\nmunmap $a-0x10 1\n",
			want:  "1 = new\n2 ok\n",
			calls: []string{`p0: mmap 0x0 0x1000 1 0x1 "f" 0x1000`, "p0: munmap 0x7efffffffff0 0x1"},
		},
		{
			name:  "window end is outside",
			setup: func(p *fakeProc) { p.mmapRet = W + WindowSize },
			src:   "mmap 0 4k r shared f 0\n",
			want:  "1 = new\n",
		},
		{
			name:  "mmap errno unbinds",
			setup: func(p *fakeProc) { p.mmapRet = W; p.errs["mmap"] = fmt.Errorf("wrapped: %w", unix.EEXIST) },
			src:   "mmap @0 4k r private,anon,fixed_noreplace -> a\nmunmap $a 4k\n",
			want:  "1 -EEXIST\n2 unbound $a\n",
			calls: []string{"p0: mmap"},
		},
		{
			name:  "mremap same, moved, errno",
			setup: func(p *fakeProc) { p.remapRet = W },
			src:   "mremap @0 4k 8k 0\nmremap @4k 4k 8k maymove -> r\nmremap $r 4k 8k maymove,fixed @1m\n",
			want:  "1 = same\n2 = @0x0\n3 = same\n",
			calls: []string{"p0: mremap 0x200000000000 0x1000 0x2000 0 0x0", "p0: mremap 0x200000001000 0x1000 0x2000 1 0x0",
				"p0: mremap 0x200000000000 0x1000 0x2000 3 0x200000100000"},
		},
		{
			name: "errno names",
			setup: func(p *fakeProc) {
				p.errs["munmap"] = unix.EWOULDBLOCK
				p.errs["mprotect"] = unix.ENOTSUP
				p.errs["madvise"] = unix.EDEADLOCK
				p.errs["mlock"] = unix.ENOMEM
			},
			src:  "munmap @0 4k\nmprotect @0 4k r+growsdown\nmadvise @0 4k guard_install\nmlock @0 4k onfault\n",
			want: "1 -EAGAIN\n2 -EOPNOTSUPP\n3 -EDEADLK\n4 -ENOMEM\n",
			calls: []string{"p0: munmap", "p0: mprotect 0x200000000000 0x1000 0x1000001", "p0: madvise 0x200000000000 0x1000 guard_install",
				"p0: mlock 0x200000000000 0x1000 true"},
		},
		{
			name: "brk",
			src:  "brk 0\nbrk brk+64k -> h\nbrk brk-4k\nmunmap $h 4k\n",
			want: "1 = brk+0x0\n2 = brk+0x10000\n3 = brk-0x1000\n4 ok\n",
			calls: []string{"p0: brk 0x0", "p0: brk 0x555500010000", "p0: brk 0x5554fffff000",
				"p0: munmap 0x555500010000 0x1000"},
		},
		{
			name: "read write fill sum",
			setup: func(p *fakeProc) {
				p.memAddr = W
				p.mem = make([]byte, 0x1002)
				p.faultKind = FaultSEGV
			},
			src: "write @0x1000 abcd\nread @0x1000 4\nread @0x1002 4\nread @0 2\nwrite @0x1001 0102\nfill @0 0x2000 7\nfill @0 0x1002 7\nsum @0x1000 2\nsum @0x1000 3\nsum @0x1002 3\nsum @0 0\n",
			want: "1 ok\n2 abcd segv +0x2\n3 segv +0x0\n4 0000\n5 segv +0x1\n6 segv +0x1002\n7 ok\n" +
				fmt.Sprintf("8 sum %016x\n9 sum %016x segv +0x2\n10 sum cbf29ce484222325 segv +0x0\n11 sum cbf29ce484222325\n",
					FNV1a(FNVOffset, []byte{7, 7}), FNV1a(FNVOffset, []byte{7, 7})),
		},
		{
			name: "bus",
			setup: func(p *fakeProc) {
				p.memAddr = W
				p.mem = []byte{1, 2}
				p.faultKind = FaultBUS
			},
			src:  "read @0 3\n",
			want: "1 0102 bus +0x2\n",
		},
		{
			name: "state runs",
			setup: func(p *fakeProc) {
				p.regions = []Region{
					{Start: W - 0x1000, End: W + 0x1000, Perms: "rw-p"},
					{Start: W + 0x1000, End: W + 0x2000, Perms: "rw-p"}, // merges
					{Start: W + 0x2000, End: W + 0x3000, Perms: "rw-p", Flags: VMLocked | VMGrowsDown | VMNoHugePage | VMSealed},
					{Start: W + 0x4000, End: W + 0x5000, Perms: "r--s", Flags: VMDontCopy | VMWipeOnFork | VMDontDump | VMHugePage},
					{Start: W + 0x5000, End: W + 0x9000, Perms: "---p"},
				}
			},
			src: "state @0 0x6000\nstate @0 0x5001\nstate @0x8000 1\nstate @1 1\nstate @0 0\n",
			want: "1 +0x0 0x2000 rw-p | +0x2000 0x1000 rw-p:gd,lo,sl,nh | +0x3000 0x1000 unmapped | +0x4000 0x1000 r--s:dc,wf,dd,hg | +0x5000 0x1000 ---p\n" +
				"2 +0x0 0x2000 rw-p | +0x2000 0x1000 rw-p:gd,lo,sl,nh | +0x3000 0x1000 unmapped | +0x4000 0x1000 r--s:dc,wf,dd,hg | +0x5000 0x1000 ---p\n" +
				"3 +0x0 0x1000 ---p\n4 -EINVAL\n5 -EINVAL\n",
			calls: []string{"p0: state 0x200000000000 0x6000", "p0: state 0x200000000000 0x6000", "p0: state 0x200000008000 0x1000"},
		},
		{
			name:  "state all unmapped",
			src:   "state @0 8k\n",
			want:  "1 +0x0 0x2000 unmapped\n",
			calls: []string{"p0: state"},
		},
		{
			name:  "usage",
			setup: func(p *fakeProc) {},
			src:   "vmsize\nvmlck\nsetrlimit as +1k\nsetrlimit data +0\nsetrlimit memlock +5\nsetrlimit stack +0\nsetrlimit stack inf\nsetrlimit as 7\n",
			want:  "1 vmsize +0 kB\n2 vmlck +0 kB\n3 ok\n4 ok\n5 ok\n6 ok\n7 ok\n8 ok\n",
			calls: []string{"p0: setrlimit as 0xfa400", "p0: setrlimit data 0x19000", "p0: setrlimit memlock 0x2005", "p0: setrlimit stack 0x21000",
				"p0: setrlimit stack 0xffffffffffffffff", "p0: setrlimit as 0x7"},
		},
		{
			name:  "mincore",
			setup: func(p *fakeProc) { p.vec = []byte{1, 0, 3, 0x81, 2} },
			src:   "mincore @0 20k\n",
			want:  "1 10110\n",
		},
		{
			name: "mincore empty",
			src:  "mincore @0 0\n",
			want: "1 ok\n",
		},
		{
			name:  "psum",
			setup: func(p *fakeProc) { p.psumN = 3 },
			src:   "psum f 0 3\npsum f 0 4\n",
			want:  "1 sum 0123456789abcdef\n2 sum 0123456789abcdef eof +3\n",
		},
		{
			name:  "shm and aio",
			setup: func(p *fakeProc) { p.mmapRet = W + 0x10000 },
			src:   "shmget s 4k\nshmat s @64k rdonly -> a\nshmdt $a\nshmrm s\nio_setup c 512 -> ring\nmunmap $ring 4k\nio_destroy c\n",
			want:  "1 ok\n2 = @0x10000\n3 ok\n4 ok\n5 ok\n6 ok\n7 ok\n",
			calls: []string{"p0: shmget s 0x1000", "p0: shmat s 0x200000010000 true", "p0: shmdt 0x200000010000", "p0: shmrm s",
				"p0: io_setup c 512", "p0: munmap 0x7f0000001000 0x1000", "p0: io_destroy c"},
		},
		{
			name:  "io_setup failure unbinds",
			setup: func(p *fakeProc) { p.errs["io_setup"] = unix.EAGAIN },
			src:   "io_setup c 512 -> ring\nmunmap $ring 4k\n",
			want:  "1 -EAGAIN\n2 unbound $ring\n",
		},
		{
			name: "files",
			src:  "file f 8k ro seed=3\nmemfd m 4k\nftruncate m 8k\npwrite m 1 ff\nclose m\nmsync @0 4k async\nmseal @0 4k\nanonname @0 4k -\nanonname @0 4k x\nmlockall current,onfault\nmunlockall\nmunlock @0 4k\n",
			want: "1 ok\n2 ok\n3 ok\n4 ok\n5 ok\n6 ok\n7 ok\n8 ok\n9 ok\n10 ok\n11 ok\n12 ok\n",
			calls: []string{"p0: file f 0x2000 true 3", "p0: memfd m 0x1000", "p0: ftruncate m 0x2000", "p0: pwrite m 0x1 ff", "p0: close m",
				"p0: msync 0x200000000000 0x1000 1", "p0: mseal", `p0: anonname 0x200000000000 0x1000 "" true`, `p0: anonname 0x200000000000 0x1000 "x" false`,
				"p0: mlockall 5", "p0: munlockall", "p0: munlock"},
		},
		{
			name:  "processes",
			src:   "fork p1\np1: munmap @0 4k\nuse p1\nmunmap @0 4k\nexit p0\nfork p2\np2: vmsize\ncheckpoint\n",
			want:  "1 ok\n2 ok\n3 ok\n4 ok\n5 ok\n6 ok\n7 vmsize +0 kB\n8 ok\n",
			calls: []string{"p0: fork", "p0.1: munmap", "p0.1: munmap", "p0: exit", "p0.1: fork"},
		},
		{
			name:  "fork failure",
			setup: func(p *fakeProc) { p.errs["fork"] = unix.EAGAIN },
			src:   "fork p1\np1: munmap @0 4k\nexit p1\n",
			want:  "1 -EAGAIN\n2 -ESRCH\n3 -ESRCH\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ex, log := newFake()
			if tc.setup != nil {
				tc.setup(ex.p0)
			}
			got := runFake(t, ex, tc.src)
			if got != tc.want {
				t.Errorf("transcript:\n%s\nwant:\n%s", got, tc.want)
			}
			calls := (*log)[1:] // after the initial brk query
			if len(calls) < len(tc.calls) {
				t.Fatalf("calls %q, want at least %d", calls, len(tc.calls))
			}
			for i, want := range tc.calls {
				if !strings.HasPrefix(calls[i], want) {
					t.Errorf("call %d = %q, want prefix %q", i, calls[i], want)
				}
			}
		})
	}
}

func TestRunUsageDeltas(t *testing.T) {
	ex, _ := newFake()
	s, err := Parse("u", []byte("vmsize\nvmlck\nfork p1\np1: vmsize\nvmsize\n"))
	if err != nil {
		t.Fatal(err)
	}
	// The first Usage is the base the driver takes at start.
	p := &usageProc{fakeProc: ex.p0, seq: []Usage{{VmSize: 1000, VmLck: 8}, {VmSize: 1012, VmLck: 8}, {VmSize: 1012, VmLck: 4},
		{VmSize: 996}, {VmSize: 1000}}}
	var buf bytes.Buffer
	if err := Run(context.Background(), s, &fakeExec2{p: p}, &buf); err != nil {
		t.Fatal(err)
	}
	want := "1 vmsize +12 kB\n2 vmlck -4 kB\n3 ok\n4 vmsize -4 kB\n5 vmsize +0 kB\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

// usageProc returns successive usages from seq.
type usageProc struct {
	*fakeProc
	seq []Usage
}

func (p *usageProc) Usage(ctx context.Context) (Usage, error) {
	u := p.seq[0]
	if len(p.seq) > 1 {
		p.seq = p.seq[1:]
	}
	return u, nil
}

func (p *usageProc) Fork(ctx context.Context) (Proc, error) { return p, nil }

type fakeExec2 struct{ p Proc }

func (e *fakeExec2) Start(ctx context.Context) (Proc, error) { return e.p, nil }
func (e *fakeExec2) Checkpoint(ctx context.Context) error    { return nil }
func (e *fakeExec2) Close() error                            { return nil }

func TestRunExecutorFailure(t *testing.T) {
	ex, _ := newFake()
	boom := errors.New("agent died")
	ex.p0.errs["munmap"] = fmt.Errorf("socket: %v", boom) // not an Errno: fatal
	s, _ := Parse("f", []byte("mseal @0 4k\n\nmunmap @0 4k\nmseal @0 4k\n"))
	var buf bytes.Buffer
	err := Run(context.Background(), s, ex, &buf)
	var re *RunError
	if !errors.As(err, &re) || re.Line != 3 {
		t.Fatalf("err = %v, want a RunError at line 3", err)
	}
	if buf.String() != "1 ok\n" {
		t.Errorf("transcript %q", buf.String())
	}
	if ex.closed != 1 {
		t.Errorf("Close called %d times", ex.closed)
	}
	if !strings.HasPrefix(err.Error(), "f:3: ") {
		t.Errorf("error %q", err)
	}

	ex, _ = newFake()
	ex.startErr = errors.New("no agent")
	if err := Run(context.Background(), s, ex, &buf); err == nil || ex.closed != 1 {
		t.Errorf("start failure: err %v, closed %d", err, ex.closed)
	}

	ex, _ = newFake()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Run(ctx, s, ex, &buf); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err %v", err)
	}
}

func TestDiff(t *testing.T) {
	s, err := Parse("d", []byte("mmap @0 4k rw private,anon\n# c\nread @0 1\nvmsize\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := []byte("1 = @0x0\n3 00\n4 vmsize +4 kB\n")
	tests := []struct {
		b    string
		want *Difference
	}{
		{"1 = @0x0\n3 00\n4 vmsize +4 kB\n", nil},
		{"1 = @0x0\n3 01\n4 vmsize +4 kB\n", &Difference{Line: 3, Stmt: "read @0 1", A: "00", B: "01"}},
		{"1 -ENOMEM\n", &Difference{Line: 1, Stmt: "mmap @0 4k rw private,anon", A: "= @0x0", B: "-ENOMEM"}},
		{"1 = @0x0\n3 00\n", &Difference{Line: 4, Stmt: "vmsize", A: "vmsize +4 kB", B: Missing}},
		{"1 = @0x0\n4 vmsize +4 kB\n", &Difference{A: "3 00", B: "4 vmsize +4 kB"}},
		{"1 = @0x0\n3 00\n4 vmsize +4 kB", &Difference{A: "29 bytes", B: "28 bytes"}},
	}
	for _, tc := range tests {
		got := Diff(s, a, []byte(tc.b))
		if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
			t.Errorf("Diff(%q) = %+v, want %+v", tc.b, got, tc.want)
		}
	}
	d := Diff(s, a, []byte("1 = @0x0\n3 01\n4 vmsize +4 kB\n"))
	if got, want := d.Format("linux", "vmspace"), "line 3: read @0 1\n  linux: 00\n  vmspace: 01"; got != want {
		t.Errorf("Format = %q, want %q", got, want)
	}
	// Extra lines on the other side.
	d = Diff(nil, []byte("1 ok\n"), []byte("1 ok\n2 ok\n"))
	if d == nil || d.Line != 2 || d.A != Missing || d.B != "ok" {
		t.Errorf("Diff extra = %+v", d)
	}
}

func TestFileByte(t *testing.T) {
	for _, tc := range []struct {
		i, seed uint64
	}{{0, 0}, {1, 0}, {250, 7}, {1 << 40, 3}, {^uint64(0), ^uint64(0)}} {
		// Reference with big-enough arithmetic: (i*131 + seed) mod 251 computed in 128 bits.
		want := mulMod(tc.i, 131, tc.seed, 251)
		if got := FileByte(tc.i, tc.seed); got != want {
			t.Errorf("FileByte(%d, %d) = %d, want %d", tc.i, tc.seed, got, want)
		}
	}
	if FileByte(2, 5) != byte((2*131+5)%251) {
		t.Error("FileByte(2, 5)")
	}
}

func mulMod(i, m, add, mod uint64) byte {
	// Horner over bits, all values < 2*mod.
	r := uint64(0)
	for b := 63; b >= 0; b-- {
		r = (r * 2) % mod
		if i>>uint(b)&1 == 1 {
			r = (r + m) % mod
		}
	}
	return byte((r + add%mod) % mod)
}

func TestErrnoName(t *testing.T) {
	for e, want := range map[unix.Errno]string{
		unix.EPERM: "EPERM", unix.EAGAIN: "EAGAIN", unix.EOPNOTSUPP: "EOPNOTSUPP", unix.EDEADLK: "EDEADLK",
		unix.EOVERFLOW: "EOVERFLOW", unix.EHWPOISON: "EHWPOISON", 200: "E200",
	} {
		if got := ErrnoName(e); got != want {
			t.Errorf("ErrnoName(%d) = %q, want %q", e, got, want)
		}
	}
}
