// SPDX-License-Identifier: GPL-2.0
/* A map pinned by name (LIBBPF_PIN_BY_NAME) beside one that is not: each run of
 * `count` adds one to the pinned counter, which outlives the object and is found
 * again by the next load. `rejected` (loaded only on request) fails verification. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bpfload_test_pinned SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} not_pinned SEC(".maps");

SEC("syscall")
int count(void *ctx)
{
	__u32 key = 0;
	__u64 *n = bpf_map_lookup_elem(&bpfload_test_pinned, &key);
	__u64 *m = bpf_map_lookup_elem(&not_pinned, &key);

	if (n)
		__sync_fetch_and_add(n, 1);
	if (m)
		__sync_fetch_and_add(m, 1);
	return n ? *n : -1;
}

SEC("?syscall")
int rejected(void *ctx)
{
	return *(volatile int *)0;
}

char LICENSE[] SEC("license") = "GPL";
