// SPDX-License-Identifier: GPL-2.0
/* libbpf's SEC("?...") convention: a program that is not loaded unless asked for. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("syscall")
int always(void *ctx)
{
	return 1;
}

SEC("?syscall")
int on_request(void *ctx)
{
	return 2;
}

SEC("?raw_tp/sys_enter")
int on_request_tp(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
