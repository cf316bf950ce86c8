package bench

import (
	"github.com/vmspace/vmspace/platform"
	"github.com/vmspace/vmspace/platform/ptrace"
)

func init() {
	DefaultPlatform = newPtrace
}

// newPtrace makes the ptrace platform fault_as runs on, as gVisor's
// reference figure does. Its AddressSpace drives the stub's host mappings
// with the same driver as vmspace run's processes (ptrace.HostMappings:
// the record of what is mapped, so that a MapFile maps only what is
// missing, and the unmaps) and the same stub; what differs is how each
// host call reaches the process: here a request through the comm page of
// a stub parked in its serve loop, made from the goroutine that handles
// the fault, where vmspace run injects the call into a program thread
// stopped under ptrace with its registers set for it (sandbox's stubAS).
// That path needs a program process under the sandbox's tracer, so
// fault_as does not measure it; "vmspace bench --programs" measures
// vmspace run's faults end to end.
func newPtrace() (platform.Platform, error) {
	p, err := ptrace.New()
	if err != nil {
		return nil, err
	}
	return p, nil
}
