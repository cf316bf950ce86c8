package mm

import "golang.org/x/sys/unix"

const (
	rlimitAS      = unix.RLIMIT_AS
	rlimitData    = unix.RLIMIT_DATA
	rlimitMemLock = unix.RLIMIT_MEMLOCK
	rlimitStack   = unix.RLIMIT_STACK
)

func getrlimit(res int) (cur, max uint64, err error) {
	var r unix.Rlimit
	if err := unix.Getrlimit(res, &r); err != nil {
		return 0, 0, err
	}
	return r.Cur, r.Max, nil
}
