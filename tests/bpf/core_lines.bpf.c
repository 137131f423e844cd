// SPDX-License-Identifier: GPL-2.0
/* func_info and line_info: a program calling a global subprogram (which the verifier
 * checks on its own, from its BTF prototype) and a sibling the verifier refuses, so
 * that its log (with source lines from line_info) can be checked. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u64 result;

__noinline int global_double(int x)
{
	return x * 2;
}

SEC("syscall")
int good_lines(void *ctx)
{
	result = global_double(21);
	return 0;
}

SEC("syscall")
int bad_lines(void *ctx)
{
	__u64 *p = (__u64 *)(long)result;	/* a scalar used as a pointer */

	return *p == 0x5eed;
}

char LICENSE[] SEC("license") = "GPL";
