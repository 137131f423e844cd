// SPDX-License-Identifier: GPL-2.0
/* Weak externs the kernel lacks, resolved like libbpf: bpf_ksym_exists() is false,
 * the guarded kfunc call is poisoned dead code, a missing weak variable's address is
 * NULL; a kfunc that exists is detected; a typeless __ksym gets its kallsyms address;
 * a field the kernel lacks reads as absent. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* libbpf 1.2's bpf_ksym_exists(); Debian 12's libbpf-dev 1.1 lacks it */
#define ksym_exists(sym) ({						\
	_Static_assert(!__builtin_constant_p(!!sym), #sym " should be __weak"); \
	!!sym;								\
})

extern int bpf_bpfload_no_such_kfunc(int x) __ksym __weak;
extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym __weak;
extern void bpf_task_release(struct task_struct *p) __ksym __weak;
extern const int bpfload_no_such_variable __ksym __weak;
extern const void do_nanosleep __ksym;
/* the kernel's kfunc, looked up by its name without the ___flavour */
extern struct task_struct *bpf_task_from_pid___flavour(s32 pid) __ksym __weak;
/* the kernel's bpf_rcu_read_lock() takes no argument: a __weak kfunc whose prototype
 * does not match is treated as missing */
extern void bpf_rcu_read_lock(int bogus) __ksym __weak;

struct task_struct___fake {
	int bpfload_no_such_field;
} __attribute__((preserve_access_index));

s64 missing_exists = -1;
s64 missing_result = -1;
s64 present_exists = -1;
s64 missing_var_addr = -1;
u64 typeless_addr;
s64 missing_field_exists = -1;
s64 flavour_exists = -1;
s64 mismatched_exists = -1;

SEC("syscall")
int weak_externs(void *ctx)
{
	struct task_struct___fake *t = (void *)bpf_get_current_task();

	missing_exists = ksym_exists(bpf_bpfload_no_such_kfunc);
	if (ksym_exists(bpf_bpfload_no_such_kfunc))
		missing_result = bpf_bpfload_no_such_kfunc(1);
	else
		missing_result = 0;
	present_exists = ksym_exists(bpf_task_from_pid);
	missing_var_addr = (long)&bpfload_no_such_variable;
	typeless_addr = (u64)&do_nanosleep;
	missing_field_exists = bpf_core_field_exists(t->bpfload_no_such_field);
	flavour_exists = ksym_exists(bpf_task_from_pid___flavour);
	mismatched_exists = ksym_exists(bpf_rcu_read_lock);
	return 0;
}

/* The same missing kfunc called without a guard: the verifier reaches the poison. */
SEC("syscall")
int unguarded_call(void *ctx)
{
	return bpf_bpfload_no_such_kfunc(1);
}

/* A CO-RE read of a field the kernel lacks, unguarded: reaches the poison. */
SEC("syscall")
int unguarded_field(void *ctx)
{
	struct task_struct___fake *t = (void *)bpf_get_current_task();

	return BPF_CORE_READ(t, bpfload_no_such_field);
}

char LICENSE[] SEC("license") = "GPL";
