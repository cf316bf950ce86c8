package sandbox

import (
	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

// Pages the host kernel keeps after the call that gave them to it.
//
// A system call may leave the host kernel holding references to the
// program's pages after it returns: vmsplice gives a pipe the pages
// themselves (not copies), which it holds until they are read. On
// Linux such a page outlives its unmapping: the pipe still yields what it
// held. In vmspace the pages are the memory file's, and a page the
// manager frees would be kept committed for reuse (pgalloc's reuse cache)
// and handed, zeroed and written, to another mapping, in any process of
// the sandbox: the pipe's reader would read what that mapping's owner
// wrote. So the memory file is told of the pages such a call hands over
// (pgalloc.MemoryFile.Expose), and releases them when they are freed: the
// holder keeps the old page, the file gets a new one.
//
// What is not recorded: a page given over while another thread changes
// the mapping between the call's stop and the host's taking of it, the
// pages of a MSG_ZEROCOPY send (held until sent), and the references a
// call holds only while it runs (O_DIRECT I/O, a process_vm_readv from
// outside the sandbox) on pages another thread unmaps meanwhile.

// exposeHeld tells the memory file which buffers of system call nr, with
// arguments a, the host kernel may hold after it returns (called once the
// buffers are mapped: prevalidate).
func (s *Sandbox) exposeHeld(t *task, nr int, a [6]uint64) {
	if nr == unix.SYS_VMSPLICE {
		s.exposeIOV(t, a[1], a[2])
	}
}

// exposeIOV exposes the buffers of the iovec array at iov (cnt entries).
func (s *Sandbox) exposeIOV(t *task, iov, cnt uint64) {
	if cnt == 0 || cnt > maxIOVecs {
		return
	}
	if w, ok := s.readWords(t, iov, int(2*cnt)); ok {
		for i := 0; i < len(w); i += 2 {
			s.exposeRange(t, w[i], w[i+1])
		}
	}
}

// exposeRange exposes the memory file's pages behind [addr, addr+length)
// of t's address space.
func (s *Sandbox) exposeRange(t *task, addr, length uint64) {
	ar, ok := userPages(addr, length)
	if !ok {
		return
	}
	for _, b := range t.p.mm.Backings(ar) {
		if b.File == memmap.File(s.mf) {
			s.mf.Expose(memmap.FileRange{Start: b.Offset, End: b.Offset + uint64(b.Range.Length())})
		}
	}
}
