// SPDX-License-Identifier: GPL-2.0
/* One object, three programs, only one of which can load anywhere: `show` lists all
 * of them and marks the one in a section no SEC() convention knows; `load --program
 * fine` loads the good one although another calls a strong kfunc no kernel has. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern int bpf_bpfload_missing_strong(int x) __ksym;

SEC("syscall")
int fine(void *ctx)
{
	return 0;
}

SEC("bpfload_no_such_section/x")
int odd_section(void *ctx)
{
	return 0;
}

static __noinline int helper(int x)
{
	return bpf_bpfload_missing_strong(x);
}

SEC("syscall")
int needs_missing(void *ctx)
{
	return helper(1);
}

char LICENSE[] SEC("license") = "GPL";
