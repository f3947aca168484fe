// libafl_preload.so: preloaded into the fuzzing target (AFL_PRELOAD) and, on kernels without
// System V IPC, into afl-fuzz too (LD_PRELOAD). Two independent jobs, each off unless its
// environment variable is set:
//
// 1. HARNESS_COW_PTE_PROOF=FILE: switch COW PTE on in the AFL fork server. The constructor runs
//    before the target's own (so before the fork server starts) and acts only in the fork server:
//    the process AFL started with its control pipe on fd 198 (FORKSRV_FD). The children the fork
//    server forks never run constructors again (fork, not exec), and afl-fuzz itself has no fd 198.
//    It calls prctl(PR_SET_COW_PTE) and, only when that returned 0, forks one throwaway child (the
//    fork that consumes the READY flag and turns COW PTE on for this process for good), then calls
//    the prctl again: on the 6.2-based series EINVAL there means COW PTE is on. It appends one JSON
//    line with the facts to FILE (one line per fork server started).
//
//    HARNESS_FORK_COUNTERS=FILE: the kernel's own counters around the fork server's first fork
//    (set with or without COW PTE, so the plain fork shows the copying it does). This library's
//    fork() stands in for libc's in the target; in the fork server, the first call (the first
//    fuzzing child, after the target's heap is touched and its deferred fork server started) reads
//    /proc/meminfo PageTables and the server's VmPTE, forks, holds the child on a pipe while it
//    reads PageTables and the child's VmPTE again, then lets it go. One JSON line to FILE.
//
// 2. What the harness's small guest kernels lack and afl-fuzz needs, emulated in user space:
//    HARNESS_SHM_DIR=DIR: System V shared memory with files in DIR (a tmpfs), for kernels without
//    CONFIG_SYSVIPC. AFL++ uses only shmget(IPC_PRIVATE), shmat, shmdt and shmctl(IPC_RMID) for
//    its coverage map and test case buffer; a segment is a tmpfs file mapped MAP_SHARED, which is
//    what a SysV segment is inside the kernel (a shmem file).
//    HARNESS_EMULATE_FLOCK=1: flock() answering ENOSYS (no CONFIG_FILE_LOCKING) succeeds; afl-fuzz
//    only locks its own output folder against a second fuzzer, and there is none.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PR_SET_COW_PTE 65       // from the series; PR_SET_MDWE on upstream Linux >= 6.3
#define FORKSRV_FD 198          // AFL's fork server control pipe

static pid_t real_fork(void)
{
	static pid_t (*real)(void);

	if (!real)
		real = (pid_t (*)(void))dlsym(RTLD_NEXT, "fork");
	return real ? real() : (errno = ENOSYS, -1);
}

static void append_line(const char *file, const char *line)
{
	int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

	if (fd < 0)
		return;
	if (write(fd, line, strlen(line)) < 0)
		perror("libafl_preload: write");
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

static const char *counters_file;       // set in the fork server when HARNESS_FORK_COUNTERS is

static pid_t measured_fork(void)
{
	int gate[2];
	long before, after = -1, parent_pte, child_pte = -1;
	char path[64], line[256], c;
	pid_t pid;

	if (pipe(gate) != 0)
		return real_fork();
	parent_pte = proc_kb("/proc/self/status", "VmPTE");
	before = proc_kb("/proc/meminfo", "PageTables");
	pid = real_fork();
	if (pid == 0) {                 // held until the parent has read the counters
		close(gate[1]);
		while (read(gate[0], &c, 1) < 0 && errno == EINTR)
			;
		close(gate[0]);
		return 0;
	}
	if (pid > 0) {
		after = proc_kb("/proc/meminfo", "PageTables");
		snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
		child_pte = proc_kb(path, "VmPTE");
	}
	close(gate[0]);
	close(gate[1]);                 // the child goes on
	snprintf(line, sizeof(line),
		 "{\"counters_pid\": %d, \"parent_vmpte_kb\": %ld, \"child_vmpte_kb\": %ld, "
		 "\"pagetables_before_kb\": %ld, \"pagetables_after_kb\": %ld}\n",
		 (int)getpid(), parent_pte, child_pte, before, after);
	append_line(counters_file, line);
	return pid;
}

pid_t fork(void)
{
	pid_t pid;

	if (!counters_file || fcntl(FORKSRV_FD, F_GETFD) < 0)
		return real_fork();
	pid = measured_fork();
	counters_file = NULL;           // the first fork only
	return pid;
}

__attribute__((constructor)) static void fork_counters_on(void)
{
	const char *file = getenv("HARNESS_FORK_COUNTERS");

	if (file && *file && fcntl(FORKSRV_FD, F_GETFD) >= 0)
		counters_file = file;
}

__attribute__((constructor)) static void cow_pte_on(void)
{
	const char *proof = getenv("HARNESS_COW_PTE_PROOF");
	int ret, err, again = 0, again_err = 0, forked = 0, status = -1;
	char line[256], again_text[64] = "null, \"prctl_again_errno\": null";
	pid_t pid;

	if (!proof || !*proof || fcntl(FORKSRV_FD, F_GETFD) < 0)
		return;
	errno = 0;
	ret = prctl(PR_SET_COW_PTE, 0, 0, 0, 0);
	err = ret < 0 ? errno : 0;
	if (ret == 0) {
		pid = real_fork();
		if (pid == 0)
			_exit(0);
		if (pid > 0) {
			forked = 1;
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
		}
		errno = 0;
		again = prctl(PR_SET_COW_PTE, 0, 0, 0, 0);
		again_err = again < 0 ? errno : 0;
	}
	if (ret == 0)
		snprintf(again_text, sizeof(again_text), "%d, \"prctl_again_errno\": %d", again, again_err);
	snprintf(line, sizeof(line),
		 "{\"pid\": %d, \"prctl_ret\": %d, \"prctl_errno\": %d, \"forked\": %d, "
		 "\"child_status\": %d, \"prctl_again_ret\": %s}\n",
		 (int)getpid(), ret, err, forked, status, again_text);
	append_line(proof, line);
}

// ---- System V shared memory on files, for kernels without CONFIG_SYSVIPC ----

#define MAX_ATTACHED 16
static struct { void *addr; size_t size; } attached[MAX_ATTACHED];
static int next_id;

static const char *shm_dir(void)
{
	const char *dir = getenv("HARNESS_SHM_DIR");
	return dir && *dir ? dir : NULL;
}

static void segment_path(char *buf, size_t len, const char *dir, int id)
{
	snprintf(buf, len, "%s/sysv-shm-%d", dir, id);
}

int shmget(key_t key, size_t size, int flags)
{
	static int (*real)(key_t, size_t, int);
	const char *dir = shm_dir();
	char path[PATH_MAX];
	int fd, id;

	if (!dir) {
		if (!real)
			real = (int (*)(key_t, size_t, int))dlsym(RTLD_NEXT, "shmget");
		return real ? real(key, size, flags) : (errno = ENOSYS, -1);
	}
	if (key != IPC_PRIVATE) {
		errno = ENOSYS;
		return -1;
	}
	for (int tries = 0; tries < 1000; tries++) {
		id = (int)(((unsigned)getpid() << 10 | (unsigned)(next_id++ & 0x3ff)) & INT_MAX);
		segment_path(path, sizeof(path), dir, id);
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, flags & 0777);
		if (fd < 0 && errno == EEXIST)
			continue;
		if (fd < 0)
			return -1;
		if (ftruncate(fd, (off_t)size) < 0) {
			int saved = errno;
			close(fd);
			unlink(path);
			errno = saved;
			return -1;
		}
		close(fd);
		return id;
	}
	errno = ENOSPC;
	return -1;
}

void *shmat(int id, const void *addr, int flags)
{
	static void *(*real)(int, const void *, int);
	const char *dir = shm_dir();
	char path[PATH_MAX];
	struct stat st;
	void *map;
	int fd, prot = PROT_READ | ((flags & SHM_RDONLY) ? 0 : PROT_WRITE);

	if (!dir) {
		if (!real)
			real = (void *(*)(int, const void *, int))dlsym(RTLD_NEXT, "shmat");
		return real ? real(id, addr, flags) : (errno = ENOSYS, (void *)-1);
	}
	segment_path(path, sizeof(path), dir, id);
	fd = open(path, ((flags & SHM_RDONLY) ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0) {
		errno = EINVAL;
		return (void *)-1;
	}
	if (fstat(fd, &st) < 0) {
		close(fd);
		return (void *)-1;
	}
	map = mmap((void *)addr, (size_t)st.st_size, prot, MAP_SHARED | (addr ? MAP_FIXED : 0), fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return (void *)-1;
	for (int i = 0; i < MAX_ATTACHED; i++) {
		if (!attached[i].addr) {
			attached[i].addr = map;
			attached[i].size = (size_t)st.st_size;
			break;
		}
	}
	return map;
}

int shmdt(const void *addr)
{
	static int (*real)(const void *);

	if (shm_dir()) {
		for (int i = 0; i < MAX_ATTACHED; i++) {
			if (attached[i].addr == addr) {
				attached[i].addr = NULL;
				return munmap((void *)addr, attached[i].size);
			}
		}
		errno = EINVAL;
		return -1;
	}
	if (!real)
		real = (int (*)(const void *))dlsym(RTLD_NEXT, "shmdt");
	return real ? real(addr) : (errno = ENOSYS, -1);
}

int shmctl(int id, int cmd, struct shmid_ds *buf)
{
	static int (*real)(int, int, struct shmid_ds *);
	const char *dir = shm_dir();
	char path[PATH_MAX];
	struct stat st;

	if (!dir) {
		if (!real)
			real = (int (*)(int, int, struct shmid_ds *))dlsym(RTLD_NEXT, "shmctl");
		return real ? real(id, cmd, buf) : (errno = ENOSYS, -1);
	}
	segment_path(path, sizeof(path), dir, id);
	switch (cmd) {
	case IPC_RMID:          // existing mappings stay, as with SysV
		return unlink(path) < 0 ? (errno = EINVAL, -1) : 0;
	case IPC_STAT:
		if (stat(path, &st) < 0)
			return errno = EINVAL, -1;
		if (buf) {
			memset(buf, 0, sizeof(*buf));
			buf->shm_segsz = (size_t)st.st_size;
			buf->shm_perm.mode = st.st_mode & 0777;
		}
		return 0;
	default:
		errno = EINVAL;
		return -1;
	}
}

// ---- flock() on kernels without CONFIG_FILE_LOCKING ----

int flock(int fd, int op)
{
	static int (*real)(int, int);
	const char *emulate = getenv("HARNESS_EMULATE_FLOCK");
	int ret;

	if (!real)
		real = (int (*)(int, int))dlsym(RTLD_NEXT, "flock");
	if (!real) {
		errno = ENOSYS;
		ret = -1;
	} else {
		ret = real(fd, op);
	}
	if (ret < 0 && errno == ENOSYS && emulate && *emulate == '1')
		return 0;
	return ret;
}
