// cow_pte_launch PROGRAM [ARGS...]: run PROGRAM with COW PTE on, or not at all.
//
// On the COW PTE series, prctl(PR_SET_COW_PTE) only marks the process READY; the next fork turns
// COW PTE on for good (it survives execve, READY does not). So: prctl, one throwaway fork, then a
// second prctl, which the series answers with EINVAL only when COW PTE is already on. Only that
// answer counts as proof; anything else exits with NOT_PROVEN without running PROGRAM.
// Build: gcc -O2 -static -o cow_pte_launch cow_pte_launch.c
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define PR_SET_COW_PTE 65       // from the series; PR_SET_MDWE on upstream Linux >= 6.3
#define NOT_PROVEN 4

static const char *err_name(int err)
{
	const char *name = strerrorname_np(err);
	return name ? name : "?";
}

int main(int argc, char **argv)
{
	int first, first_err, again, again_err, status;
	pid_t pid;

	if (argc < 2) {
		fprintf(stderr, "usage: cow_pte_launch PROGRAM [ARGS...]\n");
		return 2;
	}

	first = prctl(PR_SET_COW_PTE, 0, 0, 0, 0);
	first_err = errno;
	if (first != 0) {
		fprintf(stderr, "cow_pte_launch: prctl=%d/%s: not proven "
			"(the kernel refuses PR_SET_COW_PTE: no COW PTE series?)\n",
			first, err_name(first_err));
		return NOT_PROVEN;
	}

	// The fork that consumes READY and turns COW PTE on for this process.
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "cow_pte_launch: prctl=0 fork failed: %s: not proven\n",
			strerror(errno));
		return NOT_PROVEN;
	}
	if (pid == 0)
		_exit(0);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "cow_pte_launch: prctl=0 the throwaway child did not exit cleanly "
			"(status 0x%x): not proven\n", status);
		return NOT_PROVEN;
	}

	errno = 0;
	again = prctl(PR_SET_COW_PTE, 0, 0, 0, 0);
	again_err = errno;
	if (again != -1 || again_err != EINVAL) {
		if (again == 0)
			fprintf(stderr, "cow_pte_launch: prctl=0 again=0: not proven "
				"(the fork did not turn COW PTE on: CONFIG_COW_PTE off, or 65 is not "
				"PR_SET_COW_PTE on this kernel)\n");
		else
			fprintf(stderr, "cow_pte_launch: prctl=0 again=%d/%s: not proven\n",
				again, err_name(again_err));
		return NOT_PROVEN;
	}

	fprintf(stderr, "cow_pte_launch: prctl=0 again=-1/EINVAL: active\n");
	execvp(argv[1], argv + 1);
	fprintf(stderr, "cow_pte_launch: cannot run %s: %s\n", argv[1], strerror(errno));
	return 127;
}
