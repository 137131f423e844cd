// SPDX-License-Identifier: GPL-2.0
/* A typed __ksym variable (the per-CPU runqueues): BPF_PSEUDO_BTF_ID with its
 * vmlinux BTF id. The kernel also needs the symbol in kallsyms, which only kernels
 * built with CONFIG_KALLSYMS_ALL have. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

extern const struct rq runqueues __ksym;

s64 rq_cpu = -1;
s64 smp_cpu = -2;

SEC("syscall")
int this_rq(void *ctx)
{
	struct rq *rq = bpf_this_cpu_ptr(&runqueues);

	rq_cpu = rq->cpu;
	smp_cpu = bpf_get_smp_processor_id();
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
