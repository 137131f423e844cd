// SPDX-License-Identifier: GPL-2.0
/* The legacy "maps" section of struct bpf_map_def (before BTF-defined maps). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct legacy_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct legacy_map_def legacy_hash SEC("maps") = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 32,
	.map_flags = BPF_F_NO_PREALLOC,
};

struct legacy_map_def legacy_array SEC("maps") = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = 16,
	.max_entries = 2,
};

SEC("syscall")
int use_legacy(void *ctx)
{
	__u32 key = 7;
	__u64 val = 77;

	bpf_map_update_elem(&legacy_hash, &key, &val, BPF_ANY);
	key = 1;
	bpf_map_lookup_elem(&legacy_array, &key);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
