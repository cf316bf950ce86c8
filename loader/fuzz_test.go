package loader

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmspace/vmspace/mm"
)

// FuzzLoad loads arbitrary bytes as a program. Whatever they are, Load
// must not panic, must fail only with an *Error carrying an errno, must
// leave the manager consistent, and releasing the manager must return
// every page and descriptor. The seed corpus (valid programs, an
// interpreter, and damaged variants) runs with the normal tests.
func FuzzLoad(f *testing.F) {
	dir := f.TempDir()
	interp := writeExe(f, dir, "interp", interpDyn().bytes())
	static := staticExec().bytes()
	pie := pieExec(interp).bytes()
	for _, seed := range [][]byte{
		static,
		pie,
		pieExec("/nonexistent/ld.so").bytes(),
		interpDyn().bytes(),
		static[:ehdrSize],
		static[:ehdrSize+phdrSize],
		pie[:0x800],
		[]byte("#!/bin/sh\n"),
		[]byte("\x7fELF"),
		nil,
	} {
		f.Add(seed)
	}
	if b, err := os.ReadFile("/bin/true"); err == nil && len(b) > 4096 {
		f.Add(b[:4096])
	}
	mf := newMF(f)
	path := filepath.Join(dir, "prog")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o755); err != nil {
			t.Fatal(err)
		}
		fds := countFDs(t)
		m := mm.New(mm.Options{MemoryFile: mf})
		res, err := Load(ctx, m, nil, Options{
			Path:   path,
			Argv:   []string{"prog", "x"},
			Envv:   []string{"A=b"},
			Random: fixedRandom(1),
			Aux:    &testAux,
			Creds:  &testCreds,
		})
		if err != nil {
			var le *Error
			if !errors.As(err, &le) || le.Errno == 0 || !errors.Is(err, le.Errno) {
				t.Fatalf("Load: %v (%T) is not an *Error with an errno", err, err)
			}
		} else {
			if res.StackPointer%16 != 0 || !res.Stack.Contains(res.StackPointer) {
				t.Errorf("stack pointer %v, stack %v", res.StackPointer, res.Stack)
			}
			if res.Entry >= DefaultMapWindow {
				t.Errorf("entry %v", res.Entry)
			}
			s := decodeStack(t, m, res.StackPointer)
			if s.argc != 2 || len(s.envp) != 1 || len(s.auxv) != len(res.Auxv) {
				t.Errorf("stack: argc %d envp %q auxv %d entries", s.argc, s.envp, len(s.auxv))
			}
		}
		if err := m.CheckInvariants(); err != nil {
			t.Errorf("CheckInvariants: %v", err)
		}
		m.DecUsers(ctx)
		if n := mf.UsageAllocated(); n != 0 {
			t.Fatalf("%d bytes of the memory file still allocated after release", n)
		}
		if n := countFDs(t); n != fds {
			t.Fatalf("%d descriptors open after release, %d before", n, fds)
		}
	})
}
