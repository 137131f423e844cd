// SPDX-License-Identifier: GPL-2.0
/* Maps with initial values (.rel.maps): a program array whose slot 1 holds a program
 * and an array of maps whose slots 0 and 2 hold two inner maps. Running `dispatch`
 * tail-calls slot 1, which reads through the outer map: it returns 100 + the value
 * stored under key 0 of inner map `second` (slot 2). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct inner_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} first SEC(".maps"), second SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner_map);
} outer SEC(".maps") = {
	.values = { [0] = &first, [2] = &second },
};

int target(void *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 3);
	__uint(key_size, sizeof(__u32));
	__array(values, int (void *));
} jumps SEC(".maps") = {
	.values = { [1] = (void *)&target },
};

SEC("tc")
int target(void *ctx)
{
	__u32 slot = 2, key = 0;
	__u32 *value;
	void *inner;

	inner = bpf_map_lookup_elem(&outer, &slot);
	if (!inner)
		return 1;
	value = bpf_map_lookup_elem(inner, &key);
	return value ? 100 + *value : 2;
}

SEC("tc")
int dispatch(void *ctx)
{
	bpf_tail_call(ctx, &jumps, 1);
	return 3;
}

char LICENSE[] SEC("license") = "GPL";
