package vmscript_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmspace/vmspace/vmscript"
	"github.com/vmspace/vmspace/vmscript/vmspace"
)

// TestCorpusOnVmspace runs every corpus script on vmspace and requires the
// stored Linux transcript, byte for byte: a script that does not say which
// kind of kernel it needs (the zero page or not) in both of vmspace's
// modes.
func TestCorpusOnVmspace(t *testing.T) {
	paths, err := filepath.Glob("testdata/*.vms")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no corpus scripts in testdata")
	}
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".vms")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(strings.TrimSuffix(path, ".vms") + ".out")
			if err != nil {
				t.Skipf("no stored transcript: %v", err)
			}
			s, err := vmscript.Parse(path, src)
			if err != nil {
				t.Fatal(err)
			}
			// A transcript recorded on a kernel with (or without) the
			// zero page is replayed with vmspace set likewise. Any
			// other transcript must hold on both kinds of kernel:
			// vmspace replays it in both modes, so that a script whose
			// Linux answer depends on the zero page cannot go into the
			// corpus unmarked from a machine of either kind (a
			// reproducer recorded without the zero page failed on the
			// first machine with it).
			modes := []bool{false, true}
			for _, req := range scriptRequires(src) {
				switch req {
				case "zeropage", "nozeropage":
					modes = []bool{req == "nozeropage"}
				}
			}
			for _, no := range modes {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				ex := vmspace.New(vmspace.Options{NoZeroPage: &no})
				var got bytes.Buffer
				err := vmscript.Run(ctx, s, ex, &got)
				cancel()
				if err != nil {
					t.Fatalf("run (NoZeroPage %v): %v\ntranscript so far:\n%s", no, err, got.Bytes())
				}
				if d := vmscript.Diff(s, want, got.Bytes()); d != nil {
					mode := "with the zero page"
					if no {
						mode = "without the zero page"
					}
					if len(modes) == 1 {
						t.Errorf("vmspace differs from Linux at %s", d.Format("linux", "vmspace"))
					} else {
						t.Errorf("%s, vmspace differs from the transcript at %s\n(if Linux differs too, the script depends on the zero page: mark it \"# requires: zeropage\" or \"nozeropage\" and record its twin on the other kind of kernel)", mode, d.Format("linux", "vmspace"))
					}
				}
			}
		})
	}
}
