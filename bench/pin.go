package bench

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinProcess pins every thread of the process to CPU cpu, so that child
// processes (the ptrace stub) and threads created later inherit the
// affinity. sched_setaffinity(0, …) would pin only the calling thread, so
// each thread in /proc/self/task is pinned, repeating until a pass finds no
// thread it has not pinned (the Go runtime may start threads meanwhile;
// those started by an already pinned thread inherit its affinity).
//
// The returned function restores each pinned thread's previous affinity
// (threads created since inherit whatever their creator had; they are set
// to the union of all previous masks).
func pinProcess(cpu int) (restore func() error, err error) {
	var one unix.CPUSet
	one.Set(cpu)
	old := make(map[int]unix.CPUSet)
	var union unix.CPUSet
	restore = func() error {
		var errs []error
		tids, err := threadIDs()
		if err != nil {
			errs = append(errs, err)
		}
		for _, tid := range tids {
			if _, ok := old[tid]; !ok {
				old[tid] = union
			}
		}
		for tid, set := range old {
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				errs = append(errs, fmt.Errorf("thread %d: %w", tid, err))
			}
		}
		return errors.Join(errs...)
	}
	for pass := 0; ; pass++ {
		if pass == 100 {
			return restore, errors.New("threads keep appearing")
		}
		tids, err := threadIDs()
		if err != nil {
			_ = restore()
			return nil, err
		}
		fresh := 0
		for _, tid := range tids {
			if _, ok := old[tid]; ok {
				continue
			}
			var set unix.CPUSet
			if err := unix.SchedGetaffinity(tid, &set); err != nil {
				if err == unix.ESRCH { // the thread exited
					continue
				}
				_ = restore()
				return nil, fmt.Errorf("sched_getaffinity(%d): %w", tid, err)
			}
			if err := unix.SchedSetaffinity(tid, &one); err != nil {
				if err == unix.ESRCH {
					continue
				}
				_ = restore()
				return nil, fmt.Errorf("sched_setaffinity(%d, {%d}): %w", tid, cpu, err)
			}
			old[tid] = set
			for i := range set {
				union[i] |= set[i]
			}
			fresh++
		}
		if fresh == 0 {
			return restore, nil
		}
	}
}

// threadIDs lists the threads of the calling process.
func threadIDs() ([]int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}
