// fault-latency: the C half of the workload. After a fork, one side (child or parent) writes to
// the memory the two processes share copy-on-write, timing every write with CLOCK_MONOTONIC;
// per round it computes mean, median and variance here, outside the timed accesses.
// Results go to a small MAP_SHARED buffer made before the fork (a mapping of its own, not part of
// the measured memory), so a writing child can hand them to the parent. The held fork and the
// memory calls are in ../common/forkutil.c.
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "forkutil.h"

enum { SEQ = 0, RANDOM = 1 };

struct fl_config {
	void *buf;           // the measured memory (touched before the fork)
	int64_t bytes;
	int64_t pattern;     // SEQ: one write to every page in order; RANDOM: `writes` random pages
	int64_t writes;
	int64_t rounds;
	uint64_t seed;       // xorshift64 state (non-zero); fixed, so every run writes the same pages
};

struct fl_round {
	int64_t accesses;
	double mean_ns;
	double median_ns;
	double var_ns2;         // variance (ns^2); the driver takes the square root
	int64_t min_ns;
	int64_t max_ns;
	int64_t minor_faults;    // getrusage ru_minflt of the writer over the round
	int64_t elapsed_ns;      // the whole round, timing calls included
};

struct fl_result {
	int64_t status;          // 0, or -errno when the writer failed
	int64_t rounds_done;
	struct fl_round round[];
};

// The result buffer: shared, so it is not copied-on-write at the fork.
void *fl_map_shared(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

// Hoare's selection: afterwards a[k] is the k-th smallest, a[0..k) <= a[k] <= a(k..n).
static void select_kth(int64_t *a, int64_t n, int64_t k)
{
	int64_t lo = 0, hi = n - 1;

	while (lo < hi) {
		int64_t pivot = a[lo + (hi - lo) / 2], i = lo, j = hi, t;

		while (i <= j) {
			while (a[i] < pivot)
				i++;
			while (a[j] > pivot)
				j--;
			if (i <= j) {
				t = a[i]; a[i] = a[j]; a[j] = t;
				i++;
				j--;
			}
		}
		if (k <= j)
			hi = j;
		else if (k >= i)
			lo = i;
		else
			return;
	}
}

static void summarize(int64_t *lat, int64_t n, struct fl_round *r)
{
	double sum = 0, sq = 0, mean;
	int64_t lo = lat[0], hi = lat[0], k = n / 2;

	for (int64_t i = 0; i < n; i++) {
		sum += (double)lat[i];
		lo = lat[i] < lo ? lat[i] : lo;
		hi = lat[i] > hi ? lat[i] : hi;
	}
	mean = sum / (double)n;
	for (int64_t i = 0; i < n; i++)
		sq += ((double)lat[i] - mean) * ((double)lat[i] - mean);
	select_kth(lat, n, k);
	r->median_ns = (double)lat[k];
	if (n % 2 == 0) {
		int64_t below = lat[0];

		for (int64_t i = 1; i < k; i++)
			below = lat[i] > below ? lat[i] : below;
		r->median_ns = ((double)below + (double)lat[k]) / 2;
	}
	r->accesses = n;
	r->mean_ns = mean;
	r->var_ns2 = sq / (double)n;
	r->min_ns = lo;
	r->max_ns = hi;
}

static int64_t minor_faults(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

// The writes, by whichever process calls it. Each access: clock, one byte written, clock.
// Returns 0 or -errno (also left in res->status).
int fl_write(const struct fl_config *cfg, struct fl_result *res)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	int64_t pages = cfg->bytes / (int64_t)page;
	int64_t n = cfg->pattern == SEQ ? pages : cfg->writes;
	volatile char *c = cfg->buf;
	uint64_t state = cfg->seed;
	struct timespec a, b, r0, r1;
	int64_t *lat;

	res->rounds_done = 0;
	if (pages < 1 || n < 1)
		return res->status = -EINVAL;
	// The latencies: a private mapping of the writer's own, made and touched before timing.
	lat = mmap(NULL, (size_t)n * sizeof(*lat), PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (lat == MAP_FAILED)
		return res->status = -errno;
	memset(lat, 0, (size_t)n * sizeof(*lat));

	for (int64_t r = 0; r < cfg->rounds; r++) {
		int64_t faults = minor_faults();

		clock_gettime(CLOCK_MONOTONIC, &r0);
		if (cfg->pattern == SEQ) {
			for (int64_t i = 0; i < n; i++) {
				clock_gettime(CLOCK_MONOTONIC, &a);
				c[(size_t)i * page] = (char)(i + r) | 1;
				clock_gettime(CLOCK_MONOTONIC, &b);
				lat[i] = fu_ns_between(&a, &b);
			}
		} else {
			for (int64_t i = 0; i < n; i++) {
				size_t off = (size_t)(xorshift64(&state) % (uint64_t)pages) * page;

				clock_gettime(CLOCK_MONOTONIC, &a);
				c[off] = (char)(i + r) | 1;
				clock_gettime(CLOCK_MONOTONIC, &b);
				lat[i] = fu_ns_between(&a, &b);
			}
		}
		clock_gettime(CLOCK_MONOTONIC, &r1);
		res->round[r].minor_faults = minor_faults() - faults;
		res->round[r].elapsed_ns = fu_ns_between(&r0, &r1);
		summarize(lat, n, &res->round[r]);
		res->rounds_done = r + 1;
	}
	munmap(lat, (size_t)n * sizeof(*lat));
	return res->status = 0;
}

struct writer {
	const struct fl_config *cfg;
	struct fl_result *res;
};

// In the held child, once released: its writes; the exit code tells the parent how they went.
static int child_writes(void *arg)
{
	struct writer *w = arg;

	return fl_write(w->cfg, w->res) == 0 ? 0 : 3;
}

// Fork (fu_fork_hold); the child waits (in C) until fu_release closes its pipe, then writes when
// writer_is_child is set (results in res) and exits. Only fork() is timed. Returns 0 or -errno.
int fl_fork_hold(const struct fl_config *cfg, struct fl_result *res, int writer_is_child,
		 struct fu_child *out)
{
	struct writer w = { cfg, res };

	return fu_fork_hold(out, writer_is_child ? child_writes : NULL, &w);
}
