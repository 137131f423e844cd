// SPDX-License-Identifier: GPL-2.0
/* CO-RE and kfuncs against the running kernel's BTF, run as syscall programs: a
 * kfunc pair (bpf_task_from_pid/bpf_task_release) with a CO-RE read through the
 * trusted pointer it returns, BPF_CORE_READ() chains through bpf_probe_read_kernel(),
 * and a global subprogram (which needs func_info). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;

const volatile s32 target_pid;

s64 kfunc_tgid = -1;
s64 kfunc_pid = -1;
s64 core_tgid = -1;
s64 core_parent_tgid = -1;
s64 task_struct_size = -1;

__noinline int global_pid_of(unsigned long task)
{
	struct task_struct *t = (void *)task;

	if (!t)
		return -1;
	return BPF_CORE_READ(t, pid);
}

SEC("syscall")
int task_by_pid(void *ctx)
{
	struct task_struct *t = bpf_task_from_pid(target_pid);

	if (!t)
		return 1;
	kfunc_tgid = t->tgid;
	kfunc_pid = t->pid;
	bpf_task_release(t);
	return 0;
}

SEC("syscall")
int current_task(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();

	core_tgid = BPF_CORE_READ(t, tgid);
	core_parent_tgid = BPF_CORE_READ(t, real_parent, tgid);
	task_struct_size = bpf_core_type_size(struct task_struct);
	if (global_pid_of((unsigned long)t) < 0)
		return 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
