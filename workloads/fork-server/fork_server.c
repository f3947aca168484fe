// fork-server: the C half of the workload. A fuzzer-style fork server: the parent, with a touched
// heap, forks a child that writes child_pages pages of the heap and _exits; the parent reaps it
// and forks the next, for a time or a count. The whole loop is in C; throughput is forks/elapsed.
// The held fork (COW PTE evidence) and the memory calls are in ../common/forkutil.c.
#define _GNU_SOURCE
#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>

#include "forkutil.h"

struct fs_stats {
	int64_t forks;           // children forked, run and reaped
	int64_t elapsed_ns;      // the whole loop
	int64_t fork_ns_total;   // the fork() calls alone (parent side)
	int64_t fork_ns_min;
	int64_t fork_ns_max;
	int64_t bad_children;    // children that did not exit with status 0
};

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
	while (max_forks > 0 ? st->forks < max_forks : fu_ns_between(&start, &now) < seconds_ns) {
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
		int64_t ns = fu_ns_between(&t0, &t1);
		st->forks++;
		st->fork_ns_total += ns;
		st->fork_ns_min = ns < st->fork_ns_min ? ns : st->fork_ns_min;
		st->fork_ns_max = ns > st->fork_ns_max ? ns : st->fork_ns_max;
		clock_gettime(CLOCK_MONOTONIC, &now);
	}
	st->elapsed_ns = fu_ns_between(&start, &now);
	return 0;
}
