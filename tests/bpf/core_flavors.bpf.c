// SPDX-License-Identifier: GPL-2.0
/* CO-RE flavours: a field renamed between "kernel versions" read through two
 * ___flavour structs guarded by bpf_core_field_exists(), nested anonymous members,
 * candidates that agree and candidates that disagree (ambiguous: an error). Resolved
 * against core_target_old.bpf.c and core_target_new.bpf.c. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define __core __attribute__((preserve_access_index))

struct task___new {
	int pid_new;
} __core;

struct task___old {
	int pid_old;
} __core;

struct same {			/* the target has same___a and same___b: they agree */
	long v;
} __core;

struct dup {			/* the target has dup___a and dup___b: they disagree */
	int v;
} __core;

struct deep {			/* the target nests `leaf` two anonymous levels down */
	int other;
	int leaf;
} __core;

char buf[64] __attribute__((aligned(8)));
__u64 out[8];

SEC("syscall")
int read_renamed(void *ctx)
{
	void *p = buf;

	if (bpf_core_field_exists(((struct task___new *)p)->pid_new))
		out[0] = ((struct task___new *)p)->pid_new;
	else
		out[0] = ((struct task___old *)p)->pid_old;
	out[1] = bpf_core_type_exists(struct task___new);
	return 0;
}

SEC("syscall")
int read_same(void *ctx)
{
	out[2] = ((struct same *)buf)->v;
	out[3] = ((struct deep *)buf)->leaf;
	return 0;
}

SEC("syscall")
int read_dup(void *ctx)
{
	out[4] = ((struct dup *)buf)->v;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
