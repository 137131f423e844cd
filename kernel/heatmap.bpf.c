// SPDX-License-Identifier: GPL-2.0
/*
 * heatmap: per-region counts of the pages the multi-gen LRU finds young in a
 * set of processes (the targets), fed by the lru_gen_young_tp tracepoint of
 * kernel/patches.
 *
 * Every interval user space runs the syscall program "scan" once per target
 * (identified by a slot number it chooses): it asks the kernel to harvest the
 * accessed bits of the target's page tables without aging
 * (bpf_lru_gen_scan_task(), which also flushes the target's TLB) and files the
 * target's mm under its slot. The tracepoint reports runs of contiguous young
 * pages of every mm the kernel harvests, by those scans, by reclaim's own aging
 * and by eviction; we keep the targets' and add their pages to a hash map keyed
 * by (address >> region_shift, node, slot), split anon/file. User space drains
 * the map after every round of scans.
 *
 * Built with Debian 12's clang 14 and libbpf-dev 1.1 headers (make bpf); the
 * object is committed so users need no compiler.
 */
#include <linux/bpf.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct mm_struct;

struct task_struct {
	struct mm_struct *mm;
} __attribute__((preserve_access_index));

struct region_key {
	__u64 region;	/* virtual address >> region_shift */
	__u32 node;
	__u32 slot;	/* the target's */
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

/* the targets' mms -> their slots: found by the tracepoint, filed by "scan" */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u32);
} target_slots SEC(".maps");

/* slot -> the mm filed for it: an exec replaces it, user space unfiles a target */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} slot_mms SEC(".maps");

/*
 * Set before load; region_shift >= page_shift (user space checks). target_tgid
 * is slot 0's process, scanned when a scan names no tgid.
 */
const volatile __s32 target_tgid;
const volatile __u32 region_shift = 21;
const volatile __u32 page_shift = 12;

/* read by user space: young pages not counted because the map was full */
__u64 dropped_pages;

/* enum lru_gen_young_flags and enum bpf_lru_gen_scan_flags of the kernel */
#define LRU_GEN_YOUNG_ANON		1
#define BPF_LRU_GEN_SCAN_FLUSH_TLB	1

static __always_inline void add(__u64 region, int node, __u32 slot, __u64 pages,
				_Bool anon)
{
	struct region_key key = { .region = region, .node = node, .slot = slot };
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

/* a run split at region boundaries, one region per bpf_loop() step */
struct run {
	__u64 start, end;	/* bytes */
	int node;
	__u32 slot;
	_Bool anon;
};

static long add_region(__u64 i, struct run *run)
{
	__u64 region = (run->start >> region_shift) + i;
	__u64 lo = region << region_shift, hi = (region + 1) << region_shift;

	if (lo < run->start)
		lo = run->start;
	if (hi > run->end)
		hi = run->end;
	if (lo < hi)
		add(region, run->node, run->slot, (hi - lo) >> page_shift, run->anon);
	return 0;
}

SEC("tp_btf/lru_gen_young_tp")
int BPF_PROG(young, struct mm_struct *mm, int nid, unsigned long addr,
	     unsigned long nr_pages, unsigned int flags)
{
	__u64 key = (__u64)mm, first, last;
	struct run run;
	__u32 *slot;

	slot = bpf_map_lookup_elem(&target_slots, &key);
	if (!slot || !nr_pages)
		return 0;

	run.slot = *slot;
	run.start = addr;
	run.end = addr + (nr_pages << page_shift);
	run.node = nid;
	run.anon = flags & LRU_GEN_YOUNG_ANON;
	first = run.start >> region_shift;
	last = (run.end - 1) >> region_shift;
	if (first == last)	/* the usual case: a run in one region */
		add(first, nid, run.slot, nr_pages, run.anon);
	else
		bpf_loop(last - first + 1, add_region, &run, 0);
	return 0;
}

extern struct task_struct *bpf_task_from_pid(__s32 pid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern int bpf_lru_gen_scan_task(struct task_struct *task, __u64 flags) __ksym;

struct scan_args {
	__s32 ret;	/* out: 0, or -errno (-ESRCH: the target is gone) */
	__u32 slot;	/* in: the target's slot */
	__s32 tgid;	/* in: the target, 0 for target_tgid, -1: unfile the slot */
	__u32 pad;
};

/* file the target's mm under its slot (a new one after an exec) */
static __always_inline void file_mm(__u32 slot, __u64 mm)
{
	__u64 *filed = bpf_map_lookup_elem(&slot_mms, &slot);

	if (!filed || *filed == mm)
		return;
	if (*filed)
		bpf_map_delete_elem(&target_slots, filed);
	*filed = mm;
	if (mm)
		bpf_map_update_elem(&target_slots, &mm, &slot, BPF_ANY);
}

/*
 * Harvest a target's accessed bits: the tracepoint reports what was young.
 * The TLB flush makes a page the target keeps accessing through a cached
 * translation set its accessed bit again, so the next scan sees it.
 */
SEC("syscall")
int scan(struct scan_args *args)
{
	__u32 slot = args->slot;
	struct task_struct *task;

	task = bpf_task_from_pid(args->tgid ? args->tgid : target_tgid);
	if (!task) {
		file_mm(slot, 0);
		args->ret = -ESRCH;
		return 0;
	}
	file_mm(slot, (__u64)task->mm);
	args->ret = bpf_lru_gen_scan_task(task, BPF_LRU_GEN_SCAN_FLUSH_TLB);
	bpf_task_release(task);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
