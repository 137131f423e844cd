// SPDX-License-Identifier: GPL-2.0
/* One map of every type the kernel has, declared the way libbpf takes them. Ring
 * buffers are sized in bytes that are not a power-of-two number of pages (libbpf
 * rounds them up), the perf event array has no size (one slot per CPU). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define MAP(name, kind, ...) struct { __uint(type, kind); __VA_ARGS__ } name SEC(".maps")
#define KV(k, v) __type(key, k); __type(value, v)

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	KV(__u32, __u32);
};

struct lpm_key {
	__u32 prefixlen;
	__u32 addr;
};

MAP(m_hash, BPF_MAP_TYPE_HASH, __uint(max_entries, 8); KV(__u32, __u64););
MAP(m_array, BPF_MAP_TYPE_ARRAY, __uint(max_entries, 8); KV(__u32, __u64););
MAP(m_prog_array, BPF_MAP_TYPE_PROG_ARRAY, __uint(max_entries, 8); KV(__u32, __u32););
MAP(m_perf_event_array, BPF_MAP_TYPE_PERF_EVENT_ARRAY, KV(__u32, __u32););
MAP(m_percpu_hash, BPF_MAP_TYPE_PERCPU_HASH, __uint(max_entries, 8); KV(__u32, __u64););
MAP(m_percpu_array, BPF_MAP_TYPE_PERCPU_ARRAY, __uint(max_entries, 8); KV(__u32, __u64););
MAP(m_stack_trace, BPF_MAP_TYPE_STACK_TRACE, __uint(max_entries, 8); __uint(key_size, 4);
    __uint(value_size, 8 * 127););
MAP(m_cgroup_array, BPF_MAP_TYPE_CGROUP_ARRAY, __uint(max_entries, 8); KV(__u32, __u32););
MAP(m_lru_hash, BPF_MAP_TYPE_LRU_HASH, __uint(max_entries, 8); KV(__u32, __u64););
MAP(m_lru_percpu_hash, BPF_MAP_TYPE_LRU_PERCPU_HASH, __uint(max_entries, 8);
    KV(__u32, __u64););
MAP(m_lpm_trie, BPF_MAP_TYPE_LPM_TRIE, __uint(max_entries, 8);
    __uint(map_flags, BPF_F_NO_PREALLOC); KV(struct lpm_key, __u32););
MAP(m_array_of_maps, BPF_MAP_TYPE_ARRAY_OF_MAPS, __uint(max_entries, 8); __type(key, __u32);
    __array(values, struct inner););
MAP(m_hash_of_maps, BPF_MAP_TYPE_HASH_OF_MAPS, __uint(max_entries, 8); __type(key, __u32);
    __array(values, struct inner););
MAP(m_devmap, BPF_MAP_TYPE_DEVMAP, __uint(max_entries, 8); KV(__u32, __u32););
MAP(m_sockmap, BPF_MAP_TYPE_SOCKMAP, __uint(max_entries, 8); KV(__u32, __u32););
MAP(m_cpumap, BPF_MAP_TYPE_CPUMAP, __uint(max_entries, 2); KV(__u32, __u32););
MAP(m_xskmap, BPF_MAP_TYPE_XSKMAP, __uint(max_entries, 8); KV(__u32, __u32););
MAP(m_sockhash, BPF_MAP_TYPE_SOCKHASH, __uint(max_entries, 8); KV(__u32, __u32););
MAP(m_cgroup_storage, BPF_MAP_TYPE_CGROUP_STORAGE,
    KV(struct bpf_cgroup_storage_key, __u64););
MAP(m_reuseport_sockarray, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY, __uint(max_entries, 8);
    KV(__u32, __u64););
MAP(m_percpu_cgroup_storage, BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE,
    KV(struct bpf_cgroup_storage_key, __u64););
MAP(m_queue, BPF_MAP_TYPE_QUEUE, __uint(max_entries, 8); __type(value, __u64););
MAP(m_stack, BPF_MAP_TYPE_STACK, __uint(max_entries, 8); __type(value, __u64););
MAP(m_sk_storage, BPF_MAP_TYPE_SK_STORAGE, __uint(map_flags, BPF_F_NO_PREALLOC);
    KV(int, __u64););
MAP(m_devmap_hash, BPF_MAP_TYPE_DEVMAP_HASH, __uint(max_entries, 8); KV(__u32, __u32););
MAP(m_ringbuf, BPF_MAP_TYPE_RINGBUF, __uint(max_entries, 5000););
MAP(m_inode_storage, BPF_MAP_TYPE_INODE_STORAGE, __uint(map_flags, BPF_F_NO_PREALLOC);
    KV(int, __u64););
MAP(m_task_storage, BPF_MAP_TYPE_TASK_STORAGE, __uint(map_flags, BPF_F_NO_PREALLOC);
    KV(int, __u64););
MAP(m_bloom_filter, BPF_MAP_TYPE_BLOOM_FILTER, __uint(max_entries, 8); __type(value, __u32);
    __uint(map_extra, 3););
MAP(m_user_ringbuf, BPF_MAP_TYPE_USER_RINGBUF, __uint(max_entries, 20000););
MAP(m_cgrp_storage, BPF_MAP_TYPE_CGRP_STORAGE, __uint(map_flags, BPF_F_NO_PREALLOC);
    KV(int, __u64););
MAP(m_arena, BPF_MAP_TYPE_ARENA, __uint(max_entries, 4); __uint(map_flags, BPF_F_MMAPABLE););

SEC("syscall")
int touch(void *ctx)
{
	__u32 key = 0;

	return bpf_map_lookup_elem(&m_array, &key) ? 0 : 1;
}

char LICENSE[] SEC("license") = "GPL";
