// toy_parser: the fuzzing target of the afl workload, compiled on the host with afl-cc.
//
// It parses a small TLV format ("TOY1", then records: type byte, length byte, payload) with a few
// branches per record type, never crashes, and reads its input from stdin. Before the fork server
// starts it maps and touches TOY_HEAP_MIB MiB (default 0) of anonymous memory, so each fork of the
// fork server copies (or, with COW PTE, shares) that many page tables; each run writes a few heap
// pages chosen by the input, as a real target dirties some of its memory.
// The fork server is deferred (__AFL_INIT) to after that heap is touched. Just before it starts,
// in the process afl-fuzz started as its fork server (the one holding AFL's control pipe, fd 198;
// the children it forks return from __AFL_INIT and never come back here), two things happen when
// their environment variable names a file:
//   HARNESS_FEATURE_PROOF: the feature's prctl (HARNESS_FEATURE_PRCTL, HARNESS_FEATURE_ARG; the
//     harness passes its profile's switch, default the COW PTE series' PR_SET_COW_PTE) and,
//     when that returned 0, one throwaway fork
//     (the fork that turns COW PTE on for this process for good) and the prctl again: on the
//     6.2-based series EINVAL there means COW PTE is on. One JSON line of these facts is appended.
//   HARNESS_FORK_COUNTERS: one fork measured with the kernel's own counters, the fork every
//     fuzzing run repeats (same process, same memory): /proc/meminfo PageTables and the server's
//     VmPTE before, then, with the child held on a pipe, PageTables and the child's VmPTE. One
//     JSON line. Set with or without COW PTE, so a plain fork shows the copying it does.
// Nothing else is changed: afl-fuzz and the target use the kernel's System V shared memory and
// flock as they are (the workload's manifest asks for CONFIG_SYSVIPC and CONFIG_FILE_LOCKING).
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef __AFL_INIT
#define __AFL_INIT() do { } while (0)
#endif

#define PR_SET_COW_PTE 65       // from the series; PR_SET_MDWE on upstream Linux >= 6.3
#define FORKSRV_FD 198          // AFL's fork server control pipe

static unsigned char *heap;
static size_t heap_pages;

static void dirty(unsigned value)
{
	if (heap_pages)
		heap[(size_t)(value % heap_pages) * 4096] += 1;
}

static int checksum_ok(const unsigned char *p, size_t n)
{
	unsigned sum = 0;

	if (n < 2)
		return 0;
	for (size_t i = 0; i + 1 < n; i++)
		sum += p[i];
	return (sum & 0xff) == p[n - 1];
}

static int parse_record(unsigned type, const unsigned char *p, size_t n)
{
	switch (type) {
	case 'N':       // number: decimal digits
		for (size_t i = 0; i < n; i++)
			if (p[i] < '0' || p[i] > '9')
				return -1;
		dirty(n);
		return 1;
	case 'S':       // string: printable, "key=value" counts extra
		for (size_t i = 0; i < n; i++)
			if (p[i] < 0x20 || p[i] > 0x7e)
				return -1;
		if (n > 2 && memchr(p, '=', n))
			dirty(n * 7);
		return 2;
	case 'C':       // checksummed block
		if (!checksum_ok(p, n))
			return -1;
		dirty(p[0]);
		if (n > 4 && p[0] == 'F' && p[1] == 'U' && p[2] == 'Z')
			dirty(p[3] * 13u);
		return 3;
	case 'L':       // list of 2-byte big-endian items in increasing order
		if (n % 2)
			return -1;
		for (size_t i = 2; i < n; i += 2)
			if (((p[i] << 8) | p[i + 1]) <= ((p[i - 2] << 8) | p[i - 1]))
				return -1;
		dirty(n / 2);
		return 4;
	case 0:         // end
		return 0;
	default:
		return -1;
	}
}

static int parse(const unsigned char *buf, size_t len)
{
	size_t off = 4;
	int records = 0;

	if (len < 4 || memcmp(buf, "TOY1", 4) != 0)
		return -1;
	while (off + 2 <= len) {
		unsigned type = buf[off], n = buf[off + 1];
		int kind;

		off += 2;
		if (n > len - off)
			return -2;
		kind = parse_record(type, buf + off, n);
		if (kind < 0)
			return -3;
		if (kind == 0)
			break;
		records++;
		off += n;
	}
	return records;
}

static void append_line(const char *file, const char *line)
{
	int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

	if (fd < 0)
		return;
	if (write(fd, line, strlen(line)) < 0)
		perror("toy_parser: write");
	close(fd);
}

// "Key:   123 kB" from a /proc file; -1 when absent
static long proc_kb(const char *path, const char *key)
{
	char buf[256];
	long value = -1;
	size_t len = strlen(key);
	FILE *fh = fopen(path, "re");

	if (!fh)
		return -1;
	while (fgets(buf, sizeof(buf), fh))
		if (!strncmp(buf, key, len) && buf[len] == ':') {
			value = strtol(buf + len + 1, NULL, 10);
			break;
		}
	fclose(fh);
	return value;
}

static void reap(pid_t pid, int *status)
{
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
}

static void feature_on(const char *proof)
{
	const char *option = getenv("HARNESS_FEATURE_PRCTL"), *arg = getenv("HARNESS_FEATURE_ARG");
	int op = option && *option ? atoi(option) : PR_SET_COW_PTE;
	unsigned long value = arg && *arg ? strtoul(arg, NULL, 10) : 0;
	int ret, err, again = 0, again_err = 0, forked = 0, status = -1;
	char line[256], again_text[64] = "null, \"prctl_again_errno\": null";
	pid_t pid;

	errno = 0;
	ret = prctl(op, value, 0, 0, 0);
	err = ret < 0 ? errno : 0;
	if (ret == 0) {
		pid = fork();
		if (pid == 0)
			_exit(0);
		if (pid > 0) {
			forked = 1;
			reap(pid, &status);
		}
		errno = 0;
		again = prctl(op, value, 0, 0, 0);
		again_err = again < 0 ? errno : 0;
		snprintf(again_text, sizeof(again_text), "%d, \"prctl_again_errno\": %d", again, again_err);
	}
	snprintf(line, sizeof(line),
		 "{\"pid\": %d, \"prctl_ret\": %d, \"prctl_errno\": %d, \"forked\": %d, "
		 "\"child_status\": %d, \"prctl_again_ret\": %s}\n",
		 (int)getpid(), ret, err, forked, status, again_text);
	append_line(proof, line);
}

static void fork_counters(const char *file)
{
	int gate[2], status;
	long before, after = -1, parent_pte, child_pte = -1;
	char path[64], line[256], c;
	pid_t pid;

	if (pipe(gate) != 0)
		return;
	parent_pte = proc_kb("/proc/self/status", "VmPTE");
	before = proc_kb("/proc/meminfo", "PageTables");
	pid = fork();
	if (pid == 0) {                 // held until the parent has read the counters
		close(gate[1]);
		while (read(gate[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	if (pid > 0) {
		after = proc_kb("/proc/meminfo", "PageTables");
		snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
		child_pte = proc_kb(path, "VmPTE");
	}
	close(gate[0]);
	close(gate[1]);                 // the child goes
	if (pid > 0)
		reap(pid, &status);
	snprintf(line, sizeof(line),
		 "{\"counters_pid\": %d, \"parent_vmpte_kb\": %ld, \"child_vmpte_kb\": %ld, "
		 "\"pagetables_before_kb\": %ld, \"pagetables_after_kb\": %ld}\n",
		 (int)getpid(), parent_pte, child_pte, before, after);
	append_line(file, line);
}

int main(void)
{
	static unsigned char buf[4096];
	const char *mib = getenv("TOY_HEAP_MIB");
	size_t size = (size_t)(mib ? strtoul(mib, NULL, 10) : 0) << 20;
	ssize_t len;

	if (size) {
		heap = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (heap == MAP_FAILED)
			return 1;
		madvise(heap, size, MADV_NOHUGEPAGE);   // 4 KiB pages: PTE tables to copy or share
		for (size_t i = 0; i < size; i += 4096)
			heap[i] = 1;
		heap_pages = size / 4096;
	}
	if (fcntl(FORKSRV_FD, F_GETFD) >= 0) {      // the fork server, before it serves
		const char *proof = getenv("HARNESS_FEATURE_PROOF");
		const char *counters = getenv("HARNESS_FORK_COUNTERS");

		if (proof && *proof)
			feature_on(proof);
		if (counters && *counters)
			fork_counters(counters);
	}
	__AFL_INIT();
	len = read(0, buf, sizeof(buf));
	if (len < 0)
		return 1;
	parse(buf, (size_t)len);
	return 0;
}
