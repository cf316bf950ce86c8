package mm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/vmspace/vmspace/checkpoint"
	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
	"github.com/vmspace/vmspace/platform"
	"github.com/vmspace/vmspace/segment"
	"golang.org/x/sys/unix"
)

// RestoreOptions configure a Restorer.
type RestoreOptions struct {
	// MemoryFile is where restored private memory and special mappings
	// live. Required.
	MemoryFile *pgalloc.MemoryFile
	// Platform is the restored managers' platform; nil means
	// platform.NoPlatform.
	Platform platform.Platform
	// Codec restores the objects that the image's codec saved; required
	// if the image has any.
	Codec checkpoint.ObjectCodec
}

// AppRecord is a record of an application's kind (checkpoint.KindApp and
// above) found in an image.
type AppRecord struct {
	Kind    checkpoint.Kind
	Payload []byte
}

// Restorer reads an image that a Saver wrote and makes its managers and
// objects again (see Saver for the phases). It is not safe for concurrent
// use. Close must be called once it is no longer needed, whatever happened.
type Restorer struct {
	// r is the image.
	r *checkpoint.Reader
	// opts are the options; opts.Platform is never nil.
	opts RestoreOptions

	// objects are the objects read, by id-1.
	objects []*rObject
	// families are the families of private memory, by number.
	families map[uint64]*rFamily
	// managers are the managers read, in image order.
	managers []*rManager
	// app are the application records, in image order.
	app []AppRecord

	// loaded, built and closed record progress.
	loaded, built, closed bool
}

// rObject is an object read from the image.
type rObject struct {
	// special is a SpecialMappable made by Load, on which the Restorer
	// holds a reference until Close; nil for a codec object.
	special *SpecialMappable
	// specialHasID is true if the special mapping is also the identity.
	specialHasID bool
	// pending is a codec object, discarded at Close.
	pending checkpoint.PendingObject
	// m and id are the built object (after Build).
	m  memmap.Mappable
	id memmap.MappingIdentity
	// aioOwner is the index+1 of the manager whose AIO context uses this
	// ring, or 0.
	aioOwner int
	// built is set once Build made m and id.
	built bool
}

// rFamily is a family of private memory.
type rFamily struct {
	// runs are the family's runs, sorted by original offset.
	runs []rRun
	// counts are the saved reference counts, by original offset.
	counts refsSet
	// refs is the built family's privateRefs.
	refs *privateRefs
}

// rRun is a run of private memory.
type rRun struct {
	// orig is the run's range in the saved memory file.
	orig memmap.FileRange
	// fr is its new range; the Restorer holds the allocation's reference
	// until Build has given the pages to privateRefs (or until Close).
	fr memmap.FileRange
	// held is true while the Restorer holds the allocation's reference.
	held bool
}

// rManager is a manager read from the image.
type rManager struct {
	family                       uint64
	layout                       MmapLayout
	brk, dataSegment, argv, envv hostarch.AddrRange
	limits                       Limits
	defMLockMode                 memmap.MLockMode
	peakAS, maxRSS, faults       uint64
	auxv                         []AuxEntry
	executable                   uint64
	dumpability                  Dumpability
	vdsoSigReturn                uint64
	mdwe                         MDWE
	vmas                         []rVMA
	pmas                         []rPMA
	guards                       []hostarch.AddrRange
	aio                          []rAIO
	wantVMAs, wantPMAs           uint64
	mm                           *MemoryManager
}

// rVMA is a saved vma.
type rVMA struct {
	ar  hostarch.AddrRange
	obj uint64
	v   vma // without mappable and id
}

// rPMA is a saved pma.
type rPMA struct {
	ar             hostarch.AddrRange
	private        bool
	needCOW        bool
	lazyFree       bool
	zero           bool   // the zero page (pmaFlagZero)
	orig           uint64 // private: original memory-file offset
	translatePerms hostarch.AccessType
	effectivePerms hostarch.AccessType
	maxPerms       hostarch.AccessType
}

// rAIO is a saved AIO context.
type rAIO struct {
	ring    uint64
	maxReqs uint32
	index   uint32
	addr    hostarch.Addr
}

// NewRestorer returns a Restorer reading r.
func NewRestorer(r *checkpoint.Reader, opts RestoreOptions) (*Restorer, error) {
	if opts.MemoryFile == nil {
		return nil, errors.New("mm: NewRestorer without a MemoryFile")
	}
	if opts.Platform == nil {
		opts.Platform = platform.NoPlatform{}
	}
	return &Restorer{r: r, opts: opts, families: map[uint64]*rFamily{}}, nil
}

// Restore reads a complete image from r and returns its managers, in the
// order they were saved. On error nothing has changed: no manager or object
// of the image is left, and the memory file holds what it held before.
func Restore(ctx context.Context, r io.Reader, opts RestoreOptions) ([]*MemoryManager, error) {
	cr, err := checkpoint.NewReader(r)
	if err != nil {
		return nil, err
	}
	defer cr.Close()
	rs, err := NewRestorer(cr, opts)
	if err != nil {
		return nil, err
	}
	defer rs.Close(ctx)
	if err := rs.Load(ctx); err != nil {
		return nil, err
	}
	return rs.Build(ctx)
}

// AppRecords returns the application records of the image, after Load.
func (rs *Restorer) AppRecords() []AppRecord { return rs.app }

// Object returns the object saved with id, after Build. The references
// are the Restorer's, valid until Close: a user takes its own.
func (rs *Restorer) Object(id uint64) (memmap.Mappable, memmap.MappingIdentity, bool) {
	if id == 0 || id > uint64(len(rs.objects)) || !rs.objects[id-1].built {
		return nil, nil, false
	}
	o := rs.objects[id-1]
	return o.m, o.id, true
}

// Load reads the whole image and checks it. On error the Restorer must be
// closed (which frees what Load allocated) and nothing else changed.
func (rs *Restorer) Load(ctx context.Context) error {
	if rs.loaded || rs.closed {
		return errors.New("mm: Restorer.Load called twice or after Close")
	}
	rs.loaded = true
	for {
		kind, d, err := rs.r.Next()
		if err != nil {
			return err
		}
		switch {
		case kind == checkpoint.KindEnd:
			return rs.checkFamilies()
		case kind == recObject:
			err = rs.loadObject(ctx, d)
		case kind == recRun:
			err = rs.loadRun(d)
		case kind == recManager:
			err = rs.loadManager(d)
		case kind >= checkpoint.KindApp:
			rs.app = append(rs.app, AppRecord{Kind: kind, Payload: append([]byte(nil), d.Raw(d.Remaining())...)})
		default:
			err = rs.r.Fail("unexpected record of kind %#x", kind)
		}
		if err != nil {
			return err
		}
	}
}

// loadObject reads an object.
func (rs *Restorer) loadObject(ctx context.Context, d *checkpoint.Decoder) error {
	oid := d.Uvarint()
	typ := d.Byte()
	if d.Err() == nil && oid != uint64(len(rs.objects))+1 {
		return d.Fail("object %d out of sequence (expected %d)", oid, len(rs.objects)+1)
	}
	switch typ {
	case objSpecial:
		hasID := d.Bool()
		name := d.String(maxNameLen)
		size := d.Uvarint()
		errno := unix.Errno(d.UvarintMax(4095, "errno"))
		perrno := unix.Errno(d.UvarintMax(4095, "errno"))
		if err := d.Finish(); err != nil {
			return err
		}
		if size == 0 || size > maxSpecialSize || !hostarch.IsPageAligned(size) {
			return d.Fail("special mapping %q of bad size %#x", name, size)
		}
		sm, err := NewSpecialMappable(name, rs.opts.MemoryFile, size)
		if err != nil {
			return fmt.Errorf("mm: restoring special mapping %q: %w", name, err)
		}
		if errno != 0 {
			sm.msyncErr = errno
		}
		if perrno != 0 {
			sm.punchErr = perrno
		}
		rs.objects = append(rs.objects, &rObject{special: sm, specialHasID: hasID})
		ims, err := sm.Contents()
		if err != nil {
			return err
		}
		data, zero := checkpoint.BlockSink(ims)
		return rs.r.ReadPages(size, data, zero)
	case objCodec:
		if err := d.Finish(); err != nil {
			return err
		}
		if rs.opts.Codec == nil {
			return errors.New("mm: the image has objects saved by a codec, and no codec was given")
		}
		o := &rObject{}
		rs.objects = append(rs.objects, o)
		p, err := rs.opts.Codec.LoadObject(ctx, rs.r)
		if err != nil {
			return err
		}
		if p == nil {
			return errors.New("mm: the codec returned no object")
		}
		o.pending = p
		return nil
	}
	if err := d.Err(); err != nil {
		return err
	}
	return d.Fail("unknown object type %d", typ)
}

// family returns family n, making it if needed.
func (rs *Restorer) family(d *checkpoint.Decoder, n uint64) *rFamily {
	if n >= maxFamilies {
		d.Fail("family %d out of range", n)
		return nil
	}
	f := rs.families[n]
	if f == nil {
		f = &rFamily{}
		rs.families[n] = f
	}
	return f
}

// loadRun reads a run of private memory and its contents.
func (rs *Restorer) loadRun(d *checkpoint.Decoder) error {
	fam := rs.family(d, d.Uvarint())
	start := d.Uvarint()
	length := d.Uvarint()
	npieces := d.UvarintMax(maxPerRecord, "run pieces")
	if d.Err() != nil {
		return d.Err()
	}
	if length == 0 || length > maxRunLength || !hostarch.IsPageAligned(length) || !hostarch.IsPageAligned(start) || start+length < start {
		return d.Fail("bad run [%#x, +%#x)", start, length)
	}
	orig := memmap.FileRange{Start: start, End: start + length}
	if !fam.counts.IsEmptyRange(segment.Range[uint64](orig)) {
		return d.Fail("run %v overlaps another run", orig)
	}
	pos := start
	for i := uint64(0); i < npieces; i++ {
		n := d.Uvarint()
		c := d.Uvarint()
		if d.Err() != nil {
			return d.Err()
		}
		if n == 0 || n > (orig.End-pos)>>hostarch.PageShift || c == 0 || c > 1<<30 {
			return d.Fail("bad piece of %d pages, count %d, in run %v", n, c, orig)
		}
		r := segment.Range[uint64]{Start: pos, End: pos + n<<hostarch.PageShift}
		fam.counts.Insert(fam.counts.FindGap(pos), r, int32(c))
		pos = r.End
	}
	if err := d.Finish(); err != nil {
		return err
	}
	if pos != orig.End {
		return d.Fail("run %v pieces cover only up to %#x", orig, pos)
	}
	fr, err := rs.opts.MemoryFile.Allocate(length, pgalloc.AllocOpts{Huge: start&uint64(hostarch.HugePageMask) == 0})
	if err != nil {
		return fmt.Errorf("mm: allocating %#x bytes of private memory: %w", length, err)
	}
	run := rRun{orig: orig, fr: fr, held: true}
	i := sort.Search(len(fam.runs), func(i int) bool { return fam.runs[i].orig.Start > start })
	fam.runs = append(fam.runs, rRun{})
	copy(fam.runs[i+1:], fam.runs[i:])
	fam.runs[i] = run
	ims, err := rs.opts.MemoryFile.MapInternal(fr, hostarch.ReadWrite)
	if err != nil {
		return err
	}
	data, zero := checkpoint.BlockSink(ims)
	return rs.r.ReadPages(length, data, zero)
}

// decodeAddrRange reads a non-empty page-aligned range.
func decodeAddrRange(d *checkpoint.Decoder, what string) hostarch.AddrRange {
	s, e := d.Uvarint(), d.Uvarint()
	ar := hostarch.AddrRange{Start: hostarch.Addr(s), End: hostarch.Addr(e)}
	if d.Err() == nil && (s >= e || !ar.IsPageAligned()) {
		d.Fail("bad %s range [%#x, %#x)", what, s, e)
	}
	return ar
}

// loadManager reads a manager: its header, then its records up to
// recManagerEnd.
func (rs *Restorer) loadManager(d *checkpoint.Decoder) error {
	m := &rManager{}
	m.family = d.Uvarint()
	rs.family(d, m.family)
	m.layout.MinAddr = hostarch.Addr(d.Uvarint())
	m.layout.MaxAddr = hostarch.Addr(d.Uvarint())
	m.layout.BottomUpBase = hostarch.Addr(d.Uvarint())
	m.layout.TopDownBase = hostarch.Addr(d.Uvarint())
	m.layout.DefaultDirection = MmapDirection(d.UvarintMax(uint64(MmapBottomUp), "mmap direction"))
	m.brk = hostarch.AddrRange{Start: hostarch.Addr(d.Uvarint()), End: hostarch.Addr(d.Uvarint())}
	m.dataSegment = hostarch.AddrRange{Start: hostarch.Addr(d.Uvarint()), End: hostarch.Addr(d.Uvarint())}
	for _, r := range []*RLimit{&m.limits.AS, &m.limits.Data, &m.limits.MemLock, &m.limits.Stack} {
		r.Cur, r.Max = d.Uvarint(), d.Uvarint()
	}
	m.limits.CapIPCLock = d.Bool()
	m.limits.CapSysRawIO = d.Bool()
	m.limits.NoZeroPage = d.Bool()
	m.limits.MinMmapAddr = hostarch.Addr(d.Uvarint())
	m.limits.MaxMapCount = int(d.UvarintMax(1<<31-1, "max map count"))
	m.defMLockMode = memmap.MLockMode(d.UvarintMax(uint64(memmap.MLockLazy), "mlock mode"))
	m.peakAS, m.maxRSS, m.faults = d.Uvarint(), d.Uvarint(), d.Uvarint()
	m.argv = hostarch.AddrRange{Start: hostarch.Addr(d.Uvarint()), End: hostarch.Addr(d.Uvarint())}
	m.envv = hostarch.AddrRange{Start: hostarch.Addr(d.Uvarint()), End: hostarch.Addr(d.Uvarint())}
	naux := d.UvarintMax(maxAuxv, "auxv entries")
	for i := uint64(0); i < naux && d.Err() == nil; i++ {
		m.auxv = append(m.auxv, AuxEntry{Key: d.Uvarint(), Value: d.Uvarint()})
	}
	m.executable = d.Uvarint()
	m.dumpability = Dumpability(d.UvarintMax(uint64(RootDumpable), "dumpability"))
	m.vdsoSigReturn = d.Uvarint()
	m.mdwe = MDWE(d.UvarintMax(uint64(MDWERefuseExecGain|MDWENoInherit), "MDWE"))
	m.wantVMAs, m.wantPMAs = d.Uvarint(), d.Uvarint()
	if err := d.Finish(); err != nil {
		return err
	}
	maxUser := rs.opts.Platform.MaxUserAddress()
	l := m.layout
	switch {
	case l.MinAddr > l.MaxAddr || l.MaxAddr > maxUser || !l.MinAddr.IsPageAligned() || !l.MaxAddr.IsPageAligned() ||
		l.BottomUpBase > l.MaxAddr || l.TopDownBase > l.MaxAddr:
		return d.Fail("bad layout %+v (platform maximum %#x)", l, maxUser)
	case m.brk.Start > m.brk.End || m.dataSegment.Start > m.dataSegment.End || m.argv.Start > m.argv.End || m.envv.Start > m.envv.End:
		return d.Fail("bad brk, data, argv or envv range")
	case m.limits.MaxMapCount < 1:
		return d.Fail("bad max map count %d", m.limits.MaxMapCount)
	case m.mdwe == MDWENoInherit:
		return d.Fail("bad MDWE %#x (PR_MDWE_NO_INHERIT alone)", uint64(m.mdwe))
	case m.executable > uint64(len(rs.objects)):
		return d.Fail("executable refers to object %d of %d", m.executable, len(rs.objects))
	case m.wantVMAs > uint64(m.limits.MaxMapCount):
		return d.Fail("%d vmas exceed the map count %d", m.wantVMAs, m.limits.MaxMapCount)
	}

	for {
		kind, d, err := rs.r.Next()
		if err != nil {
			return err
		}
		if kind == recManagerEnd {
			if err := d.Finish(); err != nil {
				return err
			}
			break
		}
		var n uint64
		switch kind {
		case recVMAs, recPMAs, recGuards, recAIO:
			n = d.Uvarint()
			if n == 0 || n > maxPerRecord {
				return d.Fail("bad count %d", n)
			}
		default:
			return rs.r.Fail("unexpected record of kind %#x in a manager", kind)
		}
		for i := uint64(0); i < n && d.Err() == nil; i++ {
			switch kind {
			case recVMAs:
				rs.decodeVMA(d, m)
			case recPMAs:
				decodePMA(d, m)
			case recGuards:
				g := decodeAddrRange(d, "guard")
				if d.Err() == nil && len(m.guards) > 0 && g.Start < m.guards[len(m.guards)-1].End {
					d.Fail("guard regions out of order")
				}
				m.guards = append(m.guards, g)
			case recAIO:
				a := rAIO{ring: d.Uvarint(), maxReqs: uint32(d.UvarintMax(aioMaxNr, "AIO events")),
					index: uint32(d.UvarintMax(1<<31, "AIO index")), addr: hostarch.Addr(d.Uvarint())}
				m.aio = append(m.aio, a)
			}
		}
		if err := d.Finish(); err != nil {
			return err
		}
	}
	if uint64(len(m.vmas)) != m.wantVMAs || uint64(len(m.pmas)) != m.wantPMAs {
		return rs.r.Fail("manager has %d vmas and %d pmas, its header says %d and %d", len(m.vmas), len(m.pmas), m.wantVMAs, m.wantPMAs)
	}
	if err := rs.checkManager(m, len(rs.managers)+1); err != nil {
		return err
	}
	rs.managers = append(rs.managers, m)
	return nil
}

// decodeVMA reads one vma.
func (rs *Restorer) decodeVMA(d *checkpoint.Decoder, m *rManager) {
	var v rVMA
	v.ar = decodeAddrRange(d, "vma")
	v.obj = d.Uvarint()
	v.v.off = d.Uvarint()
	var ok1, ok2 bool
	v.v.realPerms, ok1 = decodePerms(d.Byte())
	v.v.maxPerms, ok2 = decodePerms(d.Byte())
	fl := d.Uvarint()
	v.v.flags = vmaFlags(fl & 0xffffffff)
	hasAnon := fl>>32&1 != 0
	v.v.anonChained = fl>>33&1 != 0
	v.v.mlockMode = memmap.MLockMode(d.UvarintMax(uint64(memmap.MLockLazy), "mlock mode"))
	v.v.numaPolicy = int32(d.UvarintMax(MPolLocal, "NUMA policy"))
	v.v.numaNodemask = d.Uvarint()
	v.v.name = d.String(maxNameLen)
	v.v.anonVMA = d.Uvarint()
	if d.Err() != nil {
		return
	}
	if hasAnon != (v.v.anonVMA != 0) || (v.v.anonChained && !hasAnon) {
		d.Fail("vma %#x-%#x: inconsistent anon_vma %d", v.ar.Start, v.ar.End, v.v.anonVMA)
		return
	}
	noteAnonVMA(v.v.anonVMA)
	switch {
	case !ok1 || !ok2:
		d.Fail("vma %v: bad permissions", v.ar)
	case uint64(v.v.flags)&^uint64(knownVMAFlags) != 0 || fl>>34 != 0:
		d.Fail("vma %v: unknown flags %#x", v.ar, uint64(v.v.flags))
	case v.obj > uint64(len(rs.objects)):
		d.Fail("vma %v refers to object %d of %d", v.ar, v.obj, len(rs.objects))
	case v.obj != 0 && v.v.off+v.ar.Length() < v.v.off:
		d.Fail("vma %v: offset %#x overflows", v.ar, v.v.off)
	case len(m.vmas) > 0 && v.ar.Start < m.vmas[len(m.vmas)-1].ar.End:
		d.Fail("vmas out of order at %v", v.ar)
	}
	m.vmas = append(m.vmas, v)
}

// decodePMA reads one pma.
func decodePMA(d *checkpoint.Decoder, m *rManager) {
	var p rPMA
	p.ar = decodeAddrRange(d, "pma")
	fl := d.Byte()
	p.private = fl&pmaFlagPrivate != 0
	p.needCOW = fl&pmaFlagNeedCOW != 0
	p.lazyFree = fl&pmaFlagLazyFree != 0
	p.zero = fl&pmaFlagZero != 0
	ok := fl&^(pmaFlagPrivate|pmaFlagNeedCOW|pmaFlagLazyFree|pmaFlagZero) == 0
	var ok1, ok2, ok3 bool
	if p.private {
		p.orig = d.Uvarint()
		p.translatePerms, ok1 = hostarch.AnyAccess, true
	} else {
		p.translatePerms, ok1 = decodePerms(d.Byte())
	}
	p.effectivePerms, ok2 = decodePerms(d.Byte())
	p.maxPerms, ok3 = decodePerms(d.Byte())
	if d.Err() != nil {
		return
	}
	switch {
	case !ok || !ok1 || !ok2 || !ok3:
		d.Fail("pma %v: bad flags or permissions", p.ar)
	case p.private && (!hostarch.IsPageAligned(p.orig) || p.orig+p.ar.Length() < p.orig):
		d.Fail("pma %v: bad offset %#x", p.ar, p.orig)
	case p.needCOW && p.effectivePerms.Write:
		d.Fail("pma %v: writable while needing copy-on-write", p.ar)
	case p.lazyFree && (!p.private || !p.needCOW):
		d.Fail("pma %v: lazily freed but not private memory needing copy-on-write", p.ar)
	case p.zero && (p.private || p.needCOW || p.translatePerms.Write || p.effectivePerms.Write || p.maxPerms.Write):
		d.Fail("pma %v: a zero page that is private, writable or needs copy-on-write", p.ar)
	case len(m.pmas) > 0 && p.ar.Start < m.pmas[len(m.pmas)-1].ar.End:
		d.Fail("pmas out of order at %v", p.ar)
	}
	m.pmas = append(m.pmas, p)
}

// vmaAt returns the index of the vma of m containing addr, or -1.
func (m *rManager) vmaAt(addr hostarch.Addr) int {
	i := sort.Search(len(m.vmas), func(i int) bool { return m.vmas[i].ar.End > addr })
	if i < len(m.vmas) && m.vmas[i].ar.Start <= addr {
		return i
	}
	return -1
}

// coveredBy reports whether every address of ar lies in a vma of m, each
// satisfying ok.
func (m *rManager) coveredBy(ar hostarch.AddrRange, ok func(*rVMA) bool) bool {
	for a := ar.Start; a < ar.End; {
		i := m.vmaAt(a)
		if i < 0 || !ok(&m.vmas[i]) {
			return false
		}
		a = m.vmas[i].ar.End
	}
	return true
}

// checkManager checks what can be checked of a manager alone.
func (rs *Restorer) checkManager(m *rManager, index int) error {
	maxUser := rs.opts.Platform.MaxUserAddress()
	if n := len(m.vmas); n > 0 && m.vmas[n-1].ar.End > maxUser {
		return rs.r.Fail("vma %v beyond the platform's address space (%#x)", m.vmas[n-1].ar, maxUser)
	}
	for _, p := range m.pmas {
		ok := m.coveredBy(p.ar, func(v *rVMA) bool {
			if p.zero {
				// The zero page backs private anonymous memory only.
				return v.obj == 0 && v.v.private()
			}
			return p.private || v.obj != 0
		})
		if !ok {
			return rs.r.Fail("pma %v is not within vmas that can back it", p.ar)
		}
	}
	for _, g := range m.guards {
		if !m.coveredBy(g, func(*rVMA) bool { return true }) {
			return rs.r.Fail("guard region %v is not within vmas", g)
		}
	}
	indexes := map[uint32]bool{}
	for _, a := range m.aio {
		if indexes[a.index] {
			return rs.r.Fail("two AIO contexts with index %d", a.index)
		}
		indexes[a.index] = true
		if a.ring == 0 || a.ring > uint64(len(rs.objects)) || rs.objects[a.ring-1].special == nil {
			return rs.r.Fail("AIO context refers to object %d, not a special mapping", a.ring)
		}
		o := rs.objects[a.ring-1]
		if o.aioOwner != 0 || a.maxReqs == 0 {
			return rs.r.Fail("AIO ring %d owned twice, or with no events", a.ring)
		}
		o.aioOwner = index
		// The ring need not be mapped at the context's address: like
		// Linux, a context outlives the unmapping of its ring, and is
		// found again if what is mapped there reads back its index.
		if a.addr&hostarch.PageMask != 0 {
			return rs.r.Fail("AIO context at unaligned %#x", uint64(a.addr))
		}
	}
	return nil
}

// checkFamilies checks that the saved reference counts of private memory
// equal the number of pmas referring to each page.
func (rs *Restorer) checkFamilies() error {
	refs := map[uint64]*refsSet{}
	for _, m := range rs.managers {
		set := refs[m.family]
		if set == nil {
			set = &refsSet{}
			refs[m.family] = set
		}
		for _, p := range m.pmas {
			if p.private {
				addCount(set, memmap.FileRange{Start: p.orig, End: p.orig + p.ar.Length()})
			}
		}
	}
	for n, f := range rs.families {
		want := refs[n]
		if want == nil {
			want = &refsSet{}
		}
		f.counts.MergeAll()
		want.MergeAll()
		gr, gv := f.counts.ExportSlices()
		wr, wv := want.ExportSlices()
		if len(gr) != len(wr) {
			return rs.r.Fail("family %d: private memory counts disagree with its pmas", n)
		}
		for i := range gr {
			if gr[i] != wr[i] || gv[i] != wv[i] {
				return rs.r.Fail("family %d: private memory %v counted %d, referred to by %d pmas at %v", n, gr[i], gv[i], wv[i], wr[i])
			}
		}
	}
	return nil
}

// Build makes the objects and managers of a loaded image and returns the
// managers in the order they were saved. On error, nothing built is left
// (Close still must be called).
func (rs *Restorer) Build(ctx context.Context) (mms []*MemoryManager, err error) {
	if !rs.loaded || rs.built || rs.closed || !rs.r.Ended() {
		return nil, errors.New("mm: Restorer.Build without a complete Load, or twice")
	}
	rs.built = true
	defer func() {
		if err != nil {
			rs.unbuild(ctx)
			mms = nil
		}
	}()
	for i, o := range rs.objects {
		if o.special != nil {
			o.m = o.special
			if o.specialHasID {
				o.id = o.special
			}
		} else {
			if o.m, o.id, err = o.pending.Build(ctx); err != nil {
				return nil, fmt.Errorf("mm: building object %d: %w", i+1, err)
			}
		}
		o.built = true
	}
	for _, f := range rs.families {
		f.refs = newPrivateRefs()
	}
	for _, m := range rs.managers {
		if err := rs.buildManager(ctx, m); err != nil {
			return nil, err
		}
		// AIO rings are Mappables, whose locks come before activeMu:
		// hook them up with the manager's locks released.
		for _, a := range m.aio {
			ring := rs.objects[a.ring-1].m.(*SpecialMappable)
			if err := m.mm.restoreAIOContext(ring, a); err != nil {
				return nil, err
			}
		}
		mms = append(mms, m.mm)
	}
	for _, m := range mms {
		if err := m.CheckInvariants(); err != nil {
			return nil, fmt.Errorf("mm: restored manager fails its invariants: %w", err)
		}
	}
	byFamily := map[*privateRefs][]*MemoryManager{}
	for _, m := range mms {
		byFamily[m.privateRefs] = append(byFamily[m.privateRefs], m)
	}
	for _, fam := range byFamily {
		if err := CheckPrivateRefs(fam...); err != nil {
			return nil, fmt.Errorf("mm: restored private memory counts: %w", err)
		}
	}
	for i, o := range rs.objects {
		if o.pending != nil {
			if err := o.pending.Commit(ctx); err != nil {
				return nil, fmt.Errorf("mm: committing object %d: %w", i+1, err)
			}
		}
	}
	rs.releaseRuns()
	return mms, nil
}

// releaseRuns drops the Restorer's references on the runs' allocations.
func (rs *Restorer) releaseRuns() {
	for _, f := range rs.families {
		for i := range f.runs {
			if r := &f.runs[i]; r.held {
				rs.opts.MemoryFile.DecRef(r.fr)
				r.held = false
			}
		}
	}
}

// unbuild releases the managers Build made.
func (rs *Restorer) unbuild(ctx context.Context) {
	for _, m := range rs.managers {
		if m.mm != nil {
			m.mm.DecUsers(ctx)
			m.mm = nil
		}
	}
}

// Close releases everything the Restorer holds: after a successful Build,
// its own references (the managers and the objects they use stay); else
// everything Load and Build made.
func (rs *Restorer) Close(ctx context.Context) {
	if rs.closed {
		return
	}
	rs.closed = true
	for _, o := range rs.objects {
		if o.pending != nil {
			o.pending.Discard(ctx)
			o.pending = nil
		}
		if o.special != nil {
			o.special.DecRef(ctx)
			o.special = nil
		}
	}
	rs.releaseRuns()
}

// addRefsLocked adds one to the count of every page of fr in r, taking a
// memory-file reference for pages counted for the first time (privateRefs
// holds one per counted page). Preconditions: r.mu held; the caller holds
// a reference on fr.
func addRefsLocked(r *privateRefs, mf memmap.File, fr memmap.FileRange) {
	pos := fr.Start
	sr := segment.Range[uint64](fr)
	for pos < fr.End {
		seg, gap := r.refs.Find(pos)
		if gap.Ok() {
			end := min(gap.End(), fr.End)
			mf.IncRef(memmap.FileRange{Start: pos, End: end})
			r.refs.Insert(gap, segment.Range[uint64]{Start: pos, End: end}, 1)
			pos = end
			continue
		}
		// Only what is left of fr: inserting its start may have merged
		// it with this segment.
		seg = r.refs.Isolate(seg, segment.Range[uint64]{Start: pos, End: fr.End})
		*seg.ValuePtr()++
		pos = seg.End()
	}
	r.refs.MergeRange(sr)
	r.refs.MergeAdjacent(sr)
}

// buildManager makes the manager of m.
func (rs *Restorer) buildManager(ctx context.Context, m *rManager) error {
	p := rs.opts.Platform
	fam := rs.families[m.family]
	mm := &MemoryManager{
		p:             p,
		mf:            rs.opts.MemoryFile,
		privateRefs:   fam.refs,
		layout:        m.layout,
		brk:           m.brk,
		dataSegment:   m.dataSegment,
		limits:        m.limits,
		defMLockMode:  m.defMLockMode,
		argv:          m.argv,
		envv:          m.envv,
		auxv:          append([]AuxEntry(nil), m.auxv...),
		dumpability:   m.dumpability,
		vdsoSigReturn: m.vdsoSigReturn,
		mdwe:          m.mdwe,
	}
	mm.users.Store(1)
	mm.faults.Store(m.faults)
	m.mm = mm
	if m.executable != 0 {
		_, id, _ := rs.Object(m.executable)
		if id == nil {
			return fmt.Errorf("mm: the executable (object %d) has no identity", m.executable)
		}
		id.IncRef()
		mm.executable = id
	}

	mm.mappingMu.Lock()
	defer mm.mappingMu.Unlock()
	gap := mm.vmas.FirstGap()
	for _, rv := range m.vmas {
		v := rv.v
		if rv.obj != 0 {
			v.mappable, v.id, _ = rs.Object(rv.obj)
		}
		if v.mappable != nil {
			if err := v.mappable.AddMapping(ctx, mm, rv.ar, v.off, v.canWriteMappable()); err != nil {
				return fmt.Errorf("mm: restoring the mapping at %v: %w", rv.ar, err)
			}
		}
		if v.id != nil {
			v.id.IncRef()
		}
		mm.accountVMA(&v, rv.ar.Length(), +1)
		gap = mm.vmas.InsertWithoutMergingUnchecked(gap, addrSegRange(rv.ar), v).NextGap()
	}
	mm.peakAS = max(m.peakAS, mm.usageAS)
	for _, g := range m.guards {
		mm.guards.Add(addrSegRange(g), struct{}{})
	}

	mm.activeMu.Lock()
	defer mm.activeMu.Unlock()
	for _, rp := range m.pmas {
		if rp.private {
			rs.buildPrivatePMA(mm, fam, rp)
			continue
		}
		if rp.zero {
			mm.pmas.InsertWithoutMergingUnchecked(mm.pmas.FindGap(rp.ar.Start), addrSegRange(rp.ar), pma{
				file:           memmap.ZeroPage,
				off:            uint64(rp.ar.Start),
				translatePerms: rp.translatePerms,
				effectivePerms: rp.effectivePerms,
				maxPerms:       rp.maxPerms,
			})
			mm.curRSS += rp.ar.Length()
			continue
		}
		if err := rs.buildSharedPMA(ctx, mm, rp); err != nil {
			return err
		}
	}
	mm.maxRSS = m.maxRSS
	return nil
}

// buildPrivatePMA installs a private pma, piece by piece over the runs.
// Preconditions: mm.activeMu held for writing; Load checked that the runs
// cover rp.
func (rs *Restorer) buildPrivatePMA(mm *MemoryManager, fam *rFamily, rp rPMA) {
	fam.refs.mu.Lock()
	defer fam.refs.mu.Unlock()
	ar := rp.ar
	orig := rp.orig
	for ar.Start < ar.End {
		i := sort.Search(len(fam.runs), func(i int) bool { return fam.runs[i].orig.End > orig })
		run := fam.runs[i]
		n := min(ar.Length(), run.orig.End-orig)
		fr := memmap.FileRange{Start: run.fr.Start + (orig - run.orig.Start)}
		fr.End = fr.Start + n
		addRefsLocked(fam.refs, mm.mf, fr)
		piece := hostarch.AddrRange{Start: ar.Start, End: ar.Start + hostarch.Addr(n)}
		mm.pmas.InsertWithoutMergingUnchecked(mm.pmas.FindGap(piece.Start), addrSegRange(piece), pma{
			file:           mm.mf,
			off:            fr.Start,
			translatePerms: hostarch.AnyAccess,
			effectivePerms: rp.effectivePerms,
			maxPerms:       rp.maxPerms,
			needCOW:        rp.needCOW,
			lazyFree:       rp.lazyFree,
			private:        true,
		})
		mm.curRSS += n
		ar.Start = piece.End
		orig += n
	}
}

// buildSharedPMA translates the range of a pma of a Mappable again and
// installs what the translations cover. pmas are a cache: a range the
// Mappable cannot translate any more is left without a pma, to be faulted
// in (or refused) on its next access. Preconditions: mm.mappingMu and
// mm.activeMu held for writing.
func (rs *Restorer) buildSharedPMA(ctx context.Context, mm *MemoryManager, rp rPMA) error {
	at := hostarch.AccessType{Read: true, Write: rp.translatePerms.Write}
	for addr := rp.ar.Start; addr < rp.ar.End; {
		vseg := mm.vmas.FindSegment(addr)
		if !vseg.Ok() {
			return fmt.Errorf("mm: pma %v outside vmas", rp.ar)
		}
		piece := hostarch.AddrRange{Start: addr, End: min(vseg.End(), rp.ar.End)}
		addr = piece.End
		v := vseg.ValuePtr()
		if v.mappable == nil {
			return fmt.Errorf("mm: pma %v of a vma without a mappable", rp.ar)
		}
		mr := mappableRangeOf(vseg, piece)
		ts, _ := v.mappable.Translate(ctx, mr, mr, at)
		for _, t := range ts {
			src := t.Source.Intersect(mr)
			if src.Length() == 0 {
				continue
			}
			tar := hostarch.AddrRange{
				Start: vseg.Start() + hostarch.Addr(src.Start-v.off),
				End:   vseg.Start() + hostarch.Addr(src.End-v.off),
			}
			if !mm.pmas.IsEmptyRange(addrSegRange(tar)) {
				continue
			}
			fr := memmap.FileRange{Start: t.Offset + (src.Start - t.Source.Start)}
			fr.End = fr.Start + src.Length()
			t.File.IncRef(fr)
			p := pma{
				file:           t.File,
				off:            fr.Start,
				translatePerms: t.Perms,
				effectivePerms: rp.effectivePerms.Intersect(t.Perms),
				maxPerms:       rp.maxPerms.Intersect(t.Perms),
				needCOW:        rp.needCOW,
			}
			if rp.needCOW {
				p.effectivePerms.Write = false
				p.maxPerms = rp.maxPerms
			}
			mm.pmas.Insert(mm.pmas.FindGap(tar.Start), addrSegRange(tar), p)
			mm.curRSS += tar.Length()
		}
	}
	return nil
}

// restoreAIOContext makes an AIO context of mm with the restored ring.
func (mm *MemoryManager) restoreAIOContext(ring *SpecialMappable, a rAIO) error {
	aioNr.mu.Lock()
	if aioNr.n+uint64(a.maxReqs) > aioMaxNr {
		aioNr.mu.Unlock()
		return fmt.Errorf("mm: restoring an AIO context of %d events: over the system limit", a.maxReqs)
	}
	aioNr.n += uint64(a.maxReqs)
	aioNr.mu.Unlock()
	ac := &AIOContext{mm: mm, ring: ring, maxReqs: a.maxReqs, index: a.index, addr: a.addr, wait: make(chan struct{}, 1)}
	ring.mu.Lock()
	ring.onMap = ac.followRing
	ring.mu.Unlock()
	ring.aioRing = true
	mm.aio.mu.Lock()
	if mm.aio.contexts == nil {
		mm.aio.contexts = map[*AIOContext]struct{}{}
	}
	mm.aio.contexts[ac] = struct{}{}
	mm.aio.mu.Unlock()
	return nil
}
