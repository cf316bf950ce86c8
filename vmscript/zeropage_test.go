package vmscript_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmspace/vmspace/vmscript"
	"github.com/vmspace/vmspace/vmscript/vmspace"
)

// The oracle of mm's zero-page mode (Limits.NoZeroPage false). Machines of
// both kinds run the tests: the first reference machine booted without the
// shared zero page (pvm_no_zero_page=1), the next one has it, as Linux does
// by default. The corpus scripts marked "# requires: zeropage" hold Linux's
// answer with the zero page: the first of them were derived from the kernel
// source (each script's comment names the functions that decide it) and
// were then confirmed natively on kernel 6.18.44-fc-v1300, which has it;
// the later ones were recorded there. Most have a twin named
// NAME_nozeropage ("# requires: nozeropage"), the same statements recorded
// on a kernel without the zero page, which shows where the two kernels
// part. TestCorpusNative checks on each machine the half it can run;
// TestCorpusOnVmspace replays every unmarked script in both modes, so that
// a transcript that depends on the zero page cannot stay unmarked.

// minZeroPageScripts is how many zero-page scripts the corpus must hold.
const minZeroPageScripts = 6

// TestZeroPageOracle runs every zero-page script on vmspace in both modes:
// with the zero page it must give the stored transcript, and without it
// something else (each script tells the modes apart, so a manager that
// ignored NoZeroPage would fail here). A twin's native transcript must
// differ from its zero-page one too.
func TestZeroPageOracle(t *testing.T) {
	paths, err := filepath.Glob("testdata/*.vms")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, path := range paths {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(scriptRequires(src), "zeropage") {
			continue
		}
		n++
		name := strings.TrimSuffix(filepath.Base(path), ".vms")
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(path, ".vms") + ".out")
			if err != nil {
				t.Fatalf("no transcript: %v", err)
			}
			s, err := vmscript.Parse(path, src)
			if err != nil {
				t.Fatal(err)
			}
			run := func(noZeroPage bool) []byte {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				var got bytes.Buffer
				if err := vmscript.Run(ctx, s, vmspace.New(vmspace.Options{NoZeroPage: &noZeroPage}), &got); err != nil {
					t.Fatalf("run (NoZeroPage %v): %v\ntranscript so far:\n%s", noZeroPage, err, got.Bytes())
				}
				return got.Bytes()
			}
			if d := vmscript.Diff(s, want, run(false)); d != nil {
				t.Errorf("with the zero page, vmspace differs from Linux at %s", d.Format("linux", "vmspace"))
			}
			if vmscript.Diff(s, want, run(true)) == nil {
				t.Error("without the zero page vmspace gives the zero-page transcript too: the script does not tell the modes apart")
			}
			twin := strings.TrimSuffix(path, ".vms") + "_nozeropage.out"
			if native, err := os.ReadFile(twin); err == nil && bytes.Equal(native, want) {
				t.Errorf("%s (recorded natively) equals the zero-page transcript", twin)
			}
		})
	}
	if n < minZeroPageScripts {
		t.Errorf("%d zero-page scripts in the corpus, want at least %d", n, minZeroPageScripts)
	}
}
