// fork-server: the C half of the workload. A fuzzer-style fork server: the parent, with a touched
// heap, forks a child that writes child_pages pages of the heap and _exits; the parent reaps it
// and forks the next, for a time or a count. The whole loop is in C; throughput is forks/elapsed.
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct fs_stats {
	int64_t forks;           // children forked, run and reaped
	int64_t elapsed_ns;      // the whole loop
	int64_t fork_ns_total;   // the fork() calls alone (parent side)
	int64_t fork_ns_min;
	int64_t fork_ns_max;
	int64_t bad_children;    // children that did not exit with status 0
};

struct fs_child {
	int64_t pid;
	int64_t release_fd;
	int64_t fork_ns;
};

void *fs_map(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

int fs_advise(void *p, size_t bytes, int thp)
{
	return madvise(p, bytes, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) == 0 ? 0 : -errno;
}

int64_t fs_touch(void *p, size_t bytes)
{
	long page = sysconf(_SC_PAGESIZE);
	volatile char *c = p;
	int64_t n = 0;

	for (size_t off = 0; off < bytes; off += (size_t)page, n++)
		c[off] = (char)n | 1;
	return n;
}

int fs_unmap(void *p, size_t bytes)
{
	return munmap(p, bytes) == 0 ? 0 : -errno;
}

static int64_t ns_between(const struct timespec *a, const struct timespec *b)
{
	return (int64_t)(b->tv_sec - a->tv_sec) * 1000000000LL + (b->tv_nsec - a->tv_nsec);
}

// The child's work: one byte written in each of child_pages pages spread evenly over the heap.
static void child_work(volatile char *heap, int64_t pages, int64_t child_pages)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	int64_t stride = child_pages ? pages / child_pages : 0;

	for (int64_t i = 0; i < child_pages; i++)
		heap[(size_t)(i * stride) * page] = (char)i | 2;
}

// Fork children until max_forks (when > 0) or else until seconds_ns have passed.
// Returns 0, or -errno when a fork or wait failed.
int fs_run(void *heap, size_t bytes, int64_t child_pages, int64_t seconds_ns, int64_t max_forks,
	   struct fs_stats *st)
{
	int64_t pages = (int64_t)(bytes / (size_t)sysconf(_SC_PAGESIZE));
	struct timespec start, now, t0, t1;
	int status;
	pid_t pid;

	st->forks = st->fork_ns_total = st->fork_ns_max = st->bad_children = 0;
	st->fork_ns_min = INT64_MAX;
	clock_gettime(CLOCK_MONOTONIC, &start);
	now = start;
	while (max_forks > 0 ? st->forks < max_forks : ns_between(&start, &now) < seconds_ns) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		pid = fork();
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (pid == 0) {
			child_work(heap, pages, child_pages);
			_exit(0);
		}
		if (pid < 0)
			return -errno;
		if (waitpid(pid, &status, 0) < 0)
			return -errno;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			st->bad_children++;
		int64_t ns = ns_between(&t0, &t1);
		st->forks++;
		st->fork_ns_total += ns;
		st->fork_ns_min = ns < st->fork_ns_min ? ns : st->fork_ns_min;
		st->fork_ns_max = ns > st->fork_ns_max ? ns : st->fork_ns_max;
		clock_gettime(CLOCK_MONOTONIC, &now);
	}
	st->elapsed_ns = ns_between(&start, &now);
	return 0;
}

// One fork whose child waits (in C) until fs_release, for reading counters around it.
int fs_fork_hold(struct fs_child *out)
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

int fs_release(struct fs_child *child)
{
	int status = 0;

	close((int)child->release_fd);
	if (waitpid((pid_t)child->pid, &status, 0) < 0)
		return -errno;
	return status;
}
