package safemem

import _ "unsafe" // go:linkname

// procPin returns the number of the processor (P) the caller runs on and
// keeps the caller on it until procUnpin. The runtime keeps these two for
// packages outside the standard library that link to them
// (go.dev/issue/67401).
//
//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

// Processor returns the number (from 0 to GOMAXPROCS-1) of the Go
// processor the caller was running on a moment ago: a hint for sharding
// data by CPU (readers of mm's activeMu keep to their processor's shard),
// not a guarantee, since the caller may move at once. It lives here, with
// safemem's other unsafe code, as mm imports no unsafe.
func Processor() int {
	p := procPin()
	procUnpin()
	return p
}
