package linuxabi

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"unsafe"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/pgalloc"
	"golang.org/x/sys/unix"
)

var ctx = context.Background()

const pg = hostarch.PageSize

// Addresses that the cases use, in the test process (natively) and in the
// manager alike. mapped holds 4 private read-write pages before each
// case; hole is free (4 pages) before each case. Both lie far from where
// Go and the C library map.
const (
	mapped uint64 = 0x3e0000000000
	hole   uint64 = 0x3f0000000000
)

// abiCase is one system call and the result Linux gives it: errno, or 0
// for success.
type abiCase struct {
	name string
	nr   int
	a    [6]uint64
	want unix.Errno
	// noNative says the call must not run in the test process (it would
	// change more than mapped and hole); its row was checked natively
	// by hand.
	noNative bool
}

// zeroFD is the descriptor number (in the test process and in the test's
// Files) of /dev/zero opened read-write.
var zeroFD int

// testFiles gives mmap /dev/zero at zeroFD, and nothing else.
type testFiles struct{}

func (testFiles) MMapFile(_ context.Context, fd int32) (mm.MappableFile, func(), error) {
	if int(fd) == zeroFD {
		return mm.ZeroFile{R: true, W: true}, nil, nil
	}
	return nil, nil, unix.EBADF
}

// abiCases are the calls whose decoding TestDecoding checks: flags
// checked in Linux's order, argument widths (C ints), and errnos.
func abiCases() []abiCase {
	anon := uint64(MapPrivate | MapAnonymous)
	fixedAnon := anon | MapFixed
	rw := uint64(ProtRead | ProtWrite)
	z := uint64(zeroFD)
	none := ^uint64(0) // fd -1
	gigantic := gigantPagesErrno()
	return []abiCase{
		// mmap: the offset, then the descriptor, then MAP_HUGETLB,
		// then the type and the file's checks.
		{"mmap len 0", unix.SYS_MMAP, [6]uint64{hole, 0, rw, fixedAnon, none, 0}, unix.EINVAL, false},
		{"mmap unaligned offset before bad fd", unix.SYS_MMAP, [6]uint64{hole, pg, rw, MapPrivate | MapFixed, 12345, 1}, unix.EINVAL, false},
		{"mmap bad fd", unix.SYS_MMAP, [6]uint64{hole, pg, rw, MapPrivate | MapFixed, 12345, 0}, unix.EBADF, false},
		{"mmap anonymous ignores fd", unix.SYS_MMAP, [6]uint64{hole, pg, rw, fixedAnon, 12345, 0}, 0, false},
		{"mmap anonymous ignores unknown prot bits", unix.SYS_MMAP, [6]uint64{hole, pg, rw | 0x10 | ProtGrowsUp, fixedAnon, none, 0}, 0, false},
		{"mmap hugetlb of a file", unix.SYS_MMAP, [6]uint64{hole, pg, rw, MapPrivate | MapFixed | MapHugeTLB, z, 0}, unix.EINVAL, false},
		{"mmap hugetlb 1 GiB pages", unix.SYS_MMAP, [6]uint64{0, pg, rw, anon | MapHugeTLB | MapHuge1GB, none, 0}, gigantic, false},
		{"mmap hugetlb fixed unaligned", unix.SYS_MMAP, [6]uint64{hole + pg, pg, rw, fixedAnon | MapHugeTLB, none, 0}, unix.EINVAL, false},
		{"mmap droppable hugetlb", unix.SYS_MMAP, [6]uint64{0, pg, rw, MapDroppable | MapAnonymous | MapHugeTLB, none, 0}, unix.EINVAL, false},
		{"mmap type 0 anonymous", unix.SYS_MMAP, [6]uint64{hole, pg, rw, MapAnonymous | MapFixed, none, 0}, unix.EINVAL, false},
		{"mmap type 0x0f anonymous", unix.SYS_MMAP, [6]uint64{hole, pg, rw, 0x0f | MapAnonymous | MapFixed, none, 0}, unix.EINVAL, false},
		{"mmap type 0x04 anonymous", unix.SYS_MMAP, [6]uint64{hole, pg, rw, 0x04 | MapAnonymous | MapFixed, none, 0}, unix.EINVAL, false},
		{"mmap shared_validate anonymous", unix.SYS_MMAP, [6]uint64{hole, pg, rw, MapSharedValidate | MapAnonymous | MapFixed, none, 0}, unix.EINVAL, false},
		{"mmap shared_validate unknown flag", unix.SYS_MMAP, [6]uint64{hole, pg, rw, MapSharedValidate | MapFixed | 0x200, z, 0}, unix.EOPNOTSUPP, false},
		{"mmap shared_validate noreplace", unix.SYS_MMAP, [6]uint64{hole, pg, rw, MapSharedValidate | MapFixedNoReplace, z, 0}, unix.EOPNOTSUPP, false},
		{"mmap shared_validate known flags", unix.SYS_MMAP, [6]uint64{hole, pg, rw, MapSharedValidate | MapFixed | MapNoReserve, z, 0}, 0, false},
		{"mmap shared ignores unknown flag", unix.SYS_MMAP, [6]uint64{hole, pg, rw, MapShared | MapFixed | 0x200, z, 0}, 0, false},
		{"mmap droppable file", unix.SYS_MMAP, [6]uint64{hole, pg, rw, MapDroppable | MapFixed, z, 0}, unix.EINVAL, false},
		{"mmap droppable locked", unix.SYS_MMAP, [6]uint64{hole, pg, rw, MapDroppable | MapAnonymous | MapFixed | MapLocked, none, 0}, unix.EINVAL, false},
		{"mmap droppable growsdown", unix.SYS_MMAP, [6]uint64{hole, pg, rw, MapDroppable | MapAnonymous | MapFixed | MapGrowsDown, none, 0}, unix.EINVAL, false},
		{"mmap shared anonymous growsdown", unix.SYS_MMAP, [6]uint64{hole, pg, rw, MapShared | MapAnonymous | MapFixed | MapGrowsDown, none, 0}, unix.EINVAL, false},
		{"mmap file growsdown", unix.SYS_MMAP, [6]uint64{hole, pg, rw, MapPrivate | MapFixed | MapGrowsDown, z, 0}, unix.EINVAL, false},
		{"mmap fixed unaligned", unix.SYS_MMAP, [6]uint64{hole + 1, pg, rw, fixedAnon, none, 0}, unix.EINVAL, false},
		{"mmap noreplace over a mapping", unix.SYS_MMAP, [6]uint64{mapped, pg, rw, anon | MapFixedNoReplace, none, 0}, unix.EEXIST, false},
		{"mmap fixed and noreplace over a mapping", unix.SYS_MMAP, [6]uint64{mapped, pg, rw, fixedAnon | MapFixedNoReplace, none, 0}, unix.EEXIST, false},
		{"mmap offset overflow", unix.SYS_MMAP, [6]uint64{hole, 2 * pg, rw, MapPrivate | MapFixed, z, ^uint64(0) &^ (pg - 1)}, unix.EOVERFLOW, false},
		{"mmap flags above 32 bits", unix.SYS_MMAP, [6]uint64{hole, pg, rw, MapSharedValidate | MapFixed | 1<<40, z, 0}, unix.EOPNOTSUPP, false},

		// mprotect: the protection's unknown bits and the key come
		// after the range's checks (do_mprotect_pkey).
		{"mprotect unaligned", unix.SYS_MPROTECT, [6]uint64{mapped + 1, pg, ProtRead}, unix.EINVAL, false},
		{"mprotect grows both ways", unix.SYS_MPROTECT, [6]uint64{mapped, 0, ProtRead | ProtGrowsDown | ProtGrowsUp}, unix.EINVAL, false},
		{"mprotect length 0 with unknown bits", unix.SYS_MPROTECT, [6]uint64{mapped, 0, ProtRead | 0x10}, 0, false},
		{"mprotect wrapping with unknown bits", unix.SYS_MPROTECT, [6]uint64{mapped, ^uint64(0) - pg, ProtRead | 0x10}, unix.ENOMEM, false},
		{"mprotect unknown bits", unix.SYS_MPROTECT, [6]uint64{mapped, pg, ProtRead | 0x10}, unix.EINVAL, false},
		{"mprotect unknown bits of a hole", unix.SYS_MPROTECT, [6]uint64{hole, pg, ProtRead | 0x10}, unix.EINVAL, false},
		{"mprotect PROT_SEM", unix.SYS_MPROTECT, [6]uint64{mapped, pg, ProtRead | ProtSem}, 0, false},
		{"mprotect a hole", unix.SYS_MPROTECT, [6]uint64{hole, pg, ProtRead}, unix.ENOMEM, false},
		{"pkey_mprotect key 5", unix.SYS_PKEY_MPROTECT, [6]uint64{mapped, pg, ProtRead, 5}, unix.EINVAL, false},
		{"pkey_mprotect key 5 of a hole", unix.SYS_PKEY_MPROTECT, [6]uint64{hole, pg, ProtRead, 5}, unix.EINVAL, false},
		{"pkey_mprotect key 5 length 0", unix.SYS_PKEY_MPROTECT, [6]uint64{mapped, 0, ProtRead, 5}, 0, false},
		{"pkey_mprotect key -1", unix.SYS_PKEY_MPROTECT, [6]uint64{mapped, pg, ProtRead, ^uint64(0)}, 0, false},
		{"pkey_mprotect key -1 as a C int", unix.SYS_PKEY_MPROTECT, [6]uint64{mapped, pg, ProtRead, 0xffffffff}, 0, false},

		// munmap.
		{"munmap unaligned", unix.SYS_MUNMAP, [6]uint64{mapped + 1, pg}, unix.EINVAL, false},
		{"munmap length 0", unix.SYS_MUNMAP, [6]uint64{mapped, 0}, unix.EINVAL, false},
		{"munmap a hole", unix.SYS_MUNMAP, [6]uint64{hole, pg}, 0, false},

		// mremap: unknown flags first.
		{"mremap unknown flag", unix.SYS_MREMAP, [6]uint64{mapped, pg, pg, 8}, unix.EINVAL, false},
		{"mremap unknown flag above 32 bits", unix.SYS_MREMAP, [6]uint64{mapped, pg, pg, 1 << 32}, unix.EINVAL, false},
		{"mremap fixed without maymove", unix.SYS_MREMAP, [6]uint64{mapped, pg, pg, MremapFixed, hole}, unix.EINVAL, false},
		{"mremap dontunmap resizing", unix.SYS_MREMAP, [6]uint64{mapped, pg, 2 * pg, MremapMayMove | MremapDontUnmap, hole}, unix.EINVAL, false},
		{"mremap a hole", unix.SYS_MREMAP, [6]uint64{hole, pg, pg, 0}, unix.EFAULT, false},
		{"mremap shrink", unix.SYS_MREMAP, [6]uint64{mapped + 2*pg, 2 * pg, pg, 0}, 0, false},

		// madvise: the advice is a C int.
		{"madvise unknown advice", unix.SYS_MADVISE, [6]uint64{mapped, pg, 999}, unix.EINVAL, false},
		{"madvise advice above 32 bits", unix.SYS_MADVISE, [6]uint64{mapped, pg, 1<<32 | unix.MADV_RANDOM}, 0, false},
		{"madvise a hole", unix.SYS_MADVISE, [6]uint64{hole, pg, unix.MADV_RANDOM}, unix.ENOMEM, false},

		// mlock2, mlockall, munlock.
		{"mlock2 unknown flag", unix.SYS_MLOCK2, [6]uint64{mapped, pg, 2}, unix.EINVAL, false},
		{"mlock2 flag above 32 bits", unix.SYS_MLOCK2, [6]uint64{mapped, pg, 1 << 32}, 0, false},
		{"mlock2 onfault", unix.SYS_MLOCK2, [6]uint64{mapped, pg, MlockOnFault}, 0, false},
		{"mlock", unix.SYS_MLOCK, [6]uint64{mapped, pg}, 0, false},
		{"mlock a hole", unix.SYS_MLOCK, [6]uint64{hole, pg}, unix.ENOMEM, false},
		{"munlock", unix.SYS_MUNLOCK, [6]uint64{mapped, pg}, 0, false},
		{"mlockall none", unix.SYS_MLOCKALL, [6]uint64{0}, unix.EINVAL, false},
		{"mlockall onfault alone", unix.SYS_MLOCKALL, [6]uint64{MclOnFault}, unix.EINVAL, false},
		{"mlockall unknown flag", unix.SYS_MLOCKALL, [6]uint64{MclCurrent | 8}, unix.EINVAL, false},
		{"mlockall flag above 32 bits only", unix.SYS_MLOCKALL, [6]uint64{1 << 32}, unix.EINVAL, false},
		{"mlockall future above 32 bits", unix.SYS_MLOCKALL, [6]uint64{1<<32 | MclFuture}, 0, true},

		// msync: unknown flags first, then the address, then
		// MS_ASYNC with MS_SYNC.
		{"msync unknown flag, unaligned", unix.SYS_MSYNC, [6]uint64{mapped + 1, pg, 8}, unix.EINVAL, false},
		{"msync async and sync", unix.SYS_MSYNC, [6]uint64{mapped, pg, MsAsync | MsSync}, unix.EINVAL, false},
		{"msync flag above 32 bits", unix.SYS_MSYNC, [6]uint64{mapped, pg, 1<<32 | MsSync}, 0, false},
		{"msync a hole", unix.SYS_MSYNC, [6]uint64{hole, pg, MsSync}, unix.ENOMEM, false},

		// mincore: the address, the range, the vector, the pages.
		{"mincore unaligned", unix.SYS_MINCORE, [6]uint64{mapped + 1, pg, mapped + 3*pg}, unix.EINVAL, false},
		{"mincore range past the top", unix.SYS_MINCORE, [6]uint64{mapped, 1 << 62, mapped + 3*pg}, unix.ENOMEM, false},
		{"mincore vector past the top", unix.SYS_MINCORE, [6]uint64{mapped, pg, uint64(hostarch.MaxUserAddress)}, unix.EFAULT, false},
		{"mincore vector in a hole", unix.SYS_MINCORE, [6]uint64{mapped, pg, hole}, unix.EFAULT, false},
		{"mincore of a hole", unix.SYS_MINCORE, [6]uint64{hole, pg, mapped}, unix.ENOMEM, false},
		{"mincore", unix.SYS_MINCORE, [6]uint64{mapped, 2 * pg, mapped + 3*pg}, 0, false},

		// mseal: flags first.
		{"mseal flag", unix.SYS_MSEAL, [6]uint64{mapped, pg, 1}, unix.EINVAL, false},
		{"mseal flag above 32 bits", unix.SYS_MSEAL, [6]uint64{mapped, pg, 1 << 32}, unix.EINVAL, false},
		{"mseal a hole", unix.SYS_MSEAL, [6]uint64{hole, pg, 0}, unix.ENOMEM, false},

		// remap_file_pages: prot first.
		{"remap_file_pages prot", unix.SYS_REMAP_FILE_PAGES, [6]uint64{hole + 1, 0, 1}, unix.EINVAL, false},
		{"remap_file_pages private memory", unix.SYS_REMAP_FILE_PAGES, [6]uint64{mapped, pg, 0, 0, 0}, unix.EINVAL, false},

		{"map_shadow_stack", unix.SYS_MAP_SHADOW_STACK, [6]uint64{0, pg, 0}, unix.ENOSYS, true},
	}
}

// reset maps mapped and unmaps hole, natively if native, else in m.
func reset(t *testing.T, m *mm.MemoryManager, native bool) {
	t.Helper()
	if native {
		if _, _, e := unix.Syscall6(unix.SYS_MMAP, uintptr(mapped), 4*pg, ProtRead|ProtWrite, MapPrivate|MapAnonymous|MapFixed, ^uintptr(0), 0); e != 0 {
			t.Fatalf("native mmap: %v", e)
		}
		if _, _, e := unix.Syscall(unix.SYS_MUNMAP, uintptr(hole), 4*pg, 0); e != 0 {
			t.Fatalf("native munmap: %v", e)
		}
		return
	}
	if _, err := MMap(ctx, m, mapped, 4*pg, ProtRead|ProtWrite, MapPrivate|MapAnonymous|MapFixed, nil, 0); err != nil {
		t.Fatalf("mmap: %v", err)
	}
	if err := Munmap(ctx, m, hole, 4*pg); err != nil {
		t.Fatalf("munmap: %v", err)
	}
}

// TestDecoding runs each of abiCases natively (so the table is Linux's)
// and through Call on a manager: the results must be the table's.
func TestDecoding(t *testing.T) {
	zf, err := os.OpenFile("/dev/zero", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer zf.Close()
	zeroFD = int(zf.Fd())
	var vec [4]byte
	for _, a := range []uint64{mapped, hole} {
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(a), 4*pg, uintptr(unsafe.Pointer(&vec[0]))); e != unix.ENOMEM {
			t.Skipf("%#x is mapped in the test process (%v)", a, e)
		}
	}
	defer unix.Syscall(unix.SYS_MUNMAP, uintptr(mapped), 4*pg, 0)
	mf, err := pgalloc.New(pgalloc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Destroy()
	lim := mm.HostLimits()
	m := mm.New(mm.Options{MemoryFile: mf, Limits: &lim})
	defer m.DecUsers(ctx)
	mk := hostfile.SharedAnonFactory(mf)
	m.SetSharedAnonFactory(func(ctx context.Context, n uint64) (mm.MappableFile, error) { return mk(ctx, n) })
	for _, c := range abiCases() {
		if !c.noNative {
			reset(t, nil, true)
			_, _, e := unix.Syscall6(uintptr(c.nr), uintptr(c.a[0]), uintptr(c.a[1]), uintptr(c.a[2]), uintptr(c.a[3]), uintptr(c.a[4]), uintptr(c.a[5]))
			if e != c.want {
				t.Errorf("%s: Linux gives %v, the table %v", c.name, errName(e), errName(c.want))
			}
		}
		reset(t, m, false)
		_, err := Call(ctx, m, testFiles{}, c.nr, c.a)
		got := unix.Errno(0)
		if err != nil {
			got = Errno(err)
		}
		if got != c.want {
			t.Errorf("%s: %v, want %v", c.name, errName(got), errName(c.want))
		}
		m.MUnlockAll(ctx)
	}
	reset(t, nil, true)
	if err := m.CheckInvariants(); err != nil {
		t.Error(err)
	}
}

func errName(e unix.Errno) string {
	if e == 0 {
		return "success"
	}
	return strings.ToUpper(unix.ErrnoName(e)) + " (" + e.Error() + ")"
}

// TestErrno checks the conversion of the manager's errors.
func TestErrno(t *testing.T) {
	if e := Errno(unix.EEXIST); e != unix.EEXIST {
		t.Errorf("EEXIST: %v", e)
	}
	if e := Errno(&mm.AccessError{}); e != unix.EFAULT {
		t.Errorf("an access error: %v", e)
	}
	if e := Errno(errors.New("other")); e != unix.EINVAL {
		t.Errorf("another error: %v", e)
	}
}

// gigantPagesErrno is what mmap of MAP_HUGETLB|MAP_HUGE_1GB gives on this
// host: EINVAL without a pool of 1 GiB pages, ENOMEM with an empty one,
// success if it has pages.
func gigantPagesErrno() unix.Errno {
	const dir = "/sys/kernel/mm/hugepages/hugepages-1048576kB/"
	if _, err := os.Stat(dir); err != nil {
		return unix.EINVAL
	}
	for _, f := range []string{"free_hugepages", "nr_overcommit_hugepages"} {
		if b, err := os.ReadFile(dir + f); err != nil || strings.TrimSpace(string(b)) != "0" {
			return 0
		}
	}
	return unix.ENOMEM
}
