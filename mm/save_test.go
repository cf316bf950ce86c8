package mm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/vmspace/vmspace/checkpoint"
	"github.com/vmspace/vmspace/checkpoint/hostfiles"
	"github.com/vmspace/vmspace/hostarch"
	"github.com/vmspace/vmspace/hostfile"
	"github.com/vmspace/vmspace/memmap"
	"github.com/vmspace/vmspace/pgalloc"
	"golang.org/x/sys/unix"
)

// fingerprint is everything observable about a family of managers that a
// checkpoint must preserve.
type fingerprint struct {
	// per manager
	Maps, Smaps, Status []string
	Regions             [][]Region
	Mincore             []string
	Contents            []string
	Aio                 []string
	Limits              []Limits
	Layout              []MmapLayout
	Brk                 []hostarch.AddrRange
	Meta                []string
	Guards              []string
	// Sharing describes which (manager, page) pairs share a private page.
	Sharing string
}

// takeFingerprint describes mms without changing them.
func takeFingerprint(t *testing.T, mms []*MemoryManager) fingerprint {
	t.Helper()
	var fp fingerprint
	shared := map[string][]string{}
	for i, m := range mms {
		fp.Maps = append(fp.Maps, normalizeMaps(m.MapsText(ctx)))
		fp.Smaps = append(fp.Smaps, normalizeMaps(m.SmapsText(ctx)))
		fp.Status = append(fp.Status, m.StatusText())
		fp.Regions = append(fp.Regions, m.Regions(hostarch.AddrRange{Start: 0, End: m.MmapLayout().MaxAddr}))
		fp.Limits = append(fp.Limits, m.Limits())
		fp.Layout = append(fp.Layout, m.MmapLayout())
		fp.Brk = append(fp.Brk, m.BrkRange())
		var mc strings.Builder
		for _, vi := range m.VMAs(ctx) {
			vec, err := m.MInCore(ctx, vi.Range.Start, vi.Range.Length())
			if err != nil {
				t.Fatalf("mincore %v: %v", vi.Range, err)
			}
			fmt.Fprintf(&mc, "%v:", vi.Range)
			for _, b := range vec {
				mc.WriteByte('0' + b)
			}
			mc.WriteByte('\n')
		}
		fp.Mincore = append(fp.Mincore, mc.String())
		// Contents of every pma, page by page, without faulting.
		var cs strings.Builder
		tok := m.activeMu.RLock()
		for pseg := m.pmas.FirstSegment(); pseg.Ok(); pseg = pseg.NextSegment() {
			p := pseg.ValuePtr()
			if p.isZero() {
				fmt.Fprintf(&cs, "%v zero eff=%v max=%v\n", pseg.Range(), p.effectivePerms, p.maxPerms)
				continue
			}
			fr := pmaRef{pseg}.fileRange(hostarch.AddrRange(pseg.Range()))
			ims, err := p.file.MapInternal(fr, hostarch.Read)
			if err != nil {
				t.Fatal(err)
			}
			// Read only resident pages: reading a hole of the memory
			// file through its internal mapping would allocate it.
			vec := make([]byte, fr.Length()>>hostarch.PageShift)
			buf := make([]byte, fr.Length())
			n := 0
			for b := range ims.All {
				hostMincore(b, vec[n>>hostarch.PageShift:])
				for i := 0; i < b.Len(); i += hostarch.PageSize {
					if vec[(n+i)>>hostarch.PageShift] != 0 {
						copy(buf[n+i:n+i+hostarch.PageSize], b.ToSlice()[i:])
					}
				}
				n += b.Len()
			}
			for a := pseg.Start(); a < pseg.End(); a += hostarch.PageSize {
				h := fnv.New64a()
				h.Write(buf[a-pseg.Start() : a-pseg.Start()+hostarch.PageSize])
				fmt.Fprintf(&cs, "%v %v %x res=%d eff=%v max=%v cow=%v lazy=%v priv=%v\n", a, p.translatePerms, h.Sum64(), vec[(a-pseg.Start())>>hostarch.PageShift], p.effectivePerms, p.maxPerms, p.needCOW, p.lazyFree, p.private)
				if p.private {
					off := fr.Start + uint64(a-pseg.Start())
					k := fmt.Sprint(off)
					shared[k] = append(shared[k], fmt.Sprintf("%d:%v", i, a))
				}
			}
		}
		m.activeMu.RUnlock(tok)
		fp.Contents = append(fp.Contents, cs.String())
		var as []string
		m.aio.mu.Lock()
		for ac := range m.aio.contexts {
			as = append(as, fmt.Sprintf("%v/%d", ac.addr, ac.maxReqs))
		}
		m.aio.mu.Unlock()
		sort.Strings(as)
		fp.Aio = append(fp.Aio, strings.Join(as, " "))
		m.metadataMu.Lock()
		fp.Meta = append(fp.Meta, fmt.Sprintf("%v %v %v %v %v faults=%d", m.argv, m.envv, m.auxv, m.dumpability, m.vdsoSigReturn, m.Faults()))
		m.mappingMu.RLock()
		fp.Meta = append(fp.Meta, fmt.Sprintf("mdwe=%d", m.mdwe))
		m.mappingMu.RUnlock()
		m.metadataMu.Unlock()
		m.mappingMu.RLock()
		var gs []string
		for g := m.guards.FirstSegment(); g.Ok(); g = g.NextSegment() {
			gs = append(gs, fmt.Sprint(g.Range()))
		}
		m.mappingMu.RUnlock()
		fp.Guards = append(fp.Guards, strings.Join(gs, " "))
	}
	var groups []string
	for _, g := range shared {
		groups = append(groups, strings.Join(g, ","))
	}
	sort.Strings(groups)
	fp.Sharing = strings.Join(groups, "\n")
	return fp
}

// Known differences after a restore, which hostfile offers no way to
// avoid: memfds and shared anonymous memory get new inode numbers, and
// deleted host files ("ghosts") come back as new unlinked files, with
// another name (and possibly inode).
var (
	shmemInode = regexp.MustCompile(`(00:01) [0-9]+ `)
	ghostName  = regexp.MustCompile(`([0-9a-f]{2}:[0-9a-f]{2}) [0-9]+ ( +)/[^ ]*(/[^ ]*)? \(deleted\)`)
)

// normalizeMaps masks the known differences in /proc/PID/maps text.
func normalizeMaps(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "/memfd:") || strings.Contains(l, "/dev/zero (deleted)") {
			l = shmemInode.ReplaceAllString(l, "$1 INO ")
		} else if strings.HasSuffix(l, " (deleted)") {
			l = ghostName.ReplaceAllString(l, "$1 INO $2GHOST (deleted)")
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func compareFingerprints(t *testing.T, before, after fingerprint) {
	t.Helper()
	bv, av := reflect.ValueOf(before), reflect.ValueOf(after)
	for i := 0; i < bv.NumField(); i++ {
		name := bv.Type().Field(i).Name
		if !reflect.DeepEqual(bv.Field(i).Interface(), av.Field(i).Interface()) {
			t.Errorf("%s differs after restore:\nbefore: %v\nafter:  %v", name, bv.Field(i).Interface(), av.Field(i).Interface())
		}
	}
}

// checkpointCycle saves mms, releases them, restores them and returns the
// restored managers, checking fingerprints, invariants and the memory
// file's usage.
func checkpointCycle(t *testing.T, mf *pgalloc.MemoryFile, mms []*MemoryManager, codec func() *hostfiles.Codec, release func()) ([]*MemoryManager, []byte) {
	t.Helper()
	before := takeFingerprint(t, mms)
	var img bytes.Buffer
	var c checkpoint.ObjectCodec
	if codec != nil {
		c = codec()
	}
	if err := Save(ctx, &img, mms, c); err != nil {
		t.Fatalf("Save: %v", err)
	}
	for _, m := range mms {
		m.DecUsers(ctx)
	}
	if release != nil {
		release()
	}
	if n := mf.UsageAllocated(); n != 0 {
		t.Fatalf("memory file has %#x bytes allocated after releasing the saved managers", n)
	}
	if codec != nil {
		c = codec()
	}
	restored, err := Restore(ctx, bytes.NewReader(img.Bytes()), RestoreOptions{MemoryFile: mf, Codec: c})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if len(restored) != len(mms) {
		t.Fatalf("restored %d managers, saved %d", len(restored), len(mms))
	}
	for _, m := range restored {
		if err := m.CheckInvariants(); err != nil {
			t.Errorf("CheckInvariants after restore: %v", err)
		}
	}
	after := takeFingerprint(t, restored)
	compareFingerprints(t, before, after)
	return restored, img.Bytes()
}

func releaseAll(t *testing.T, mf *pgalloc.MemoryFile, mms []*MemoryManager) {
	t.Helper()
	for _, m := range mms {
		m.DecUsers(ctx)
	}
	if n := mf.UsageAllocated(); n != 0 {
		t.Errorf("memory file has %#x bytes allocated after releasing the restored managers", n)
	}
}

func mustOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func write(t *testing.T, m *MemoryManager, addr hostarch.Addr, b []byte) {
	t.Helper()
	if _, err := m.CopyOut(ctx, addr, b, IOOpts{AsApplication: true}); err != nil {
		t.Fatalf("CopyOut(%v): %v", addr, err)
	}
}

func read(t *testing.T, m *MemoryManager, addr hostarch.Addr, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := m.CopyIn(ctx, addr, b, IOOpts{AsApplication: true}); err != nil {
		t.Fatalf("CopyIn(%v): %v", addr, err)
	}
	return b
}

// TestCheckpointAnonymousFamily saves a parent and two forked children
// sharing private pages, with every kind of vma attribute, guard regions,
// an AIO context, brk and metadata.
func TestCheckpointAnonymousFamily(t *testing.T) {
	mf := newMF(t, 0)
	p := New(Options{MemoryFile: mf})
	p.BrkSetup(ctx, 0x555555600000)
	if _, err := p.Brk(ctx, 0x555555600000+5*hostarch.PageSize); err != nil {
		t.Fatal(err)
	}
	write(t, p, 0x555555600000+hostarch.PageSize, []byte("heap"))
	a := mustMap(t, p, anon(window, 64*hostarch.PageSize, hostarch.ReadWrite))
	// Data, zero pages that are resident, and pages never touched.
	write(t, p, a, bytes.Repeat([]byte{0xaa}, 3*hostarch.PageSize))
	write(t, p, a+5*hostarch.PageSize, make([]byte, 2*hostarch.PageSize))
	write(t, p, a+20*hostarch.PageSize, []byte("twenty"))
	mustOK(t, "mprotect", p.MProtect(ctx, a+10*hostarch.PageSize, 2*hostarch.PageSize, hostarch.Read, MProtectOpts{}))
	mustOK(t, "madvise dontdump", p.MAdvise(ctx, a+30*hostarch.PageSize, 4*hostarch.PageSize, AdvDontDump))
	mustOK(t, "madvise hugepage", p.MAdvise(ctx, a+40*hostarch.PageSize, 4*hostarch.PageSize, AdvHugePage))
	mustOK(t, "madvise wipeonfork", p.MAdvise(ctx, a+50*hostarch.PageSize, 2*hostarch.PageSize, AdvWipeOnFork))
	mustOK(t, "guard", p.MAdvise(ctx, a+60*hostarch.PageSize, 2*hostarch.PageSize, AdvGuardInstall))
	mustOK(t, "anon name", p.SetVMAName(ctx, a+44*hostarch.PageSize, 2*hostarch.PageSize, "named"))
	mustOK(t, "mbind", p.SetNumaPolicy(ctx, a+46*hostarch.PageSize, 2*hostarch.PageSize, MPolBind, 1))
	mustOK(t, "mlock", p.MLock(ctx, a+36*hostarch.PageSize, 2*hostarch.PageSize, memmap.MLockEager))
	mustOK(t, "mseal", p.MSeal(ctx, a+62*hostarch.PageSize, 2*hostarch.PageSize, 0))
	st := mustMap(t, p, memmap.MMapOpts{Length: 16 * hostarch.PageSize, Addr: window + 0x100000, Fixed: true, Unmap: true,
		Private: true, GrowsDown: true, Perms: hostarch.ReadWrite, MaxPerms: hostarch.AnyAccess})
	write(t, p, st+15*hostarch.PageSize, []byte("stack"))
	dr, err := p.mmapFlags(ctx, window+0x200000, 2*hostarch.PageSize, ProtRead|ProtWrite, MapDroppable|MapAnonymous|MapFixed, nil, 0)
	mustOK(t, "mmap droppable", err)
	write(t, p, dr, []byte("droppable"))
	id, err := p.NewAIOContext(ctx, 8)
	mustOK(t, "io_setup", err)
	p.SetArgvEnvv(hostarch.AddrRange{Start: st, End: st + 8}, hostarch.AddrRange{Start: st + 8, End: st + 16})
	p.SetAuxv([]AuxEntry{{6, 4096}, {9, 0x401000}})
	l := p.Limits()
	l.Stack.Cur = 1 << 20
	p.SetLimits(l)

	c1, err := p.Fork(ctx)
	mustOK(t, "fork", err)
	write(t, c1, a+hostarch.PageSize, []byte("child one")) // breaks COW of one unit in c1
	c2, err := c1.Fork(ctx)
	mustOK(t, "fork", err)
	write(t, p, a+2*hostarch.PageSize, []byte("parent"))
	mustOK(t, "CheckPrivateRefs", CheckPrivateRefs(p, c1, c2))

	mms := []*MemoryManager{p, c1, c2}
	var anonBefore [][]string
	for _, m := range mms {
		anonBefore = append(anonBefore, anonVMAsOf(m))
	}
	restored, img := checkpointCycle(t, mf, mms, nil, nil)
	t.Logf("image: %d bytes", len(img))
	mustOK(t, "CheckPrivateRefs after restore", CheckPrivateRefs(restored...))
	rp, rc1, rc2 := restored[0], restored[1], restored[2]
	// Every vma keeps its anon_vma identity and chain (merges depend on
	// them), and the children's inherited vmas are chained.
	chained := 0
	for i, want := range anonBefore {
		got := anonVMAsOf(restored[i])
		if !reflect.DeepEqual(got, want) {
			t.Errorf("manager %d: anon_vmas after restore %v, want %v", i, got, want)
		}
		for _, v := range want {
			if strings.HasSuffix(v, "chained") {
				chained++
			}
		}
	}
	if chained == 0 {
		t.Errorf("no chained anon_vma in the forked family")
	}

	// The restored managers behave: COW still separates them.
	if got := read(t, rc1, a+hostarch.PageSize, 9); string(got) != "child one" {
		t.Errorf("child sees %q", got)
	}
	if got := read(t, rc2, a, 1); got[0] != 0xaa {
		t.Errorf("grandchild sees %x", got)
	}
	write(t, rc2, a, []byte{0x55})
	if got := read(t, rp, a, 1); got[0] != 0xaa {
		t.Errorf("parent sees the grandchild's write: %x", got)
	}
	if _, ok := rp.LookupAIOContext(ctx, id); !ok {
		t.Errorf("AIO context %#x not found after restore", id)
	}
	if _, ok := rc1.LookupAIOContext(ctx, id); ok {
		t.Errorf("the child owns the parent's AIO context")
	}
	// The guard still faults.
	if _, err := rp.CopyIn(ctx, a+60*hostarch.PageSize, make([]byte, 1), IOOpts{}); err == nil {
		t.Errorf("guard page readable after restore")
	}
	// The AIO ring moves with mremap and the context follows it.
	mustOK(t, "CheckPrivateRefs", CheckPrivateRefs(restored...))
	if ac := rp.DestroyAIOContext(ctx, id); ac == nil {
		t.Errorf("io_destroy after restore failed")
	}
	releaseAll(t, mf, restored)
}

// TestCheckpointRefusesBadImages: truncated, corrupted and foreign images
// are refused with a clear error, and nothing is allocated.
func TestCheckpointRefusesBadImages(t *testing.T) {
	mf := newMF(t, 0)
	m := New(Options{MemoryFile: mf})
	a := mustMap(t, m, anon(window, 32*hostarch.PageSize, hostarch.ReadWrite))
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 8*hostarch.PageSize)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	write(t, m, a, buf)
	var img bytes.Buffer
	mustOK(t, "Save", Save(ctx, &img, []*MemoryManager{m}, nil))
	m.DecUsers(ctx)
	good := img.Bytes()

	for _, tc := range []struct {
		name string
		img  []byte
		want error
	}{
		{"empty", nil, checkpoint.ErrTruncated},
		{"foreign", []byte("\x7fELF\x02\x01\x01\x00 this is not an image at all"), checkpoint.ErrNotImage},
		{"short header", good[:10], checkpoint.ErrTruncated},
		{"version", append(append([]byte(nil), good[:8]...), append([]byte{2, 0, 0, 0}, good[12:]...)...), checkpoint.ErrVersion},
		{"truncated at half", good[:len(good)/2], nil},
		{"truncated at end", good[:len(good)-1], nil},
		{"flipped byte", flip(good, len(good)/3), nil},
		{"flipped last byte", flip(good, len(good)-5), nil},
		{"trailing garbage", append(append([]byte(nil), good...), 1, 2, 3), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Restore(ctx, bytes.NewReader(tc.img), RestoreOptions{MemoryFile: mf})
			if err == nil {
				t.Fatalf("Restore accepted a bad image")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Restore: %v, want %v", err, tc.want)
			}
			if !errors.Is(err, checkpoint.ErrTruncated) && !errors.Is(err, checkpoint.ErrCorrupt) &&
				!errors.Is(err, checkpoint.ErrNotImage) && !errors.Is(err, checkpoint.ErrVersion) {
				t.Errorf("Restore: %v is not a checkpoint format error", err)
			}
			t.Logf("%v", err)
			if n := mf.UsageAllocated(); n != 0 {
				t.Errorf("a refused restore left %#x bytes allocated", n)
			}
		})
	}
	// Every truncation is refused.
	for n := 0; n < len(good); n += 1 + n/8 {
		if _, err := Restore(ctx, bytes.NewReader(good[:n]), RestoreOptions{MemoryFile: mf}); err == nil {
			t.Fatalf("truncation to %d of %d bytes accepted", n, len(good))
		}
	}
	if n := mf.UsageAllocated(); n != 0 {
		t.Errorf("refused restores left %#x bytes allocated", n)
	}
	// And the good image is accepted.
	mms, err := Restore(ctx, bytes.NewReader(good), RestoreOptions{MemoryFile: mf})
	mustOK(t, "Restore", err)
	if got := read(t, mms[0], a, len(buf)); !bytes.Equal(got, buf) {
		t.Errorf("restored contents differ")
	}
	releaseAll(t, mf, mms)
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x40
	return c
}

// tempHostFile returns the path of a new host file of size bytes with
// pattern contents that depend on seed.
func tempHostFile(t *testing.T, size int, seed byte) string {
	t.Helper()
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*131) + seed
	}
	path := filepath.Join(t.TempDir(), "f")
	mustOK(t, "WriteFile", os.WriteFile(path, data, 0o600))
	return path
}

// TestCheckpointFiles saves mappings of a host file (private and shared,
// with dirty pages), a deleted host file, a memfd and shared anonymous
// memory, and restores them.
func TestCheckpointFiles(t *testing.T) {
	mf := newMF(t, 0)
	m := New(Options{MemoryFile: mf})
	mk := hostfile.SharedAnonFactory(mf)
	m.SetSharedAnonFactory(func(ctx context.Context, n uint64) (MappableFile, error) { return mk(ctx, n) })

	path := tempHostFile(t, 5*hostarch.PageSize+100, 1)
	hfd, err := hostfile.OpenFile(mf, path, unix.O_RDWR, 0)
	mustOK(t, "open", err)
	gpath := tempHostFile(t, 3*hostarch.PageSize, 7)
	gfd, err := hostfile.OpenFile(mf, gpath, unix.O_RDWR, 0)
	mustOK(t, "open ghost", err)
	mustOK(t, "unlink", os.Remove(gpath))
	memf, err := hostfile.NewMemfd(mf, "mem", 8*hostarch.PageSize)
	mustOK(t, "memfd", err)
	mfd, err := hostfile.NewFD(memf, true, true)
	mustOK(t, "memfd fd", err)
	memf.DecRef(ctx)

	// Private and shared mappings of the host file.
	pr, err := m.mmapFlags(ctx, window, 6*hostarch.PageSize, ProtRead|ProtWrite, MapPrivate, hfd, 0)
	mustOK(t, "mmap private", err)
	sh, err := m.mmapFlags(ctx, window+0x100000, 6*hostarch.PageSize, ProtRead|ProtWrite, MapShared, hfd, 0)
	mustOK(t, "mmap shared", err)
	read(t, m, pr, 1)                                    // a read translation
	write(t, m, pr+hostarch.PageSize, []byte("cow"))     // a private copy
	write(t, m, sh+2*hostarch.PageSize, []byte("dirty")) // a dirty page
	read(t, m, sh+4*hostarch.PageSize, 10)
	gm, err := m.mmapFlags(ctx, window+0x200000, 3*hostarch.PageSize, ProtRead|ProtWrite, MapShared, gfd, 0)
	mustOK(t, "mmap ghost", err)
	write(t, m, gm+hostarch.PageSize, []byte("ghost dirty"))
	mm2, err := m.mmapFlags(ctx, window+0x300000, 8*hostarch.PageSize, ProtRead|ProtWrite, MapShared, mfd, 0)
	mustOK(t, "mmap memfd", err)
	write(t, m, mm2+3*hostarch.PageSize, []byte("memfd"))
	write(t, m, mm2+5*hostarch.PageSize, make([]byte, 10)) // resident zero page
	sa, err := m.mmapFlags(ctx, window+0x400000, 4*hostarch.PageSize, ProtRead|ProtWrite, MapShared|MapAnonymous, nil, 0)
	mustOK(t, "mmap shared anon", err)
	write(t, m, sa, []byte("shared anon"))
	c, err := m.Fork(ctx)
	mustOK(t, "fork", err)
	write(t, c, sa+hostarch.PageSize, []byte("from the child"))

	codec := func() *hostfiles.Codec { return hostfiles.New(hostfiles.Options{MemoryFile: mf}) }
	restored, img := checkpointCycle(t, mf, []*MemoryManager{m, c}, codec, func() {
		hfd.Close(ctx)
		gfd.Close(ctx)
		mfd.Close(ctx)
	})
	t.Logf("image: %d bytes", len(img))
	rm, rc := restored[0], restored[1]
	if got := read(t, rc, sa, 11); string(got) != "shared anon" {
		t.Errorf("shared anon in the child: %q", got)
	}
	write(t, rc, sa+2*hostarch.PageSize, []byte("shared after restore"))
	if got := read(t, rm, sa+2*hostarch.PageSize, 20); string(got) != "shared after restore" {
		t.Errorf("shared anon is not shared after restore: %q", got)
	}
	releaseAll(t, mf, restored)
	// The dirty page reached the host file when the restored File went.
	host, err := os.ReadFile(path)
	mustOK(t, "read host file", err)
	if got := string(host[2*hostarch.PageSize : 2*hostarch.PageSize+5]); got != "dirty" {
		t.Errorf("host file has %q where the dirty page was", got)
	}
}

// figureSize is the address space of the checkpoint figures: 256 MiB, the
// first half zero (written, so resident), the second half random.
const figureSize = 256 << 20

// figureManager returns a manager with the figures' address space.
func figureManager(b testing.TB, mf *pgalloc.MemoryFile) *MemoryManager {
	m := New(Options{MemoryFile: mf})
	a, err := m.MMap(ctx, anon(window, figureSize, hostarch.ReadWrite))
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 1<<20)
	for off := uint64(0); off < figureSize; off += uint64(len(buf)) {
		if off >= figureSize/2 {
			for i := 0; i < len(buf); i += 8 {
				binary.LittleEndian.PutUint64(buf[i:], r.Uint64())
			}
		}
		if _, err := m.CopyOut(ctx, a+hostarch.Addr(off), buf, IOOpts{}); err != nil {
			b.Fatal(err)
		}
	}
	return m
}

// BenchmarkCheckpointSave saves the figures' address space; throughput is
// of resident memory.
func BenchmarkCheckpointSave(b *testing.B) {
	mf := newMF(b, 0)
	m := figureManager(b, mf)
	defer m.DecUsers(ctx)
	var img bytes.Buffer
	b.SetBytes(figureSize)
	b.ResetTimer()
	for b.Loop() {
		img.Reset()
		if err := Save(ctx, &img, []*MemoryManager{m}, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(img.Len()), "image-bytes")
}

// BenchmarkCheckpointRestore restores the figures' address space (the
// release of each restored manager is not timed).
func BenchmarkCheckpointRestore(b *testing.B) {
	mf := newMF(b, 0)
	m := figureManager(b, mf)
	var img bytes.Buffer
	if err := Save(ctx, &img, []*MemoryManager{m}, nil); err != nil {
		b.Fatal(err)
	}
	m.DecUsers(ctx)
	mf.WaitReleased()
	b.SetBytes(figureSize)
	b.ResetTimer()
	for b.Loop() {
		mms, err := Restore(ctx, bytes.NewReader(img.Bytes()), RestoreOptions{MemoryFile: mf})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if got := mms[0].ResidentSetSize(); got != figureSize {
			b.Fatalf("restored RSS %#x", got)
		}
		mms[0].DecUsers(ctx)
		mf.WaitReleased()
		b.StartTimer()
	}
	b.ReportMetric(float64(img.Len()), "image-bytes")
}

// TestCheckpointPartialFamily: saving only some managers of a family
// counts only their references; the restored family is consistent.
func TestCheckpointPartialFamily(t *testing.T) {
	mf := newMF(t, 0)
	p := New(Options{MemoryFile: mf})
	a := mustMap(t, p, anon(window, 8*hostarch.PageSize, hostarch.ReadWrite))
	write(t, p, a, bytes.Repeat([]byte{9}, 8*hostarch.PageSize))
	c1, err := p.Fork(ctx)
	mustOK(t, "fork", err)
	c2, err := p.Fork(ctx)
	mustOK(t, "fork", err)
	var img bytes.Buffer
	mustOK(t, "Save", Save(ctx, &img, []*MemoryManager{p, c2}, nil))
	for _, m := range []*MemoryManager{p, c1, c2} {
		m.DecUsers(ctx)
	}
	mms, err := Restore(ctx, &img, RestoreOptions{MemoryFile: mf})
	mustOK(t, "Restore", err)
	mustOK(t, "CheckPrivateRefs", CheckPrivateRefs(mms...))
	// Three managers shared the pages; the two saved share them now.
	mms[1].privateRefs.mu.Lock()
	for seg := mms[1].privateRefs.refs.FirstSegment(); seg.Ok(); seg = seg.NextSegment() {
		if seg.Value() != 2 {
			t.Errorf("page count %d, want 2", seg.Value())
		}
	}
	mms[1].privateRefs.mu.Unlock()
	// A write in one takes a copy; the other keeps the old contents.
	write(t, mms[0], a, []byte{1})
	if got := read(t, mms[1], a, 1); got[0] != 9 {
		t.Errorf("the other manager sees %d", got[0])
	}
	releaseAll(t, mf, mms)
}

// TestCheckpointAIORingMoved: an AIO context whose ring was moved by mremap
// keeps its new id across a checkpoint, and one whose ring was unmapped is
// still counted against the system limit.
func TestCheckpointAIORingMoved(t *testing.T) {
	mf := newMF(t, 0)
	m := New(Options{MemoryFile: mf})
	id, err := m.NewAIOContext(ctx, 4)
	mustOK(t, "io_setup", err)
	size := m.VirtualMemorySize()
	nid, err := m.MRemap(ctx, hostarch.Addr(id), size, size, MRemapOpts{MayMove: true, Fixed: true, NewAddr: window})
	mustOK(t, "mremap", err)
	id2, err := m.NewAIOContext(ctx, 3)
	mustOK(t, "io_setup", err)
	mustOK(t, "munmap", m.MUnmap(ctx, hostarch.Addr(id2), size))
	aioNr.mu.Lock()
	nrBefore := aioNr.n
	aioNr.mu.Unlock()
	msyncBefore := m.MSync(ctx, nid, hostarch.PageSize, MSyncOpts{Sync: true})
	restored, _ := checkpointCycle(t, mf, []*MemoryManager{m}, nil, nil)
	aioNr.mu.Lock()
	nrAfter := aioNr.n
	aioNr.mu.Unlock()
	if nrAfter != nrBefore {
		t.Errorf("aio_nr %d after the checkpoint, %d before", nrAfter, nrBefore)
	}
	r := restored[0]
	if err := r.MSync(ctx, nid, hostarch.PageSize, MSyncOpts{Sync: true}); !errors.Is(err, msyncBefore) && err != msyncBefore {
		t.Errorf("msync of the ring: %v after the checkpoint, %v before", err, msyncBefore)
	}
	if _, ok := r.LookupAIOContext(ctx, uint64(nid)); !ok {
		t.Errorf("no AIO context at the moved ring %#x", nid)
	}
	if _, ok := r.LookupAIOContext(ctx, id); ok {
		t.Errorf("an AIO context at the old address")
	}
	// Moving the ring again after the restore moves the context.
	nid2, err := r.MRemap(ctx, nid, size, size, MRemapOpts{MayMove: true, Fixed: true, NewAddr: window + 0x100000})
	mustOK(t, "mremap", err)
	if _, ok := r.LookupAIOContext(ctx, uint64(nid2)); !ok {
		t.Errorf("the restored context did not follow its ring")
	}
	releaseAll(t, mf, restored)
}

// testIdentity is a MappingIdentity for the executable.
type testIdentity struct {
	name string
	refs *int
}

func (i testIdentity) IncRef()                                           { *i.refs++ }
func (i testIdentity) DecRef(context.Context)                            { *i.refs-- }
func (i testIdentity) MappedName(context.Context) string                 { return i.name }
func (i testIdentity) DeviceID() uint64                                  { return 0 }
func (i testIdentity) InodeID() uint64                                   { return 0 }
func (i testIdentity) Msync(context.Context, memmap.MappableRange) error { return nil }

// testCodec saves testIdentities by name.
type testCodec struct {
	refs *int
}

func (c testCodec) SaveObject(ctx context.Context, w *checkpoint.Writer, m memmap.Mappable, id memmap.MappingIdentity, use checkpoint.ObjectUse) error {
	ti, ok := id.(testIdentity)
	if m != nil || !ok {
		return fmt.Errorf("testCodec: cannot save (%T, %T)", m, id)
	}
	return w.Record(checkpoint.KindCodec, []byte(ti.name))
}

type testPending struct {
	id testIdentity
}

func (p testPending) Build(context.Context) (memmap.Mappable, memmap.MappingIdentity, error) {
	return nil, p.id, nil
}
func (p testPending) Commit(context.Context) error { return nil }
func (p testPending) Discard(ctx context.Context)  { p.id.DecRef(ctx) }

func (c testCodec) LoadObject(ctx context.Context, r *checkpoint.Reader) (checkpoint.PendingObject, error) {
	d, err := r.Expect(checkpoint.KindCodec)
	if err != nil {
		return nil, err
	}
	id := testIdentity{name: string(d.Raw(d.Remaining())), refs: c.refs}
	id.IncRef()
	return testPending{id}, nil
}

// TestCheckpointMetadata: the executable, auxv, argv/envv, dumpability and
// the vDSO signal return come back; references balance.
func TestCheckpointMetadata(t *testing.T) {
	mf := newMF(t, 0)
	m := New(Options{MemoryFile: mf})
	refs := 0
	exe := testIdentity{name: "/bin/prog", refs: &refs}
	exe.IncRef()
	m.SetExecutable(ctx, exe)
	exe.DecRef(ctx)
	m.SetAuxv([]AuxEntry{{3, 0x400040}, {25, 0x7ffd0000}})
	m.SetArgvEnvv(hostarch.AddrRange{Start: 0x7ffd1000, End: 0x7ffd1010}, hostarch.AddrRange{Start: 0x7ffd1010, End: 0x7ffd1100})
	m.metadataMu.Lock()
	m.dumpability = RootDumpable
	m.vdsoSigReturn = 0x7fff0123
	m.metadataMu.Unlock()
	mustOK(t, "PR_SET_MDWE", m.SetMDWE(uint64(MDWERefuseExecGain|MDWENoInherit), 0, 0, 0))
	codec := testCodec{refs: &refs}
	var img bytes.Buffer
	mustOK(t, "Save", Save(ctx, &img, []*MemoryManager{m}, codec))
	m.DecUsers(ctx)
	if refs != 0 {
		t.Fatalf("%d references on the executable after release", refs)
	}
	mms, err := Restore(ctx, &img, RestoreOptions{MemoryFile: mf, Codec: codec})
	mustOK(t, "Restore", err)
	r := mms[0]
	got := r.Executable()
	if got == nil || got.MappedName(ctx) != "/bin/prog" {
		t.Errorf("executable %v", got)
	}
	if got != nil {
		got.DecRef(ctx)
	}
	argv, envv := r.ArgvEnvv()
	if argv.Start != 0x7ffd1000 || envv.End != 0x7ffd1100 || len(r.Auxv()) != 2 || r.Auxv()[1].Value != 0x7ffd0000 ||
		r.dumpability != RootDumpable || r.vdsoSigReturn != 0x7fff0123 {
		t.Errorf("metadata: %v %v %v %v %#x", argv, envv, r.Auxv(), r.dumpability, r.vdsoSigReturn)
	}
	if b, _ := r.GetMDWE(0, 0, 0, 0); b != MDWERefuseExecGain|MDWENoInherit {
		t.Errorf("MDWE %#x after restore", b)
	}
	if refs != 1 {
		t.Errorf("%d references on the restored executable, want the manager's 1", refs)
	}
	r.DecUsers(ctx)
	if refs != 0 {
		t.Errorf("%d references after release", refs)
	}
}

// TestSaveRefusals: what cannot be saved is an error, not a broken image.
func TestSaveRefusals(t *testing.T) {
	mf := newMF(t, 0)
	m := New(Options{MemoryFile: mf})
	defer m.DecUsers(ctx)
	id, err := m.NewAIOContext(ctx, 2)
	mustOK(t, "io_setup", err)
	ac, _ := m.LookupAIOContext(ctx, id)
	if !ac.Prepare() {
		t.Fatal("Prepare")
	}
	var img bytes.Buffer
	if err := Save(ctx, &img, []*MemoryManager{m}, nil); err == nil {
		t.Errorf("saved an AIO context with a request in flight")
	}
	ac.CancelPendingRequest()
	cw, _ := checkpoint.NewWriter(&img)
	s := NewSaver(cw, nil)
	mustOK(t, "SaveManagers", s.SaveManagers(ctx, m))
	if err := s.SaveManagers(ctx, m); err == nil {
		t.Errorf("SaveManagers twice accepted")
	}
	s2 := NewSaver(cw, nil)
	if err := s2.SaveManagers(ctx, m, m); err == nil {
		t.Errorf("a repeated manager accepted")
	}
	if _, err := NewSaver(cw, nil).SaveObject(ctx, nil, testIdentity{name: "x", refs: new(int)}); err == nil {
		t.Errorf("saved an object without a codec")
	}
	cw.Close()
}

// TestSaveConcurrentFaults: saving while other goroutines fault and write
// is safe (the contents are a snapshot only if the application is stopped,
// but the structures are consistent): run with -race.
func TestSaveConcurrentFaults(t *testing.T) {
	mf := newMF(t, 0)
	m := New(Options{MemoryFile: mf})
	a := mustMap(t, m, anon(window, 256*hostarch.PageSize, hostarch.ReadWrite))
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			off := hostarch.Addr(i%256) * hostarch.PageSize
			m.CopyOut(ctx, a+off, []byte{byte(i)}, IOOpts{})
			if i%64 == 0 {
				m.MAdvise(ctx, a+off, hostarch.PageSize, AdvDontNeed)
			}
		}
	}()
	for i := 0; i < 20; i++ {
		var img bytes.Buffer
		mustOK(t, "Save", Save(ctx, &img, []*MemoryManager{m}, nil))
		mms, err := Restore(ctx, &img, RestoreOptions{MemoryFile: mf})
		mustOK(t, "Restore", err)
		mustOK(t, "invariants", mms[0].CheckInvariants())
		mms[0].DecUsers(ctx)
	}
	close(done)
	<-stopped
	m.DecUsers(ctx)
	if n := mf.UsageAllocated(); n != 0 {
		t.Errorf("%#x bytes allocated at the end", n)
	}
}

// checkpointFields says, for each structure a checkpoint covers, what
// happens to each field: a new field must be added here, which is the
// reminder to save it (or to say why not).
var checkpointFields = map[string]map[string]string{
	"MemoryManager": {
		"p": "RestoreOptions.Platform", "mf": "RestoreOptions.MemoryFile",
		"privateRefs": "per family, rebuilt from the pmas", "users": "1", "mappingMu": "lock", "anonVMAMu": "lock", "vmas": "saved",
		"layout": "saved", "brk": "saved", "usageAS": "recomputed", "peakAS": "saved", "lockedAS": "recomputed",
		"dataAS": "recomputed", "stackAS": "recomputed", "execAS": "recomputed", "dataSegment": "saved",
		"codeSegment": "not saved (only status's VmExe and statm's text report it: a restored manager shows its executable mappings as VmLib until its next exec)",
		"uffdMarkers": "not saved: a manager with userfaultfd registrations is refused (uffdSaveCheckLocked), and markers count only in registered vmas",
		"guards":      "saved", "defMLockMode": "saved", "sharedAnon": "a function: the caller sets it again",
		"commit": "shared with other managers: the caller sets it again (restored vmas are charged to it)",
		"limits": "saved", "activeMu": "lock", "lastRead": "a cache (fastread.go): nil in a restored manager", "lastWrite": "a cache (fastread.go): empty in a restored manager", "pmas": "saved", "curRSS": "recomputed", "maxRSS": "saved", "resMemo": "set only inside a reader's critical section",
		"as": "none until Activate", "active": "0", "unmapAllOnActivate": "false without an AddressSpace",
		"captureInvalidations": "transient (Fork)", "capturedInvalidations": "transient (Fork)",
		"faults": "saved", "aio": "saved", "metadataMu": "lock",
		"argv": "saved", "envv": "saved", "auxv": "saved", "executable": "saved (codec)", "dumpability": "saved",
		"vdsoSigReturn": "saved", "mdwe": "saved",
	},
	"vma": {
		"mappable": "saved (object)", "off": "saved", "realPerms": "saved", "maxPerms": "saved", "flags": "saved",
		"mlockMode": "saved", "numaPolicy": "saved", "numaNodemask": "saved", "id": "saved (object)",
		"anonVMA": "saved (identity; later ones are made larger)", "anonChained": "saved", "name": "saved",
		"uffd": "refused (uffdSaveCheckLocked)",
	},
	"pma": {
		"file": "private: the memory file; else translated again", "off": "private: via runs; else translated",
		"translatePerms": "saved", "effectivePerms": "saved", "maxPerms": "saved", "needCOW": "saved", "lazyFree": "saved",
		"private": "saved", "im": "cache", "allData": "cache: false, fork asks the host again", "mapped": "none without an AddressSpace",
		"uffdWP": "refused (uffdSaveCheckLocked)", "poison": "refused (uffdSaveCheckLocked)",
	},
	"AIOContext": {
		"mm": "the restored manager", "ring": "saved (special object)", "maxReqs": "saved", "index": "saved",
		"mu": "lock", "addr": "saved", "outstanding": "must be 0 (refused otherwise)", "done": "must be empty",
		"dead": "dead contexts are not saved", "wait": "new channel",
	},
	"SpecialMappable": {
		"mf": "RestoreOptions.MemoryFile", "fr": "new allocation, contents saved", "name": "saved",
		"refs": "references of the restored users", "onMap": "set again for AIO rings",
		"mu": "lock", "msyncErr": "saved", "punchErr": "saved", "aioRing": "set again for AIO rings",
	},
}

// anonVMAsOf describes the anon_vma of each of m's vmas.
func anonVMAsOf(m *MemoryManager) []string {
	m.mappingMu.RLock()
	defer m.mappingMu.RUnlock()
	var out []string
	for vseg := m.vmas.FirstSegment(); vseg.Ok(); vseg = vseg.NextSegment() {
		v := vseg.ValuePtr()
		d := fmt.Sprintf("%#x-%#x %d", uint64(vseg.Start()), uint64(vseg.End()), v.anonVMA)
		if v.anonChained {
			d += " chained"
		}
		out = append(out, d)
	}
	return out
}

// TestCheckpointCoversEveryField fails when a structure that checkpoints
// cover gains or loses a field, so that save.go and restore.go follow.
func TestCheckpointCoversEveryField(t *testing.T) {
	for _, v := range []any{MemoryManager{}, vma{}, pma{}, AIOContext{}, SpecialMappable{}} {
		ty := reflect.TypeOf(v)
		known := checkpointFields[ty.Name()]
		seen := map[string]bool{}
		for i := 0; i < ty.NumField(); i++ {
			name := ty.Field(i).Name
			seen[name] = true
			if _, ok := known[name]; !ok {
				t.Errorf("%s.%s is new: save and restore it in mm/save.go and mm/restore.go (or say why not), then list it in checkpointFields", ty.Name(), name)
			}
		}
		for name := range known {
			if !seen[name] {
				t.Errorf("%s.%s is gone: update mm/save.go, mm/restore.go and checkpointFields", ty.Name(), name)
			}
		}
	}
}
