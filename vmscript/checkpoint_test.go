package vmscript_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmspace/vmspace/vmscript"
	"github.com/vmspace/vmspace/vmscript/vmspace"
)

var (
	checkpointEvery = flag.Bool("checkpoint-every", false, "TestCorpusCheckpoint: insert a checkpoint after every line of every corpus script")
	checkpointSeed  = flag.Uint64("checkpoint-seed", 1, "TestCorpusCheckpoint: seed of the random insertion points")
)

// withCheckpoints returns src with a `checkpoint` line inserted before each
// line index (0-based; len(lines) means at the end) in at, and the mapping
// of old line numbers to new ones and the new numbers of the checkpoints.
func withCheckpoints(src string, at []int) (string, map[int]int, []int) {
	lines := strings.Split(strings.TrimSuffix(src, "\n"), "\n")
	sort.Ints(at)
	var out []string
	renum := map[int]int{}
	var cps []int
	k := 0
	for i := 0; i <= len(lines); i++ {
		for k < len(at) && at[k] == i {
			out = append(out, "checkpoint")
			cps = append(cps, len(out))
			k++
		}
		if i < len(lines) {
			out = append(out, lines[i])
			renum[i+1] = len(out)
		}
	}
	return strings.Join(out, "\n") + "\n", renum, cps
}

// renumbered returns the transcript want with its line numbers mapped by
// renum and an `ok` line for each checkpoint, in line order.
func renumbered(t *testing.T, want []byte, renum map[int]int, cps []int) []byte {
	t.Helper()
	type line struct {
		n    int
		text string
	}
	var ls []line
	for _, l := range strings.Split(strings.TrimSuffix(string(want), "\n"), "\n") {
		if l == "" {
			continue
		}
		num, rest, ok := strings.Cut(l, " ")
		n, err := strconv.Atoi(num)
		if !ok || err != nil {
			t.Fatalf("transcript line %q has no line number", l)
		}
		ls = append(ls, line{renum[n], rest})
	}
	for _, c := range cps {
		ls = append(ls, line{c, "ok"})
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].n < ls[j].n })
	var b bytes.Buffer
	for _, l := range ls {
		fmt.Fprintf(&b, "%d %s\n", l.n, l.text)
	}
	return b.Bytes()
}

// runVmspace runs src on vmspace and returns its transcript.
func runVmspace(t *testing.T, name, src string) []byte {
	t.Helper()
	s, err := vmscript.Parse(name, []byte(src))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, src)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var got bytes.Buffer
	if err := vmscript.Run(ctx, s, vmspace.New(vmspace.Options{}), &got); err != nil {
		t.Fatalf("run: %v\ntranscript so far:\n%s\nscript:\n%s", err, got.Bytes(), src)
	}
	return got.Bytes()
}

// TestCorpusCheckpoint inserts `checkpoint` statements at random points
// (with -checkpoint-every: after every line) into every corpus script and
// requires the stored Linux transcript, with its line numbers shifted and
// an `ok` for each checkpoint. A script whose plain vmspace transcript
// already differs from Linux's must give that transcript instead:
// checkpoints must change nothing.
func TestCorpusCheckpoint(t *testing.T) {
	paths, err := filepath.Glob("testdata/*.vms")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no corpus scripts in testdata")
	}
	for i, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".vms")
		if testing.Short() && i%sampleEvery != 0 {
			continue
		}
		t.Run(name, func(t *testing.T) {
			srcb, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			src := string(srcb)
			want, err := os.ReadFile(strings.TrimSuffix(path, ".vms") + ".out")
			if err != nil {
				t.Skipf("no stored transcript: %v", err)
			}
			if plain := runVmspace(t, path, src); !bytes.Equal(plain, want) {
				t.Logf("vmspace differs from Linux without checkpoints; requiring checkpoints to change nothing")
				want = plain
			}
			nlines := len(strings.Split(strings.TrimSuffix(src, "\n"), "\n"))
			var at []int
			if *checkpointEvery {
				for i := 0; i <= nlines; i++ {
					at = append(at, i)
				}
			} else {
				h := fnv.New64a()
				h.Write([]byte(name))
				r := rand.New(rand.NewPCG(h.Sum64(), *checkpointSeed))
				for range 3 {
					at = append(at, r.IntN(nlines+1))
				}
			}
			cpsrc, renum, cps := withCheckpoints(src, at)
			got := runVmspace(t, path, cpsrc)
			exp := renumbered(t, want, renum, cps)
			if !bytes.Equal(got, exp) {
				s, _ := vmscript.Parse(path, []byte(cpsrc))
				d := vmscript.Diff(s, exp, got)
				t.Errorf("with checkpoints at lines %v (seed %d), vmspace differs at %s", cps, *checkpointSeed, d.Format("expected", "vmspace"))
			}
		})
	}
}

func TestWithCheckpoints(t *testing.T) {
	src := "a\nb\n"
	got, renum, cps := withCheckpoints(src, []int{0, 2, 1, 1})
	if want := "checkpoint\na\ncheckpoint\ncheckpoint\nb\ncheckpoint\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if renum[1] != 2 || renum[2] != 5 {
		t.Errorf("renum %v", renum)
	}
	if fmt.Sprint(cps) != "[1 3 4 6]" {
		t.Errorf("checkpoints at %v", cps)
	}
	tr := renumbered(t, []byte("1 x\n2 y\n"), renum, cps)
	if want := "1 ok\n2 x\n3 ok\n4 ok\n5 y\n6 ok\n"; string(tr) != want {
		t.Errorf("renumbered %q, want %q", tr, want)
	}
}
