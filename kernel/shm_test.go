package kernel

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/linuxabi"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/pgalloc"
	"golang.org/x/sys/unix"
)

var ctx = context.Background()

// newMM returns a manager over a new memory file, released at the end of
// the test.
func newMM(t *testing.T) (*mm.MemoryManager, *pgalloc.MemoryFile) {
	t.Helper()
	mf, err := pgalloc.New(pgalloc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lim := mm.HostLimits()
	m := mm.New(mm.Options{MemoryFile: mf, Limits: &lim})
	t.Cleanup(func() {
		m.DecUsers(ctx)
		mf.Destroy()
	})
	return m, mf
}

// shmSys is System V shared memory as a test drives it: natively (the
// test process's own segments) or through a ShmRegistry.
type shmSys interface {
	get(key int32, size uint64, flags int) (int, unix.Errno)
	at(id int, addr uint64, flags int) (uint64, unix.Errno)
	dt(addr uint64) unix.Errno
	// stat returns IPC_STAT's key, mode, size and nattch.
	stat(id int) (string, unix.Errno)
	ctl(id, cmd int) unix.Errno
}

type nativeShm struct{}

func (nativeShm) get(key int32, size uint64, flags int) (int, unix.Errno) {
	r, _, e := unix.Syscall(unix.SYS_SHMGET, uintptr(key), uintptr(size), uintptr(flags))
	return int(r), e
}

func (nativeShm) at(id int, addr uint64, flags int) (uint64, unix.Errno) {
	r, _, e := unix.Syscall(unix.SYS_SHMAT, uintptr(id), uintptr(addr), uintptr(flags))
	return uint64(r), e
}

func (nativeShm) dt(addr uint64) unix.Errno {
	_, _, e := unix.Syscall(unix.SYS_SHMDT, uintptr(addr), 0, 0)
	return e
}

func (nativeShm) stat(id int) (string, unix.Errno) {
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil {
		return "", err.(unix.Errno)
	}
	return fmt.Sprintf("key %#x mode %#o size %d nattch %d", ds.Perm.Key, ds.Perm.Mode, ds.Segsz, ds.Nattch), 0
}

func (nativeShm) ctl(id, cmd int) unix.Errno {
	_, _, e := unix.Syscall(unix.SYS_SHMCTL, uintptr(id), uintptr(cmd), 0)
	return e
}

// registryShm is the registry r in manager m, with a page at buf for
// IPC_STAT.
type registryShm struct {
	r   *ShmRegistry
	m   *mm.MemoryManager
	buf uint64
}

func errnoOf(err error) unix.Errno {
	if err == nil {
		return 0
	}
	return linuxabi.Errno(err)
}

func (s registryShm) get(key int32, size uint64, flags int) (int, unix.Errno) {
	id, err := s.r.Shmget(ctx, 1, uint64(uint32(key)), size, uint64(flags))
	return int(id), errnoOf(err)
}

func (s registryShm) at(id int, addr uint64, flags int) (uint64, unix.Errno) {
	a, err := s.r.Shmat(ctx, s.m, 1, uint64(id), addr, uint64(flags))
	return uint64(a), errnoOf(err)
}

func (s registryShm) dt(addr uint64) unix.Errno {
	return errnoOf(s.r.Shmdt(ctx, s.m, 1, addr))
}

func (s registryShm) stat(id int) (string, unix.Errno) {
	if _, err := s.r.Shmctl(ctx, s.m, 1, uint64(id), IPCStat, s.buf); err != nil {
		return "", errnoOf(err)
	}
	b := make([]byte, 112)
	if _, err := s.m.CopyIn(ctx, hostarch.Addr(s.buf), b, mm.IOOpts{}); err != nil {
		return "", unix.EFAULT
	}
	le := binary.LittleEndian
	return fmt.Sprintf("key %#x mode %#o size %d nattch %d", int32(le.Uint32(b)), le.Uint16(b[20:]), le.Uint64(b[48:]), le.Uint64(b[88:])), 0
}

func (s registryShm) ctl(id, cmd int) unix.Errno {
	_, err := s.r.Shmctl(ctx, s.m, 1, uint64(id), uint64(cmd), 0)
	return errnoOf(err)
}

// shmScenario drives sys through shmget, shmat, shmdt and shmctl's odd
// cases and returns what each step gave (ids and addresses left out).
func shmScenario(sys shmSys, key int32) []string {
	var out []string
	note := func(what string, e unix.Errno) { out = append(out, fmt.Sprintf("%s: %v", what, e)) }
	const size = 3*4096 + 100
	_, e := sys.get(IPCPrivate, 0, IPCCreat|0o600)
	note("get size 0", e)
	_, e = sys.get(key, size, 0o600)
	note("get a missing key", e)
	a, e := sys.get(key, size, IPCCreat|0o600)
	note("create", e)
	if e != 0 {
		return out
	}
	defer sys.ctl(a, IPCRmid)
	_, e = sys.get(key, size, IPCCreat|IPCExcl|0o600)
	note("create again, exclusive", e)
	_, e = sys.get(key, size+1<<20, 0)
	note("get larger", e)
	b, e := sys.get(key, 100, 0)
	note(fmt.Sprintf("get smaller (same id %v)", a == b), e)
	_, e = sys.at(a, 0x10001, 0)
	note("attach unaligned", e)
	_, e = sys.at(a, 0, ShmRemap)
	note("attach remap at 0", e)
	_, e = sys.at(-1, 0, 0)
	note("attach id -1", e)
	p, e := sys.at(a, 0, 0)
	note("attach", e)
	st, e := sys.stat(a)
	note("stat "+st, e)
	note("unknown command", sys.ctl(a, 99))
	note("remove", sys.ctl(a, IPCRmid))
	st, e = sys.stat(a)
	note("stat removed "+st, e)
	_, e = sys.get(key, size, 0)
	note("get the removed key", e)
	q, e := sys.at(a, 0, ShmRdonly)
	note("attach removed", e)
	st, e = sys.stat(a)
	note("stat "+st, e)
	note("remove again", sys.ctl(a, IPCRmid))
	note("detach", sys.dt(p))
	note("detach again", sys.dt(p))
	if e == 0 {
		note("detach the other", sys.dt(q))
	}
	_, e = sys.at(a, 0, 0)
	note("attach gone", e)
	_, e = sys.stat(a)
	note("stat gone", e)
	return out
}

// TestShmLikeLinux runs shmScenario natively and through a registry: each
// step must give what Linux gives.
func TestShmLikeLinux(t *testing.T) {
	key := int32(0x5e000000 | rand.Int32N(1<<20))
	want := shmScenario(nativeShm{}, key)
	t.Logf("Linux: %q", want)
	m, mf := newMM(t)
	buf, err := linuxabi.MMap(ctx, m, 0, 4096, linuxabi.ProtRead|linuxabi.ProtWrite, linuxabi.MapPrivate|linuxabi.MapAnonymous, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := NewShmRegistry(mf)
	defer r.Release(ctx)
	got := shmScenario(registryShm{r, m, uint64(buf)}, key)
	for i := range max(len(want), len(got)) {
		w, g := "(nothing)", "(nothing)"
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			t.Errorf("step %d: %s, Linux: %s", i, g, w)
		}
	}
}

// TestMayHugeTLBFromStatus: SHM_HUGETLB is for CAP_IPC_LOCK or for the
// filesystem or a supplementary group equal to vm.hugetlb_shm_group.
func TestMayHugeTLBFromStatus(t *testing.T) {
	status := func(capEff, gid, groups string) string {
		return "Name:\tx\nGid:\t" + gid + "\nGroups:\t" + groups + "\nCapEff:\t" + capEff + "\n"
	}
	for _, c := range []struct {
		status string
		group  int64
		want   bool
	}{
		{status("000001ffffffffff", "0\t0\t0\t0", ""), 0, true},
		{status("0000000000004000", "1000\t1000\t1000\t1000", ""), 5, true},
		{status("0000000000000000", "1000\t1000\t1000\t1000", "4 27"), 5, false},
		{status("0000000000000000", "1000\t1000\t1000\t1000", "4 5 27"), 5, true},
		{status("0000000000000000", "5\t1000\t1000\t1000", ""), 5, false},
		{status("0000000000000000", "1000\t1000\t1000\t5", ""), 5, true},
		{status("0000000000000000", "0\t0\t0\t0", ""), -1, false},
		{"", 0, false},
	} {
		if got := mayHugeTLBFromStatus(c.status, c.group); got != c.want {
			t.Errorf("%q, group %d: %v, want %v", c.status, c.group, got, c.want)
		}
	}
}

// TestShmHugePageSizes: SHM_HUGE_* sizes follow the kernel's pools, as
// Linux's hstate_sizelog does: a size with a pool (2 MiB on every x86-64
// kernel, 1 GiB on hosts that have its pool, even an empty one) gets as
// far as the reservation (ENOMEM without SHM_NORESERVE, a segment with
// it); a size without one is EINVAL, before the privilege check. Both
// kinds of host are modelled here, whichever this one is (TestHugeTLBShm
// compares with the host's own kernel).
func TestShmHugePageSizes(t *testing.T) {
	_, mf := newMM(t)
	const huge, noReserve = ShmHugeTLB, ShmNoReserve
	for _, gib := range []bool{false, true} {
		for _, may := range []bool{true, false} {
			r := NewShmRegistry(mf)
			r.hasHugePageSize = func(shift uint64) bool { return shift == 21 || gib && shift == 30 }
			r.mayHugeTLB = func(int32) bool { return may }
			for _, c := range []struct {
				fl   uint64
				want error // nil: a segment
			}{
				{huge | noReserve | 21<<shmHugeShift, nil},
				{huge | 21<<shmHugeShift, unix.ENOMEM},
				{huge | noReserve | 30<<shmHugeShift, nil},
				{huge | 30<<shmHugeShift, unix.ENOMEM},
				{huge | noReserve | 16<<shmHugeShift, unix.EINVAL},
				{huge | noReserve | 63<<shmHugeShift, unix.EINVAL},
				{huge | noReserve, nil},
			} {
				want := c.want
				if sz := c.fl >> shmHugeShift & 0x3f; sz == 30 && !gib || sz == 16 || sz == 63 {
					want = unix.EINVAL
				} else if !may {
					want = unix.EPERM
				}
				id, err := r.Shmget(ctx, 1, IPCPrivate, 2<<20, c.fl|IPCCreat|0o600)
				if err != want {
					t.Errorf("1 GiB pool %v, privileged %v: shmget flags %#x: %v, want %v", gib, may, c.fl, err, want)
				}
				if err == nil {
					if _, err := r.Shmctl(ctx, nil, 1, id, IPCRmid, 0); err != nil {
						t.Fatal(err)
					}
				}
			}
			r.Release(ctx)
		}
	}
}
