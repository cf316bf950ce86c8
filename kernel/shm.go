package kernel

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"github.com/vmspace/vmspace/internal/lockrank"
	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/pgalloc"
	"golang.org/x/sys/unix"
)

// System V shared memory: segments live in the memory file (hostfile.Shm,
// a memfd) and are visible to every process that shares the registry, not
// to host processes outside it. shmget, shmat, shmdt and shmctl
// (IPC_RMID, IPC_STAT, IPC_SET, SHM_LOCK, SHM_UNLOCK) are served; the
// manager maps the segments. A removed segment keeps its id while it is
// attached somewhere (Linux lets it be attached again and queried), and
// its memory goes with its last attachment. SHM_LOCK counts a segment
// against RLIMIT_MEMLOCK (unless the caller has CAP_IPC_LOCK) in one count
// for the whole registry, where Linux keeps one per user, and a locked
// segment's count is returned at IPC_RMID, where Linux returns it when the
// segment is destroyed.

// Linux's limits and flags.
const (
	// shmMax is SHMMAX's default (ULONG_MAX - 2^24); shmem refuses
	// sizes past MAX_LFS_FILESIZE too.
	shmMax       = ^uint64(0) - 1<<24
	maxLFSFile   = 1<<63 - 1
	IPCPrivate   = 0
	IPCCreat     = 0o1000
	IPCExcl      = 0o2000
	IPCRmid      = 0
	IPCSet       = 1
	IPCStat      = 2
	ipc64        = 0x100
	ShmRdonly    = 0o10000
	ShmRnd       = 0o20000
	ShmRemap     = 0o40000
	ShmExec      = 0o100000
	ShmHugeTLB   = 0o4000
	ShmNoReserve = 0o10000
	// shmHugeShift is where shmget's flags hold the log2 of the huge
	// page size asked for (SHM_HUGE_SHIFT; 0 is the default size).
	shmHugeShift  = 26
	ShmLock       = 11
	ShmUnlock     = 12
	shmDestMode   = 0o1000 // the mode bit IPC_STAT shows for a removed segment
	shmLockedMode = 0o2000 // the mode bit IPC_STAT shows for a locked segment
)

// ShmRegistry holds the System V shared memory segments of one IPC
// namespace.
type ShmRegistry struct {
	// mf is where segments are made. Immutable.
	mf *pgalloc.MemoryFile

	// mu protects the fields below and every segment's fields. It is
	// taken before any manager's locks (shmctl copies to and from the
	// caller's memory with it held).
	mu    lockrank.Mutex[lockrank.ShmRegistryTag]
	byID  map[int32]*shmSeg
	byKey map[int32]*shmSeg
	// bySeg finds a segment's entry from its memory.
	bySeg map[*hostfile.Shm]*shmSeg
	next  int32
	// lockedPages is the size in pages of the SHM_LOCKed segments.
	lockedPages uint64

	// mayHugeTLB reports whether process pid may make SHM_HUGETLB
	// segments (hostMayHugeTLB; tests replace it). Immutable.
	mayHugeTLB func(pid int32) bool
	// hasHugePageSize reports whether the kernel has a pool of huge
	// pages of 1<<shift bytes (hostfile.HasHugePageSize; tests replace
	// it). Immutable.
	hasHugePageSize func(shift uint64) bool
}

// shmSeg is one segment. Its fields are protected by the registry's mu.
type shmSeg struct {
	id   int32
	key  int32
	size uint64
	shm  *hostfile.Shm
	// mode are the permission bits.
	mode uint32
	// locked is set by SHM_LOCK (and counted in lockedPages).
	locked bool
	// nattch counts shmat less shmdt of the segment.
	nattch              uint64
	cpid, lpid          int32
	atime, dtime, ctime int64
	uid, gid            uint32
}

// NewShmRegistry returns an empty registry whose segments live in mf.
func NewShmRegistry(mf *pgalloc.MemoryFile) *ShmRegistry {
	return &ShmRegistry{
		mf:    mf,
		byID:  map[int32]*shmSeg{},
		byKey: map[int32]*shmSeg{},
		bySeg: map[*hostfile.Shm]*shmSeg{},

		mayHugeTLB:      hostMayHugeTLB,
		hasHugePageSize: hostfile.HasHugePageSize,
	}
}

// lookupLocked returns the segment with id, forgetting it if it was
// removed and is attached nowhere. Preconditions: r.mu held.
func (r *ShmRegistry) lookupLocked(id int32) *shmSeg {
	seg := r.byID[id]
	if seg == nil {
		return nil
	}
	if seg.shm.Gone() {
		delete(r.byID, id)
		delete(r.bySeg, seg.shm)
		return nil
	}
	return seg
}

// Shmget is shmget(2) by process pid: key and flags are C ints, size a
// size_t. It returns the segment's id.
func (r *ShmRegistry) Shmget(ctx context.Context, pid int32, key, size, flags uint64) (uint64, error) {
	k, fl := int32(key), uint32(flags)
	r.mu.Lock()
	defer r.mu.Unlock()
	if k != IPCPrivate {
		if seg := r.byKey[k]; seg != nil {
			if fl&IPCCreat != 0 && fl&IPCExcl != 0 {
				return 0, unix.EEXIST
			}
			if size > seg.size {
				return 0, unix.EINVAL
			}
			return uint64(seg.id), nil
		}
		if fl&IPCCreat == 0 {
			return 0, unix.ENOENT
		}
	}
	if size < 1 || size > shmMax || size > maxLFSFile {
		return 0, unix.EINVAL
	}
	if fl&ShmHugeTLB != 0 {
		// Linux's newseg: a huge page size it has no pool for is
		// EINVAL (hstate_sizelog: 0 is the default size, 2 MiB; 1 GiB
		// exists on hosts that have its pool, even an empty one);
		// then hugetlbfs lets only CAP_IPC_LOCK or the group of
		// vm.hugetlb_shm_group make segments (EPERM); then it reserves
		// the huge pages, and there are none (ENOMEM) unless
		// SHM_NORESERVE asks for no reservation. A segment made so is
		// ordinary memory here, where Linux's faults would find no
		// huge page (SIGBUS).
		if sz := uint64(fl >> shmHugeShift & 0x3f); sz != 0 && !r.hasHugePageSize(sz) {
			return 0, unix.EINVAL
		}
		if !r.mayHugeTLB(pid) {
			return 0, unix.EPERM
		}
		if fl&ShmNoReserve == 0 {
			return 0, unix.ENOMEM
		}
	}
	s, err := hostfile.NewShm(r.mf, size)
	if err != nil {
		return 0, err
	}
	seg := &shmSeg{id: r.next, key: k, size: size, shm: s, mode: fl & 0o777,
		cpid: pid, ctime: time.Now().Unix(), uid: uint32(unix.Geteuid()), gid: uint32(unix.Getegid())}
	r.next++
	r.byID[seg.id] = seg
	r.bySeg[s] = seg
	if k != IPCPrivate {
		r.byKey[k] = seg
	}
	return uint64(seg.id), nil
}

// Shmat is shmat(2) by process pid, which m is the address space of: the
// id and flags are C ints. It returns the attachment's address.
func (r *ShmRegistry) Shmat(ctx context.Context, m *mm.MemoryManager, pid int32, id, addr, flags uint64) (hostarch.Addr, error) {
	fl := uint32(flags)
	a := hostarch.Addr(addr)
	if fl&ShmRnd != 0 {
		a = a.RoundDown()
	}
	if fl&ShmRemap != 0 && a == 0 {
		return 0, unix.EINVAL
	}
	r.mu.Lock()
	seg := r.lookupLocked(int32(id))
	r.mu.Unlock()
	if seg == nil {
		return 0, unix.EINVAL
	}
	got, err := m.AttachShm(ctx, seg.shm, a, fl&ShmRdonly != 0, fl&ShmExec != 0, fl&ShmRemap != 0)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	seg.nattch++
	seg.lpid = pid
	seg.atime = time.Now().Unix()
	r.mu.Unlock()
	return got, nil
}

// Shmdt is shmdt(2) by process pid, which m is the address space of.
func (r *ShmRegistry) Shmdt(ctx context.Context, m *mm.MemoryManager, pid int32, addr uint64) error {
	mp, err := m.DetachShm(ctx, hostarch.Addr(addr))
	if err != nil {
		return err
	}
	s, ok := hostfile.ShmOf(mp)
	if !ok {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if seg := r.bySeg[s]; seg != nil {
		if seg.nattch > 0 {
			seg.nattch--
		}
		seg.lpid = pid
		seg.dtime = time.Now().Unix()
		if s.Gone() {
			delete(r.byID, seg.id)
			delete(r.bySeg, s)
		}
	}
	return nil
}

// Shmctl is shmctl(2) by process pid, which m is the address space of
// (buf is in m): the id and command are C ints.
func (r *ShmRegistry) Shmctl(ctx context.Context, m *mm.MemoryManager, pid int32, id, cmd, buf uint64) (uint64, error) {
	c := uint32(cmd) &^ ipc64
	r.mu.Lock()
	defer r.mu.Unlock()
	seg := r.lookupLocked(int32(id))
	if seg == nil {
		return 0, unix.EINVAL
	}
	switch c {
	case IPCRmid:
		r.removeLocked(ctx, seg)
		return 0, nil
	case IPCStat:
		var b [112]byte
		le := binary.LittleEndian
		le.PutUint32(b[0:], uint32(seg.key))
		le.PutUint32(b[4:], seg.uid)
		le.PutUint32(b[8:], seg.gid)
		le.PutUint32(b[12:], seg.uid)
		le.PutUint32(b[16:], seg.gid)
		mode := seg.mode
		if seg.locked {
			mode |= shmLockedMode
		}
		if seg.shm.Removed() {
			mode |= shmDestMode
		}
		le.PutUint16(b[20:], uint16(mode))
		le.PutUint64(b[48:], seg.size)
		le.PutUint64(b[56:], uint64(seg.atime))
		le.PutUint64(b[64:], uint64(seg.dtime))
		le.PutUint64(b[72:], uint64(seg.ctime))
		le.PutUint32(b[80:], uint32(seg.cpid))
		le.PutUint32(b[84:], uint32(seg.lpid))
		le.PutUint64(b[88:], seg.nattch)
		if _, err := m.CopyOut(ctx, hostarch.Addr(buf), b[:], mm.IOOpts{}); err != nil {
			return 0, unix.EFAULT
		}
		return 0, nil
	case IPCSet:
		var b [48]byte
		if _, err := m.CopyIn(ctx, hostarch.Addr(buf), b[:], mm.IOOpts{}); err != nil {
			return 0, unix.EFAULT
		}
		seg.mode = uint32(binary.LittleEndian.Uint16(b[20:])) & 0o777
		seg.ctime = time.Now().Unix()
		return 0, nil
	case ShmLock, ShmUnlock:
		// Linux's shmctl_do_lock and user_shm_lock; the capability and
		// limit are the process's now.
		lim := m.Limits()
		if !lim.CapIPCLock && c == ShmLock && lim.MemLock.Cur == 0 {
			return 0, unix.EPERM
		}
		pages := pageUp(seg.size) >> hostarch.PageShift
		switch {
		case c == ShmLock && !seg.locked:
			limit := lim.MemLock.Cur
			if limit != mm.RLimInfinity {
				limit >>= hostarch.PageShift
			}
			if !lim.CapIPCLock && r.lockedPages+pages > limit {
				return 0, unix.ENOMEM
			}
			r.lockedPages += pages
			seg.locked = true
		case c == ShmUnlock && seg.locked:
			r.lockedPages -= pages
			seg.locked = false
		}
		return 0, nil
	}
	return 0, unix.EINVAL
}

// removeLocked does IPC_RMID of seg: its key is free at once, its id and
// memory go with its last attachment. Preconditions: r.mu held.
func (r *ShmRegistry) removeLocked(ctx context.Context, seg *shmSeg) {
	if seg.shm.Removed() {
		return
	}
	if seg.locked {
		seg.locked = false
		r.lockedPages -= pageUp(seg.size) >> hostarch.PageShift
	}
	if r.byKey[seg.key] == seg {
		delete(r.byKey, seg.key)
	}
	seg.key = IPCPrivate
	seg.shm.Remove(ctx)
	if seg.shm.Gone() {
		delete(r.byID, seg.id)
		delete(r.bySeg, seg.shm)
	}
}

// Segment returns the memory of the segment with id, if there is one.
func (r *ShmRegistry) Segment(id uint64) (*hostfile.Shm, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seg := r.lookupLocked(int32(id))
	if seg == nil {
		return nil, false
	}
	return seg.shm, true
}

// ID returns the id of the segment whose memory s is, if it has one still
// (a removed segment attached nowhere has none).
func (r *ShmRegistry) ID(s *hostfile.Shm) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seg := r.bySeg[s]
	if seg == nil || r.lookupLocked(seg.id) == nil {
		return 0, false
	}
	return uint64(seg.id), true
}

// Adopt gives s, a segment's memory rebuilt by a checkpoint's restore, a
// new id (as if made by process pid with IPC_PRIVATE and mode 0600), unless
// it is gone.
func (r *ShmRegistry) Adopt(s *hostfile.Shm, pid int32) {
	if s.Gone() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	seg := &shmSeg{id: r.next, size: s.Size(), shm: s, mode: 0o600,
		cpid: pid, ctime: time.Now().Unix(), uid: uint32(unix.Geteuid()), gid: uint32(unix.Getegid())}
	r.next++
	r.byID[seg.id] = seg
	r.bySeg[s] = seg
}

// Release removes every segment (their memory goes once no manager maps
// them): the namespace ends.
func (r *ShmRegistry) Release(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, seg := range r.byID {
		r.removeLocked(ctx, seg)
	}
	r.byID = map[int32]*shmSeg{}
	r.bySeg = map[*hostfile.Shm]*shmSeg{}
}

func pageUp(n uint64) uint64 {
	r, ok := hostarch.PageRoundUp(n)
	if !ok {
		return n &^ (hostarch.PageSize - 1)
	}
	return r
}

// hostMayHugeTLB reports whether host process pid may make SHM_HUGETLB
// segments, as Linux's can_do_hugetlb_shm decides: it has CAP_IPC_LOCK,
// or its filesystem group or one of its supplementary groups is
// vm.hugetlb_shm_group. Its /proc status says; if that cannot be read,
// it may not.
func hostMayHugeTLB(pid int32) bool {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	group := int64(-1)
	if b, err := os.ReadFile("/proc/sys/vm/hugetlb_shm_group"); err == nil {
		if g, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
			group = g
		}
	}
	return mayHugeTLBFromStatus(string(status), group)
}

// mayHugeTLBFromStatus decides hostMayHugeTLB from the text of a
// /proc/PID/status and vm.hugetlb_shm_group's value (-1: unknown).
func mayHugeTLBFromStatus(status string, group int64) bool {
	for _, line := range strings.Split(status, "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(val)
		switch key {
		case "CapEff":
			if len(fields) == 1 {
				if c, err := strconv.ParseUint(fields[0], 16, 64); err == nil && c&(1<<unix.CAP_IPC_LOCK) != 0 {
					return true
				}
			}
		case "Gid":
			// Real, effective, saved and filesystem group.
			if len(fields) == 4 && group >= 0 && fields[3] == strconv.FormatInt(group, 10) {
				return true
			}
		case "Groups":
			if group >= 0 && slices.Contains(fields, strconv.FormatInt(group, 10)) {
				return true
			}
		}
	}
	return false
}
