// SPDX-License-Identifier: GPL-2.0
/*
 * Test program for the MGLRU BPF hooks (kernel/patches): counts the young pages
 * each access hook reports per (tgid, hook, 2 MiB region), checks the run
 * invariants, and optionally restricts the walk to one tgid with the fmod_ret
 * hook. Loaded by hooktest.c (libbpf) in the guest tests.
 */
#include <linux/types.h>
#include <stdbool.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct mm_struct;

enum { HOOK_PTE, HOOK_PMD, HOOK_LOOK_AROUND };

enum {
	STAT_SKIP_CALLS,	/* lru_gen_bpf_skip_mm calls */
	STAT_SKIPPED,		/* ... that returned nonzero */
	STAT_MAX_RUN,		/* largest nr_pages in one PTE/look-around call */
	STAT_BAD_CALLS,		/* calls breaking the documented invariants */
	NR_STATS,
};

struct key {
	__u32 tgid;
	__u32 hook;
	__u64 region;		/* addr >> 21 */
};

struct val {
	__u64 pages;		/* sum of nr_pages */
	__u64 calls;
	__u64 anon_pages;
	__u64 nid_mask;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct key);
	__type(value, struct val);
} young SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NR_STATS);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* target[0]: the only tgid whose mm is walked; 0 walks everything */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} target SEC(".maps");

static void stat_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		__sync_fetch_and_add(v, n);
}

static void stat_max(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v && *v < n)
		*v = n;
}

static __always_inline void record(__u32 hook, int tgid, int nid, unsigned long addr,
		   unsigned long nr_pages, bool anon)
{
	struct key k = { .tgid = tgid, .hook = hook, .region = addr >> 21 };
	struct val zero = {}, *v;

	/* runs never cross a PTE table, i.e. a 2 MiB region */
	if (!nr_pages || (addr & 0xfff) || nr_pages > 512 ||
	    ((addr + nr_pages * 4096 - 1) >> 21) != (addr >> 21) || nid < 0 || nid > 63)
		stat_add(STAT_BAD_CALLS, 1);
	if (hook != HOOK_PMD)
		stat_max(STAT_MAX_RUN, nr_pages);

	v = bpf_map_lookup_elem(&young, &k);
	if (!v) {
		bpf_map_update_elem(&young, &k, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&young, &k);
		if (!v)
			return;
	}
	__sync_fetch_and_add(&v->pages, nr_pages);
	__sync_fetch_and_add(&v->calls, 1);
	if (anon)
		__sync_fetch_and_add(&v->anon_pages, nr_pages);
	v->nid_mask |= 1ULL << (nid & 63);
}

SEC("fentry/lru_gen_bpf_young_pte")
int BPF_PROG(young_pte, struct mm_struct *mm, int tgid, int nid, unsigned long addr,
	     unsigned long nr_pages, bool anon)
{
	record(HOOK_PTE, tgid, nid, addr, nr_pages, anon);
	return 0;
}

SEC("fentry/lru_gen_bpf_young_pmd")
int BPF_PROG(young_pmd, struct mm_struct *mm, int tgid, int nid, unsigned long addr,
	     unsigned long nr_pages, bool anon)
{
	record(HOOK_PMD, tgid, nid, addr, nr_pages, anon);
	return 0;
}

SEC("fentry/lru_gen_bpf_young_look_around")
int BPF_PROG(young_look_around, struct mm_struct *mm, int tgid, int nid,
	     unsigned long addr, unsigned long nr_pages, bool anon)
{
	record(HOOK_LOOK_AROUND, tgid, nid, addr, nr_pages, anon);
	return 0;
}

SEC("fmod_ret/lru_gen_bpf_skip_mm")
int BPF_PROG(skip_mm, struct mm_struct *mm, int tgid, int ret)
{
	__u32 zero = 0, *want = bpf_map_lookup_elem(&target, &zero);

	stat_add(STAT_SKIP_CALLS, 1);
	if (want && *want && *want != (__u32)tgid) {
		stat_add(STAT_SKIPPED, 1);
		return 1;
	}
	return ret;
}

char LICENSE[] SEC("license") = "GPL";
