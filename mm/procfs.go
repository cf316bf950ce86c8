package mm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
)

// VMAInfo describes one vma as /proc/PID/maps and smaps show it.
type VMAInfo struct {
	Range hostarch.AddrRange
	// Perms are the four permission letters, like "rw-p".
	Perms string
	// Offset is the file offset of Range.Start (0 for anonymous memory).
	Offset uint64
	// DevMajor, DevMinor and Inode identify the mapped file.
	DevMajor, DevMinor uint32
	Inode              uint64
	// Name is the path or pseudo-name ("[heap]", "[anon:x]"), or "".
	Name string
	// Kind is what the vma maps: consumers tell mappings apart by it,
	// not by Name.
	Kind VMAKind
	// Flags are the smaps VmFlags mnemonics, in Linux's order.
	Flags []string
	// Rss is the resident size (bytes covered by pmas); Anonymous the
	// part that is private memory; Locked the part of a locked vma.
	Rss, Anonymous, Locked uint64
	// PrivateDirty and SharedDirty split Rss by whether other address
	// spaces share the pages.
	PrivateDirty, SharedDirty, SharedClean uint64
	// Pss is the proportional share of Rss.
	Pss uint64
	// Shmem is the part of Rss that is shared memory (shared anonymous
	// memory, System V segments).
	Shmem uint64
}

// VMAs returns a description of every vma, in address order.
func (mm *MemoryManager) VMAs(ctx context.Context) []VMAInfo {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	var out []VMAInfo
	mm.withResidencyMemoLocked(wholeSpace, func() { out = mm.vmasLocked(ctx) })
	return out
}

// wholeSpace is every address: the range of the readers of the whole
// address space.
var wholeSpace = hostarch.AddrRange{End: ^hostarch.Addr(0)}

// vmasLocked is VMAs. Preconditions: mappingMu held for reading, activeMu
// for writing.
func (mm *MemoryManager) vmasLocked(ctx context.Context) []VMAInfo {
	out := make([]VMAInfo, 0, mm.vmas.Len())
	for vseg := mm.vmas.FirstSegment(); vseg.Ok(); vseg = vseg.NextSegment() {
		out = append(out, mm.vmaInfoLocked(ctx, vseg))
	}
	return out
}

// VMAsIn returns a description of the vmas that overlap ar, in address
// order, with their whole ranges. Without usage, the figures of resident
// memory (Rss and those after it) are left zero, which spares looking at
// the pages: PROCMAP_QUERY and PAGEMAP_SCAN need only the vmas.
func (mm *MemoryManager) VMAsIn(ctx context.Context, ar hostarch.AddrRange, usage bool) []VMAInfo {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	var out []VMAInfo
	if !usage {
		for vseg := mm.vmas.LowerBoundSegment(ar.Start); vseg.Ok() && vseg.Start() < ar.End; vseg = vseg.NextSegment() {
			out = append(out, mm.vmaNamesLocked(ctx, vseg))
		}
		return out
	}
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	for vseg := mm.vmas.LowerBoundSegment(ar.Start); vseg.Ok() && vseg.Start() < ar.End; vseg = vseg.NextSegment() {
		out = append(out, mm.vmaInfoLocked(ctx, vseg))
	}
	return out
}

// FindVMA describes, without its usage (as VMAsIn without usage does),
// the first vma that ends after addr and that match accepts, given the
// vma's range, its permissions as maps shows them ("rw-p") and its kind.
// match also says when to look no further (stop): the vmas after it are
// not looked at, and only the one returned is described in full (its
// name may cost a question to the host), so that a lookup near addr
// costs nothing for the vmas above it (PROCMAP_QUERY).
func (mm *MemoryManager) FindVMA(ctx context.Context, addr hostarch.Addr, match func(r hostarch.AddrRange, perms string, kind VMAKind) (ok, stop bool)) (VMAInfo, bool) {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	vseg := mm.vmas.LowerBoundSegment(addr)
	if vseg.Ok() && vseg.End() <= addr {
		vseg = vseg.NextSegment()
	}
	for ; vseg.Ok(); vseg = vseg.NextSegment() {
		v := vseg.ValuePtr()
		ok, stop := match(hostarch.AddrRange(vseg.Range()), v.permString(), v.kind())
		if ok {
			return mm.vmaNamesLocked(ctx, vseg), true
		}
		if stop {
			break
		}
	}
	return VMAInfo{}, false
}

// vmaNamesLocked describes vseg without its usage (the figures from Rss
// on). Preconditions: mappingMu held for reading.
func (mm *MemoryManager) vmaNamesLocked(ctx context.Context, vseg vmaIterator) VMAInfo {
	v := vseg.ValuePtr()
	r := hostarch.AddrRange(vseg.Range())
	info := VMAInfo{Range: r, Perms: v.permString(), Flags: v.vmFlags(), Kind: v.kind()}
	if v.id != nil {
		info.Offset = v.off
		dev := v.id.DeviceID()
		info.DevMajor, info.DevMinor = uint32(dev>>8)&0xfff, uint32(dev&0xff)|uint32(dev>>12)&^0xff
		info.Inode = v.id.InodeID()
		info.Name = v.id.MappedName(ctx)
	}
	switch {
	case v.flags.has(vmaAnonName) && v.flags.has(vmaAnonShared):
		info.Name = "[anon_shmem:" + v.name + "]"
	case v.flags.has(vmaAnonName):
		info.Name = "[anon:" + v.name + "]"
	case v.id == nil && v.name != "":
		info.Name = v.name
	case v.id == nil && mm.brk.Start != 0 && r.Start < mm.brk.End && r.End > mm.brk.Start:
		info.Name = "[heap]"
	case v.id == nil && v.flags.has(vmaStackMain):
		info.Name = "[stack]"
	}
	return info
}

// vmaInfoLocked describes vseg. Preconditions: mappingMu held for reading,
// activeMu for writing.
func (mm *MemoryManager) vmaInfoLocked(ctx context.Context, vseg vmaIterator) VMAInfo {
	info := mm.vmaNamesLocked(ctx, vseg)
	v := vseg.ValuePtr()
	r := info.Range
	for pseg := mm.pmas.LowerBoundSegment(r.Start); pseg.Ok() && pseg.Start() < r.End; pseg = pseg.NextSegment() {
		pr := hostarch.AddrRange(pseg.Range()).Intersect(r)
		p := pseg.ValuePtr()
		if p.isZero() {
			// Linux's smaps counts no zero page (not a normal page).
			continue
		}
		res := mm.residentLocked(pseg, pr)
		if p.private {
			mm.addPrivateUsageLocked(&info, pmaRef{pseg}.fileRange(pr), res)
			continue
		}
		n := pr.Length()
		if res != nil {
			n = 0
			for _, b := range res {
				n += uint64(b) * hostarch.PageSize
			}
		}
		info.Rss += n
		info.Pss += n
		if p.file == memmap.File(mm.mf) {
			// Shared memory: its pages are dirty, and taken as
			// mapped by this address space only.
			info.Shmem += n
			info.PrivateDirty += n
		} else {
			info.SharedClean += n
		}
	}
	if v.locked() {
		// Linux counts the proportional share of a locked vma's pages.
		info.Locked = info.Pss
	}
	return info
}

// addPrivateUsageLocked adds to info the usage of fr, the private pages
// of a pma, of which res (nil if all) says which are resident: a page
// whose count in privateRefs is above one is shared with another manager
// (SharedDirty, a share of it in Pss), else private. The counts are
// walked a run of equal counts at a time, not looked up page by page: a
// forked heap has tens of thousands of pages. Preconditions: activeMu
// held for writing (privateRefs.mu is taken).
func (mm *MemoryManager) addPrivateUsageLocked(info *VMAInfo, fr memmap.FileRange, res []byte) {
	const pg = hostarch.PageSize
	// add counts the resident pages of fr's pages [i, j), all with count n.
	add := func(i, j uint64, n int32) {
		k := j - i
		if res != nil {
			k = 0
			for _, b := range res[i:j] {
				k += uint64(b)
			}
		}
		bytes := k * pg
		info.Rss += bytes
		info.Anonymous += bytes
		if n > 1 {
			info.SharedDirty += bytes
			info.Pss += k * (pg / uint64(n))
		} else {
			info.PrivateDirty += bytes
			info.Pss += bytes
		}
	}
	mm.privateRefs.mu.Lock()
	defer mm.privateRefs.mu.Unlock()
	at := uint64(0) // pages of fr done
	for rseg := mm.privateRefs.refs.LowerBoundSegment(fr.Start); rseg.Ok() && rseg.Start() < fr.End; rseg = rseg.NextSegment() {
		s := (max(rseg.Start(), fr.Start) - fr.Start) >> hostarch.PageShift
		e := (min(rseg.End(), fr.End) - fr.Start) >> hostarch.PageShift
		if s > at {
			add(at, s, 0) // not counted: taken as this manager's own
		}
		add(s, e, rseg.Value())
		at = e
	}
	if n := fr.Length() >> hostarch.PageShift; at < n {
		add(at, n, 0)
	}
}

// hostSoftDirty reports whether the host kernel tracks soft-dirty pages
// (CONFIG_MEM_SOFT_DIRTY), whose vmas smaps marks "sd": the first vma of
// its own smaps says so (every vma is soft-dirty from its creation until
// clear_refs, which vmspace never writes). Only that entry is read: all of
// vmspace's smaps (the Go runtime's many vmas) cost milliseconds at every
// start. It answers true when it cannot tell.
var hostSoftDirty = sync.OnceValue(func() bool {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return true
	}
	defer f.Close()
	var b []byte
	buf := make([]byte, 4096)
	for len(b) < 1<<16 {
		n, err := f.Read(buf)
		b = append(b, buf[:n]...)
		if i := bytes.Index(b, []byte("VmFlags:")); i >= 0 {
			if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
				return bytes.Contains(b[i:i+j+1], []byte(" sd "))
			}
		}
		if err != nil || n == 0 {
			break
		}
	}
	return true
})

// residentLocked returns, for the memory-file pages of pseg in r, one byte
// per page: 1 if the page has been touched (the memory file commits a page
// at its first access, as Linux allocates one at its first fault), else 0.
// It returns nil for other files' pages, which are all counted as
// resident while a pma holds them. Preconditions: activeMu held for
// writing.
func (mm *MemoryManager) residentLocked(pseg pmaIterator, r hostarch.AddrRange) []byte {
	p := pseg.ValuePtr()
	if p.file != memmap.File(mm.mf) {
		return nil
	}
	if p.allData && p.private {
		// Every page holds data (nothing to ask the host).
		return bytes.Repeat([]byte{1}, int(r.Length()/hostarch.PageSize))
	}
	if mm.resMemo != nil {
		if vec := mm.resMemo.lookup(pmaRef{pseg}.fileRange(r)); vec != nil {
			return vec
		}
	}
	if _, err := mm.internalMappingsLocked(pseg); err != nil {
		return nil
	}
	return residency(internalMappingsOf(pseg, r), r.Length())
}

// permString returns the four /proc/PID/maps permission letters.
func (v *vma) permString() string {
	b := []byte(v.realPerms.String() + "p")
	if !v.private() {
		b[3] = 's'
	}
	return string(b)
}

// vmFlags returns the smaps VmFlags of v, in Linux's bit order.
func (v *vma) vmFlags() []string {
	var f []string
	add := func(ok bool, s string) {
		if ok {
			f = append(f, s)
		}
	}
	shared := !v.private()
	add(v.realPerms.Read, "rd")
	add(v.realPerms.Write, "wr")
	add(v.realPerms.Execute, "ex")
	add(shared && v.maxPerms.Write, "sh")
	add(v.maxPerms.Read, "mr")
	add(v.maxPerms.Write, "mw")
	add(v.maxPerms.Execute, "me")
	add(shared, "ms")
	add(v.growsDown(), "gd")
	add(v.flags.has(vmaUffdMissing), "um")
	add(v.pfnMap(), "pf")
	add(v.flags.has(vmaMaybeGuard), "gu")
	add(v.flags.has(vmaUffdWP), "uw")
	add(v.locked(), "lo")
	add(v.pfnMap(), "io")
	add(v.flags.has(vmaSeqRead), "sr")
	add(v.flags.has(vmaRandRead), "rr")
	add(v.flags.has(vmaDontFork), "dc")
	add(v.flags.has(vmaDontExpand), "de")
	add(v.mlockMode == memmap.MLockLazy, "lf")
	add(v.flags.has(vmaAccount), "ac")
	add(v.flags.has(vmaNoReserve), "nr")
	add(v.flags.has(vmaWipeOnFork), "wf")
	add(v.flags.has(vmaDontDump), "dd")
	add(hostSoftDirty(), "sd")
	add(v.flags.has(vmaHugePage), "hg")
	add(v.flags.has(vmaNoHugePage), "nh")
	add(v.flags.has(vmaMergeable), "mg")
	add(v.flags.has(vmaUffdMinor), "ui")
	add(v.flags.has(vmaDroppable), "dp")
	add(v.flags.has(vmaSealed), "sl")
	return f
}

// MapsText returns the text of /proc/PID/maps.
func (mm *MemoryManager) MapsText(ctx context.Context) string {
	var b strings.Builder
	for _, vi := range mm.VMAs(ctx) {
		writeMapsLine(&b, &vi)
	}
	return b.String()
}

// writeMapsLine writes vi as Linux's show_map_vma does: the name, if any,
// starts at column 74.
func writeMapsLine(b *strings.Builder, vi *VMAInfo) {
	start := b.Len()
	fmt.Fprintf(b, "%08x-%08x %s %08x %02x:%02x %d ", uint64(vi.Range.Start), uint64(vi.Range.End), vi.Perms, vi.Offset, vi.DevMajor, vi.DevMinor, vi.Inode)
	if vi.Name != "" {
		if pad := 25 + 6*8 - 1 - (b.Len() - start); pad > 0 {
			b.WriteString(strings.Repeat(" ", pad))
		}
		b.WriteByte(' ')
		b.WriteString(vi.Name)
	}
	b.WriteByte('\n')
}

// SmapsText returns the text of /proc/PID/smaps.
func (mm *MemoryManager) SmapsText(ctx context.Context) string {
	var b strings.Builder
	for _, vi := range mm.VMAs(ctx) {
		writeMapsLine(&b, &vi)
		writeKB(&b, "Size:", vi.Range.Length())
		writeKB(&b, "KernelPageSize:", hostarch.PageSize)
		writeKB(&b, "MMUPageSize:", hostarch.PageSize)
		writeKB(&b, "Rss:", vi.Rss)
		writeKB(&b, "Pss:", vi.Pss)
		writeKB(&b, "Pss_Dirty:", vi.PrivateDirty+vi.SharedDirty)
		writeSmapsCounts(&b, &vi)
		fmt.Fprintf(&b, "THPeligible:    %8d\n", 0)
		b.WriteString("VmFlags: ")
		for _, f := range vi.Flags {
			b.WriteString(f)
			b.WriteByte(' ')
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// SetCodeSegment records the program's text [start, end) (Linux's
// start_code and end_code), which /proc/PID/status (VmExe, and VmLib
// beside it) and statm report.
func (mm *MemoryManager) SetCodeSegment(ar hostarch.AddrRange) {
	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	mm.codeSegment = ar
}

// MemoryStats are the figures of /proc/PID/status's Vm lines, in bytes.
type MemoryStats struct {
	VmPeak, VmSize, VmLck, VmPin, VmHWM, VmRSS uint64
	RssAnon, RssFile, RssShmem                 uint64
	VmData, VmStk, VmExe, VmLib, VmPTE, VmSwap uint64
}

// Stats returns the manager's memory figures.
func (mm *MemoryManager) Stats() MemoryStats {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	s := MemoryStats{
		VmPeak: mm.peakAS,
		VmSize: mm.usageAS,
		VmLck:  mm.lockedAS,
		VmHWM:  mm.maxRSS,
		VmData: mm.dataAS,
		VmStk:  mm.stackAS,
	}
	// VmExe is the program's text, in whole pages; VmLib the rest of
	// the executable mappings.
	if cs := mm.codeSegment; cs.End > cs.Start {
		s.VmExe = uint64(cs.End.MustRoundUp() - cs.Start.RoundDown())
	}
	s.VmLib = mm.execAS - min(mm.execAS, s.VmExe)
	s.RssAnon, s.RssFile, s.RssShmem = mm.rssLocked()
	s.VmRSS = s.RssAnon + s.RssFile + s.RssShmem
	s.VmHWM = max(s.VmHWM, s.VmRSS)
	s.VmPTE = mm.pageTableBytesLocked()
	return s
}

// pageTableLevels are the address bits that one page-table page below the
// top level covers, for x86-64's four levels: a PTE table maps 2 MiB, a
// PMD table 1 GiB, a PUD table 512 GiB (the top-level table is not
// counted).
var pageTableLevels = [...]uint{21, 30, 39}

// pageTableBytesLocked returns the size of the page tables Linux would
// hold for the populated pages (mm_pgtables_bytes, VmPTE): a 4 KiB table
// at each level for every distinct region of that level's size holding
// one. Populated are the pmas' pages, and the host's special mappings
// (the vDSO, which the host maps and the program reads from its start).
// (Linux also keeps a table whose pages MADV_DONTNEED dropped, until
// munmap frees it: not counted here.) Preconditions: mappingMu and
// activeMu held.
func (mm *MemoryManager) pageTableBytesLocked() uint64 {
	var specials []hostarch.AddrRange
	for vseg := mm.vmas.FirstSegment(); vseg.Ok(); vseg = vseg.NextSegment() {
		if _, ok := vseg.ValuePtr().mappable.(PFNMapper); ok {
			specials = append(specials, hostarch.AddrRange(vseg.Range()))
		}
	}
	var n uint64
	var last [len(pageTableLevels)]uint64
	first := true
	add := func(r hostarch.AddrRange) {
		for i, shift := range pageTableLevels {
			lo, hi := uint64(r.Start)>>shift, uint64(r.End-1)>>shift
			n += hi - lo + 1
			if !first && lo == last[i] {
				n--
			}
			last[i] = hi
		}
		first = false
	}
	for pseg := mm.pmas.FirstSegment(); pseg.Ok(); pseg = pseg.NextSegment() {
		for len(specials) > 0 && specials[0].Start < pseg.Start() {
			add(specials[0])
			specials = specials[1:]
		}
		add(hostarch.AddrRange(pseg.Range()))
	}
	for _, r := range specials {
		add(r)
	}
	return n * hostarch.PageSize
}

// rssLocked returns the resident set by kind. Only touched pages are
// resident (see residentLocked): private memory is anon, shared memory of
// the memory file shmem, other files' pages file. Preconditions: activeMu
// held for writing.
func (mm *MemoryManager) rssLocked() (anon, file, shmem uint64) {
	mm.withResidencyMemoLocked(wholeSpace, func() {
		for pseg := mm.pmas.FirstSegment(); pseg.Ok(); pseg = pseg.NextSegment() {
			p := pseg.ValuePtr()
			if p.isZero() {
				continue // not in Linux's RSS counters
			}
			n := mm.residentBytesLocked(pseg, hostarch.AddrRange(pseg.Range()))
			if p.private && p.file == memmap.File(mm.mf) && n == uint64(pseg.Range().Length()) {
				// The next pass need not ask (see pma.allData).
				p.allData = true
			}
			switch {
			case p.private:
				anon += n
			case p.file == memmap.File(mm.mf):
				shmem += n
			default:
				file += n
			}
		}
	})
	return anon, file, shmem
}

// StatusText returns the Vm lines of /proc/PID/status.
func (mm *MemoryManager) StatusText() string {
	s := mm.Stats()
	var b strings.Builder
	for _, l := range []struct {
		name string
		v    uint64
	}{
		{"VmPeak", s.VmPeak}, {"VmSize", s.VmSize}, {"VmLck", s.VmLck}, {"VmPin", s.VmPin},
		{"VmHWM", s.VmHWM}, {"VmRSS", s.VmRSS}, {"RssAnon", s.RssAnon}, {"RssFile", s.RssFile},
		{"RssShmem", s.RssShmem}, {"VmData", s.VmData}, {"VmStk", s.VmStk}, {"VmExe", s.VmExe},
		{"VmLib", s.VmLib}, {"VmPTE", s.VmPTE}, {"VmSwap", s.VmSwap},
	} {
		fmt.Fprintf(&b, "%s:\t%8d kB\n", l.name, l.v>>10)
	}
	return b.String()
}

// VirtualMemorySize returns VmSize in bytes.
func (mm *MemoryManager) VirtualMemorySize() uint64 { return mm.Stats().VmSize }

// ResidentSetSize returns VmRSS in bytes.
func (mm *MemoryManager) ResidentSetSize() uint64 {
	rt := mm.activeMu.RLock()
	defer mm.activeMu.RUnlock(rt)
	return mm.curRSS
}

// MaxResidentSetSize returns VmHWM in bytes.
func (mm *MemoryManager) MaxResidentSetSize() uint64 {
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	mm.updateHiwaterLocked()
	return mm.maxRSS
}

// VirtualDataSize returns VmData in bytes.
func (mm *MemoryManager) VirtualDataSize() uint64 { return mm.Stats().VmData }

// LockedSize returns VmLck in bytes.
func (mm *MemoryManager) LockedSize() uint64 { return mm.Stats().VmLck }

// StackSize returns VmStk in bytes.
func (mm *MemoryManager) StackSize() uint64 { return mm.Stats().VmStk }

// Faults returns the number of page faults HandleUserFault has served.
func (mm *MemoryManager) Faults() uint64 { return mm.faults.Load() }

// Region is a run of pages with equal attributes, as vmscript's state
// statement shows them.
type Region struct {
	Range hostarch.AddrRange
	// Mapped is false for a hole; the other fields are then empty.
	Mapped bool
	// Perms are the four /proc/PID/maps permission letters.
	Perms string
	// Private is true for a private mapping (Perms' "p").
	Private bool
	// Flags are the smaps VmFlags mnemonics.
	Flags []string
}

// Regions describes ar as runs of pages with equal attributes.
func (mm *MemoryManager) Regions(ar hostarch.AddrRange) []Region {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	var out []Region
	add := func(r Region) {
		if n := len(out); n > 0 && out[n-1].Mapped == r.Mapped && out[n-1].Perms == r.Perms &&
			strings.Join(out[n-1].Flags, " ") == strings.Join(r.Flags, " ") && out[n-1].Range.End == r.Range.Start {
			out[n-1].Range.End = r.Range.End
			return
		}
		out = append(out, r)
	}
	addr := ar.Start
	for addr < ar.End {
		vseg, vgap := mm.vmas.Find(addr)
		if vgap.Ok() {
			end := min(vgap.End(), ar.End)
			add(Region{Range: hostarch.AddrRange{Start: addr, End: end}})
			addr = end
			continue
		}
		end := min(vseg.End(), ar.End)
		v := vseg.ValuePtr()
		add(Region{Range: hostarch.AddrRange{Start: addr, End: end}, Mapped: true, Perms: v.permString(), Private: v.private(), Flags: v.vmFlags()})
		addr = end
	}
	return out
}

// writeKB writes one "Label:   N kB" line of smaps and smaps_rollup: the
// label padded to 16 columns, the size in kB right-aligned in 8.
func writeKB(b *strings.Builder, label string, n uint64) {
	b.WriteString(label)
	if pad := 16 - len(label); pad > 0 {
		b.WriteString(strings.Repeat(" ", pad))
	}
	s := strconv.FormatUint(n>>10, 10)
	if len(s) < 8 {
		b.WriteString(strings.Repeat(" ", 8-len(s)))
	}
	b.WriteString(s)
	b.WriteString(" kB\n")
}

// SmapsRollupText returns the text of /proc/PID/smaps_rollup: the sums of
// smaps' figures over every vma, under a header line spanning them.
func (mm *MemoryManager) SmapsRollupText(ctx context.Context) string {
	vmas := mm.VMAs(ctx)
	var b strings.Builder
	var sum VMAInfo
	var pssAnon, pssFile uint64
	for i := range vmas {
		vi := &vmas[i]
		sum.Rss += vi.Rss
		sum.Pss += vi.Pss
		sum.PrivateDirty += vi.PrivateDirty
		sum.SharedDirty += vi.SharedDirty
		sum.SharedClean += vi.SharedClean
		sum.Anonymous += vi.Anonymous
		sum.Locked += vi.Locked
		// Files' and shared memory's pages count in full; private
		// ones proportionally.
		pssAnon += vi.Pss - vi.SharedClean - vi.Shmem
		pssFile += vi.SharedClean
		sum.Shmem += vi.Shmem
	}
	if len(vmas) > 0 {
		sum.Range = hostarch.AddrRange{Start: vmas[0].Range.Start, End: vmas[len(vmas)-1].Range.End}
	}
	sum.Perms, sum.Name = "---p", "[rollup]"
	writeMapsLine(&b, &sum)
	writeKB(&b, "Rss:", sum.Rss)
	writeKB(&b, "Pss:", sum.Pss)
	writeKB(&b, "Pss_Dirty:", sum.PrivateDirty+sum.SharedDirty)
	writeKB(&b, "Pss_Anon:", pssAnon)
	writeKB(&b, "Pss_File:", pssFile)
	writeKB(&b, "Pss_Shmem:", sum.Shmem)
	writeSmapsCounts(&b, &sum)
	return b.String()
}

// writeSmapsCounts writes the figures that smaps and smaps_rollup share,
// from Shared_Clean to Locked.
func writeSmapsCounts(b *strings.Builder, vi *VMAInfo) {
	writeKB(b, "Shared_Clean:", vi.SharedClean)
	writeKB(b, "Shared_Dirty:", vi.SharedDirty)
	writeKB(b, "Private_Clean:", 0)
	writeKB(b, "Private_Dirty:", vi.PrivateDirty)
	writeKB(b, "Referenced:", vi.Rss)
	writeKB(b, "Anonymous:", vi.Anonymous)
	writeKB(b, "KSM:", 0)
	writeKB(b, "LazyFree:", 0)
	writeKB(b, "AnonHugePages:", 0)
	writeKB(b, "ShmemPmdMapped:", 0)
	writeKB(b, "FilePmdMapped:", 0)
	writeKB(b, "Shared_Hugetlb:", 0)
	writeKB(b, "Private_Hugetlb:", 0)
	writeKB(b, "Swap:", 0)
	writeKB(b, "SwapPss:", 0)
	writeKB(b, "Locked:", vi.Locked)
}

// StatmText returns the text of /proc/PID/statm: sizes in pages of the
// address space, the resident set, its shared (file) part, the program's
// text, 0 (library, unused since Linux 2.6) and data plus stack.
func (mm *MemoryManager) StatmText() string {
	s := mm.Stats()
	pg := func(n uint64) uint64 { return n / hostarch.PageSize }
	return fmt.Sprintf("%d %d %d %d 0 %d 0\n", pg(s.VmSize), pg(s.RssAnon+s.RssFile+s.RssShmem),
		pg(s.RssFile+s.RssShmem), pg(s.VmExe), pg(s.VmData+s.VmStk))
}

// NumaMapsText returns the text of /proc/PID/numa_maps for a machine with
// one node: per vma, its start, policy, what it maps, and its resident
// pages (anonymous, dirty, mapped, the most mappings of one page).
func (mm *MemoryManager) NumaMapsText(ctx context.Context) string {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	var b strings.Builder
	for vseg := mm.vmas.FirstSegment(); vseg.Ok(); vseg = vseg.NextSegment() {
		v := vseg.ValuePtr()
		vi := mm.vmaInfoLocked(ctx, vseg)
		fmt.Fprintf(&b, "%08x %s", uint64(vi.Range.Start), numaPolicyString(v.numaPolicy, v.numaNodemask))
		switch {
		case v.id != nil:
			b.WriteString(" file=")
			b.WriteString(escapePath(vi.Name, "\n\t= "))
		case vi.Name == "[heap]":
			b.WriteString(" heap")
		case vi.Name == "[stack]":
			b.WriteString(" stack")
		}
		// Resident pages: private (anonymous, dirty), shared memory
		// (dirty), files' (clean, mapped).
		var pages, anon, dirty uint64
		maxMap := 1
		r := vi.Range
		for pseg := mm.pmas.LowerBoundSegment(r.Start); pseg.Ok() && pseg.Start() < r.End; pseg = pseg.NextSegment() {
			p := pseg.ValuePtr()
			pr := hostarch.AddrRange(pseg.Range()).Intersect(r)
			res := mm.residentLocked(pseg, pr)
			fr := pmaRef{pseg}.fileRange(pr)
			for i, off := 0, fr.Start; off < fr.End; i, off = i+1, off+hostarch.PageSize {
				if res != nil && res[i] == 0 {
					continue
				}
				pages++
				switch {
				case p.private:
					anon++
					dirty++
					maxMap = max(maxMap, int(mm.privateRefs.count(off)))
				case p.file == memmap.File(mm.mf):
					dirty++
				}
			}
		}
		if pages != 0 {
			if anon != 0 {
				fmt.Fprintf(&b, " anon=%d", anon)
			}
			if dirty != 0 {
				fmt.Fprintf(&b, " dirty=%d", dirty)
			}
			if pages != anon && pages != dirty {
				fmt.Fprintf(&b, " mapped=%d", pages)
			}
			if maxMap > 1 {
				fmt.Fprintf(&b, " mapmax=%d", maxMap)
			}
			fmt.Fprintf(&b, " N0=%d kernelpagesize_kB=%d", pages, hostarch.PageSize>>10)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// numaPolicyString formats a policy as numa_maps shows it.
func numaPolicyString(policy int32, nodemask uint64) string {
	nodes := func() string {
		var parts []string
		for n := 0; n < 64; n++ {
			if nodemask&(1<<n) == 0 {
				continue
			}
			e := n
			for e+1 < 64 && nodemask&(1<<(e+1)) != 0 {
				e++
			}
			if e == n {
				parts = append(parts, strconv.Itoa(n))
			} else {
				parts = append(parts, fmt.Sprintf("%d-%d", n, e))
			}
			n = e
		}
		return strings.Join(parts, ",")
	}
	switch policy {
	case MPolPreferred:
		return "prefer:" + nodes()
	case MPolBind:
		return "bind:" + nodes()
	case MPolInterleave:
		return "interleave:" + nodes()
	case MPolLocal:
		return "local"
	}
	return "default"
}

// PageState describes one page of an address space as /proc/PID/pagemap
// and its PAGEMAP_SCAN ioctl see it.
type PageState uint16

const (
	// PageInVMA: a vma maps the page.
	PageInVMA PageState = 1 << iota
	// PagePresent: the page is resident (a pma holds it).
	PagePresent
	// PageFile: the resident page is a file's or shared memory, not
	// private anonymous memory.
	PageFile
	// PageExclusive: the resident private page is this address space's
	// alone (not shared with a fork).
	PageExclusive
	// PageGuard: the page is in a guard region (MADV_GUARD_INSTALL).
	PageGuard
	// PageTable: Linux would have a page table for the page: another
	// page of its 2 MiB-aligned block is resident or guarded.
	PageTable
	// PagePFNMap: the vma maps pages without struct pages (the vDSO's
	// data), which PAGEMAP_SCAN skips.
	PagePFNMap
	// PageHostFile: the resident page is a host file's page mapped
	// directly: the host's own pagemap describes it exactly.
	PageHostFile
	// PageUffdWP: userfaultfd write-protects the page: a resident page
	// with the protection, or (without PagePresent) the marker of a page
	// never populated (UFFD_FEATURE_WP_UNPOPULATED), which Linux keeps as
	// a swap-like entry in the page table.
	PageUffdWP
	// PageUffdWPVMA: the vma is registered for userfaultfd write
	// protection (Linux's userfaultfd_wp(vma)).
	PageUffdWPVMA
	// PageWPAsync: the vma's write protection is asynchronous
	// (UFFD_FEATURE_WP_ASYNC), so PAGEMAP_SCAN may write-protect its
	// pages (PAGE_IS_WPALLOWED).
	PageWPAsync
	// PageZero: the present page is the shared zero page
	// (PAGE_IS_PFNZERO): neither a file's nor exclusive.
	PageZero
)

// PageStates returns the state of every page of ar (page-aligned), in
// order.
func (mm *MemoryManager) PageStates(ar hostarch.AddrRange) []PageState {
	n := ar.Length() / hostarch.PageSize
	out := make([]PageState, n)
	if n == 0 {
		return out
	}
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	mm.pageStatesLocked(ar, out)
	return out
}

// ScanProtect is PAGEMAP_SCAN's walk of ar with PM_SCAN_WP_MATCHING: it
// passes the states of ar's pages (as PageStates returns them) to match,
// and write-protects for userfaultfd, in the same step (no access or
// change in between), the pages of the ranges match returns that lie in
// vmas whose write protection is asynchronous (PageWPAsync): a resident
// page gets the protection, a page never populated a marker, as Linux's
// make_uffd_wp_pte does. match must not use mm.
func (mm *MemoryManager) ScanProtect(ar hostarch.AddrRange, match func([]PageState) []hostarch.AddrRange) {
	n := ar.Length() / hostarch.PageSize
	if n == 0 {
		return
	}
	out := make([]PageState, n)
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	mm.pageStatesLocked(ar, out)
	for _, pr := range match(out) {
		pr = pr.Intersect(ar)
		for vseg := mm.vmas.LowerBoundSegment(pr.Start); vseg.Ok() && vseg.Start() < pr.End; vseg = vseg.NextSegment() {
			if !vseg.ValuePtr().wpAsync() {
				continue
			}
			r := hostarch.AddrRange(vseg.Range()).Intersect(pr)
			mm.setUffdWPLocked(vseg, r, true)
			mm.setUffdMarkersLocked(vseg, r, true)
		}
	}
}

// pageStatesLocked fills out (zeroed) with the states of ar's pages.
// Preconditions: mappingMu held; activeMu held for writing.
func (mm *MemoryManager) pageStatesLocked(ar hostarch.AddrRange, out []PageState) {
	idx := func(a hostarch.Addr) uint64 { return uint64(a-ar.Start) / hostarch.PageSize }
	// marking are the ranges of vmas whose write protection leaves
	// markers on pages that are not populated.
	var marking []hostarch.AddrRange
	for vseg := mm.vmas.LowerBoundSegment(ar.Start); vseg.Ok() && vseg.Start() < ar.End; vseg = vseg.NextSegment() {
		r := hostarch.AddrRange(vseg.Range()).Intersect(ar)
		v := vseg.ValuePtr()
		st := PageInVMA
		if v.pfnMap() {
			st |= PagePFNMap
		}
		if v.flags.has(vmaUffdWP) {
			st |= PageUffdWPVMA
		}
		if v.wpAsync() {
			st |= PageWPAsync
		}
		if v.usesMarkers() {
			if n := len(marking); n > 0 && marking[n-1].End == r.Start {
				marking[n-1].End = r.End
			} else {
				marking = append(marking, r)
			}
		}
		for i := idx(r.Start); i < idx(r.End); i++ {
			out[i] = st
		}
	}
	// markAll marks the pages of r that lie in marking vmas as
	// write-protected markers (unless present) and reports the runs it
	// marked.
	markAll := func(r hostarch.AddrRange) []hostarch.AddrRange {
		var got []hostarch.AddrRange
		for _, m := range marking {
			mr := m.Intersect(r)
			if mr.Length() == 0 {
				continue
			}
			for i := idx(mr.Start); i < idx(mr.End); i++ {
				out[i] |= PageUffdWP
			}
			got = append(got, mr)
		}
		return got
	}
	// Page tables cover 2 MiB-aligned blocks: look at the blocks ar
	// touches.
	blocks := hostarch.AddrRange{Start: ar.Start &^ (hugePageSize - 1), End: (ar.End + hugePageSize - 1) &^ (hugePageSize - 1)}
	if blocks.End < ar.End {
		blocks.End = ^hostarch.Addr(0) &^ (hugePageSize - 1)
	}
	tables := make(map[hostarch.Addr]bool)
	for pseg := mm.pmas.LowerBoundSegment(blocks.Start); pseg.Ok() && pseg.Start() < blocks.End; pseg = pseg.NextSegment() {
		pr := hostarch.AddrRange(pseg.Range())
		r := pr.Intersect(ar)
		// Only touched pages are present, and only their blocks have
		// page tables.
		for _, tr := range mm.residentRunsLocked(pseg, pr.Intersect(blocks)) {
			markTables(tables, tr)
		}
		if r.Length() == 0 {
			continue
		}
		res := mm.residentLocked(pseg, r)
		p := pseg.ValuePtr()
		if p.uffdWP {
			// Every page of a protected pma is protected: the
			// resident ones as present pages, the others (if their
			// vma marks unpopulated pages) as markers.
			if len(marking) > 0 {
				markAll(r)
			}
			for i := idx(r.Start); i < idx(r.End); i++ {
				if res == nil || res[i-idx(r.Start)] != 0 {
					out[i] |= PageUffdWP
				}
			}
		}
		st := PagePresent
		switch {
		case p.isZero():
			st |= PageZero
		case !p.private:
			st |= PageFile
			if p.file != memmap.File(mm.mf) {
				st |= PageHostFile
			} else {
				// Shared memory, taken as mapped by this address
				// space only.
				st |= PageExclusive
			}
		}
		if p.private {
			fr := pmaRef{pseg}.fileRange(r)
			for off, i := fr.Start, idx(r.Start); off < fr.End; off, i = off+hostarch.PageSize, i+1 {
				if res != nil && res[i-idx(r.Start)] == 0 {
					continue
				}
				out[i] |= st
				if mm.privateRefs.count(off) <= 1 {
					out[i] |= PageExclusive
				}
			}
			continue
		}
		for i := idx(r.Start); i < idx(r.End); i++ {
			if res != nil && res[i-idx(r.Start)] == 0 {
				continue
			}
			out[i] |= st
		}
	}
	for g := mm.guards.LowerBoundSegment(blocks.Start); g.Ok() && g.Start() < blocks.End; g = g.NextSegment() {
		gr := hostarch.AddrRange(g.Range())
		markTables(tables, gr.Intersect(blocks))
		r := gr.Intersect(ar)
		for i := idx(r.Start); i < idx(r.End); i++ {
			out[i] |= PageGuard
		}
	}
	if len(marking) > 0 && !mm.uffdMarkers.IsEmpty() {
		// Markers are page table entries: their blocks have tables.
		// (Only the markers of ar's blocks in marking vmas count.)
		// Markers count only where no pma is (a pma's own state
		// says what its pages are).
		for m := mm.uffdMarkers.LowerBoundSegment(ar.Start); m.Ok() && m.Start() < ar.End; m = m.NextSegment() {
			mr := hostarch.AddrRange(m.Range()).Intersect(ar)
			for gap := mm.pmas.LowerBoundGap(mr.Start); gap.Ok() && gap.Start() < mr.End; gap = gap.NextLargeEnoughGap(1) {
				for _, gr := range markAll(hostarch.AddrRange(gap.Range()).Intersect(mr)) {
					markTables(tables, gr)
				}
			}
		}
	}
	for i := range out {
		if tables[(ar.Start+hostarch.Addr(uint64(i)*hostarch.PageSize))&^(hugePageSize-1)] {
			out[i] |= PageTable
		}
	}
}

// markTables records in tables the 2 MiB-aligned blocks that r touches.
func markTables(tables map[hostarch.Addr]bool, r hostarch.AddrRange) {
	for b := r.Start &^ (hugePageSize - 1); b < r.End; b += hugePageSize {
		tables[b] = true
		if b+hugePageSize < b {
			break
		}
	}
}

// residentBytesLocked returns how many bytes of pseg's pages in r are
// resident (see residentLocked). Preconditions: as residentLocked's.
func (mm *MemoryManager) residentBytesLocked(pseg pmaIterator, r hostarch.AddrRange) uint64 {
	if p := pseg.ValuePtr(); p.allData && p.private {
		return r.Length() // every page holds data
	}
	res := mm.residentLocked(pseg, r)
	if res == nil {
		return r.Length()
	}
	var n uint64
	for _, b := range res {
		n += uint64(b)
	}
	return n * hostarch.PageSize
}

// residentRunsLocked returns the runs of touched pages of pseg in r (all of
// r for other files than the memory file). Preconditions: activeMu held
// for writing.
func (mm *MemoryManager) residentRunsLocked(pseg pmaIterator, r hostarch.AddrRange) []hostarch.AddrRange {
	if r.Length() == 0 {
		return nil
	}
	if p := pseg.ValuePtr(); p.allData && p.private {
		// Every page holds data: touched (without a vector).
		return []hostarch.AddrRange{r}
	}
	res := mm.residentLocked(pseg, r)
	if res == nil {
		return []hostarch.AddrRange{r}
	}
	var out []hostarch.AddrRange
	for i, b := range res {
		if b == 0 {
			continue
		}
		a := r.Start + hostarch.Addr(uint64(i)*hostarch.PageSize)
		if n := len(out); n > 0 && out[n-1].End == a {
			out[n-1].End += hostarch.PageSize
		} else {
			out = append(out, hostarch.AddrRange{Start: a, End: a + hostarch.PageSize})
		}
	}
	return out
}

// escapePath escapes the characters of esc and backslashes in path as
// Linux's seq_file_path does: as a backslash and three octal digits.
func escapePath(path, esc string) string {
	if !strings.ContainsAny(path, esc+"\\") {
		return path
	}
	var b strings.Builder
	for i := 0; i < len(path); i++ {
		if c := path[i]; c == '\\' || strings.IndexByte(esc, c) >= 0 {
			fmt.Fprintf(&b, "\\%03o", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
