// SPDX-License-Identifier: GPL-2.0
/* One object, four programs, only one of which can load anywhere: `show` lists all
 * of them and marks the one in a section no SEC() convention knows; `load --program
 * fine` loads the good one although others need a strong kfunc and a strong
 * __kconfig value no kernel has. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern int bpf_bpfload_missing_strong(int x) __ksym;
extern int CONFIG_BPFLOAD_STRONG_MISSING __kconfig;

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

SEC("syscall")
int needs_config(void *ctx)
{
	return CONFIG_BPFLOAD_STRONG_MISSING;
}

char LICENSE[] SEC("license") = "GPL";
