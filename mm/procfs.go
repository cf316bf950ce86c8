package mm

import (
	"context"
	"fmt"
	"strconv"
	"strings"

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
}

// VMAs returns a description of every vma, in address order.
func (mm *MemoryManager) VMAs(ctx context.Context) []VMAInfo {
	mm.mappingMu.RLock()
	defer mm.mappingMu.RUnlock()
	rt := mm.activeMu.RLock()
	defer mm.activeMu.RUnlock(rt)
	var out []VMAInfo
	for vseg := mm.vmas.FirstSegment(); vseg.Ok(); vseg = vseg.NextSegment() {
		out = append(out, mm.vmaInfoLocked(ctx, vseg))
	}
	return out
}

// vmaInfoLocked describes vseg. Preconditions: mappingMu and activeMu held
// for reading.
func (mm *MemoryManager) vmaInfoLocked(ctx context.Context, vseg vmaIterator) VMAInfo {
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
	for pseg := mm.pmas.LowerBoundSegment(r.Start); pseg.Ok() && pseg.Start() < r.End; pseg = pseg.NextSegment() {
		pr := hostarch.AddrRange(pseg.Range()).Intersect(r)
		p := pseg.ValuePtr()
		info.Rss += pr.Length()
		if p.private {
			info.Anonymous += pr.Length()
			fr := pmaRef{pseg}.fileRange(pr)
			for off := fr.Start; off < fr.End; off += hostarch.PageSize {
				if n := mm.privateRefs.count(off); n > 1 {
					info.SharedDirty += hostarch.PageSize
					info.Pss += hostarch.PageSize / uint64(n)
				} else {
					info.PrivateDirty += hostarch.PageSize
					info.Pss += hostarch.PageSize
				}
			}
		} else {
			info.SharedClean += pr.Length()
			info.Pss += pr.Length()
		}
	}
	if v.locked() {
		info.Locked = info.Rss
	}
	return info
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
	add(v.flags.has(vmaUffdWP), "uw")
	add(v.locked(), "lo")
	add(v.flags.has(vmaSeqRead), "sr")
	add(v.flags.has(vmaRandRead), "rr")
	add(v.flags.has(vmaDontFork), "dc")
	add(v.flags.has(vmaDontExpand), "de")
	add(v.mlockMode == memmap.MLockLazy, "lf")
	add(v.flags.has(vmaAccount), "ac")
	add(v.flags.has(vmaNoReserve), "nr")
	add(v.flags.has(vmaWipeOnFork), "wf")
	add(v.flags.has(vmaDontDump), "dd")
	add(true, "sd")
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
		kb := func(label string, n uint64) {
			b.WriteString(label)
			s := strconv.FormatUint(n>>10, 10)
			if len(s) < 8 {
				b.WriteString(strings.Repeat(" ", 8-len(s)))
			}
			b.WriteString(s)
			b.WriteString(" kB\n")
		}
		kb("Size:           ", vi.Range.Length())
		kb("KernelPageSize: ", hostarch.PageSize)
		kb("MMUPageSize:    ", hostarch.PageSize)
		kb("Rss:            ", vi.Rss)
		kb("Pss:            ", vi.Pss)
		kb("Pss_Dirty:      ", vi.PrivateDirty+vi.SharedDirty)
		kb("Shared_Clean:   ", vi.SharedClean)
		kb("Shared_Dirty:   ", vi.SharedDirty)
		kb("Private_Clean:  ", 0)
		kb("Private_Dirty:  ", vi.PrivateDirty)
		kb("Referenced:     ", vi.Rss)
		kb("Anonymous:      ", vi.Anonymous)
		kb("KSM:            ", 0)
		kb("LazyFree:       ", 0)
		kb("AnonHugePages:  ", 0)
		kb("ShmemPmdMapped: ", 0)
		kb("FilePmdMapped:  ", 0)
		fmt.Fprintf(&b, "Shared_Hugetlb: %8d kB\n", 0)
		fmt.Fprintf(&b, "Private_Hugetlb: %7d kB\n", 0)
		kb("Swap:           ", 0)
		kb("SwapPss:        ", 0)
		kb("Locked:         ", vi.Locked)
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
	rt := mm.activeMu.RLock()
	defer mm.activeMu.RUnlock(rt)
	s := MemoryStats{
		VmPeak: mm.peakAS,
		VmSize: mm.usageAS,
		VmLck:  mm.lockedAS,
		VmHWM:  mm.maxRSS,
		VmRSS:  mm.curRSS,
		VmData: mm.dataAS,
		VmStk:  mm.stackAS,
		VmExe:  mm.execAS,
	}
	for pseg := mm.pmas.FirstSegment(); pseg.Ok(); pseg = pseg.NextSegment() {
		if pseg.ValuePtr().private {
			s.RssAnon += uint64(pseg.Range().Length())
		} else {
			s.RssFile += uint64(pseg.Range().Length())
		}
	}
	// Page-table pages: one 4 KiB table per 2 MiB of mapped address
	// space, as a lower bound of Linux's figure.
	s.VmPTE = (mm.usageAS + hostarch.HugePageSize - 1) / hostarch.HugePageSize * hostarch.PageSize
	return s
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
	rt := mm.activeMu.RLock()
	defer mm.activeMu.RUnlock(rt)
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
