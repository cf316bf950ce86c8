package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The inputs and C programs of the program workloads (docs/programs.md).
// All are generated the same way on every machine.

// forkExecSource forks and execs TRUE (replaced by /bin/true's path) argv[1]
// times in a row, waiting for each child.
const forkExecSource = `#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
	int n = argc > 1 ? atoi(argv[1]) : 1;
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid < 0)
			return 1;
		if (pid == 0) {
			execl("TRUE", "true", (char *)0);
			_exit(127);
		}
		int st;
		if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			return 2;
	}
	return 0;
}
`

// shmAnonSource maps 256 MiB MAP_SHARED|MAP_ANONYMOUS, stores 8 bytes at
// the start of every page in ascending order and unmaps it, and prints the
// time that took ("ns N").
const shmAnonSource = `#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>

int main(void) {
	const size_t len = 256UL << 20;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	for (size_t off = 0; off < len; off += 4096)
		*(volatile uint64_t *)(p + off) = 0x0807060504030201ULL;
	if (munmap(p, len) != 0)
		return 2;
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("ns %lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
	return 0;
}
`

// fork1GSource maps 1 GiB of private anonymous memory, stores 8 bytes at
// the start of every page (untimed), then times one fork(): from the call
// until it returns in the parent ("ns N"). The child exits at once; the
// parent waits for it (untimed).
const fork1GSource = `#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(void) {
	const size_t len = 1UL << 30;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	for (size_t off = 0; off < len; off += 4096)
		*(volatile uint64_t *)(p + off) = 0x0807060504030201ULL;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	if (pid < 0)
		return 2;
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return 3;
	printf("ns %lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
	return 0;
}
`

// gccOneSource is the file gcc_one compiles: 120 functions of loops,
// arithmetic, a switch and a struct, after three standard headers.
func gccOneSource() string {
	var b strings.Builder
	b.WriteString("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n\n")
	b.WriteString("struct acc { long sum; long prod; char name[32]; };\n\n")
	for i := range 120 {
		fmt.Fprintf(&b, `long f%d(const long *v, int n, struct acc *a) {
	long s = %d;
	for (int i = 0; i < n; i++) {
		switch ((v[i] + i) %% 5) {
		case 0: s += v[i] * %d; break;
		case 1: s ^= v[i] << (i %% 7); break;
		case 2: s -= v[i] / (i + 1); break;
		case 3: a->prod = a->prod * 31 + v[i]; break;
		default: s += strlen(a->name) + i;
		}
		for (int j = 0; j < i %% 4; j++)
			s = s * 17 + j;
	}
	a->sum += s;
	snprintf(a->name, sizeof a->name, "f%d:%%ld", s);
	return s;
}

`, i, i+1, i%9+2, i)
	}
	b.WriteString("long run_all(const long *v, int n) {\n\tstruct acc a = {0, 1, \"\"};\n\tlong t = 0;\n")
	for i := range 120 {
		fmt.Fprintf(&b, "\tt += f%d(v, n, &a);\n", i)
	}
	b.WriteString("\treturn t + a.sum + a.prod;\n}\n")
	return b.String()
}

// gccSmallSource is the i'th of gcc_24's small files.
func gccSmallSource(i int) string {
	return fmt.Sprintf(`#include <stdio.h>

static int table%d[16] = {%d, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

int small%d(int x) {
	int s = 0;
	for (int i = 0; i < 16; i++)
		s += table%d[i] * (x + i);
	printf("%%d\n", s);
	return s;
}
`, i, i, i, i)
}

// gitCommits and gitLines shape git_log's repository: gitCommits commits
// of one file of gitLines lines, each commit rewriting 8 of them.
const (
	gitCommits = 300
	gitLines   = 400
)

// setupGitRepo makes dir/repo, a repository of gitCommits commits made
// with git fast-import (fixed author, dates and contents).
func setupGitRepo(w *progWork) error {
	repo := filepath.Join(w.dir, "repo")
	if err := os.RemoveAll(repo); err != nil {
		return err
	}
	git := w.tool("git")
	if out, err := exec.Command(git, "-c", "init.defaultBranch=main", "init", "-q", repo).CombinedOutput(); err != nil {
		return fmt.Errorf("git init: %v: %s", err, out)
	}
	cmd := exec.Command(git, "-C", repo, "fast-import", "--quiet")
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out := new(strings.Builder)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	bw := bufio.NewWriter(in)
	lines := make([]string, gitLines)
	for i := range lines {
		lines[i] = fmt.Sprintf("line %d: the quick brown fox jumps over the lazy dog", i)
	}
	for c := range gitCommits {
		for k := range 8 {
			i := (c*37 + k*53) % gitLines
			lines[i] = fmt.Sprintf("line %d: changed by commit %d (%d)", i, c, k)
		}
		data := strings.Join(lines, "\n") + "\n"
		msg := fmt.Sprintf("commit %d\n", c)
		fmt.Fprintf(bw, "commit refs/heads/main\ncommitter Bench <bench@example.invalid> %d +0000\ndata %d\n%s", 1700000000+c*60, len(msg), msg)
		fmt.Fprintf(bw, "M 644 inline file.txt\ndata %d\n%s\n", len(data), data)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git fast-import: %v: %s", err, out)
	}
	return nil
}

// gzipInputSize is gzip_50m's input size.
const gzipInputSize = 50 << 20

// writeGzipInput writes gzip_50m's input: lines of 12 words, each word
// one of 64 picked by xorshift64 from seed 0x9E3779B97F4A7C15.
func writeGzipInput(path string) error {
	if st, err := os.Stat(path); err == nil && st.Size() == gzipInputSize {
		return nil
	}
	words := make([]string, 64)
	for i := range words {
		words[i] = fmt.Sprintf("w%c%c%d", 'a'+i%26, 'a'+(i*7)%26, i)
	}
	buf := make([]byte, 0, gzipInputSize+64)
	s := uint64(0x9E3779B97F4A7C15)
	for len(buf) < gzipInputSize {
		for k := range 12 {
			s ^= s << 13
			s ^= s >> 7
			s ^= s << 17
			if k > 0 {
				buf = append(buf, ' ')
			}
			buf = append(buf, words[s%64]...)
		}
		buf = append(buf, '\n')
	}
	return os.WriteFile(path, buf[:gzipInputSize], 0o644)
}
