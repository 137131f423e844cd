// SPDX-License-Identifier: GPL-2.0
/*
 * heatmap: per-region counts of the pages the multi-gen LRU finds young in one
 * process, fed by the hook points of kernel/patches/.
 *
 * The walk calls the young hooks with runs of contiguous pages it just found
 * accessed; we keep the target process only and add the pages to a hash map keyed
 * by (address >> region_shift, node), split anon/file. User space drains the map
 * after every aging pass. The fmod_ret programs restrict the aging walk to the
 * target's mm and flush its TLB after the walk, and the syscall program runs the
 * aging through the kfunc.
 *
 * Built with Debian 12's clang 14 and libbpf-dev 1.1 headers (make bpf); the
 * object is committed so users need no compiler.
 */
#include <linux/bpf.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct mm_struct;

struct region_key {
	__u64 region;	/* virtual address >> region_shift */
	__u32 node;
	__u32 pad;
};

struct region_val {
	__u64 anon;	/* young pages found, anonymous */
	__u64 file;	/* young pages found, file-backed (page cache, shmem) */
};

/* max_entries is set from user space to what the target's mappings need */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct region_key);
	__type(value, struct region_val);
} counts SEC(".maps");

/* set before load */
const volatile __s32 target_tgid;
const volatile __u32 region_shift = 21;

/* read by user space */
__u64 dropped_pages;	/* young pages not counted because the map was full */
__u64 young_runs;	/* hook calls for the target */
__u64 skipped_mms;	/* other processes' mms the aging walk was told to skip */

/* A run never crosses a PMD (512 pages on x86-64), so neither does this loop. */
#define MAX_RUN_PAGES 512

static __always_inline void add(__u64 region, int node, __u64 pages, _Bool anon)
{
	struct region_key key = { .region = region, .node = node };
	struct region_val *val, init = {};
	long err;

	val = bpf_map_lookup_elem(&counts, &key);
	if (!val) {
		if (anon)
			init.anon = pages;
		else
			init.file = pages;
		err = bpf_map_update_elem(&counts, &key, &init, BPF_NOEXIST);
		if (!err)
			return;
		if (err != -EEXIST) {	/* -E2BIG: full; count the loss */
			__sync_fetch_and_add(&dropped_pages, pages);
			return;
		}
		val = bpf_map_lookup_elem(&counts, &key);	/* lost a race */
		if (!val) {
			__sync_fetch_and_add(&dropped_pages, pages);
			return;
		}
	}
	if (anon)
		__sync_fetch_and_add(&val->anon, pages);
	else
		__sync_fetch_and_add(&val->file, pages);
}

static __always_inline int young(__s32 tgid, int nid, __u64 addr, __u64 nr_pages,
				 _Bool anon)
{
	__u32 shift = region_shift;
	__u64 region, end, span;
	int i;

	if (tgid != target_tgid || !nr_pages)
		return 0;
	__sync_fetch_and_add(&young_runs, 1);

	if (shift >= 21) {	/* regions of 2 MiB or more: a run is in one region */
		add(addr >> shift, nid, nr_pages, anon);
		return 0;
	}
	/* smaller regions: split the run at region boundaries */
	for (i = 0; i < MAX_RUN_PAGES && nr_pages; i++) {
		region = addr >> shift;
		end = (region + 1) << shift;
		span = (end - addr) >> 12;
		if (span > nr_pages)
			span = nr_pages;
		add(region, nid, span, anon);
		addr += span << 12;
		nr_pages -= span;
	}
	return 0;
}

SEC("fentry/lru_gen_bpf_young_pte")
int BPF_PROG(young_pte, struct mm_struct *mm, __s32 tgid, int nid, unsigned long addr,
	     unsigned long nr_pages, _Bool anon)
{
	return young(tgid, nid, addr, nr_pages, anon);
}

SEC("fentry/lru_gen_bpf_young_pmd")
int BPF_PROG(young_pmd, struct mm_struct *mm, __s32 tgid, int nid, unsigned long addr,
	     unsigned long nr_pages, _Bool anon)
{
	return young(tgid, nid, addr, nr_pages, anon);
}

SEC("fentry/lru_gen_bpf_young_look_around")
int BPF_PROG(young_look_around, struct mm_struct *mm, __s32 tgid, int nid,
	     unsigned long addr, unsigned long nr_pages, _Bool anon)
{
	return young(tgid, nid, addr, nr_pages, anon);
}

/* Walk only the target's page tables: a non-zero return skips the mm. */
SEC("fmod_ret/lru_gen_bpf_skip_mm")
int BPF_PROG(skip_mm, struct mm_struct *mm, __s32 tgid, int ret)
{
	if (tgid == target_tgid)
		return 0;
	__sync_fetch_and_add(&skipped_mms, 1);
	return 1;
}

/*
 * Ask for a TLB flush of the target's mm after each walk: the walk clears accessed
 * bits without one, and a CPU that keeps the translation cached would go on using
 * the page without setting the bit again, so the next aging would call it cold.
 */
SEC("fmod_ret/lru_gen_bpf_flush_tlb")
int BPF_PROG(flush_tlb, struct mm_struct *mm, __s32 tgid, int ret)
{
	return tgid == target_tgid;
}

extern int bpf_lru_gen_age_cgroup(__u64 cgroup_id, _Bool can_swap, _Bool force_scan)
	__ksym __weak;

struct age_args {
	__u64 cgroup_id;	/* in: cgroup v2 id of the target's memcg, 0 for the root */
	__s32 ret;		/* out: nodes aged, or -errno */
	__u32 pad;
};

/*
 * Run one aging pass over the target's memcg on every node. can_swap: anon pages
 * must be aged even without swap, or the walk would skip them; force_scan: walk
 * every page table and keep aging when all generations are in use. User space
 * loads this program only when the kernel has the kfunc (else it writes to
 * /sys/kernel/debug/lru_gen instead).
 */
SEC("syscall")
int age(struct age_args *args)
{
	args->ret = bpf_lru_gen_age_cgroup(args->cgroup_id, 1, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
