// SPDX-License-Identifier: GPL-2.0
/* Not a program: target BTF for core_flavors.bpf.c, an "old kernel" where the task's
 * pid field is still called pid_old. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct task {
	long pad;
	int pid_old;
};

struct same___a {
	long pad;
	long v;
};

struct same___b {
	long pad;
	long v;
	int extra;
};

struct dup___a {
	int v;
};

struct dup___b {
	long pad;
	int v;
};

struct deep {
	union {
		long wide;
		struct {
			int pad;
			union {
				char c;
				int leaf;
			};
		};
	};
	int other;
};

struct task task_value = { .pid_old = 1111 };
struct same___a same_value = { .v = 2222 };
struct same___b same_b_value;
struct dup___a dup_a_value;
struct dup___b dup_b_value;
struct deep deep_value;
