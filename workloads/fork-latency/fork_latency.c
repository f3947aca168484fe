// fork-latency: the C half of the workload. Only fork() is timed (CLOCK_MONOTONIC around the
// call, in the parent); children _exit at once and are reaped outside the timed region. The held
// fork and the memory calls are in ../common/forkutil.c.
#define _GNU_SOURCE
#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>

#include "forkutil.h"

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
		ns[i] = fu_ns_between(&t0, &t1);
	}
	return 0;
}
