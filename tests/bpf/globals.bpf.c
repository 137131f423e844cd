// SPDX-License-Identifier: GPL-2.0
/* Global data, subprograms and maps, run as a syscall program. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} results SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 8);
	__uint(map_flags, 0);
} counters SEC(".maps");

/* .rodata: set from Python before load. */
const volatile __u64 multiplier = 3;
const volatile __u32 rodata_array[4] = { 1, 2, 3, 4 };
/* .data */
__u64 data_in = 7;
__u32 data_small = 0x11;
/* .bss */
__u64 bss_out;
__u64 bss_calls;
/* custom sections */
__u64 custom_value SEC(".data.custom") = 42;
const volatile __u32 config_flag SEC(".rodata.config") = 5;
static __u64 hidden_counter;

static __attribute__((noinline)) __u64 square(__u64 x)
{
	hidden_counter++;
	return x * x;
}

__attribute__((noinline)) int global_add(int a, int b)
{
	return a + b + (int)bss_calls;
}

struct args {
	__u64 in;
	__u64 out;
};

SEC("syscall")
int run_globals(struct args *ctx)
{
	__u32 key = 1;
	__u64 val;

	bss_calls++;
	val = square(data_in) * multiplier + rodata_array[2];
	bss_out = val;
	data_in = data_in + 1;
	custom_value += config_flag;
	val = val + global_add((int)ctx->in, 1);
	ctx->out = val;
	bpf_map_update_elem(&results, &key, &val, BPF_ANY);
	key = 2;
	val = hidden_counter;
	bpf_map_update_elem(&results, &key, &val, BPF_ANY);
	return 0;
}

/* .rodata is read-only for programs: this one tries to write it and must be rejected
 * only if the loader really made .rodata BPF_F_RDONLY_PROG. */
SEC("syscall")
int write_rodata(void *ctx)
{
	*(volatile __u64 *)&multiplier = 100;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
