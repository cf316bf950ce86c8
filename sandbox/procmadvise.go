package sandbox

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/linuxabi"
	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// process_madvise and process_mrelease whose pidfd names one of the
// program's processes act on its memory manager, not on the host's
// mappings of the memory file. Linux 6.18's order (what the tests check
// natively):
//
//  1. flags other than 0: EINVAL;
//  2. the iovec array, as readv's (more than IOV_MAX entries EINVAL,
//     unreadable EFAULT, a negative length EINVAL, the total cut to
//     MAX_RW_COUNT);
//  3. the pidfd (EBADF, ESRCH for a process that has exited) and the
//     right to read the target's memory, PTRACE_MODE_READ (EACCES): the
//     host kernel decides both, with an injected process_madvise of
//     MADV_COLD on the target's scratch page (pmadviseProbe);
//  4. for another address space than the caller's, only MADV_COLD,
//     MADV_PAGEOUT, MADV_WILLNEED and MADV_COLLAPSE (EINVAL), and only
//     with CAP_SYS_NICE (EPERM);
//  5. each vector in turn as madvise(2) (an unknown advice EINVAL, even
//     for the caller's own memory, but only once there is a vector),
//     stopping at the first error; the result is the bytes of the vectors
//     advised, or that error if none was. Like Linux's iov_iter walk, a
//     zero total advises nothing (0, whatever the advice), and an empty
//     vector after the first is skipped, not advised.
//
// PIDFD_SELF_THREAD (-10000) is the caller. A pidfd of a process outside
// the program, and any descriptor that is not a pidfd of a live process,
// are the host's.
//
// process_mrelease is the host's call (flags EINVAL, a process that is
// not dying EINVAL, ...); once the host has released a dying process of
// the program, its manager's private memory is dropped too, as Linux's
// reaper drops the anonymous and private pages of the address space.

// pidfdSelfThread is PIDFD_SELF_THREAD.
const pidfdSelfThread = -10000

// pidfdProcess returns the program's process that descriptor fd of t's
// process (a pidfd) names, or nil if it names none (not a pidfd, a
// process that has exited, one outside the program).
func (s *Sandbox) pidfdProcess(t *task, fd int32) *process {
	if fd == pidfdSelfThread {
		return t.p
	}
	if fd < 0 || (int(fd) == s.memFDNum && t.p.memFDOurs) {
		return nil
	}
	hfd, err := s.getFD(t.p, int(fd))
	if err != nil {
		return nil
	}
	defer unix.Close(hfd)
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", hfd))
	if err != nil {
		return nil
	}
	for _, l := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(l, "Pid:")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || pid <= 0 {
			return nil
		}
		if tt := s.tasks[pid]; tt != nil && !tt.dead() && tt.p.mm != nil {
			return tt.p
		}
		return nil
	}
	return nil
}

// remoteAdviceOK reports whether process_madvise may give adv to another
// address space (process_madvise_remote_valid).
func remoteAdviceOK(adv int32) bool {
	switch mm.Advice(adv) {
	case mm.AdvCold, mm.AdvPageOut, mm.AdvWillNeed, mm.AdvCollapse:
		return true
	}
	return false
}

// sysProcessMadvise serves process_madvise.
func (s *Sandbox) sysProcessMadvise(t *task, a [6]uint64) sysResult {
	p := t.p
	if p.mm == nil {
		return pass()
	}
	target := s.pidfdProcess(t, int32(a[0]))
	if target == nil {
		return pass()
	}
	adv := int32(a[3])
	if uint32(a[4]) != 0 {
		return retErr(unix.EINVAL)
	}
	vecs, total, e := s.importIOVecs(p, a[1], a[2])
	if e != 0 {
		return retErr(e)
	}
	remote := target.sp != p.sp
	if remote {
		probe := s.pmadviseProbe(t, int32(a[0]))
		if probe != 0 && probe != unix.EPERM {
			return retErr(probe)
		}
		if !remoteAdviceOK(adv) {
			return retErr(unix.EINVAL)
		}
		if probe != 0 {
			return retErr(probe)
		}
		if target.mm == nil {
			return retErr(unix.ESRCH)
		}
	}
	var done uint64
	var err unix.Errno
	for i, v := range vecs {
		if v.len == 0 && (i > 0 || total == 0) {
			continue
		}
		args := [6]uint64{v.base, v.len, uint64(uint32(adv))}
		if remote {
			_, ferr := linuxabi.Call(s.ctx, target.mm, nil, unix.SYS_MADVISE, args)
			if ferr != nil {
				err = errno(ferr)
			}
		} else {
			p.memCalls++
			s.stats.MemCalls++
			res := s.memCall(t, unix.SYS_MADVISE, args)
			if t.dead() {
				return sysResult{act: actDone}
			}
			if e, bad := errnoOf(res.val); bad {
				err = e
			}
		}
		if err != 0 {
			break
		}
		done += v.len
	}
	if !remote {
		s.keepKernelAreas(p.sp)
	}
	if done > 0 {
		return ret(uintptr(done))
	}
	return retFrom(errOrNil(err))
}

// pmadviseProbe asks the host kernel whether t may advise the memory of
// the process its descriptor pidfd names: an injected process_madvise of
// MADV_COLD on that process's scratch page (mapped in every process of
// the program, and unaffected). It returns the host's errno, or 0.
func (s *Sandbox) pmadviseProbe(t *task, pidfd int32) unix.Errno {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:], uint64(scratchAddr))
	binary.LittleEndian.PutUint64(b[8:], hostarch.PageSize)
	if err := s.writeMem(t.p.pid, scratchAddr, b[:]); err != nil {
		return unix.EFAULT
	}
	r, err := s.inject(t, unix.SYS_PROCESS_MADVISE, uintptr(pidfd), uintptr(scratchAddr), 1, unix.MADV_COLD, 0)
	if err != nil {
		return unix.ESRCH
	}
	if e, bad := errnoOf(r); bad {
		return e
	}
	return 0
}

// sysProcessMrelease serves process_mrelease: the host decides, and then
// the manager of a released process of the program drops its private
// memory.
func (s *Sandbox) sysProcessMrelease(t *task, a [6]uint64) sysResult {
	if t.p.mm == nil {
		return pass()
	}
	target := s.pidfdProcess(t, int32(a[0]))
	if target == nil || target == t.p {
		return pass()
	}
	r, err := s.inject(t, unix.SYS_PROCESS_MRELEASE, uintptr(a[0]), uintptr(a[1]))
	if err != nil {
		return sysResult{act: actDone}
	}
	if _, bad := errnoOf(r); !bad && target.mm != nil {
		s.reap(target.mm)
	}
	return ret(r)
}

// reap drops the private memory of m, whose processes are dying, as
// Linux's reaper does (__oom_reap_task_mm: anonymous and private
// mappings, locked or not).
func (s *Sandbox) reap(m *mm.MemoryManager) {
	for _, v := range m.VMAsIn(s.ctx, hostarch.AddrRange{End: ^hostarch.Addr(0)}, false) {
		if strings.HasSuffix(v.Perms, "p") && v.Kind != mm.VMASpecial {
			m.MAdvise(s.ctx, v.Range.Start, v.Range.Length(), mm.AdvDontNeedLocked)
		}
	}
}
