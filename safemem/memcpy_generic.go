//go:build !amd64 || race

package safemem

import "unsafe"

// moveDisjoint copies n bytes between the disjoint spans dst and src
// (memcpy_amd64.go has the AVX-512 kernel used outside race builds).
func moveDisjoint(dst, src unsafe.Pointer, n int) { memmove(dst, src, n) }
