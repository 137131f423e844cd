// SPDX-License-Identifier: GPL-2.0
/* Counters for the attach tests: each program counts getppid() calls made by the
 * test process (target_tgid, set from Python) through a different kind of hook. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define NR_getppid 110	/* x86_64 */

const volatile __u32 target_tgid;

__u64 raw_tp_hits;
__u64 tp_btf_hits;
__u64 tracepoint_hits;

static __always_inline int is_target(long id)
{
	return id == NR_getppid && (bpf_get_current_pid_tgid() >> 32) == target_tgid;
}

SEC("raw_tp/sys_enter")
int count_raw_tp(struct bpf_raw_tracepoint_args *ctx)
{
	if (is_target(ctx->args[1]))
		__sync_fetch_and_add(&raw_tp_hits, 1);
	return 0;
}

struct pt_regs;

SEC("tp_btf/sys_enter")
int BPF_PROG(count_tp_btf, struct pt_regs *regs, long id)
{
	if (is_target(id))
		__sync_fetch_and_add(&tp_btf_hits, 1);
	return 0;
}

/* The raw_syscalls/sys_enter record: common header, then id. */
struct sys_enter_record {
	__u64 common;
	long id;
	unsigned long args[6];
};

SEC("tracepoint/raw_syscalls/sys_enter")
int count_tracepoint(struct sys_enter_record *ctx)
{
	if (is_target(ctx->id))
		__sync_fetch_and_add(&tracepoint_hits, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
