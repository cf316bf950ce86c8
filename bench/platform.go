package bench

import (
	"github.com/vmspace/vmspace/platform"
	"github.com/vmspace/vmspace/platform/ptrace"
)

func init() {
	DefaultPlatform = newPtrace
}

// newPtrace makes the ptrace platform fault_as runs on, as gVisor's
// reference figure does.
func newPtrace() (platform.Platform, error) {
	p, err := ptrace.New()
	if err != nil {
		return nil, err
	}
	return p, nil
}
