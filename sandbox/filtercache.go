package sandbox

import (
	"sync"

	"golang.org/x/sys/unix"
)

// The main seccomp filter (seccomp.go) is the same program for every
// memory file descriptor but for the constants it compares descriptors
// with. It is built once per vmspace process, for a placeholder
// descriptor, and each filter installed is a copy with the placeholder's
// constants replaced (filterFor). startRoot starts the build before it
// starts the first process, so that the build overlaps the host's exec
// of the stub image.

// filterFDPlaceholder is the descriptor the template is built for: no
// descriptor (a negative int32), and a constant no other comparison of
// the filter uses (TestFilterTemplate checks that patching it gives the
// filter built for the descriptor).
const filterFDPlaceholder = 0xfffffff5

// filterTemplate is the main filter built for filterFDPlaceholder.
var filterTemplate = sync.OnceValues(func() ([]unix.SockFilter, error) {
	return seccompFilter(filterFDPlaceholder)
})

// prebuildFilter starts building the template in the background.
func prebuildFilter() { go filterTemplate() }

// filterFor returns the main filter for memory file descriptor memFD.
func filterFor(memFD int) ([]unix.SockFilter, error) {
	tmpl, err := filterTemplate()
	if err != nil {
		return nil, err
	}
	out := make([]unix.SockFilter, len(tmpl))
	copy(out, tmpl)
	for i := range out {
		if out[i].Code&0x07 == unix.BPF_JMP && out[i].Code&0xf0 != unix.BPF_JA && out[i].K == filterFDPlaceholder {
			out[i].K = uint32(memFD)
		}
	}
	return out, nil
}
