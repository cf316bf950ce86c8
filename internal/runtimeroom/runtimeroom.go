// Package runtimeroom makes sure that the Go runtime of the vmspace command
// has room to grow its heap under a hard RLIMIT_AS that vmspace cannot lift
// (the shell's "ulimit -v N"; without CAP_SYS_RESOURCE).
//
// The runtime's reservations at start-up (page summaries and the scavenger
// index, about 1.1 GiB on amd64, the arena index and a first 64 MiB heap
// arena) may leave less room under such a limit than one more heap arena
// (between about 1.27 and 1.34 GB): the heap can then grow only within its
// first arena. The runtime (Go 1.26 on) starts the heap at a random 4 MiB
// chunk of that arena, at a random page of it, so that a heap of a few MiB
// may already need a second arena: the runtime dies "out of memory: cannot
// allocate 4194304-byte block" (about 1 start in 15 under ulimit -v
// 1280000, most of them in vmspace's package initialization). The package's
// init sees such a start and executes vmspace again, which draws the
// heap's place again, until its arena has room for the heap to grow.
//
// The package imports only syscall, so that its initialization comes
// before that of every package that allocates much (the language's order:
// a package whose imports are initialized, first by import path); the
// command imports it for that effect alone.
package runtimeroom

import (
	"syscall"
	"unsafe"
)

const (
	// heapArenaBytes is the size and alignment of the Go runtime's heap
	// arenas on 64-bit Linux.
	heapArenaBytes = 64 << 20
	// runtimeSpare is the room a hard RLIMIT_AS must leave for the runtime
	// to take one more heap arena after vmspace's own mappings for a
	// small program (memory file windows, mapped files, the stub).
	runtimeSpare = heapArenaBytes + 32<<20
	// minArenaRoom is the room the heap's arena must have when there is no
	// runtimeSpare: vmspace's heap stays within a few MiB for small
	// programs (4 MiB for the sandbox's TestAddressSpaceLimit).
	minArenaRoom = 32 << 20
	// triesEnv counts the executions by this package (removed from the
	// environment at once: the program never sees it).
	triesEnv = "VMSPACE_ROOM_TRIES"
	// maxTries bounds them: about half of the starts under such a limit are
	// drawn again, so the last try is reached once in 2^16 of them, and
	// then goes on as it is.
	maxTries = 16
)

// probe is an object of the Go heap, whose address says where the heap
// grows.
var probe = new([64]byte)

func init() {
	tries := 0
	if v, ok := syscall.Getenv(triesEnv); ok {
		tries = atoi(v)
		syscall.Unsetenv(triesEnv)
	}
	if tries >= maxTries || !cramped() {
		return
	}
	if _, ok := syscall.Getenv("VMSPACE_DEBUG"); ok {
		msg := "vmspace: heap arena nearly full under a hard RLIMIT_AS: executing again (try " + itoa(tries+1) + ")\n"
		syscall.Write(2, []byte(msg))
	}
	env := append(syscall.Environ(), triesEnv+"="+itoa(tries+1))
	args := make([]string, 0, 8)
	cmdline, err := readFile("/proc/self/cmdline")
	if err != nil {
		return
	}
	for len(cmdline) > 0 {
		i := 0
		for i < len(cmdline) && cmdline[i] != 0 {
			i++
		}
		args = append(args, string(cmdline[:i]))
		if i == len(cmdline) {
			break
		}
		cmdline = cmdline[i+1:]
	}
	syscall.Exec("/proc/self/exe", args, env)
}

// cramped says whether a hard RLIMIT_AS, which vmspace cannot lift, leaves
// the runtime less than runtimeSpare and the heap's arena less than
// minArenaRoom.
func cramped() bool {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_AS, &l) != nil || l.Max == ^uint64(0) {
		return false
	}
	status, err := readFile("/proc/self/status")
	if err != nil {
		return false
	}
	const capSysResource = 24
	if caps, ok := field(status, "CapEff:", 16); ok && caps&(1<<capSysResource) != 0 {
		return false
	}
	size, ok := field(status, "VmSize:", 10)
	if !ok || l.Max >= size<<10+runtimeSpare {
		return false
	}
	maps, err := readFile("/proc/self/maps")
	if err != nil {
		return false
	}
	return arenaRoom(maps, uintptr(unsafe.Pointer(probe))) < minArenaRoom
}

// arenaRoom returns the bytes of the heap arena holding address p that the
// runtime has reserved (PROT_NONE in maps, the text of /proc/self/maps)
// above p: what the heap can still grow into there.
func arenaRoom(maps []byte, p uintptr) uint64 {
	end := uint64(p|(heapArenaBytes-1)) + 1
	var room uint64
	for _, line := range lines(maps) {
		// "start-end perms offset dev inode [path]"
		dash, sp := index(line, '-'), index(line, ' ')
		if dash < 0 || sp < dash || len(line) < sp+5 || string(line[sp+1:sp+5]) != "---p" {
			continue
		}
		start, ok1 := parse(line[:dash], 16)
		stop, ok2 := parse(line[dash+1:sp], 16)
		if !ok1 || !ok2 {
			continue
		}
		start, stop = max(start, uint64(p)), min(stop, end)
		if start < stop {
			room += stop - start
		}
	}
	return room
}

// field returns the number, in base, after key in a /proc/PID/status text
// (VmSize in kB, CapEff in hexadecimal).
func field(status []byte, key string, base uint64) (uint64, bool) {
	for _, line := range lines(status) {
		if len(line) < len(key) || string(line[:len(key)]) != key {
			continue
		}
		v := line[len(key):]
		for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
			v = v[1:]
		}
		if i := index(v, ' '); i >= 0 {
			v = v[:i]
		}
		return parse(v, base)
	}
	return 0, false
}

// parse reads a whole non-empty unsigned number in base 10 or 16.
func parse(b []byte, base uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		default:
			return 0, false
		}
		if d >= base {
			return 0, false
		}
		n = n*base + d
	}
	return n, true
}

func atoi(s string) int {
	n, ok := parse([]byte(s), 10)
	if !ok || n > maxTries {
		return maxTries
	}
	return int(n)
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func index(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func lines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := index(b, '\n')
		if i < 0 {
			return append(out, b)
		}
		out = append(out, b[:i])
		b = b[i+1:]
	}
	return out
}

// readFile reads a whole file of /proc.
func readFile(path string) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	buf := make([]byte, 0, 16<<10)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}
