package safemem

import (
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestClassify checks both ways of telling SIGSEGV from SIGBUS on every
// kind of page, for loads and stores.
func TestClassify(t *testing.T) {
	if !populateSupported() {
		t.Logf("MADV_POPULATE_READ is not supported here: classify uses /proc/self/maps only")
	}
	anon := mapAnon(t, 4)
	protect(t, anon[pg:2*pg], unix.PROT_NONE)
	protect(t, anon[2*pg:3*pg], unix.PROT_READ)
	unmap(t, anon[3*pg:])
	file := mapFilePastEOF(t, 2, 1)
	roFile := func() []byte {
		m := mapFilePastEOF(t, 2, 1)
		protect(t, m, unix.PROT_READ)
		return m
	}()
	const ok = syscall.Signal(0) // the access would not fault now
	for _, tc := range []struct {
		name      string
		at        uintptr
		write     bool
		want      syscall.Signal
		wantMaps  syscall.Signal // where /proc/self/maps cannot tell
		populated bool           // classifyPopulate says "transient"
	}{
		{"rw/load", addr(anon, 10), false, ok, syscall.SIGBUS, true},
		{"rw/store", addr(anon, 10), true, ok, syscall.SIGBUS, true},
		{"none/load", addr(anon, pg+1), false, syscall.SIGSEGV, 0, false},
		{"none/store", addr(anon, pg+1), true, syscall.SIGSEGV, 0, false},
		{"ro/load", addr(anon, 2*pg), false, ok, syscall.SIGBUS, true},
		{"ro/store", addr(anon, 2*pg), true, syscall.SIGSEGV, 0, false},
		{"unmapped/load", addr(anon, 3*pg+5), false, syscall.SIGSEGV, 0, false},
		{"unmapped/store", addr(anon, 3*pg+5), true, syscall.SIGSEGV, 0, false},
		{"eof/load", addr(file, pg+100), false, syscall.SIGBUS, 0, false},
		{"eof/store", addr(file, pg+100), true, syscall.SIGBUS, 0, false},
		{"ro-eof/load", addr(roFile, pg), false, syscall.SIGBUS, 0, false},
		{"ro-eof/store", addr(roFile, pg), true, syscall.SIGSEGV, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantMaps := tc.want
			if tc.wantMaps != 0 {
				wantMaps = tc.wantMaps
			}
			if got := classifyMaps(tc.at, tc.write); got != wantMaps {
				t.Errorf("classifyMaps = %v, want %v", got, wantMaps)
			}
			if !populateSupported() {
				return
			}
			sig, transient, answered := classifyPopulate(tc.at, tc.write)
			if !answered || transient != tc.populated || (!transient && sig != tc.want) {
				t.Errorf("classifyPopulate = %v, transient %v, answered %v; want %v, transient %v", sig, transient, answered, tc.want, tc.populated)
			}
		})
	}
}

func TestFindMapping(t *testing.T) {
	maps := "00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/dbus-daemon\n" +
		"7f0000000000-7f0000001000 ---p 00000000 00:00 0 \n" +
		"7f0000001000-7f0000003000 rw-s 00000000 00:05 99 /very/" + strings.Repeat("long/", 2000) + "path\n" +
		"7f0000003000-7f0000004000 r--p 00000000 00:00 0\n" +
		"garbage line\n" +
		"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]"
	for _, tc := range []struct {
		addr  uint64
		perms string
		found bool
	}{
		{0x400000, "r-xp", true},
		{0x451fff, "r-xp", true},
		{0x452000, "", false},
		{0x7f0000000fff, "---p", true},
		{0x7f0000002000, "rw-s", true},
		{0x7f0000003000, "r--p", true}, // after a line longer than the read buffer
		{0xffffffffff600000, "--xp", true},
		{0x1000, "", false},
	} {
		perms, found := findMapping(strings.NewReader(maps), tc.addr)
		if perms != tc.perms || found != tc.found {
			t.Errorf("findMapping(%#x) = %q, %v; want %q, %v", tc.addr, perms, found, tc.perms, tc.found)
		}
	}
}
