// SPDX-License-Identifier: GPL-2.0
/* A strong kfunc declared with a prototype the kernel's does not match
 * (bpf_task_release takes one argument): the load fails naming it, like libbpf's
 * "func_proto ... incompatible with vmlinux". */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

extern void bpf_task_release(struct task_struct *p, int extra) __ksym;

SEC("syscall")
int bad_proto(void *ctx)
{
	bpf_task_release((void *)0, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
