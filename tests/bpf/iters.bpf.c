// SPDX-License-Identifier: GPL-2.0
/* Iterators: `tasks_of` writes "tid comm" for each thread of process target_tgid;
 * `numbers_dump` walks the array map it is attached to and writes "key value". */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

const volatile __u32 target_tgid;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} numbers SEC(".maps");

SEC("iter/task")
int tasks_of(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;

	if (!task || task->tgid != target_tgid)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%d %s\n", task->pid, task->comm);
	return 0;
}

SEC("iter/bpf_map_elem")
int numbers_dump(struct bpf_iter__bpf_map_elem *ctx)
{
	__u32 *key = ctx->key;
	__u64 *value = ctx->value;

	if (!key || !value)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%u %llu\n", *key, *value);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
