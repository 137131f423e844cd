// SPDX-License-Identifier: GPL-2.0
/* fentry programs whose target functions are not in the kernel's BTF: the lookup
 * fails before BPF_PROG_LOAD with an error naming the function (the heatmap's MGLRU
 * hook only exists in the patched kernel). module_target names a module's function,
 * for tests that resolve it against synthetic module BTF. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("fentry/bpfload_no_such_function")
int missing_target(void *ctx)
{
	return 0;
}

SEC("fentry/vmlinux:bpfload_no_such_function")
int missing_vmlinux_target(void *ctx)
{
	return 0;
}

/* A function of a (module) BTF named explicitly, libbpf's "module:function". */
SEC("fentry/bpfload_mod:bpfload_mod_func")
int module_target(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
