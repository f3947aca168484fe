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

__attribute__((constructor)) static void cow_pte_on(void)
{
	const char *proof = getenv("HARNESS_COW_PTE_PROOF");
	int ret, err, again = 0, again_err = 0, forked = 0, status = -1, fd;
	char line[256], again_text[64] = "null, \"prctl_again_errno\": null";
	pid_t pid;

	if (!proof || !*proof || fcntl(FORKSRV_FD, F_GETFD) < 0)
		return;
	errno = 0;
	ret = prctl(PR_SET_COW_PTE, 0, 0, 0, 0);
	err = ret < 0 ? errno : 0;
	if (ret == 0) {
		pid = fork();
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
	fd = open(proof, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0) {
		if (write(fd, line, strlen(line)) < 0)
			perror("libafl_preload: write proof");
		close(fd);
	}
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
