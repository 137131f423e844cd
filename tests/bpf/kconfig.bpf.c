// SPDX-License-Identifier: GPL-2.0
/* __kconfig externs of every kind libbpf fills: bool, tristate, char, integers, a
 * string, libbpf's LINUX_* values, a __weak one no kernel has (0). `read_config`
 * copies them into .bss for the test to compare with the kernel's own config. */
#include <linux/bpf.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>

extern bool CONFIG_BPF_SYSCALL __kconfig;
extern enum libbpf_tristate CONFIG_BPF_JIT __kconfig;
extern char CONFIG_BPF_EVENTS __kconfig;
extern int CONFIG_HZ __kconfig;
extern unsigned long long CONFIG_NR_CPUS __kconfig;
extern char CONFIG_DEFAULT_HOSTNAME[8] __kconfig;
extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern bool LINUX_HAS_BPF_COOKIE __kconfig;
extern bool LINUX_HAS_SYSCALL_WRAPPER __kconfig;
extern int CONFIG_BPFLOAD_NOT_A_CONFIG __kconfig __weak;
extern bool LINUX_BPFLOAD_UNKNOWN __kconfig __weak;

struct seen {
	__u64 nr_cpus;
	__u32 kernel_version;
	__s32 hz;
	__s32 missing;
	__u8 bpf_syscall, bpf_jit, bpf_events, cookie, wrapper, unknown;
	char hostname[8];
} seen;

SEC("syscall")
int read_config(void *ctx)
{
	seen.nr_cpus = CONFIG_NR_CPUS;
	seen.kernel_version = LINUX_KERNEL_VERSION;
	seen.hz = CONFIG_HZ;
	seen.missing = CONFIG_BPFLOAD_NOT_A_CONFIG;
	seen.bpf_syscall = CONFIG_BPF_SYSCALL;
	seen.bpf_jit = CONFIG_BPF_JIT;
	seen.bpf_events = CONFIG_BPF_EVENTS;
	seen.cookie = LINUX_HAS_BPF_COOKIE;
	seen.wrapper = LINUX_HAS_SYSCALL_WRAPPER;
	seen.unknown = LINUX_BPFLOAD_UNKNOWN;
	__builtin_memcpy(seen.hostname, CONFIG_DEFAULT_HOSTNAME, sizeof(seen.hostname));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
