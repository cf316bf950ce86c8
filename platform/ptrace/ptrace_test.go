package ptrace

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/safemem"
	"golang.org/x/sys/unix"
)

// testFile is a memmap.File over a memfd whose page i starts with the
// 8-byte tag tag(id, i). Pointer type: comparable.
type testFile struct {
	fd    int
	id    int
	pages int
	ino   uint64
}

func (*testFile) IncRef(memmap.FileRange) {}
func (*testFile) DecRef(memmap.FileRange) {}
func (*testFile) MapInternal(memmap.FileRange, hostarch.AccessType) (safemem.BlockSeq, error) {
	return safemem.BlockSeq{}, unix.ENOSYS
}
func (f *testFile) FD() int { return f.fd }

// sliceFile is a non-comparable memmap.File (it holds a slice), which
// makes MapFile identify its descriptor with fstat every time.
type sliceFile struct {
	fd   int
	junk []int
}

func (sliceFile) IncRef(memmap.FileRange) {}
func (sliceFile) DecRef(memmap.FileRange) {}
func (sliceFile) MapInternal(memmap.FileRange, hostarch.AccessType) (safemem.BlockSeq, error) {
	return safemem.BlockSeq{}, unix.ENOSYS
}
func (f sliceFile) FD() int { return f.fd }

func tag(id, page int) uint64 { return uint64(id)<<32 | uint64(page) | 0xa5<<56 }

// newTestFile makes a memfd of pages pages, each tagged.
func newTestFile(t testing.TB, id, pages int) *testFile {
	t.Helper()
	fd, err := unix.MemfdCreate(fmt.Sprintf("ptrace-test-%d", id), unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	buf := make([]byte, pages*hostarch.PageSize)
	for i := 0; i < pages; i++ {
		binary.LittleEndian.PutUint64(buf[i*hostarch.PageSize:], tag(id, i))
	}
	if _, err := unix.Pwrite(fd, buf, 0); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return &testFile{fd: fd, id: id, pages: pages, ino: st.Ino}
}

// testPlatform is shared by the tests of this package.
var (
	testPlatformOnce sync.Once
	testPlatform     *Platform
	testPlatformErr  error
)

// newTestStub returns a new stub, released at the end of the test, or
// skips the test if ptrace cannot be used here.
func newTestStub(t testing.TB) *AddressSpace {
	t.Helper()
	testPlatformOnce.Do(func() {
		devnull, err := os.OpenFile("/dev/null", os.O_RDWR, 0)
		if err != nil {
			testPlatformErr = err
			return
		}
		testPlatform, testPlatformErr = NewWithOptions(Options{Stdin: devnull, Stdout: devnull, Stderr: devnull})
	})
	if testPlatformErr != nil {
		t.Fatalf("NewWithOptions: %v", testPlatformErr)
	}
	as, err := testPlatform.NewStub()
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.ENOSYS) {
			t.Skipf("ptrace not permitted here: %v", err)
		}
		t.Fatalf("NewStub: %v", err)
	}
	t.Cleanup(as.Release)
	return as
}

// hostMapping is one line of /proc/PID/maps.
type hostMapping struct {
	start, end uint64
	perms      string
	off        uint64
	ino        uint64
	name       string
}

func readMaps(t testing.TB, pid int) []hostMapping {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	var ms []hostMapping
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			t.Fatalf("bad maps line %q", sc.Text())
		}
		var m hostMapping
		r := strings.SplitN(f[0], "-", 2)
		m.start, _ = strconv.ParseUint(r[0], 16, 64)
		m.end, _ = strconv.ParseUint(r[1], 16, 64)
		m.perms = f[1]
		m.off, _ = strconv.ParseUint(f[2], 16, 64)
		m.ino, _ = strconv.ParseUint(f[4], 10, 64)
		if len(f) > 5 {
			m.name = strings.Join(f[5:], " ")
		}
		ms = append(ms, m)
	}
	return ms
}

func TestStubLayout(t *testing.T) {
	as := newTestStub(t)
	p := testPlatform
	if got := p.MaxUserAddress(); got != 0x7fffffffd000 {
		t.Errorf("MaxUserAddress = %v, want %#x", got, uint64(StubStart))
	}
	if min := p.MinUserAddress(); min < 0x10000 || !min.IsPageAligned() {
		t.Errorf("MinUserAddress = %v", min)
	}
	if b, err := os.ReadFile("/proc/sys/vm/mmap_min_addr"); err == nil {
		v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if uint64(p.MinUserAddress()) < v {
			t.Errorf("MinUserAddress %v below vm.mmap_min_addr %#x", p.MinUserAddress(), v)
		}
	}
	if p.MapUnit() != 0 || p.SupportsAddressSpaceIO() {
		t.Errorf("MapUnit %d, SupportsAddressSpaceIO %v", p.MapUnit(), p.SupportsAddressSpaceIO())
	}
	maps := readMaps(t, as.Pid())
	var user []hostMapping
	for _, m := range maps {
		if m.start < uint64(StubEnd) {
			user = append(user, m)
		}
	}
	if len(user) != 2 ||
		user[0].start != uint64(StubComm) || user[0].end != uint64(StubCode) || user[0].perms != "rw-s" ||
		user[1].start != uint64(StubCode) || user[1].end != uint64(StubEnd) || user[1].perms != "r-xp" {
		t.Fatalf("user mappings of a fresh stub: %+v; want only the comm and code pages", user)
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", as.Pid())); err != nil || string(b) != "vmspace-stub\n" {
		t.Errorf("stub comm %q, %v; want vmspace-stub", b, err)
	}
	// Descriptors: stdio and the socket.
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", as.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	for _, e := range ents {
		n, _ := strconv.Atoi(e.Name())
		fds = append(fds, n)
	}
	sort.Ints(fds)
	if fmt.Sprint(fds) != fmt.Sprint([]int{0, 1, 2, StubSocketFD}) {
		t.Errorf("stub descriptors %v, want [0 1 2 %d]", fds, StubSocketFD)
	}
	// The stub is what the tracer says, and answers.
	pid, err := as.Syscall(unix.SYS_GETPID)
	if err != nil || int(pid) != as.Pid() {
		t.Errorf("getpid in the stub = %d, %v; want %d", pid, err, as.Pid())
	}
	if _, err := as.Syscall(unix.SYS_CLOSE, 12345); !errors.Is(err, unix.EBADF) {
		t.Errorf("close(12345) in the stub: %v, want EBADF", err)
	}
	if _, err := as.Syscall(unix.SYS_GETPID, 1, 2, 3, 4, 5, 6, 7); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Syscall with 7 arguments: %v, want EINVAL", err)
	}
}

// pageModel is what the test believes is mapped at one page.
type pageModel struct {
	file *testFile
	page int // page index in file
	prot uintptr
}

func permString(prot uintptr) string {
	b := []byte("---s")
	if prot&unix.PROT_READ != 0 {
		b[0] = 'r'
	}
	if prot&unix.PROT_WRITE != 0 {
		b[1] = 'w'
	}
	if prot&unix.PROT_EXEC != 0 {
		b[2] = 'x'
	}
	return string(b)
}

func accessOf(prot uintptr) hostarch.AccessType {
	return hostarch.AccessType{Read: prot&unix.PROT_READ != 0, Write: prot&unix.PROT_WRITE != 0, Execute: prot&unix.PROT_EXEC != 0}
}

// checkModel compares the stub's mappings below StubStart, page by page,
// and the first word of each mapped page, with model (window pages from
// base).
func checkModel(t *testing.T, as *AddressSpace, base uint64, model []pageModel, step int) {
	t.Helper()
	got := make([]*hostMapping, len(model))
	for _, m := range readMaps(t, as.Pid()) {
		m := m
		if m.start >= uint64(StubStart) {
			continue
		}
		if m.start < base || m.end > base+uint64(len(model))*hostarch.PageSize {
			t.Fatalf("step %d: host mapping %#x-%#x outside the test window", step, m.start, m.end)
		}
		for a := m.start; a < m.end; a += hostarch.PageSize {
			got[(a-base)/hostarch.PageSize] = &m
		}
	}
	for i, want := range model {
		addr := base + uint64(i)*hostarch.PageSize
		g := got[i]
		if want.file == nil {
			if g != nil {
				t.Fatalf("step %d: page %#x mapped (%+v), model says unmapped", step, addr, *g)
			}
			var b [8]byte
			if _, err := as.ReadMemory(hostarch.Addr(addr), b[:]); err == nil {
				t.Fatalf("step %d: unmapped page %#x readable through /proc/PID/mem", step, addr)
			}
			continue
		}
		if g == nil {
			t.Fatalf("step %d: page %#x unmapped, model says page %d of file %d", step, addr, want.page, want.file.id)
		}
		off := g.off + (addr - g.start)
		if g.ino != want.file.ino || off != uint64(want.page)*hostarch.PageSize || g.perms != permString(want.prot) {
			t.Fatalf("step %d: page %#x is %s ino %d offset %#x; model says %s ino %d (file %d) offset %#x",
				step, addr, g.perms, g.ino, off, permString(want.prot), want.file.ino, want.file.id, want.page*hostarch.PageSize)
		}
		var b [8]byte
		if _, err := as.ReadMemory(hostarch.Addr(addr), b[:]); err != nil {
			t.Fatalf("step %d: reading page %#x through /proc/PID/mem: %v", step, addr, err)
		}
		if v := binary.LittleEndian.Uint64(b[:]); v != tag(want.file.id, want.page) {
			t.Fatalf("step %d: page %#x holds tag %#x, want %#x (file %d page %d)", step, addr, v, tag(want.file.id, want.page), want.file.id, want.page)
		}
	}
}

func TestRandomMapUnmap(t *testing.T) {
	as := newTestStub(t)
	const (
		window    = 128
		filePages = 64
		base      = 0x10000000
	)
	files := []*testFile{newTestFile(t, 1, filePages), newTestFile(t, 2, filePages)}
	prots := []uintptr{
		unix.PROT_READ, unix.PROT_READ | unix.PROT_WRITE, unix.PROT_READ | unix.PROT_EXEC,
		unix.PROT_READ | unix.PROT_WRITE | unix.PROT_EXEC, unix.PROT_NONE, unix.PROT_WRITE,
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	model := make([]pageModel, window)
	steps := 300
	if testing.Short() {
		steps = 60
	}
	for step := 0; step < steps; step++ {
		first := rng.Intn(window)
		n := 1 + rng.Intn(min(window-first, 16))
		if rng.Intn(5) == 0 {
			n = window - first // sometimes long
		}
		addr := hostarch.Addr(base + uint64(first)*hostarch.PageSize)
		if rng.Intn(3) == 0 {
			as.Unmap(addr, uint64(n)*hostarch.PageSize)
			for i := first; i < first+n; i++ {
				model[i] = pageModel{}
			}
		} else {
			if n > filePages {
				n = filePages
			}
			f := files[rng.Intn(len(files))]
			fp := rng.Intn(filePages - n + 1)
			prot := prots[rng.Intn(len(prots))]
			fr := memmap.FileRange{Start: uint64(fp) * hostarch.PageSize, End: uint64(fp+n) * hostarch.PageSize}
			if err := as.MapFile(addr, f, fr, accessOf(prot), rng.Intn(4) == 0); err != nil {
				t.Fatalf("step %d: MapFile(%v, %v): %v", step, addr, fr, err)
			}
			for i := 0; i < n; i++ {
				model[first+i] = pageModel{file: f, page: fp + i, prot: prot}
			}
		}
		checkModel(t, as, base, model, step)
	}
	// Writes through a shared mapping reach the file.
	for i, m := range model {
		if m.file == nil || m.prot&unix.PROT_WRITE == 0 {
			continue
		}
		addr := hostarch.Addr(base + uint64(i)*hostarch.PageSize)
		if _, err := as.WriteMemory(addr+8, []byte("written!")); err != nil {
			t.Fatalf("WriteMemory(%v): %v", addr, err)
		}
		var b [8]byte
		if _, err := unix.Pread(m.file.fd, b[:], int64(m.page)*hostarch.PageSize+8); err != nil || string(b[:]) != "written!" {
			t.Fatalf("file %d page %d after writing at %v: %q, %v", m.file.id, m.page, addr, b, err)
		}
		break
	}
	as.Unmap(0, uint64(StubStart))
	checkModel(t, as, base, make([]pageModel, window), steps)
	if _, err := as.Syscall(unix.SYS_GETPID); err != nil {
		t.Fatalf("stub broken after unmapping everything: %v", err)
	}
}

func TestMapFileErrors(t *testing.T) {
	as := newTestStub(t)
	f := newTestFile(t, 1, 4)
	pg := uint64(hostarch.PageSize)
	one := memmap.FileRange{Start: 0, End: pg}
	for _, tc := range []struct {
		name string
		addr hostarch.Addr
		f    memmap.File
		fr   memmap.FileRange
		want error
	}{
		{"unaligned address", 0x10000001, f, one, unix.EINVAL},
		{"unaligned start", 0x10000000, f, memmap.FileRange{Start: 1, End: pg}, unix.EINVAL},
		{"unaligned end", 0x10000000, f, memmap.FileRange{Start: 0, End: 100}, unix.EINVAL},
		{"empty", 0x10000000, f, memmap.FileRange{Start: pg, End: pg}, unix.EINVAL},
		{"inverted", 0x10000000, f, memmap.FileRange{Start: 2 * pg, End: pg}, unix.EINVAL},
		{"over the stub", StubStart, f, one, unix.EINVAL},
		{"across the stub", StubStart - hostarch.PageSize, f, memmap.FileRange{Start: 0, End: 2 * pg}, unix.EINVAL},
		{"address overflow", ^hostarch.Addr(0) &^ hostarch.PageMask, f, one, unix.EINVAL},
		{"nil file", 0x10000000, nil, one, unix.EINVAL},
		{"no descriptor", 0x10000000, &testFile{fd: -1}, one, unix.EBADF},
		{"closed descriptor", 0x10000000, sliceFile{fd: 1 << 20}, one, unix.EBADF},
	} {
		if err := as.MapFile(tc.addr, tc.f, tc.fr, hostarch.Read, false); !errors.Is(err, tc.want) {
			t.Errorf("%s: MapFile = %v, want %v", tc.name, err, tc.want)
		}
	}
	// A failing mmap: a shared writable mapping of a read-only descriptor.
	ro, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", f.fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ro)
	rof := &testFile{fd: ro, id: 1, pages: 4, ino: f.ino}
	if err := as.MapFile(0x10000000, rof, one, hostarch.ReadWrite, false); !errors.Is(err, unix.EACCES) {
		t.Errorf("writable MapFile of a read-only descriptor = %v, want EACCES", err)
	}
	if err := as.MapFile(0x10000000, rof, one, hostarch.Read, false); err != nil {
		t.Errorf("read-only MapFile of a read-only descriptor: %v", err)
	}
	checkModel(t, as, 0x10000000, []pageModel{{file: f, page: 0, prot: unix.PROT_READ}}, 0)
	// Unmap never touches the stub, whatever it is asked.
	as.Unmap(0, ^uint64(0))
	as.Unmap(StubStart-hostarch.PageSize, 3*hostarch.PageSize)
	as.Unmap(StubCode, hostarch.PageSize)
	as.Unmap(^hostarch.Addr(0)-5, 100)
	checkModel(t, as, 0x10000000, []pageModel{{}}, 1)
	if _, err := as.Syscall(unix.SYS_GETPID); err != nil {
		t.Fatalf("stub broken by Unmap: %v", err)
	}
}

func TestFileDescriptors(t *testing.T) {
	as := newTestStub(t)
	const base = 0x20000000
	// More files than the stub holds descriptors for: the cache
	// replaces the least recently used, and every mapping is still right.
	n := MaxStubFiles + 9
	model := make([]pageModel, n)
	for i := 0; i < n; i++ {
		f := newTestFile(t, 100+i, 2)
		addr := hostarch.Addr(base + uint64(i)*hostarch.PageSize)
		if err := as.MapFile(addr, f, memmap.FileRange{Start: hostarch.PageSize, End: 2 * hostarch.PageSize}, hostarch.Read, false); err != nil {
			t.Fatalf("MapFile of file %d: %v", i, err)
		}
		model[i] = pageModel{file: f, page: 1, prot: unix.PROT_READ}
	}
	checkModel(t, as, base, model, 0)
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", as.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 4+MaxStubFiles {
		t.Errorf("stub has %d descriptors, want %d", len(ents), 4+MaxStubFiles)
	}

	as.Unmap(base, uint64(n)*hostarch.PageSize)

	// A host descriptor number reused for another file, through a
	// non-comparable File (identified by fstat).
	a := newTestFile(t, 7, 1)
	if err := as.MapFile(base, sliceFile{fd: a.fd}, memmap.FileRange{Start: 0, End: hostarch.PageSize}, hostarch.Read, false); err != nil {
		t.Fatal(err)
	}
	b := newTestFile(t, 8, 1)
	if err := unix.Dup2(b.fd, a.fd); err != nil {
		t.Fatal(err)
	}
	b2 := *b
	b2.fd = a.fd
	if err := as.MapFile(base+hostarch.PageSize, sliceFile{fd: a.fd}, memmap.FileRange{Start: 0, End: hostarch.PageSize}, hostarch.Read, false); err != nil {
		t.Fatal(err)
	}
	// Same again through a comparable File that is a different object.
	c := newTestFile(t, 9, 1)
	if err := unix.Dup2(c.fd, a.fd); err != nil {
		t.Fatal(err)
	}
	if err := as.MapFile(base+2*hostarch.PageSize, &testFile{fd: a.fd}, memmap.FileRange{Start: 0, End: hostarch.PageSize}, hostarch.Read, false); err != nil {
		t.Fatal(err)
	}
	checkModel(t, as, base, []pageModel{
		{file: a, page: 0, prot: unix.PROT_READ},
		{file: b, page: 0, prot: unix.PROT_READ},
		{file: c, page: 0, prot: unix.PROT_READ},
	}, 1)

	// The application (here: an injected close) closes our descriptor:
	// MapFile reinstalls it.
	as.Unmap(base, 3*hostarch.PageSize)
	d := newTestFile(t, 10, 1)
	fr := memmap.FileRange{Start: 0, End: hostarch.PageSize}
	if err := as.MapFile(base, d, fr, hostarch.Read, false); err != nil {
		t.Fatal(err)
	}
	for fd := StubFileFDBase; fd < 1024; fd++ {
		as.Syscall(unix.SYS_CLOSE, uintptr(fd))
	}
	if err := as.MapFile(base+hostarch.PageSize, d, fr, hostarch.ReadWrite, false); err != nil {
		t.Fatalf("MapFile after the stub lost its descriptors: %v", err)
	}
	checkModel(t, as, base, []pageModel{
		{file: d, page: 0, prot: unix.PROT_READ},
		{file: d, page: 0, prot: unix.PROT_READ | unix.PROT_WRITE},
	}, 2)
}

// waitGone waits (boundedly) until pid no longer exists.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			t.Fatalf("process %d still exists after Release: %s", pid, b)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkDead checks that every operation fails cleanly, promptly.
func checkDead(t *testing.T, as *AddressSpace, wantMsg string) {
	t.Helper()
	f := newTestFile(t, 1, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		fr := memmap.FileRange{Start: 0, End: hostarch.PageSize}
		_, syscallErr := as.Syscall(unix.SYS_GETPID)
		for name, err := range map[string]error{
			"MapFile": as.MapFile(0x10000000, f, fr, hostarch.Read, false),
			"Syscall": syscallErr,
		} {
			if !errors.Is(err, ErrStubDead) || !strings.Contains(err.Error(), wantMsg) {
				t.Errorf("%s on a dead stub: %v; want ErrStubDead saying %q", name, err, wantMsg)
			}
		}
		as.Unmap(0x10000000, hostarch.PageSize)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("operations on a dead stub hang")
	}
}

func TestRelease(t *testing.T) {
	as := newTestStub(t)
	pid := as.Pid()
	f := newTestFile(t, 1, 1)
	if err := as.MapFile(0x10000000, f, memmap.FileRange{Start: 0, End: hostarch.PageSize}, hostarch.Read, false); err != nil {
		t.Fatal(err)
	}
	as.Release()
	waitGone(t, pid)
	checkDead(t, as, "released")
	as.Release() // idempotent
	if as.Scratch() != nil {
		t.Errorf("Scratch after Release is not nil")
	}

	// Neither the tracer threads nor descriptors outlive their stubs.
	threads := func() int {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	threads0, fds0 := threads(), fds()
	const n = 20
	for i := 0; i < n; i++ {
		as, err := testPlatform.NewStub()
		if err != nil {
			t.Fatal(err)
		}
		if err := as.MapFile(0x10000000, f, memmap.FileRange{Start: 0, End: hostarch.PageSize}, hostarch.Read, false); err != nil {
			t.Fatal(err)
		}
		as.Release()
		waitGone(t, as.Pid())
	}
	if th, fd := threads(), fds(); th >= threads0+n/2 || fd != fds0 {
		t.Errorf("after %d stubs made and released: %d threads (from %d), %d descriptors (from %d)", n, th, threads0, fd, fds0)
	}
}

func TestKilledStub(t *testing.T) {
	for _, where := range []string{"parked", "during a request"} {
		t.Run(where, func(t *testing.T) {
			as := newTestStub(t)
			pid := as.Pid()
			switch where {
			case "parked":
				if err := unix.Kill(pid, unix.SIGKILL); err != nil {
					t.Fatal(err)
				}
			case "during a request":
				// nanosleep(10 s) in the stub, killed from elsewhere
				// meanwhile.
				ts := unix.Timespec{Sec: 10}
				sc := as.Scratch()
				binary.LittleEndian.PutUint64(sc[0:], uint64(ts.Sec))
				binary.LittleEndian.PutUint64(sc[8:], uint64(ts.Nsec))
				go func() {
					time.Sleep(20 * time.Millisecond)
					unix.Kill(pid, unix.SIGKILL)
				}()
				start := time.Now()
				_, err := as.Syscall(unix.SYS_NANOSLEEP, uintptr(ScratchFree), 0)
				if !errors.Is(err, ErrStubDead) || time.Since(start) > 5*time.Second {
					t.Fatalf("request killed midway: %v after %v, want ErrStubDead at once", err, time.Since(start))
				}
			}
			checkDead(t, as, "killed by signal 9")
			waitGone(t, pid)
		})
	}
}

// TestStubFault: a Syscall that breaks the stub (unmapping its comm page)
// kills it with an error saying so.
func TestStubFault(t *testing.T) {
	as := newTestStub(t)
	_, err := as.Syscall(unix.SYS_MUNMAP, uintptr(StubComm), hostarch.PageSize)
	if !errors.Is(err, ErrStubDead) || !strings.Contains(err.Error(), "faulted: signal 11") && !strings.Contains(err.Error(), "faulted: segmentation fault") {
		t.Fatalf("Syscall unmapping the comm page: %v; want ErrStubDead saying the stub faulted", err)
	}
	if testing.Verbose() {
		t.Log(err)
	}
	checkDead(t, as, "faulted")
	waitGone(t, as.Pid())
}

func TestSignalsSuppressed(t *testing.T) {
	as := newTestStub(t)
	if err := unix.Kill(as.Pid(), unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(as.Pid(), unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := as.Syscall(unix.SYS_GETPID); err != nil {
		t.Errorf("stub after signals: %v", err)
	}
}

func TestConcurrent(t *testing.T) {
	as := newTestStub(t)
	const (
		workers = 4
		pages   = 16
		base    = 0x30000000
	)
	f := newTestFile(t, 1, pages)
	var wg sync.WaitGroup
	errs := make(chan error, workers+1)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			region := hostarch.Addr(base + uint64(w)*pages*hostarch.PageSize)
			for i := 0; i < 100; i++ {
				p := rng.Intn(pages)
				fr := memmap.FileRange{Start: uint64(p) * hostarch.PageSize, End: uint64(p+1) * hostarch.PageSize}
				if err := as.MapFile(region+hostarch.Addr(p*hostarch.PageSize), f, fr, hostarch.Read, false); err != nil {
					errs <- err
					return
				}
				if i%10 == 0 {
					as.Unmap(region, pages*hostarch.PageSize)
				}
			}
			// Leave a known state: page p of the file at page p.
			as.Unmap(region, pages*hostarch.PageSize)
			if err := as.MapFile(region, f, memmap.FileRange{Start: 0, End: pages * hostarch.PageSize}, hostarch.Read, false); err != nil {
				errs <- err
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	model := make([]pageModel, workers*pages)
	for i := range model {
		model[i] = pageModel{file: f, page: i % pages, prot: unix.PROT_READ}
	}
	checkModel(t, as, base, model, 0)
}
