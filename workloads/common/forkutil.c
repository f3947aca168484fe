// forkutil: see forkutil.h.
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "forkutil.h"

void *fu_map(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

int fu_advise(void *p, size_t bytes, int thp)
{
	return madvise(p, bytes, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) == 0 ? 0 : -errno;
}

int64_t fu_touch(void *p, size_t bytes)
{
	long page = sysconf(_SC_PAGESIZE);
	volatile char *c = p;
	int64_t n = 0;

	for (size_t off = 0; off < bytes; off += (size_t)page, n++)
		c[off] = (char)n | 1;
	return n;
}

int fu_unmap(void *p, size_t bytes)
{
	return munmap(p, bytes) == 0 ? 0 : -errno;
}

int fu_fork_hold(struct fu_child *out, int (*child_then)(void *), void *arg)
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
		_exit(child_then ? child_then(arg) : 0);
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
	out->fork_ns = fu_ns_between(&t0, &t1);
	return 0;
}

int fu_release(struct fu_child *child)
{
	int status = 0;

	close((int)child->release_fd);
	if (waitpid((pid_t)child->pid, &status, 0) < 0)
		return -errno;
	return status;
}
