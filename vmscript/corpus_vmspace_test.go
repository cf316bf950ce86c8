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
// stored Linux transcript, byte for byte.
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
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// A transcript recorded on a kernel with (or without) the
			// zero page is replayed with vmspace set likewise.
			var opts vmspace.Options
			for _, req := range scriptRequires(src) {
				switch req {
				case "zeropage", "nozeropage":
					no := req == "nozeropage"
					opts.NoZeroPage = &no
				}
			}
			ex := vmspace.New(opts)
			var got bytes.Buffer
			if err := vmscript.Run(ctx, s, ex, &got); err != nil {
				t.Fatalf("run: %v\ntranscript so far:\n%s", err, got.Bytes())
			}
			if d := vmscript.Diff(s, want, got.Bytes()); d != nil {
				t.Errorf("vmspace differs from Linux at %s", d.Format("linux", "vmspace"))
			}
		})
	}
}
