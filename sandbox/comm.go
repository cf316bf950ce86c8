package sandbox

import (
	"os"
	"path/filepath"
)

// A thread's name (/proc/PID/comm) is set by Linux's exec to the first 15
// bytes of the last component of the path it was given. vmspace's host
// exec of the stub image names the thread so too: it executes the image
// through a symbolic link named as the program's thread must be, in a
// directory of its own (stubLinks), which spares an injected PR_SET_NAME
// at every exec.

// maxStubLinks bounds the links made (distinct thread names); beyond it,
// execs take the stub image's own path and PR_SET_NAME.
const maxStubLinks = 4096

// maxStubPath bounds the length of a link's path (hostExecPath's room for
// it in the scratch page).
const maxStubPath = 500

// stubLinks is the directory of symbolic links to the stub image, by
// thread name. Used by the tracer goroutine only.
type stubLinks struct {
	// dir is the directory, "" until made; failed is set if it could
	// not be made.
	dir    string
	failed bool
	// paths are the links made, by name.
	paths map[string]string
}

// commName is the thread name Linux's exec gives for file name name.
func commName(name string) string {
	base := filepath.Base(name)
	if len(base) > 15 {
		base = base[:15]
	}
	return base
}

// stubPath returns the path through which to execute the stub image so
// that the thread gets name's thread name, and whether it does (else it
// is the image's own path, and the name must be set by PR_SET_NAME).
func (s *Sandbox) stubPath(name string) (string, bool) {
	l := &s.links
	comm := commName(name)
	if comm == "." || comm == ".." || comm == "/" || comm == "" || l.failed {
		return s.exe.Path(), false
	}
	if p, ok := l.paths[comm]; ok {
		return p, true
	}
	if len(l.paths) >= maxStubLinks {
		return s.exe.Path(), false
	}
	if l.dir == "" {
		dir, err := os.MkdirTemp("", "vmspace-stub-")
		if err == nil {
			// Reachable by a program that changed its user ids.
			err = os.Chmod(dir, 0o755)
		}
		if err != nil {
			if dir != "" {
				os.Remove(dir)
			}
			l.failed = true
			return s.exe.Path(), false
		}
		l.dir = dir
		l.paths = make(map[string]string)
	}
	p := filepath.Join(l.dir, comm)
	if len(p) >= maxStubPath {
		return s.exe.Path(), false
	}
	if err := os.Symlink(s.exe.Path(), p); err != nil {
		return s.exe.Path(), false
	}
	l.paths[comm] = p
	return p, true
}

// removeStubLinks removes the links and their directory.
func (s *Sandbox) removeStubLinks() {
	if s.links.dir != "" {
		os.RemoveAll(s.links.dir)
		s.links.dir = ""
	}
}
