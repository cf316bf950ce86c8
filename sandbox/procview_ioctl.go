package sandbox

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/mm"
	"golang.org/x/sys/unix"
)

// ioctl requests of /proc/PID/maps and /proc/PID/pagemap (linux/fs.h).
const (
	// procmapQuery is PROCMAP_QUERY, _IOWR('f', 17, struct procmap_query).
	procmapQuery = 0xc0686611
	// pagemapScan is PAGEMAP_SCAN, _IOWR('f', 16, struct pm_scan_arg).
	pagemapScan = 0xc0606610
)

// struct procmap_query: its size and query flags.
const (
	pmqSize         = 104
	pmqReadable     = 0x01
	pmqWritable     = 0x02
	pmqExecutable   = 0x04
	pmqShared       = 0x08
	pmqCoveringNext = 0x10
	pmqFileBacked   = 0x20
	pmqValidFlags   = 0x3f
	// buildIDMax is the longest build ID Linux reports (BUILD_ID_SIZE_MAX).
	buildIDMax = 20
)

// copyStructIn reads a user structure of usize bytes at addr into a
// buffer of ksize bytes as Linux's copy_struct_from_user does: a shorter
// one is zero-extended, a longer one must have zeros beyond ksize (else
// E2BIG).
func (s *Sandbox) copyStructIn(t *task, addr, usize uint64, ksize int) ([]byte, unix.Errno) {
	k := make([]byte, ksize)
	n := min(usize, uint64(ksize))
	if c, err := t.p.mm.CopyIn(s.ctx, hostarch.Addr(addr), k[:n], mm.IOOpts{}); err != nil || c != int(n) {
		return nil, unix.EFAULT
	}
	if usize > uint64(ksize) {
		rest := make([]byte, usize-uint64(ksize))
		if c, err := t.p.mm.CopyIn(s.ctx, hostarch.Addr(addr+uint64(ksize)), rest, mm.IOOpts{}); err != nil || c != len(rest) {
			return nil, unix.EFAULT
		}
		if bytes.ContainsFunc(rest, func(r rune) bool { return r != 0 }) {
			return nil, unix.E2BIG
		}
	}
	return k, 0
}

// fileBacked reports whether Linux's vma of this kind has a file
// (vm_file).
func fileBacked(k mm.VMAKind) bool { return k != mm.VMAAnonymous && k != mm.VMASpecial }

// procmapQuery serves ioctl(PROCMAP_QUERY) on a maps view: the vma at (or
// after) an address, filtered by its permissions and file, described as
// maps does.
func (s *Sandbox) procmapQuery(t *task, v *procView, arg uint64) sysResult {
	caller := t.p.mm
	var sz [8]byte
	if c, err := caller.CopyIn(s.ctx, hostarch.Addr(arg), sz[:], mm.IOOpts{}); err != nil || c != 8 {
		return retErr(unix.EFAULT)
	}
	usize := binary.LittleEndian.Uint64(sz[:])
	if usize > hostarch.PageSize {
		return retErr(unix.E2BIG)
	}
	if usize < 24 {
		return retErr(unix.EINVAL)
	}
	k, e := s.copyStructIn(t, arg, usize, pmqSize)
	if e != 0 {
		return retErr(e)
	}
	le := binary.LittleEndian
	flags, addr := le.Uint64(k[8:]), le.Uint64(k[16:])
	nameSize, buildSize := le.Uint32(k[80:]), le.Uint32(k[84:])
	nameAddr, buildAddr := le.Uint64(k[88:]), le.Uint64(k[96:])
	if flags&^pmqValidFlags != 0 || (nameSize != 0) != (nameAddr != 0) || (buildSize != 0) != (buildAddr != 0) {
		return retErr(unix.EINVAL)
	}
	if v.m.Users() == 0 {
		return retErr(unix.ESRCH)
	}
	var vi *mm.VMAInfo
	vmas := v.m.VMAs(s.ctx)
	for i := range vmas {
		c := &vmas[i]
		if uint64(c.Range.End) <= addr {
			continue
		}
		ok := !(flags&pmqFileBacked != 0 && !fileBacked(c.Kind)) &&
			!(flags&pmqReadable != 0 && c.Perms[0] != 'r') &&
			!(flags&pmqWritable != 0 && c.Perms[1] != 'w') &&
			!(flags&pmqExecutable != 0 && c.Perms[2] != 'x') &&
			!(flags&pmqShared != 0 && c.Perms[3] != 's')
		if ok && (flags&pmqCoveringNext != 0 || uint64(c.Range.Start) <= addr) {
			vi = c
			break
		}
		if flags&pmqCoveringNext == 0 {
			break
		}
	}
	if vi == nil {
		return retErr(unix.ENOENT)
	}
	le.PutUint64(k[24:], uint64(vi.Range.Start))
	le.PutUint64(k[32:], uint64(vi.Range.End))
	var vf uint64
	for i, f := range []uint64{pmqReadable, pmqWritable, pmqExecutable} {
		if vi.Perms[i] != '-' {
			vf |= f
		}
	}
	if vi.Perms[3] == 's' {
		vf |= pmqShared
	}
	le.PutUint64(k[40:], vf)
	le.PutUint64(k[48:], hostarch.PageSize)
	var off, ino uint64
	var major, minor uint32
	if fileBacked(vi.Kind) {
		off, ino, major, minor = vi.Offset, vi.Inode, vi.DevMajor, vi.DevMinor
	}
	le.PutUint64(k[56:], off)
	le.PutUint64(k[64:], ino)
	le.PutUint32(k[72:], major)
	le.PutUint32(k[76:], minor)
	var id []byte
	if buildSize != 0 {
		var ok bool
		if id, ok = buildID(vi); !ok {
			le.PutUint32(k[84:], 0)
		} else if buildSize < uint32(len(id)) {
			return retErr(unix.ENAMETOOLONG)
		} else {
			le.PutUint32(k[84:], uint32(len(id)))
		}
	}
	var name []byte
	if nameSize != 0 {
		if vi.Name != "" {
			name = append([]byte(vi.Name), 0)
			if uint32(len(name)) > min(nameSize, unix.PathMax) {
				return retErr(unix.ENAMETOOLONG)
			}
		}
		le.PutUint32(k[80:], uint32(len(name)))
	}
	if len(name) > 0 {
		if c, err := caller.CopyOut(s.ctx, hostarch.Addr(nameAddr), name, mm.IOOpts{}); err != nil || c != len(name) {
			return retErr(unix.EFAULT)
		}
	}
	if le.Uint32(k[84:]) != 0 {
		if c, err := caller.CopyOut(s.ctx, hostarch.Addr(buildAddr), id, mm.IOOpts{}); err != nil || c != len(id) {
			return retErr(unix.EFAULT)
		}
	}
	out := k[:min(usize, pmqSize)]
	if c, err := caller.CopyOut(s.ctx, hostarch.Addr(arg), out, mm.IOOpts{}); err != nil || c != len(out) {
		return retErr(unix.EFAULT)
	}
	return ret(0)
}

// buildID returns the GNU build ID of the ELF file that vi maps (read from
// the file's start, whatever part the vma maps, as Linux does), if it has
// one.
func buildID(vi *mm.VMAInfo) ([]byte, bool) {
	if !fileBacked(vi.Kind) || vi.Name == "" || vi.Name[0] != '/' {
		return nil, false
	}
	f, err := os.Open(vi.Name)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil || st.Ino != vi.Inode ||
		unix.Major(st.Dev) != vi.DevMajor || unix.Minor(st.Dev) != vi.DevMinor {
		return nil, false
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, false
	}
	for _, p := range ef.Progs {
		if p.Type != elf.PT_NOTE || p.Filesz > 1<<16 {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			continue
		}
		bo := ef.ByteOrder
		for len(b) >= 12 {
			nsz, dsz, typ := bo.Uint32(b), bo.Uint32(b[4:]), bo.Uint32(b[8:])
			nEnd := 12 + (uint64(nsz)+3)&^3
			dEnd := nEnd + (uint64(dsz)+3)&^3
			if dEnd > uint64(len(b)) {
				break
			}
			if typ == 3 && nsz == 4 && string(b[12:16]) == "GNU\x00" && dsz > 0 && dsz <= buildIDMax {
				return append([]byte(nil), b[nEnd:nEnd+uint64(dsz)]...), true
			}
			b = b[dEnd:]
		}
	}
	return nil, false
}

func (s *Sandbox) pagemapScan(t *task, v *procView, arg uint64) sysResult { return pass() }
