// SPDX-License-Identifier: GPL-2.0
/* A strong kfunc the kernel lacks: the load fails before any program reaches the
 * kernel, with an error naming the kfunc (libbpf: "extern ... (strong): not
 * resolved"). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern int bpf_bpfload_missing_strong(int x) __ksym;

SEC("syscall")
int calls_missing(void *ctx)
{
	return bpf_bpfload_missing_strong(1);
}

char LICENSE[] SEC("license") = "GPL";
