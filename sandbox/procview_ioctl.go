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
	// The first vma that ends after addr, or with COVERING_NEXT the first
	// such that passes the filters: looked up without describing the vmas
	// above it (mm.FindVMA).
	found, hit := v.m.FindVMA(s.ctx, hostarch.Addr(addr), func(r hostarch.AddrRange, perms string, kind mm.VMAKind) (bool, bool) {
		ok := !(flags&pmqFileBacked != 0 && !fileBacked(kind)) &&
			!(flags&pmqReadable != 0 && perms[0] != 'r') &&
			!(flags&pmqWritable != 0 && perms[1] != 'w') &&
			!(flags&pmqExecutable != 0 && perms[2] != 'x') &&
			!(flags&pmqShared != 0 && perms[3] != 's')
		if ok && (flags&pmqCoveringNext != 0 || uint64(r.Start) <= addr) {
			return true, true
		}
		return false, flags&pmqCoveringNext == 0
	})
	if !hit {
		return retErr(unix.ENOENT)
	}
	vi := &found
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

// PAGEMAP_SCAN: struct pm_scan_arg's size, its flags and the page
// categories (linux/fs.h).
const (
	pmScanArgSize     = 96
	pmScanWPMatching  = 1 << 0
	pmScanCheckWPSync = 1 << 1
	pageIsWPAllowed   = 1 << 0
	pageIsWritten     = 1 << 1
	pageIsFile        = 1 << 2
	pageIsPresent     = 1 << 3
	pageIsSwapped     = 1 << 4
	pageIsPFNZero     = 1 << 5
	pageIsGuard       = 1 << 8
	pmScanCategories  = 1<<9 - 1
	// pageRegionSize is sizeof(struct page_region).
	pageRegionSize = 24
	// pmScanChunk is how many pages are looked at at a time (Linux's
	// PAGEMAP_WALK_SIZE, a page table's worth): the regions a chunk
	// completes are copied out before the next one, so that a walk holds
	// at most a chunk's worth whatever vec_len says.
	pmScanChunk = 512
)

// pageRegion is a struct page_region.
type pageRegion struct{ start, end, categories uint64 }

// pagemapScan serves ioctl(PAGEMAP_SCAN) on a pagemap view: the runs of
// pages of a range whose categories match the masks, as Linux 6.18 finds
// them, and with PM_SCAN_WP_MATCHING the userfaultfd write protection of
// the written pages it reports, in vmas registered for asynchronous write
// protection (soft dirty pages are not tracked).
func (s *Sandbox) pagemapScan(t *task, v *procView, arg uint64) sysResult {
	caller := t.p.mm
	k := make([]byte, pmScanArgSize)
	if c, err := caller.CopyIn(s.ctx, hostarch.Addr(arg), k, mm.IOOpts{}); err != nil || c != len(k) {
		return retErr(unix.EFAULT)
	}
	le := binary.LittleEndian
	w := func(i int) uint64 { return le.Uint64(k[8*i:]) }
	size, flags, start, end := w(0), w(1), w(2), w(3)
	vec, vecLen, maxPages := w(5), w(6), w(7)
	inverted, mask, anyof, retMask := w(8), w(9), w(10), w(11)
	if size != pmScanArgSize || flags&^(pmScanWPMatching|pmScanCheckWPSync) != 0 ||
		(inverted|mask|anyof|retMask)&^pmScanCategories != 0 {
		return retErr(unix.EINVAL)
	}
	if start%hostarch.PageSize != 0 {
		return retErr(unix.EINVAL)
	}
	if end-start > taskSize || start > taskSize-(end-start) {
		return retErr(unix.EFAULT)
	}
	if vec == 0 && vecLen != 0 {
		return retErr(unix.EINVAL)
	}
	if vec != 0 && (vecLen > taskSize/pageRegionSize || vec > taskSize-vecLen*pageRegionSize) {
		return retErr(unix.EFAULT)
	}
	end = (end + hostarch.PageSize - 1) &^ (hostarch.PageSize - 1)
	if maxPages == 0 {
		maxPages = ^uint64(0)
	}
	if v.m.Users() == 0 {
		return retErr(unix.ESRCH)
	}
	sc := pmScan{flags: flags, vecLen: vecLen, maxPages: maxPages, inverted: inverted, mask: mask, anyof: anyof, retMask: retMask, walkEnd: end}
	ar := hostarch.AddrRange{Start: hostarch.Addr(start), End: hostarch.Addr(end)}
	for _, vi := range v.m.VMAsIn(s.ctx, ar, false) {
		r := vi.Range.Intersect(ar)
		if r.Length() == 0 {
			continue
		}
		sc.vmaStart = true
		for cs := r.Start; cs < r.End && !sc.skipVMA && !sc.stop; {
			ce := min(r.End, cs+pmScanChunk*hostarch.PageSize)
			chunk := hostarch.AddrRange{Start: cs, End: ce}
			if flags&pmScanWPMatching != 0 {
				v.m.ScanProtect(chunk, func(states []mm.PageState) []hostarch.AddrRange { return sc.walk(cs, states) })
			} else {
				sc.walk(cs, v.m.PageStates(chunk))
			}
			cs = ce
			if n := len(sc.out); n > 1 && sc.errno != unix.EFAULT {
				// The last region may grow with the next chunk.
				sc.flush(s, caller, vec, sc.out[:n-1])
				sc.out = append(sc.out[:0], sc.out[n-1])
			}
		}
		sc.skipVMA = false
		if sc.stop {
			break
		}
	}
	if len(sc.out) > 0 && sc.errno != unix.EFAULT {
		// Linux copies out what it found even when the walk failed
		// (PM_SCAN_CHECK_WPASYNC's EPERM).
		sc.flush(s, caller, vec, sc.out)
	}
	walkEnd, errno := sc.walkEnd, sc.errno
	var we [8]byte
	le.PutUint64(we[:], walkEnd)
	if c, err := caller.CopyOut(s.ctx, hostarch.Addr(arg+32), we[:], mm.IOOpts{}); err != nil || c != 8 {
		errno = unix.EFAULT
	}
	if errno != 0 {
		return retErr(errno)
	}
	return ret(uintptr(sc.flushed))
}

// flush copies regions out to the caller's vector after the ones copied
// before; a failure is EFAULT, which ends the walk.
func (sc *pmScan) flush(s *Sandbox, caller *mm.MemoryManager, vec uint64, regions []pageRegion) {
	le := binary.LittleEndian
	b := make([]byte, pageRegionSize*len(regions))
	for i, pr := range regions {
		le.PutUint64(b[24*i:], pr.start)
		le.PutUint64(b[24*i+8:], pr.end)
		le.PutUint64(b[24*i+16:], pr.categories)
	}
	at := hostarch.Addr(vec + sc.flushed*pageRegionSize)
	if c, err := caller.CopyOut(s.ctx, at, b, mm.IOOpts{}); err != nil || c != len(b) {
		sc.errno, sc.stop = unix.EFAULT, true
		return
	}
	sc.flushed += uint64(len(regions))
}

// pmScan is the state of one PAGEMAP_SCAN walk.
type pmScan struct {
	// The request: pm_scan_arg's flags, vec_len, max_pages (all ones for
	// no limit) and masks.
	flags, vecLen, maxPages, inverted, mask, anyof, retMask uint64
	// out are the regions found and not yet copied out (the last one may
	// still grow); flushed counts those copied out; found counts the
	// pages of both.
	out            []pageRegion
	flushed, found uint64
	// walkEnd is where the walk stopped (the end of the range if it did
	// not stop early).
	walkEnd uint64
	// errno is the walk's error (EPERM for PM_SCAN_CHECK_WPASYNC).
	errno unix.Errno
	// vmaStart is set before the first chunk of a vma, whose first page
	// decides whether the vma is walked (Linux's test_walk); skipVMA
	// skips the rest of a vma; stop ends the walk.
	vmaStart, skipVMA, stop bool
}

// interesting reports whether categories c match the masks.
func (sc *pmScan) interesting(c uint64) bool {
	c ^= sc.inverted
	return c&sc.mask == sc.mask && (sc.anyof == 0 || c&sc.anyof != 0)
}

// walk looks at the states of the pages from addr on (a chunk of one vma's
// part of the range), records the regions found and returns the pages to
// write-protect with PM_SCAN_WP_MATCHING.
func (sc *pmScan) walk(base hostarch.Addr, states []mm.PageState) []hostarch.AddrRange {
	if len(states) == 0 {
		return nil
	}
	wpMatching := sc.flags&pmScanWPMatching != 0
	var vmaCat uint64
	if states[0]&mm.PageWPAsync != 0 {
		vmaCat = pageIsWPAllowed
	}
	if sc.vmaStart {
		sc.vmaStart = false
		if vmaCat == 0 {
			if sc.flags&pmScanCheckWPSync != 0 {
				sc.errno, sc.stop = unix.EPERM, true
				return nil
			}
			if wpMatching {
				sc.skipVMA = true
				return nil
			}
		}
		// VM_PFNMAP vmas (the vDSO's data) are skipped, and so are
		// those whose own categories cannot match.
		if states[0]&mm.PagePFNMap != 0 || (vmaCat^sc.inverted)&sc.mask&pageIsWPAllowed != sc.mask&pageIsWPAllowed {
			sc.skipVMA = true
			return nil
		}
	}
	var prot []hostarch.AddrRange
	protect := func(a hostarch.Addr) {
		if n := len(prot); n > 0 && prot[n-1].End == a {
			prot[n-1].End += hostarch.PageSize
		} else {
			prot = append(prot, hostarch.AddrRange{Start: a, End: a + hostarch.PageSize})
		}
	}
	for i, st := range states {
		addr := uint64(base) + uint64(i)*hostarch.PageSize
		c := vmaCat
		wp := st&mm.PageUffdWP != 0
		table := st&mm.PageTable != 0
		switch {
		case st&mm.PagePresent != 0:
			c |= pageIsPresent
			if !wp {
				c |= pageIsWritten
			}
			if st&mm.PageFile != 0 {
				c |= pageIsFile
			}
			if st&mm.PageZero != 0 {
				c |= pageIsPFNZero
			}
		case st&mm.PageGuard != 0:
			c |= pageIsSwapped | pageIsGuard
			if !wp {
				c |= pageIsWritten
			}
		case wp:
			// A write-protect marker: a swap-like entry.
			c |= pageIsSwapped
			table = true
		case table || st&mm.PageUffdWPVMA != 0:
			// No entry: not write-protected, hence written (a
			// vma registered for write protection counts its pages
			// without page tables so too).
			c |= pageIsWritten
		}
		if wpMatching && sc.vecLen == 0 {
			// Without an output vector Linux write-protects every
			// entry of the page tables it walks, and the pages
			// without tables that match.
			if !wp && st&mm.PageGuard == 0 && (table || sc.interesting(c)) {
				protect(hostarch.Addr(addr))
			}
			continue
		}
		if !sc.interesting(c) || sc.vecLen == 0 {
			continue
		}
		if sc.found == sc.maxPages {
			sc.walkEnd, sc.stop = addr, true
			break
		}
		rc := c & sc.retMask
		if n := len(sc.out); n > 0 && sc.out[n-1].end == addr && sc.out[n-1].categories == rc {
			sc.out[n-1].end += hostarch.PageSize
		} else if sc.flushed+uint64(n) == sc.vecLen {
			sc.walkEnd, sc.stop = addr, true
			break
		} else {
			sc.out = append(sc.out, pageRegion{addr, addr + hostarch.PageSize, rc})
		}
		sc.found++
		if wpMatching && c&pageIsWritten != 0 && st&mm.PageGuard == 0 {
			protect(hostarch.Addr(addr))
		}
	}
	return prot
}
