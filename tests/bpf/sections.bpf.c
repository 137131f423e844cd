// SPDX-License-Identifier: GPL-2.0
/* One program per SEC() convention bpfload understands (parsed, not loaded). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define PROG(sec, name) SEC(sec) int name(void *ctx) { return 0; }

PROG("fentry/do_nanosleep", p_fentry)
PROG("fexit/do_nanosleep", p_fexit)
PROG("fmod_ret/security_file_open", p_fmod_ret)
PROG("fentry.s/do_nanosleep", p_fentry_s)
PROG("kprobe/do_nanosleep", p_kprobe)
PROG("kretprobe/do_nanosleep", p_kretprobe)
PROG("tracepoint/syscalls/sys_enter_getpid", p_tracepoint)
PROG("tp/sched/sched_switch", p_tp)
PROG("raw_tracepoint/sys_enter", p_raw_tracepoint)
PROG("raw_tp/sys_exit", p_raw_tp)
PROG("tp_btf/sched_switch", p_tp_btf)
PROG("lsm/file_open", p_lsm)
PROG("syscall", p_syscall)
PROG("socket", p_socket)
PROG("xdp", p_xdp)
PROG("tc", p_tc)
PROG("classifier", p_classifier)
PROG("perf_event", p_perf_event)

char LICENSE[] SEC("license") = "GPL";
