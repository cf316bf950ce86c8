package vmscript_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/vmspace/vmspace/mm"
	"github.com/vmspace/vmspace/vmscript"
	"github.com/vmspace/vmspace/vmscript/native"
	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite testdata/*.out with the native transcripts (each script is run twice and must agree)")

// sampleEvery: with -short, every sampleEvery-th script runs.
const sampleEvery = 5

// A script may say, in a comment, which kernel features it needs:
//
//	# requires: mseal guard
//
// It is skipped with a message when the running kernel lacks one.
func scriptRequires(src []byte) []string {
	var out []string
	for _, line := range strings.Split(string(src), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "# requires:"); ok {
			out = append(out, strings.Fields(rest)...)
		}
	}
	return out
}

var (
	featuresOnce sync.Once
	features     map[string]string // feature -> "" if present, else why not
)

// probeFeatures checks, in this process, the kernel features scripts may
// require.
func probeFeatures() map[string]string {
	featuresOnce.Do(func() {
		features = map[string]string{}
		mem, err := unix.Mmap(-1, 0, 4*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			panic(err)
		}
		defer unix.Munmap(mem)
		addr := uintptr(unsafe.Pointer(&mem[0]))
		probe := func(name string, err error) {
			if err != nil {
				features[name] = err.Error()
			} else {
				features[name] = ""
			}
		}
		_, _, e := unix.Syscall(462, addr+3*4096, 4096, 0) // mseal
		probe("mseal", errnoOrNil(e))
		_, _, e = unix.Syscall(unix.SYS_MADVISE, addr, 4096, uintptr(vmscript.MadvGuardInstall))
		probe("guard", errnoOrNil(e))
		_, _, e = unix.Syscall(unix.SYS_MADVISE, addr, 4096, uintptr(vmscript.MadvGuardRemove))
		name := []byte("x\x00")
		_, _, e = unix.Syscall6(unix.SYS_PRCTL, 0x53564d41, 0, addr, 4096, uintptr(unsafe.Pointer(&name[0])), 0)
		probe("anonname", errnoOrNil(e))
		_, _, e = unix.Syscall(unix.SYS_MADVISE, addr+4096, 4096, uintptr(vmscript.MadvHugepage))
		probe("thp", errnoOrNil(e))
		_, _, e = unix.Syscall(unix.SYS_MADVISE, addr+2*4096, 4096, uintptr(vmscript.MadvMergeable))
		probe("ksm", errnoOrNil(e))
		_, _, e = unix.Syscall(unix.SYS_MADVISE, addr+2*4096, 4096, uintptr(vmscript.MadvUnmergeable))
		var ctxID uint64
		_, _, e = unix.Syscall(unix.SYS_IO_SETUP, 1, uintptr(unsafe.Pointer(&ctxID)), 0)
		probe("aio", errnoOrNil(e))
		if e == 0 {
			unix.Syscall(unix.SYS_IO_DESTROY, uintptr(ctxID), 0, 0)
		}
		id, err := unix.SysvShmGet(unix.IPC_PRIVATE, 4096, unix.IPC_CREAT|0o600)
		probe("shm", err)
		if err == nil {
			unix.SysvShmCtl(id, unix.IPC_RMID, nil)
		}
		if b, err := os.ReadFile("/proc/sys/vm/overcommit_memory"); err != nil || strings.TrimSpace(string(b)) == "2" {
			features["overcommit"] = "vm.overcommit_memory is 2 (strict)"
		} else {
			features["overcommit"] = ""
		}
		if mm.HostLimits().NoZeroPage {
			features["zeropage"] = "the kernel has no shared zero page"
			features["nozeropage"] = ""
		} else {
			features["zeropage"] = ""
			features["nozeropage"] = "the kernel has the shared zero page"
		}
		var rl unix.Rlimit
		if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); rl.Max < 1<<20 {
			features["memlock1m"] = "hard RLIMIT_MEMLOCK below 1 MiB"
		} else {
			features["memlock1m"] = ""
		}
	})
	return features
}

func errnoOrNil(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// runNativeScript runs one script natively and returns its transcript.
func runNativeScript(t *testing.T, s *vmscript.Script) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var buf bytes.Buffer
	if err := vmscript.Run(ctx, s, native.New(native.Options{TempDir: t.TempDir()}), &buf); err != nil {
		t.Fatalf("native run: %v\ntranscript so far:\n%s", err, buf.String())
	}
	return buf.Bytes()
}

// TestCorpusNative runs the corpus natively and requires the stored
// transcripts (a sample with -short). With -update it rewrites them instead.
func TestCorpusNative(t *testing.T) {
	files := corpusFiles(t)
	if len(files) == 0 {
		t.Fatal("no corpus scripts in testdata")
	}
	feats := probeFeatures()
	for i, f := range files {
		if !*update && testing.Short() && i%sampleEvery != 0 {
			continue
		}
		name := strings.TrimSuffix(filepath.Base(f), ".vms")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := readFile(t, f)
			for _, req := range scriptRequires(src) {
				why, known := feats[req]
				if !known {
					t.Fatalf("unknown feature %q in # requires:", req)
				}
				if why != "" {
					t.Skipf("kernel lacks %s: %s", req, why)
				}
			}
			s, err := vmscript.Parse(f, src)
			if err != nil {
				t.Fatal(err)
			}
			got := runNativeScript(t, s)
			outPath := strings.TrimSuffix(f, ".vms") + ".out"
			if *update {
				again := runNativeScript(t, s)
				if d := vmscript.Diff(s, got, again); d != nil {
					t.Fatalf("two native runs differ (the script depends on something nondeterministic):\n%s", d.Format("run 1", "run 2"))
				}
				if err := os.WriteFile(outPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want := readFile(t, outPath)
			if d := vmscript.Diff(s, want, got); d != nil {
				t.Errorf("%s differs from the stored transcript:\n%s", f, d.Format("stored", "native"))
			}
		})
	}
}

// TestCorpusComplete checks that the corpus is well formed and covers every
// statement, flag, advice and resource of the spec.
func TestCorpusComplete(t *testing.T) {
	files := corpusFiles(t)
	seen := map[string]bool{}
	for _, f := range files {
		src := readFile(t, f)
		s, err := vmscript.Parse(f, src)
		if err != nil {
			t.Error(err)
			continue
		}
		out, err := os.ReadFile(strings.TrimSuffix(f, ".vms") + ".out")
		if err != nil {
			t.Errorf("%s: no transcript: %v", f, err)
			continue
		}
		if n := bytes.Count(out, []byte("\n")); n != len(s.Stmts) {
			t.Errorf("%s: transcript has %d lines for %d statements", f, n, len(s.Stmts))
		}
		for _, st := range s.Stmts {
			seen["op "+st.Op.String()] = true
			for _, w := range vmscript.MapFlagWords() {
				if st.Op == vmscript.OpMmap && st.MapFlags&w.Val == w.Val && w.Val != 0 {
					seen["mmap "+w.Name] = true
				}
			}
			for _, w := range vmscript.MremapFlagWords() {
				if st.Op == vmscript.OpMremap && st.MremapFlags&w.Val != 0 {
					seen["mremap "+w.Name] = true
				}
			}
			for _, w := range vmscript.MlockallFlagWords() {
				if st.Op == vmscript.OpMlockall && st.MlockallFlags&w.Val != 0 {
					seen["mlockall "+w.Name] = true
				}
			}
			for _, w := range vmscript.MsyncFlagWords() {
				if st.Op == vmscript.OpMsync && st.MsyncFlags&w.Val != 0 {
					seen["msync "+w.Name] = true
				}
			}
			switch st.Op {
			case vmscript.OpMadvise:
				seen["madvise "+st.Advice.String()] = true
			case vmscript.OpSetrlimit:
				seen["setrlimit "+st.Resource.String()] = true
			case vmscript.OpMprotect:
				if st.Prot&vmscript.ProtGrowsDown != 0 {
					seen["mprotect +growsdown"] = true
				}
				if st.Prot&vmscript.ProtGrowsUp != 0 {
					seen["mprotect +growsup"] = true
				}
			}
			if st.Addr.Kind == vmscript.AddrBrk || st.NewAddr.Kind == vmscript.AddrBrk {
				seen["addr brk"] = true
			}
			if st.Prefixed {
				seen["prefix"] = true
			}
		}
	}
	want := append(vmscript.Keywords(), "addr brk", "prefix")
	var missing []string
	for _, w := range want {
		if !seen[w] {
			missing = append(missing, w)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the corpus never uses: %s", strings.Join(missing, ", "))
	}
}

// TestParseCorpus parses every script of the corpus.
func TestParseCorpus(t *testing.T) {
	files := corpusFiles(t)
	for _, f := range files {
		src := readFile(t, f)
		s, err := vmscript.Parse(f, src)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if len(s.Stmts) == 0 {
			t.Errorf("%s: no statements", f)
		}
		if !bytes.Contains(src, []byte("\n")) {
			t.Errorf("%s: no newline", f)
		}
	}
}
