// forkutil: the C shared by the fork workloads, compiled into each workload's library (listed in
// its manifest's `sources` as "../common/forkutil.c"; harness/measure/workloads.py passes -I for this
// folder). Anonymous memory to fork with (map, advise, touch, unmap) and the held fork: one timed
// fork whose child waits in C on a pipe until released, so that the driver can read the child's
// and the system's counters while both processes exist.
#ifndef FORKUTIL_H
#define FORKUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

// A held child; the drivers mirror it as guestlib.Child (ctypes).
struct fu_child {
	int64_t pid;
	int64_t release_fd;
	int64_t fork_ns;
};

// Anonymous private memory; NULL with errno set on failure.
void *fu_map(size_t bytes);
// thp: 1 MADV_HUGEPAGE, 0 MADV_NOHUGEPAGE. Returns 0 or -errno.
int fu_advise(void *p, size_t bytes, int thp);
// Write one byte in every page so that every page is backed before the fork; returns the pages.
int64_t fu_touch(void *p, size_t bytes);
int fu_unmap(void *p, size_t bytes);

// One fork, timed (CLOCK_MONOTONIC around fork() in the parent, nothing else), whose child waits
// until fu_release; then the child runs child_then(arg) when given and _exits with its result
// (else 0). Returns 0 when the child is running, or -errno.
int fu_fork_hold(struct fu_child *out, int (*child_then)(void *), void *arg);
// Let the held child exit and reap it; returns its wait status, or -errno.
int fu_release(struct fu_child *child);

static inline int64_t fu_ns_between(const struct timespec *a, const struct timespec *b)
{
	return (int64_t)(b->tv_sec - a->tv_sec) * 1000000000LL + (b->tv_nsec - a->tv_nsec);
}

#endif
