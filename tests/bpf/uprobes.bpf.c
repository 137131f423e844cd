// SPDX-License-Identifier: GPL-2.0
/* Programs for tests/targets/probed.c: uprobe and uretprobe on probed_add(a, b), a
 * uprobe-multi on probed_* functions, and a USDT program on bpfload_test:tick(i, -i,
 * 5 * i). Built twice by the tests: as it is (bare sections, attached from Python
 * with a path), and with -DPROBED=\"PATH\", which names the binary in the sections
 * so that attaching needs nothing more (libbpf's auto-attach forms). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

#ifdef PROBED
#define UPROBE_SEC "uprobe/" PROBED ":probed_add"
#define URETPROBE_SEC "uretprobe/" PROBED ":probed_add"
#define UPROBE_MULTI_SEC "uprobe.multi/" PROBED ":probed_*"
#define USDT_SEC "usdt/" PROBED ":bpfload_test:tick"
#else
#define UPROBE_SEC "uprobe"
#define URETPROBE_SEC "uretprobe"
#define UPROBE_MULTI_SEC "uprobe.multi"
#define USDT_SEC "usdt"
#endif

__u64 uprobe_hits, uprobe_arg_sum;
__u64 uretprobe_hits, uretprobe_ret_sum;
__u64 multi_hits;
__u64 usdt_hits, usdt_cookie;
__s64 usdt_sum_i, usdt_sum_neg, usdt_sum_stacked;

SEC(UPROBE_SEC)
int BPF_KPROBE(on_add, long a, long b)	/* libbpf 1.1 has no BPF_UPROBE */
{
	__sync_fetch_and_add(&uprobe_hits, 1);
	__sync_fetch_and_add(&uprobe_arg_sum, a + b);
	return 0;
}

SEC(URETPROBE_SEC)
int BPF_KRETPROBE(on_add_return, long ret)
{
	__sync_fetch_and_add(&uretprobe_hits, 1);
	__sync_fetch_and_add(&uretprobe_ret_sum, ret);
	return 0;
}

SEC(UPROBE_MULTI_SEC)
int on_probed_multi(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&multi_hits, 1);
	return 0;
}

SEC(USDT_SEC)
int BPF_USDT(on_tick, long i, int neg, long stacked)
{
	__sync_fetch_and_add(&usdt_hits, 1);
	__sync_fetch_and_add(&usdt_sum_i, i);
	__sync_fetch_and_add(&usdt_sum_neg, neg);
	__sync_fetch_and_add(&usdt_sum_stacked, stacked);
	usdt_cookie = bpf_usdt_cookie(ctx);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
