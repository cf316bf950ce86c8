package docs

import (
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/vmspace/vmspace"

// moduleEdges returns, for every package of the module, the module's
// packages it imports in non-test code (code) and the further ones its
// tests import (tests), as paths relative to the module root.
func moduleEdges(t *testing.T) (code, tests map[string][]string) {
	t.Helper()
	code, tests = map[string][]string{}, map[string][]string{}
	local := func(imps []string) []string {
		var out []string
		for _, p := range imps {
			if rel, ok := strings.CutPrefix(p, module+"/"); ok {
				out = append(out, rel)
			}
		}
		return out
	}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != ".." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "docs") {
			return filepath.SkipDir
		}
		pkg, err := build.ImportDir(path, 0)
		if err != nil {
			if _, ok := err.(*build.NoGoError); ok {
				return nil
			}
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(path, "../"))
		c := local(pkg.Imports)
		slices.Sort(c)
		code[rel] = slices.Compact(c)
		var tx []string
		for _, p := range local(append(pkg.TestImports, pkg.XTestImports...)) {
			if p != rel && !slices.Contains(code[rel], p) {
				tx = append(tx, p)
			}
		}
		slices.Sort(tx)
		if tx = slices.Compact(tx); len(tx) > 0 {
			tests[rel] = tx
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return code, tests
}

var (
	rowRE  = regexp.MustCompile("^\\| `([^`]+)` \\| (.*) \\|$")
	nameRE = regexp.MustCompile("`([^`]+)`")
)

// TestArchitectureEdges: the table "Every import edge" in ARCHITECTURE.md
// lists every package of the module and exactly the module packages each
// imports, and the line after it exactly the edges that only tests add.
func TestArchitectureEdges(t *testing.T) {
	b, err := os.ReadFile("ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	code, tests := moduleEdges(t)
	doc, docTests := map[string][]string{}, map[string][]string{}
	sawTests := false
	for _, line := range strings.Split(string(b), "\n") {
		if m := rowRE.FindStringSubmatch(line); m != nil && m[1] != "package" {
			var imps []string
			for _, n := range nameRE.FindAllStringSubmatch(m[2], -1) {
				imps = append(imps, n[1])
			}
			slices.Sort(imps)
			doc[m[1]] = imps
		}
		if rest, ok := strings.CutPrefix(line, "Tests add these edges"); ok {
			sawTests = true
			_, rest, _ = strings.Cut(rest, ":")
			for _, part := range strings.Split(strings.TrimSuffix(strings.TrimSpace(rest), "."), ";") {
				from, to, ok := strings.Cut(part, "→")
				if !ok {
					t.Errorf("tests' edges: cannot read %q", part)
					continue
				}
				f := nameRE.FindStringSubmatch(from)
				if f == nil {
					t.Errorf("tests' edges: cannot read %q", part)
					continue
				}
				for _, n := range nameRE.FindAllStringSubmatch(to, -1) {
					docTests[f[1]] = append(docTests[f[1]], n[1])
				}
				slices.Sort(docTests[f[1]])
			}
		}
	}
	if !sawTests {
		t.Error(`ARCHITECTURE.md has no "Tests add these edges" line`)
	}
	compare := func(what string, want, got map[string][]string) {
		var pkgs []string
		for p := range want {
			pkgs = append(pkgs, p)
		}
		for p := range got {
			if _, ok := want[p]; !ok {
				pkgs = append(pkgs, p)
			}
		}
		sort.Strings(pkgs)
		for _, p := range pkgs {
			if !slices.Equal(want[p], got[p]) {
				t.Errorf("%s of %s: the code has %q, ARCHITECTURE.md says %q", what, p, want[p], got[p])
			}
		}
	}
	compare("imports", code, doc)
	compare("test-only imports", tests, docTests)
}
