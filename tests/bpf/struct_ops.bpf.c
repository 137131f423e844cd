// SPDX-License-Identifier: GPL-2.0
/* A TCP congestion control as struct_ops maps: `bpfload_ca` in .struct_ops and
 * `bpfload_ca_link` in .struct_ops.link share three programs; `unused_ca`, in
 * SEC("?.struct_ops"), is not created, so `only_unused` (used by it alone) is not
 * loaded. Loading registers nothing: that is attaching. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("struct_ops/ca_init")
void BPF_PROG(ca_init, struct sock *sk)
{
}

SEC("struct_ops/ca_ssthresh")
__u32 BPF_PROG(ca_ssthresh, struct sock *sk)
{
	return 2;
}

SEC("struct_ops/ca_cong_avoid")
void BPF_PROG(ca_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
}

SEC("struct_ops/ca_undo_cwnd")
__u32 BPF_PROG(ca_undo_cwnd, struct sock *sk)
{
	return 2;
}

SEC("struct_ops/only_unused")
__u32 BPF_PROG(only_unused, struct sock *sk)
{
	return 3;
}

SEC(".struct_ops")
struct tcp_congestion_ops bpfload_ca = {
	.init = (void *)ca_init,
	.ssthresh = (void *)ca_ssthresh,
	.cong_avoid = (void *)ca_cong_avoid,
	.undo_cwnd = (void *)ca_undo_cwnd,
	.flags = 0x1,	/* TCP_CONG_NON_RESTRICTED, a #define vmlinux.h lacks */
	.name = "bpfload_ca",
};

SEC(".struct_ops.link")
struct tcp_congestion_ops bpfload_ca_link = {
	.ssthresh = (void *)ca_ssthresh,
	.cong_avoid = (void *)ca_cong_avoid,
	.undo_cwnd = (void *)ca_undo_cwnd,
	.name = "bpfload_ca_link",
};

SEC("?.struct_ops")
struct tcp_congestion_ops unused_ca = {
	.ssthresh = (void *)only_unused,
	.cong_avoid = (void *)ca_cong_avoid,
	.undo_cwnd = (void *)ca_undo_cwnd,
	.name = "bpfload_unused",
};

char LICENSE[] SEC("license") = "GPL";
