// SPDX-License-Identifier: GPL-2.0
/* A program whose hot code and data are known, for heatmap's symbol tests
 * (tests/targets.py builds it with gcc).  hot_code and cold_code are 64 KiB functions,
 * hot_table and cold_table 4 MiB read-only arrays (file-backed: .rodata), each starting
 * on a page.  It prints "NAME ADDRESS" for the four, then "ready", then runs until
 * killed: every pass calls hot_code and reads one byte of every page of hot_table.
 * The cold ones are only used with an argument nobody gives (so the compiler keeps
 * them). */
#include <stdio.h>
#include <unistd.h>

#define TABLE (4 << 20)
#define PAGE 4096
#define NOPS_64K __asm__ volatile(".rept 65536\n\tnop\n\t.endr")

__attribute__((aligned(PAGE))) const unsigned char hot_table[TABLE] = {1};
__attribute__((aligned(PAGE))) const unsigned char cold_table[TABLE] = {2};

__attribute__((noinline, aligned(PAGE))) long hot_code(long x)
{
	NOPS_64K;
	return x + 1;
}

__attribute__((noinline, aligned(PAGE))) long cold_code(long x)
{
	NOPS_64K;
	return x + 2;
}

int main(int argc, char **argv)
{
	const volatile unsigned char *table = argc > 2 ? cold_table : hot_table;
	long (*code)(long) = argc > 2 ? cold_code : hot_code;
	unsigned long sum = 0;

	printf("hot_code %p\ncold_code %p\nhot_table %p\ncold_table %p\nready\n",
	       (void *)hot_code, (void *)cold_code, (void *)hot_table, (void *)cold_table);
	fflush(stdout);
	for (;;) {
		sum = code(sum);
		for (long i = 0; i < TABLE; i += PAGE)
			sum += table[i];
		if (argc > 1)
			usleep(1000);
	}
	return (int)sum;
}
