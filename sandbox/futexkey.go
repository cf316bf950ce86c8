package sandbox

import "golang.org/x/sys/unix"

// Futexes that are not private, in private memory.
//
// The host keys a futex that is not private (no FUTEX_PRIVATE_FLAG, no
// FUTEX2_PRIVATE) by its page when the page is a shared mapping's, and by
// the address space and address when it is private anonymous memory.
// Under vmspace all of the program's private memory is a shared mapping of
// the memory file in the host, so the host keys such a futex by the memory
// file's page, where Linux keys it by address. The page behind an address
// changes when a write breaks copy-on-write, and after a fork parent and
// child have the same one until then: a waiter would stay queued on the
// old page while its process's waker, having written the word, wakes the
// new one (a lost wake-up: the waiter sleeps on), and waiters of the two
// processes would share a queue (one's wake-up given to the other's
// waiter).
//
// So the word of such an operation in private memory is made the
// process's own before the call (copy-on-write broken, as a write would):
// its page is then the memory file's and no other process's, and stays
// this one's while the process does not fork. For an operation that waits the
// word is also recorded as the call's (task.kcall, through ensure): a fork
// while it waits keeps the page the parent's (mm.ForkPinned gives the
// child a copy). The target of a requeue is made the process's own too,
// since its waiters move there; a wake needs nothing (its process's
// waiters made their page their own). A word in a private file mapping
// that was never written is made the process's own too, where Linux keys
// it by the file's page until the first write, after which Linux's own
// waker misses a waiter queued before: only that case, and waiters in
// other processes mapping the same file privately, see a difference.
// (A word never written in private anonymous memory may be mapped from
// the shared zero page, which the host keys by address; the first write
// would move it to the memory file.)
//
// Left: a waiter requeued by another thread onto a word of another page
// is not recorded as waiting there, so a fork meanwhile may move that page
// from under it.

// futex2Private is FUTEX2_PRIVATE, in the flags of futex_wait, futex_wake,
// futex_waitv's waiters and futex_requeue's.
const futex2Private = 128

// futexWaitvMax is FUTEX_WAITV_MAX, the most waiters futex_waitv takes.
const futexWaitvMax = 128

// sharedFutex prepares the words of system call nr (futex, futex_wait,
// futex_waitv, futex_requeue) with arguments a that are not private (see
// above).
func (s *Sandbox) sharedFutex(t *task, nr int, a [6]uint64) {
	switch nr {
	case unix.SYS_FUTEX:
		if a[1]&futexPrivate != 0 {
			return
		}
		switch a[1] & 0x7f {
		case futexWAIT, futexWAIT_BITSET, futexWAIT_REQUEUE_PI:
			s.ownFutexWord(t, a[0], true)
		case futexREQUEUE, futexCMP_REQUEUE, futexCMP_REQUEUE_PI:
			s.ownFutexWord(t, a[4], false)
		}
	case unix.SYS_FUTEX_WAIT:
		if a[3]&futex2Private == 0 {
			s.ownFutexWord(t, a[0], true)
		}
	case unix.SYS_FUTEX_WAITV:
		// struct futex_waitv: val, uaddr, flags (u32), reserved.
		if n := a[1]; n > 0 && n <= futexWaitvMax {
			if w, ok := s.readWords(t, a[0], int(3*n)); ok {
				for i := 0; i < len(w); i += 3 {
					if w[i+2]&futex2Private == 0 {
						s.ownFutexWord(t, w[i+1], true)
					}
				}
			}
		}
	case unix.SYS_FUTEX_REQUEUE:
		// Two struct futex_waitv: the second is the target.
		if w, ok := s.readWords(t, a[0], 6); ok && w[5]&futex2Private == 0 {
			s.ownFutexWord(t, w[4], false)
		}
	}
}

// ownFutexWord makes the futex word at addr of t's process its own if it
// lies in private memory, recording it as the call's if wait.
func (s *Sandbox) ownFutexWord(t *task, addr uint64, wait bool) {
	ar, ok := userPages(addr, 4)
	m := t.p.mm
	if !ok || m == nil {
		return
	}
	if rs := m.Regions(ar); len(rs) != 1 || !rs[0].Mapped || !rs[0].Private {
		return
	}
	if wait {
		s.ensure(t, addr, 4, true)
	} else {
		s.ensureProc(t.p, addr, 4, true)
	}
}
