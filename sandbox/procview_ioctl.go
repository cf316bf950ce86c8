package sandbox

// ioctl requests of /proc/PID/maps and /proc/PID/pagemap (linux/fs.h).
const (
	// procmapQuery is PROCMAP_QUERY, _IOWR('f', 17, struct procmap_query).
	procmapQuery = 0xc0686611
	// pagemapScan is PAGEMAP_SCAN, _IOWR('f', 16, struct pm_scan_arg).
	pagemapScan = 0xc0606610
)

func (s *Sandbox) procmapQuery(t *task, v *procView, arg uint64) sysResult { return pass() }

func (s *Sandbox) pagemapScan(t *task, v *procView, arg uint64) sysResult { return pass() }
