// SPDX-License-Identifier: GPL-2.0
/* Every relocation kind the reader and linker handle: calls to static and global
 * functions in .text and in another code section, a static call inside one section,
 * a callback's address (bpf_loop), map and global-variable references. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} out SEC(".maps");

__u64 total;
static __u64 static_total;

static __attribute__((noinline)) __u64 text_static(__u64 x)
{
	static_total += x;
	return x + 1;
}

__attribute__((noinline)) __u64 text_global(__u64 x)
{
	return text_static(x) * 2;
}

/* A global subprogram in a code section of its own. */
__attribute__((noinline, section(".text.extra"))) __u64 extra_global(__u64 x)
{
	return x + 100;
}

static int loop_body(__u32 index, void *ctx)
{
	total += index;
	return 0;
}

SEC("syscall")
int run_relocs(void *ctx)
{
	__u32 key = 0;
	__u64 v;

	v = text_global(3);		/* (3 + 1) * 2 = 8 */
	v += extra_global(1);		/* 101 */
	bpf_loop(4, loop_body, NULL, 0);	/* total += 0 + 1 + 2 + 3 */
	bpf_map_update_elem(&out, &key, &v, BPF_ANY);
	key = 1;
	v = static_total;
	bpf_map_update_elem(&out, &key, &v, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
