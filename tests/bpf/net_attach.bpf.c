// SPDX-License-Identifier: GPL-2.0
/* Counters for programs that attach to an interface or a cgroup. XDP, legacy tc and
 * tcx programs count the IPv4 UDP packets to port test_port they see (and let every
 * packet pass); cgroup programs count the sockets the cgroup's tasks create and the
 * UDP packets to test_port they send (and allow both). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

const volatile __u16 test_port = 9999;

__u64 xdp_packets, tc_packets, tcx_packets, tcx_egress_packets;
__u64 sock_creates, skb_egress_packets;

/* Is the IPv4 packet at data a UDP packet to test_port? */
static __always_inline int is_test_udp(void *data, void *data_end)
{
	struct iphdr *ip = data;
	struct udphdr *udp;

	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return 0;
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end)
		return 0;
	return udp->dest == bpf_htons(test_port);
}

static __always_inline int is_test_frame(void *data, void *data_end)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	return is_test_udp(eth + 1, data_end);
}

SEC("xdp")
int count_xdp(struct xdp_md *ctx)
{
	if (is_test_frame((void *)(long)ctx->data, (void *)(long)ctx->data_end))
		__sync_fetch_and_add(&xdp_packets, 1);
	return XDP_PASS;
}

SEC("tc")
int count_tc(struct __sk_buff *skb)
{
	if (is_test_frame((void *)(long)skb->data, (void *)(long)skb->data_end))
		__sync_fetch_and_add(&tc_packets, 1);
	return -1;	/* TC_ACT_UNSPEC: the default action; for tcx, TCX_NEXT */
}

SEC("tcx/ingress")
int count_tcx(struct __sk_buff *skb)
{
	if (is_test_frame((void *)(long)skb->data, (void *)(long)skb->data_end))
		__sync_fetch_and_add(&tcx_packets, 1);
	return -1;	/* TCX_NEXT */
}

SEC("tcx/egress")
int count_tcx_egress(struct __sk_buff *skb)
{
	if (is_test_frame((void *)(long)skb->data, (void *)(long)skb->data_end))
		__sync_fetch_and_add(&tcx_egress_packets, 1);
	return -1;	/* TCX_NEXT */
}

SEC("cgroup/sock_create")
int count_sock_create(struct bpf_sock *sk)
{
	__sync_fetch_and_add(&sock_creates, 1);
	return 1;
}

SEC("cgroup_skb/egress")
int count_skb_egress(struct __sk_buff *skb)
{
	struct iphdr ip;
	struct udphdr udp;

	/* cgroup_skb sees the packet from its network header on */
	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) || ip.protocol != IPPROTO_UDP ||
	    bpf_skb_load_bytes(skb, ip.ihl * 4, &udp, sizeof(udp)))
		return 1;
	if (udp.dest == bpf_htons(test_port))
		__sync_fetch_and_add(&skb_egress_packets, 1);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
