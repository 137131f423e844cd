// SPDX-License-Identifier: GPL-2.0
/* Programs that send records to user space, for the ring buffer and perf buffer
 * consumers: on each getppid() of the test process (target_tgid) a raw_tp program
 * sends a 16-byte record {seq, value} to the ring buffer `records` or the perf event
 * array `samples`; `ring_discard` reserves a record per call and discards every third;
 * the syscall program `fill_ring` (BPF_PROG_TEST_RUN) sends fill_count records in one
 * run, for the drain benchmark. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define NR_getppid 110	/* x86_64 */

struct record {
	__u64 seq;
	__u64 value;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} records SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} samples SEC(".maps");

const volatile __u32 target_tgid;
__u32 fill_count;
__u64 sent;
__u64 dropped;	/* reservations the ring buffer refused (full) */

static __always_inline int is_target(struct bpf_raw_tracepoint_args *ctx)
{
	return ctx->args[1] == NR_getppid &&
	       (bpf_get_current_pid_tgid() >> 32) == target_tgid;
}

SEC("raw_tp/sys_enter")
int ring_on_getppid(struct bpf_raw_tracepoint_args *ctx)
{
	struct record r;

	if (!is_target(ctx))
		return 0;
	r.seq = __sync_fetch_and_add(&sent, 1);
	r.value = r.seq * 3;
	if (bpf_ringbuf_output(&records, &r, sizeof(r), 0))
		__sync_fetch_and_add(&dropped, 1);
	return 0;
}

SEC("raw_tp/sys_enter")
int ring_discard(struct bpf_raw_tracepoint_args *ctx)
{
	struct record *r;
	__u64 seq;

	if (!is_target(ctx))
		return 0;
	r = bpf_ringbuf_reserve(&records, sizeof(*r), 0);
	if (!r) {
		__sync_fetch_and_add(&dropped, 1);
		return 0;
	}
	seq = __sync_fetch_and_add(&sent, 1);
	r->seq = seq;
	r->value = seq * 3;
	if (seq % 3 == 2)
		bpf_ringbuf_discard(r, 0);
	else
		bpf_ringbuf_submit(r, 0);
	return 0;
}

SEC("raw_tp/sys_enter")
int perf_on_getppid(struct bpf_raw_tracepoint_args *ctx)
{
	struct record r;

	if (!is_target(ctx))
		return 0;
	r.seq = __sync_fetch_and_add(&sent, 1);
	r.value = r.seq * 3;
	bpf_perf_event_output(ctx, &samples, BPF_F_CURRENT_CPU, &r, sizeof(r));
	return 0;
}

static long fill_one(__u64 i, void *ctx)
{
	struct record r = { .seq = i, .value = i * 3 };

	/* no wakeup per record: the reader drains a full ring at once */
	if (bpf_ringbuf_output(&records, &r, sizeof(r), BPF_RB_NO_WAKEUP)) {
		__sync_fetch_and_add(&dropped, 1);
		return 1;
	}
	return 0;
}

SEC("syscall")
int fill_ring(void *ctx)
{
	bpf_loop(fill_count, fill_one, 0, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
