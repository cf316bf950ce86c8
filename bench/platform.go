package bench

import (
	"github.com/vmspace/vmspace/platform"
	"github.com/vmspace/vmspace/platform/ptrace"
)

func init() {
	DefaultPlatform = newPtrace
}

// newPtrace makes the ptrace platform fault_as runs on, as gVisor's
// reference figure does. Its AddressSpace is the platform's own (a stub
// parked in its comm page's request loop); vmspace run's processes use the
// same stub and injector (ptrace.Inject) but their own AddressSpace
// (package sandbox's stubAS), whose calls are injected with registers set
// per call, so fault_as does not measure that path.
func newPtrace() (platform.Platform, error) {
	p, err := ptrace.New()
	if err != nil {
		return nil, err
	}
	return p, nil
}
