package runtimeroom

import "testing"

// TestArenaRoom checks the reading of a heap arena's reserved room from
// /proc/self/maps: only PROT_NONE above the address, within its 64 MiB
// arena.
func TestArenaRoom(t *testing.T) {
	// An arena at 0x3dcf58000000: 52 MiB skipped below the heap's random
	// start, 8 MiB of heap, 4 MiB reserved above; then the next arena.
	maps := []byte(`00400000-00741000 r-xp 00000000 00:2f 1 /tmp/vmspace
3dcf58000000-3dcf5b400000 ---p 00000000 00:00 0 
3dcf5b400000-3dcf5bc00000 rw-p 00000000 00:00 0 
3dcf5bc00000-3dcf5c000000 ---p 00000000 00:00 0 
3dcf5c000000-3dcf60000000 ---p 00000000 00:00 0 
7fdfaee00000-7fdfc699e000 ---p 00000000 00:00 0`)
	for _, c := range []struct {
		p    uintptr
		want uint64
	}{
		{0x3dcf5b400000, 4 << 20},
		{0x3dcf5bbff000, 4 << 20},
		{0x3dcf5bd00000, 3 << 20},
		{0x3dcf5c000000, 64 << 20},
		{0x500000, 0},
	} {
		if got := arenaRoom(maps, c.p); got != c.want {
			t.Errorf("arenaRoom(%#x) = %#x; want %#x", c.p, got, c.want)
		}
	}
	if got := arenaRoom([]byte("garbage\nzz-yy ---p\n-\n1-2 ---\n"), 0x1000); got != 0 {
		t.Errorf("arenaRoom of malformed maps = %#x", got)
	}
}

// TestField checks the reading of /proc/PID/status fields.
func TestField(t *testing.T) {
	status := []byte("Name:\tvmspace\nVmPeak:\t 1275676 kB\nVmSize:\t 1273628 kB\nCapEff:\t000001fffeffffff\n")
	if n, ok := field(status, "VmSize:", 10); !ok || n != 1273628 {
		t.Errorf("VmSize = %d, %v", n, ok)
	}
	if n, ok := field(status, "CapEff:", 16); !ok || n != 0x1fffeffffff {
		t.Errorf("CapEff = %#x, %v", n, ok)
	}
	if _, ok := field(status, "VmRSS:", 10); ok {
		t.Errorf("VmRSS found in a status without it")
	}
	if _, ok := field([]byte("VmSize:\tlots kB\n"), "VmSize:", 10); ok {
		t.Errorf("a malformed VmSize read")
	}
	if atoi("3") != 3 || atoi("") != maxTries || atoi("99") != maxTries || itoa(16) != "16" {
		t.Errorf("atoi/itoa")
	}
}
