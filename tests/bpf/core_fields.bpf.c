// SPDX-License-Identifier: GPL-2.0
/* CO-RE field, type and enum relocations on a struct the program reads from a global
 * buffer. The test resolves them against the BTF of core_target_*.bpf.c, whose
 * `struct sample` has another layout, copies the target's initialised `target_value`
 * into `buf` and checks that the relocated program reads every field correctly. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define __core __attribute__((preserve_access_index))

struct point {
	int x;
	int y;
} __core;

struct item {
	int id;
	int val;
} __core;

struct sample {
	int a;
	long b;
	unsigned short c;
	struct point pt;
	int arr[4];
	union {			/* anonymous: its members are found by name */
		int u_int;
		char u_char;
	};
	void *ptr;
	unsigned char grow;	/* wider in the target: an unsigned load is resized */
	short shrink;		/* signed and resized in the target: poisoned */
	int gone;		/* missing from the target */
	struct item items[3];	/* bigger elements in the target */
	int grid[2][3];		/* other dimensions in the target */
	unsigned int bf_u : 3;
	int bf_s : 5;
	unsigned long long bf_wide : 40;
	int tail_len;
	int tail[];		/* flexible array */
} __core;

enum color { RED, GREEN, BLUE };	/* the target renumbers it and drops GREEN */

struct only_local { int z; } __core;	/* not in the target at all */

char buf[512] __attribute__((aligned(8)));
__u64 out[32];

SEC("syscall")
int read_fields(void *ctx)
{
	struct sample *s = (void *)buf;

	out[0] = s->a;
	out[1] = s->b;
	out[2] = s->c;
	out[3] = s->pt.y;
	out[4] = s->arr[2];
	out[5] = s->u_int;
	out[6] = (unsigned long)s->ptr;
	out[7] = s->grow;
	out[8] = BPF_CORE_READ_BITFIELD(s, bf_u);
	out[9] = BPF_CORE_READ_BITFIELD(s, bf_s);
	out[10] = BPF_CORE_READ_BITFIELD(s, bf_wide);
	out[11] = s->tail[1];
	out[12] = bpf_core_field_exists(s->gone);
	out[13] = bpf_core_field_exists(s->b);
	out[14] = bpf_core_field_size(s->b);
	out[15] = bpf_core_field_offset(s->pt);
	if (bpf_core_field_exists(s->gone))
		out[16] = s->gone;	/* poisoned, but dead code on the target */
	else
		out[16] = 77;
	out[17] = bpf_core_type_exists(struct only_local);
	out[18] = bpf_core_type_size(struct sample);
	out[19] = bpf_core_enum_value(enum color, BLUE);
	out[20] = bpf_core_enum_value_exists(enum color, GREEN);
	if (bpf_core_enum_value_exists(enum color, GREEN))
		out[21] = bpf_core_enum_value(enum color, GREEN);	/* dead on the target */
	else
		out[21] = 99;
	out[22] = __builtin_preserve_field_info(s->c, BPF_FIELD_SIGNED);
	out[23] = bpf_core_type_id_kernel(struct sample);
	out[24] = bpf_core_type_id_local(struct sample);
	out[25] = bpf_core_field_size(s->grow);
	out[26] = s->items[1].val;
	out[27] = s->grid[1][2];
	out[28] = bpf_core_field_size(s->items);
	return 0;
}

/* Reads a field whose load cannot be resized for the target: the instruction is
 * poisoned and reachable, so the verifier refuses the program. */
SEC("syscall")
int read_shrink(void *ctx)
{
	struct sample *s = (void *)buf;

	out[0] = s->shrink;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
