// SPDX-License-Identifier: GPL-2.0
/* Not a program: target BTF for core_flavors.bpf.c, a "new kernel" where the task's
 * pid field is called pid_new. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct task {
	int pad[3];
	int pid_new;
};

struct task task_value = { .pid_new = 3333 };
