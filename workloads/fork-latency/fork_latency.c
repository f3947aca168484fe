// fork-latency: the C half of the workload. Only fork() is timed (CLOCK_MONOTONIC around the
// call, in the parent); children _exit at once and are reaped outside the timed region.
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct flat_child {
	int64_t pid;
	int64_t release_fd;
	int64_t fork_ns;
};

void *flat_map(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

// thp: 1 MADV_HUGEPAGE, 0 MADV_NOHUGEPAGE. Returns 0 or -errno.
int flat_advise(void *p, size_t bytes, int thp)
{
	return madvise(p, bytes, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) == 0 ? 0 : -errno;
}

int64_t flat_touch(void *p, size_t bytes)
{
	long page = sysconf(_SC_PAGESIZE);
	volatile char *c = p;
	int64_t n = 0;

	for (size_t off = 0; off < bytes; off += (size_t)page, n++)
		c[off] = (char)n | 1;
	return n;
}

int flat_unmap(void *p, size_t bytes)
{
	return munmap(p, bytes) == 0 ? 0 : -errno;
}

static int64_t ns_between(const struct timespec *a, const struct timespec *b)
{
	return (int64_t)(b->tv_sec - a->tv_sec) * 1000000000LL + (b->tv_nsec - a->tv_nsec);
}

// n forks, each child exits at once; ns[i] is the time of the i-th fork() call.
// Returns 0, -errno when a fork or wait failed, or -ECHILD when a child did not exit 0.
int flat_forks(int n, int64_t *ns)
{
	struct timespec t0, t1;
	int status;
	pid_t pid;

	for (int i = 0; i < n; i++) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		pid = fork();
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (pid == 0)
			_exit(0);
		if (pid < 0)
			return -errno;
		if (waitpid(pid, &status, 0) < 0)
			return -errno;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			return -ECHILD;
		ns[i] = ns_between(&t0, &t1);
	}
	return 0;
}

// One timed fork whose child waits (in C) until flat_release, so that the driver can read the
// child's and the system's counters while both processes exist. Returns 0 or -errno.
int flat_fork_hold(struct flat_child *out)
{
	int ready[2], release[2];
	struct timespec t0, t1;
	char c = 'r';
	pid_t pid;

	if (pipe(ready))
		return -errno;
	if (pipe(release)) {
		int err = errno;
		close(ready[0]); close(ready[1]);
		return -err;
	}
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
		close(release[1]);
		waitpid(pid, NULL, 0);
		return -ECHILD;
	}
	close(ready[0]);
	out->pid = pid;
	out->release_fd = release[1];
	out->fork_ns = ns_between(&t0, &t1);
	return 0;
}

// Let the held child exit and reap it; returns its wait status, or -errno.
int flat_release(struct flat_child *child)
{
	int status = 0;

	close((int)child->release_fd);
	if (waitpid((pid_t)child->pid, &status, 0) < 0)
		return -errno;
	return status;
}
