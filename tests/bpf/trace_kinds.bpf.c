// SPDX-License-Identifier: GPL-2.0
/* fentry/fexit/kprobe/kretprobe counters on nanosleep(2) (hrtimer_nanosleep), filtered by the test's tgid,
 * each with the time it last ran: entry kinds before the sleep, exit kinds after it.
 * The host kernel refuses these attach kinds; the guest tests run them. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

const volatile __u32 target_tgid;

__u64 fentry_hits;
__u64 fexit_hits;
__u64 kprobe_hits;
__u64 kretprobe_hits;
__u64 fentry_ns, fexit_ns, kprobe_ns, kretprobe_ns;

static __always_inline int mine(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == target_tgid;
}

SEC("fentry/hrtimer_nanosleep")
int BPF_PROG(count_fentry)
{
	if (mine()) {
		__sync_fetch_and_add(&fentry_hits, 1);
		fentry_ns = bpf_ktime_get_ns();
	}
	return 0;
}

SEC("fexit/hrtimer_nanosleep")
int BPF_PROG(count_fexit)
{
	if (mine()) {
		__sync_fetch_and_add(&fexit_hits, 1);
		fexit_ns = bpf_ktime_get_ns();
	}
	return 0;
}

SEC("kprobe/hrtimer_nanosleep")
int count_kprobe(void *ctx)
{
	if (mine()) {
		__sync_fetch_and_add(&kprobe_hits, 1);
		kprobe_ns = bpf_ktime_get_ns();
	}
	return 0;
}

SEC("kretprobe/hrtimer_nanosleep")
int count_kretprobe(void *ctx)
{
	if (mine()) {
		__sync_fetch_and_add(&kretprobe_hits, 1);
		kretprobe_ns = bpf_ktime_get_ns();
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
