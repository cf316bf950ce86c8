//go:build !amd64

package safemem

import "unsafe"

// copyDisjoint copies n bytes from src to dst, which do not overlap.
func copyDisjoint(dst, src unsafe.Pointer, n int) { memmove(dst, src, n) }

// largeCopy is the smallest copy that uses a different kernel (for tests):
// every size takes memmove here.
func largeCopy() int { return 0 }
