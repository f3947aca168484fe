// fork-memory: the C half of the workload. The Python driver (driver.py) maps and touches memory
// through these calls, turns COW PTE on with prctl, and reads /proc between them; only fork()
// itself is timed, here in C, so no Python runs inside the timed region.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct fm_child {
	int64_t pid;
	int64_t release_fd;
	int64_t fork_ns;
};

// Anonymous private memory; NULL with errno set on failure.
void *fm_map(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

// thp: 1 MADV_HUGEPAGE, 0 MADV_NOHUGEPAGE. Returns 0 or -errno.
int fm_advise(void *p, size_t bytes, int thp)
{
	return madvise(p, bytes, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) == 0 ? 0 : -errno;
}

// Write one byte in every page so that every page is backed before the fork.
int64_t fm_touch(void *p, size_t bytes)
{
	long page = sysconf(_SC_PAGESIZE);
	volatile char *c = p;
	int64_t n = 0;

	for (size_t off = 0; off < bytes; off += (size_t)page, n++)
		c[off] = (char)n | 1;
	return n;
}

int fm_unmap(void *p, size_t bytes)
{
	return munmap(p, bytes) == 0 ? 0 : -errno;
}

static int64_t ns_between(const struct timespec *a, const struct timespec *b)
{
	return (int64_t)(b->tv_sec - a->tv_sec) * 1000000000LL + (b->tv_nsec - a->tv_nsec);
}

// Fork a child that only waits (in C, never returning to Python) until fm_release.
// Returns 0 when the child is running, or -errno.
int fm_fork_hold(struct fm_child *out)
{
	int ready[2], release[2];
	struct timespec t0, t1;
	char c = 'r';
	pid_t pid;

	if (pipe(ready) || pipe(release))
		return -errno;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid = fork();
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (pid == 0) {
		close(ready[0]);
		close(release[1]);
		if (write(ready[1], &c, 1) != 1)
			_exit(2);
		while (read(release[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	if (pid < 0) {
		int err = errno;
		close(ready[0]); close(ready[1]); close(release[0]); close(release[1]);
		return -err;
	}
	close(ready[1]);
	close(release[0]);
	if (read(ready[0], &c, 1) != 1) {
		close(ready[0]);
		return -ECHILD;
	}
	close(ready[0]);
	out->pid = pid;
	out->release_fd = release[1];
	out->fork_ns = ns_between(&t0, &t1);
	return 0;
}

// Let the child exit and reap it; returns its wait status, or -errno.
int fm_release(struct fm_child *child)
{
	int status = 0;

	close((int)child->release_fd);
	if (waitpid((pid_t)child->pid, &status, 0) < 0)
		return -errno;
	return status;
}
