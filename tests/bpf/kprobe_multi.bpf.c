// SPDX-License-Identifier: GPL-2.0
/* kprobe.multi, kretprobe.multi, kprobe.session and ksyscall programs counting the
 * test process's (target_tgid) nanosleeps: the multi-link kinds on hrtimer_nanosleep
 * (named by a glob for kprobe.multi, which must resolve to that one function), the
 * ksyscall one on clock_nanosleep(2). Run in the guest: the host has no kprobes. */
#include <linux/bpf.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

const volatile __u32 target_tgid;

__u64 multi_hits, multi_ret_hits, session_entries, session_returns, ksyscall_hits;

extern bool bpf_session_is_return(void) __ksym __weak;

/* The patched 6.12 guest's bpf_session_is_return() returns its bool in %al and leaves
 * the rest of %rax as it was (the C ABI allows it: seen as 0xffff8880...00 on entry,
 * ...01 on return), the JIT does not widen it, and clang takes a bool result as
 * zero-extended: only the low byte means anything. The volatile keeps clang from
 * dropping the mask. */
static __always_inline bool session_is_return(void)
{
	volatile __u64 result = bpf_session_is_return();

	return result & 0xff;
}

static __always_inline int mine(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == target_tgid;
}

SEC("kprobe.multi/hrtimer_nanoslee?")
int count_multi(struct pt_regs *ctx)
{
	if (mine())
		__sync_fetch_and_add(&multi_hits, 1);
	return 0;
}

SEC("kretprobe.multi/hrtimer_nanosleep")
int count_multi_ret(struct pt_regs *ctx)
{
	if (mine())
		__sync_fetch_and_add(&multi_ret_hits, 1);
	return 0;
}

SEC("kprobe.session/hrtimer_nanosleep")
int count_session(struct pt_regs *ctx)
{
	if (!mine())
		return 1;	/* no return probe for others */
	if (session_is_return())
		__sync_fetch_and_add(&session_returns, 1);
	else
		__sync_fetch_and_add(&session_entries, 1);
	return 0;
}

SEC("ksyscall/clock_nanosleep")
int count_ksyscall(struct pt_regs *ctx)
{
	if (mine())
		__sync_fetch_and_add(&ksyscall_hits, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
