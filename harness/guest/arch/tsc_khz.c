// Prints this host's TSC frequency in kHz, measured against CLOCK_MONOTONIC_RAW over 200 ms.
// Under TCG a guest's TSC runs at the host's rate; the guest kernel's own calibration against
// the PIT fails when the host is busy (and then it falls back to jiffies), so the harness tells
// it the rate with tsc_early_khz=.
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <x86intrin.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
	double t0 = now(), t1;
	uint64_t c0 = __rdtsc(), c1;

	do {
		t1 = now();
	} while (t1 - t0 < 0.2);
	c1 = __rdtsc();
	printf("%.0f\n", (c1 - c0) / (t1 - t0) / 1000.0);
	return 0;
}
