package sandbox

import "testing"

// procSeekProgram seeks in /proc/self files with every whence: mem and
// pagemap (Linux's mem_lseek) and the seq_file ones (seq_lseek) know only
// SEEK_SET and SEEK_CUR.
const procSeekProgram = `
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void) {
	const char *files[] = {"mem", "pagemap", "maps", "smaps", "status", "statm", "numa_maps", "smaps_rollup"};
	const int whences[] = {SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE};
	for (unsigned i = 0; i < sizeof files / sizeof files[0]; i++) {
		char path[64];
		snprintf(path, sizeof path, "/proc/self/%s", files[i]);
		int fd = open(path, O_RDONLY);
		if (fd < 0) { printf("%s: open %s\n", files[i], strerrorname_np(errno)); continue; }
		printf("%s:", files[i]);
		for (unsigned w = 0; w < sizeof whences / sizeof whences[0]; w++) {
			errno = 0;
			off_t r = lseek(fd, 8, whences[w]);
			printf(" %d=%lld%s%s", whences[w], (long long)r, r < 0 ? " " : "", r < 0 ? strerrorname_np(errno) : "");
			lseek(fd, 0, SEEK_SET);
		}
		printf("\n");
		close(fd);
	}
	return 0;
}
`

// TestProcViewSeek: lseek on the /proc views answers as Linux's (SEEK_END,
// SEEK_DATA and SEEK_HOLE fail with EINVAL).
func TestProcViewSeek(t *testing.T) {
	needPtrace(t)
	exe := buildC(t, "procseek", procSeekProgram, false)
	want := runNative(t, "", "", exe)
	t.Logf("natively:\n%s", want.stdout)
	compare(t, "", "", exe)
}
