// SPDX-License-Identifier: GPL-2.0
/* The user-space program the uprobe and USDT tests attach to (tests/targets.py builds
 * it with gcc). Each line "N" on stdin makes it call probed_add(i, 2 * i) and fire
 * the USDT probe bpfload_test:tick(i, -i, 5 * i) for i = 1..N (the last one read
 * from the stack), then print
 * how often the tick's semaphore was set while it ran (a tracer attached), and flush.
 * EOF ends it. */
#define _SDT_HAS_SEMAPHORES 1
#include <stdio.h>
#include <stdlib.h>
#include <sys/sdt.h>

unsigned short bpfload_test_tick_semaphore __attribute__((section(".probes")));
long probed_counter;

__attribute__((noinline)) long probed_add(long a, long b)
{
	__asm__ volatile("" ::: "memory");	/* keep the call */
	return a + b;
}

int main(void)
{
	char line[64];

	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		long n = strtol(line, NULL, 10), armed = 0;

		for (long i = 1; i <= n; i++) {
			probed_counter += probed_add(i, 2 * i);
			if (bpfload_test_tick_semaphore) {
				volatile long on_stack = 5 * i;

				armed++;
				STAP_PROBE3(bpfload_test, tick, i, -(int)i, on_stack);
			}
		}
		printf("%ld\n", armed);
	}
	return 0;
}
