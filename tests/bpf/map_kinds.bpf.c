// SPDX-License-Identifier: GPL-2.0
/* Maps whose value is another kernel object, declared with __array(values, ...):
 * a program array and an array of maps (value_size 4 is implied, as libbpf does). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
};

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__uint(key_size, sizeof(__u32));
	__array(values, int (void *));
} jumps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps");

SEC("socket")
int jump_from(void *ctx)
{
	bpf_tail_call(ctx, &jumps, 0);
	return 1;
}

SEC("syscall")
int read_outer(void *ctx)
{
	__u32 key = 0;
	void *inner = bpf_map_lookup_elem(&outer, &key);

	return inner ? 1 : 0;
}

char LICENSE[] SEC("license") = "GPL";
