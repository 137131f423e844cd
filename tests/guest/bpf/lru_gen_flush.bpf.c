// SPDX-License-Identifier: GPL-2.0
/*
 * Test program for the MGLRU TLB flush hook (kernel/patches): an fmod_ret program
 * on lru_gen_bpf_flush_tlb that asks for a TLB flush of one process's mm after
 * each walk of it, and counts the calls. Loaded by hooktest.c in the guest tests,
 * next to lru_gen_hooks.bpf.o.
 */
#include <linux/types.h>
#include <stdbool.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct mm_struct;

enum {
	STAT_FLUSH_CALLS,	/* lru_gen_bpf_flush_tlb calls, any mm */
	STAT_FLUSH_TARGET,	/* ... for the target's mm, i.e. flushes asked for */
	NR_STATS,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NR_STATS);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* target[0]: the tgid whose TLB is flushed after each walk of its mm; 0: none */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} target SEC(".maps");

static void stat_add(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("fmod_ret/lru_gen_bpf_flush_tlb")
int BPF_PROG(flush_tlb, struct mm_struct *mm, int tgid, int ret)
{
	__u32 zero = 0, *want = bpf_map_lookup_elem(&target, &zero);

	stat_add(STAT_FLUSH_CALLS);
	if (want && *want && *want == (__u32)tgid) {
		stat_add(STAT_FLUSH_TARGET);
		return 1;
	}
	return ret;
}

char LICENSE[] SEC("license") = "GPL";
