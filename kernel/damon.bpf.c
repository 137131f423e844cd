// SPDX-License-Identifier: GPL-2.0
/*
 * heatmap --source damon: DAMON's monitoring results as they are aggregated.
 *
 * The damon:damon_aggregated tracepoint fires once per region of every target at
 * the end of each aggregation interval, target by target (target_id is the
 * target's index in the kdamond's list), each target's regions in address order.
 * We keep those of heatmap's own kdamond (its thread id, set by user space once it
 * runs) and store each region under (aggregation number, target, start) in a hash
 * map that user space drains every interval; a target's part of an aggregation is
 * complete when it holds that target's nr_regions entries, so a drain that races
 * with the kdamond never counts half of one.
 *
 * Built with Debian 12's clang 14 and libbpf-dev 1.1 headers (make bpf); the
 * object is committed so users need no compiler.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* events/damon/damon_aggregated/format (heatmap.py checks the offsets) */
struct damon_aggregated {
	__u64 common;		/* type, flags, preempt count, pid */
	__u64 target_id;
	__u32 nr_regions;
	__u32 pad;
	__u64 start;
	__u64 end;
	__u32 nr_accesses;
	__u32 age;
};

struct region_key {
	__u64 aggregation;	/* 1, 2, ... since the program was loaded */
	__u32 target;		/* the target's index in the kdamond's list */
	__u32 pad;
	__u64 start;
};

struct region_val {
	__u64 end;
	__u32 nr_accesses;	/* samples that found the region accessed */
	__u32 nr_regions;	/* the target's regions in this aggregation */
};

/* max_entries is set from user space: regions x aggregations per interval, twice */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct region_key);
	__type(value, struct region_val);
} regions SEC(".maps");

/* set by user space once its kdamond runs */
__u32 kdamond_pid;

/* read by user space */
__u64 aggregations;
__u64 dropped_regions;	/* not stored because the map was full */

/* the kdamond's own state, only ever touched by its single thread */
__u64 last_target;
__u64 last_start;

SEC("tracepoint/damon/damon_aggregated")
int aggregated(struct damon_aggregated *ctx)
{
	struct region_key key;
	struct region_val val;
	__u32 pid = kdamond_pid;

	if (!pid || (__u32)bpf_get_current_pid_tgid() != pid)
		return 0;
	/* regions come in (target, address) order: one not after the last one begins
	 * the next aggregation */
	if (!aggregations || ctx->target_id < last_target ||
	    (ctx->target_id == last_target && ctx->start <= last_start))
		aggregations++;
	last_target = ctx->target_id;
	last_start = ctx->start;
	key.aggregation = aggregations;
	key.target = ctx->target_id;
	key.pad = 0;
	key.start = ctx->start;
	val.end = ctx->end;
	val.nr_accesses = ctx->nr_accesses;
	val.nr_regions = ctx->nr_regions;
	if (bpf_map_update_elem(&regions, &key, &val, BPF_NOEXIST))
		__sync_fetch_and_add(&dropped_regions, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
