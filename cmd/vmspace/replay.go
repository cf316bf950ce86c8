package main

import (
	"bytes"
	"context"
	"embed"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/vmspace/vmspace/vmscript"
	"github.com/vmspace/vmspace/vmscript/native"
	"github.com/vmspace/vmspace/vmscript/vmspace"
)

//go:embed examples/*.vms
var examples embed.FS

// replayMain implements `vmspace replay [--native|--diff] [SCRIPT...]`.
func replayMain(args []string) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	onLinux := fs.Bool("native", false, "run the scripts natively on Linux")
	diff := fs.Bool("diff", false, "run on both systems and report the first difference")
	timeout := fs.Duration("timeout", time.Minute, "time limit per script")
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *onLinux && *diff {
		fmt.Fprintln(os.Stderr, "vmspace replay: --native and --diff exclude each other")
		return 2
	}
	type script struct {
		name string
		src  []byte
	}
	var scripts []script
	builtin := fs.NArg() == 0
	if builtin {
		names, _ := examples.ReadDir("examples")
		for _, e := range names {
			b, _ := examples.ReadFile("examples/" + e.Name())
			scripts = append(scripts, script{e.Name(), b})
		}
		sort.Slice(scripts, func(i, j int) bool { return scripts[i].name < scripts[j].name })
	}
	for _, path := range fs.Args() {
		b, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "vmspace replay: %v\n", err)
			return 2
		}
		scripts = append(scripts, script{path, b})
	}
	status := 0
	for _, sc := range scripts {
		s, err := vmscript.Parse(sc.name, sc.src)
		if err != nil {
			fmt.Fprintf(os.Stderr, "vmspace replay: %v\n", err)
			return 2
		}
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		run := func(ex vmscript.Executor) ([]byte, error) {
			var buf bytes.Buffer
			err := vmscript.Run(ctx, s, ex, &buf)
			return buf.Bytes(), err
		}
		switch {
		case builtin:
			// Show both transcripts side by side.
			lin, lerr := run(native.New(native.Options{}))
			vms, verr := run(vmspace.New(vmspace.Options{}))
			fmt.Printf("== %s\n", sc.name)
			sideBySide(os.Stdout, sc.src, lin, vms)
			for _, e := range []error{lerr, verr} {
				if e != nil {
					fmt.Fprintf(os.Stderr, "vmspace replay: %v\n", e)
					status = 1
				}
			}
			if !bytes.Equal(lin, vms) {
				status = 1
			}
		case *diff:
			lin, lerr := run(native.New(native.Options{}))
			vms, verr := run(vmspace.New(vmspace.Options{}))
			if lerr != nil || verr != nil {
				fmt.Fprintf(os.Stderr, "vmspace replay: %s: linux: %v; vmspace: %v\n", sc.name, lerr, verr)
				status = 1
				break
			}
			if d := vmscript.Diff(s, lin, vms); d != nil {
				fmt.Printf("%s: %s\n", sc.name, d.Format("linux", "vmspace"))
				status = 1
			} else {
				fmt.Printf("%s: same\n", sc.name)
			}
		default:
			ex := vmspace.New(vmspace.Options{})
			if *onLinux {
				ex = native.New(native.Options{})
			}
			out, err := run(ex)
			if len(scripts) > 1 {
				fmt.Printf("== %s\n", sc.name)
			}
			os.Stdout.Write(out)
			if err != nil {
				fmt.Fprintf(os.Stderr, "vmspace replay: %v\n", err)
				status = 1
			}
		}
		cancel()
	}
	return status
}

// sideBySide prints each statement with Linux's and vmspace's results.
func sideBySide(w io.Writer, src, lin, vms []byte) {
	results := func(t []byte) map[string]string {
		m := map[string]string{}
		for _, l := range strings.Split(string(t), "\n") {
			if n, r, ok := strings.Cut(l, " "); ok {
				m[n] = r
			}
		}
		return m
	}
	lr, vr := results(lin), results(vms)
	fmt.Fprintf(w, "%-4s %-34s %-30s %s\n", "line", "statement", "linux", "vmspace")
	for i, l := range strings.Split(string(src), "\n") {
		n := fmt.Sprint(i + 1)
		a, okA := lr[n]
		b, okB := vr[n]
		if !okA && !okB {
			continue
		}
		mark := ""
		if a != b {
			mark = "   <-- differs"
		}
		fmt.Fprintf(w, "%-4s %-34s %-30s %s%s\n", n, strings.TrimSpace(l), a, b, mark)
	}
}
