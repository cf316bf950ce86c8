package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// groupRun is a command started as the leader of a process group of its
// own, its standard output read line by line, for the tests that signal
// a program (or vmspace and its program) from outside.
type groupRun struct {
	t     *testing.T
	name  string // which run this is, for failures
	cmd   *exec.Cmd
	pgid  int
	lines chan string   // closed when the output ends (every holder closed it)
	done  chan struct{} // closed when the test ends: the reader stops
}

// hangLimit bounds every wait of a groupRun: a hang detector, far above
// what a loaded machine takes.
const hangLimit = 60 * time.Second

// startGroup starts cmd as the leader of a new process group. Whatever
// is left of the group is killed when the test ends.
func startGroup(t *testing.T, name string, cmd *exec.Cmd) *groupRun {
	t.Helper()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &groupRun{t: t, name: name, cmd: cmd, pgid: cmd.Process.Pid, lines: make(chan string), done: make(chan struct{})}
	t.Cleanup(func() {
		close(g.done)
		syscall.Kill(-g.pgid, syscall.SIGKILL)
		if cmd.ProcessState == nil {
			cmd.Wait()
		}
	})
	go func() {
		defer close(g.lines)
		r := bufio.NewReader(out)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				select {
				case g.lines <- strings.TrimSpace(line):
				case <-g.done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return g
}

// expect returns the first line starting with want. It fails the test if
// the output ends first, or if no such line comes within hangLimit.
func (g *groupRun) expect(want string) string {
	g.t.Helper()
	timeout := time.After(hangLimit)
	for {
		select {
		case line, ok := <-g.lines:
			if !ok {
				g.fail("output ended waiting for %q", want)
			}
			if strings.HasPrefix(line, want) {
				return line
			}
		case <-timeout:
			g.fail("no %q within %v", want, hangLimit)
		}
	}
}

// wait waits until the output ends (every process holding it is gone or
// closed it; within hangLimit), then for the command, and returns its
// wait status.
func (g *groupRun) wait() syscall.WaitStatus {
	g.t.Helper()
	timeout := time.After(hangLimit)
	for {
		select {
		case _, ok := <-g.lines:
			if ok {
				continue
			}
			g.cmd.Wait()
			return g.cmd.ProcessState.Sys().(syscall.WaitStatus)
		case <-timeout:
			g.fail("still running %v after the signal", hangLimit)
		}
	}
}

// fail fails the test, saying which run failed and what /proc shows of
// every thread of its process group at that moment (state, where it
// sleeps, its tracer, its pending, blocked and caught signals), then
// kills the group.
func (g *groupRun) fail(format string, args ...any) {
	g.t.Helper()
	msg := fmt.Sprintf(format, args...)
	state := groupState(g.pgid)
	syscall.Kill(-g.pgid, syscall.SIGKILL)
	g.t.Fatalf("%s %v: %s\nprocess group %d:\n%s", g.name, g.cmd.Args, msg, g.pgid, state)
}

// groupState describes every thread of every process in process group
// pgid, one line each, from /proc.
func groupState(pgid int) string {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	var b strings.Builder
	for _, p := range procs {
		stat, err := os.ReadFile(p + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		tasks, _ := filepath.Glob(p + "/task/[0-9]*")
		for _, task := range tasks {
			fmt.Fprintf(&b, "  %s\n", taskState(task))
		}
	}
	if b.Len() == 0 {
		return "  (no process left)\n"
	}
	return b.String()
}

// taskState is one thread's line of groupState.
func taskState(task string) string {
	status, err := os.ReadFile(task + "/status")
	if err != nil {
		return fmt.Sprintf("%s: %v", task, err)
	}
	want := map[string]bool{"Name": true, "State": true, "Tgid": true, "Pid": true, "PPid": true,
		"TracerPid": true, "SigQ": true, "SigPnd": true, "ShdPnd": true, "SigBlk": true,
		"SigIgn": true, "SigCgt": true}
	var fields []string
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && want[k] {
			fields = append(fields, k+"="+strings.Join(strings.Fields(v), " "))
		}
	}
	wchan, _ := os.ReadFile(task + "/wchan")
	return strings.Join(fields, " ") + " wchan=" + string(wchan)
}
