// SPDX-License-Identifier: GPL-2.0
/*
 * Test program for the MGLRU aging kfunc (kernel/patches): a BPF_PROG_TYPE_SYSCALL
 * program run with BPF_PROG_TEST_RUN by hooktest.c; the context carries the
 * arguments in and the kfunc's return value out.
 */
#include <linux/types.h>
#include <stdbool.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern int bpf_lru_gen_age_cgroup(__u64 cgroup_id, bool can_swap, bool force_scan) __ksym;

struct age_args {
	__u64 cgroup_id;
	__u32 can_swap;
	__u32 force_scan;
	__s32 ret;
	__u32 pad;
};

SEC("syscall")
int age(struct age_args *args)
{
	args->ret = bpf_lru_gen_age_cgroup(args->cgroup_id, args->can_swap, args->force_scan);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
