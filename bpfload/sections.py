"""libbpf's SEC() naming conventions: a section name decides the program type, the
expected attach type, load flags and how the program attaches.

The table is libbpf 1.5's ``section_defs[]`` (tools/lib/bpf/libbpf.c of Linux 6.12) as
data, row for row and in its order, since the first matching row wins:
tests/test_sections.py reads libbpf.c from the kernel source and fails on any row that
is missing or differs. A pattern ending in '+' matches the bare word or the word
followed by '/...', one ending in '/' matches any name it prefixes, others match
exactly.

Each row also says how its programs attach (`attach`, one of the ATTACH_* kinds, after
libbpf's attach function for the section); :mod:`.links` implements the kinds it can.
"""

from __future__ import annotations

from .errors import ObjectError
from .record import REQUIRED, Record
from .sys.constants import AttachType, ProgType

# How a program of a section gets attached (bpfload.links): libbpf's attach function
# for the section, split where one function serves two kinds.
ATTACH_NONE = "none"  # loaded only: libbpf has no auto-attach (socket, tc, xdp, cgroup, ...)
ATTACH_RUN = "run"  # syscall programs are run with BPF_PROG_TEST_RUN, not attached
ATTACH_TRACING = "tracing"  # attach_trace/attach_lsm: BPF_LINK_CREATE, target fixed at load
ATTACH_TP_BTF = "tp_btf"  # BTF-enabled raw tracepoint: BPF_LINK_CREATE
ATTACH_FREPLACE = "freplace"  # attach_trace on another BPF program's function
ATTACH_ITER = "iter"  # attach_iter: a BPF iterator link
ATTACH_RAW_TP = "raw_tp"  # BPF_RAW_TRACEPOINT_OPEN
ATTACH_TRACEPOINT = "tracepoint"  # perf_event_open(PERF_TYPE_TRACEPOINT)
ATTACH_KPROBE = "kprobe"  # perf_event_open(kprobe PMU)
ATTACH_KRETPROBE = "kretprobe"
ATTACH_KPROBE_MULTI = "kprobe.multi"
ATTACH_KRETPROBE_MULTI = "kretprobe.multi"
ATTACH_KPROBE_SESSION = "kprobe.session"
ATTACH_KSYSCALL = "ksyscall"
ATTACH_KRETSYSCALL = "kretsyscall"
ATTACH_UPROBE = "uprobe"
ATTACH_URETPROBE = "uretprobe"
ATTACH_UPROBE_MULTI = "uprobe.multi"
ATTACH_URETPROBE_MULTI = "uretprobe.multi"
ATTACH_USDT = "usdt"

# libbpf's enum sec_def_flags (the rows' cookie), bit for bit.
SEC_EXP_ATTACH_OPT = 1  # expected_attach_type dropped on kernels that lack it
SEC_ATTACHABLE = 2  # legacy marker (libbpf_attach_type_by_name only)
SEC_ATTACHABLE_OPT = SEC_ATTACHABLE | SEC_EXP_ATTACH_OPT
SEC_ATTACH_BTF = 4  # attach_btf_id names the target in kernel (or program) BTF
SEC_SLEEPABLE = 8  # loaded BPF_F_SLEEPABLE
SEC_XDP_FRAGS = 16  # loaded BPF_F_XDP_HAS_FRAGS
SEC_USDT = 32  # expected_attach_type becomes TRACE_UPROBE_MULTI where the kernel has it


class SectionDef(Record):
    _fields = (
        ("pattern", REQUIRED),  # libbpf's spelling: "kprobe+", "sk_skb/verdict", "tc"
        ("prog_type", REQUIRED),  # ProgType
        ("attach_type", REQUIRED),  # expected_attach_type at load time (0 when none)
        ("flags", 0),  # SEC_* bits
        ("attach", ATTACH_NONE),  # how it attaches: one of the ATTACH_* kinds
    )

    @property
    def sleepable(self) -> bool:
        return bool(self.flags & SEC_SLEEPABLE)

    @property
    def btf_target(self) -> bool:
        """attach_btf_id names a kernel function, tracepoint or iterator in BTF."""
        return bool(self.flags & SEC_ATTACH_BTF)

    @property
    def word(self) -> str:
        return self.pattern.rstrip("+/")

    def matches(self, name: str) -> bool:
        if self.pattern.endswith("/"):
            return name.startswith(self.pattern)
        if self.pattern.endswith("+"):
            word = self.pattern[:-1]
            return name == word or name.startswith(word + "/")
        return name == self.pattern

    def target(self, name: str) -> str:
        """The part after 'word/' (function, tracepoint, ...), '' if none."""
        word = self.word
        return name[len(word) + 1:] if name.startswith(word + "/") else ""


_S = SectionDef
_NONE = 0
_OPT = SEC_ATTACHABLE_OPT
_ABLE = SEC_ATTACHABLE
_BTF = SEC_ATTACH_BTF
_SLEEP = SEC_SLEEPABLE
_FRAGS = SEC_XDP_FRAGS

SECTIONS: tuple[SectionDef, ...] = (
    _S("socket", ProgType.SOCKET_FILTER, 0),
    _S("sk_reuseport/migrate", ProgType.SK_REUSEPORT,
       AttachType.SK_REUSEPORT_SELECT_OR_MIGRATE, _ABLE),
    _S("sk_reuseport", ProgType.SK_REUSEPORT, AttachType.SK_REUSEPORT_SELECT, _ABLE),
    _S("kprobe+", ProgType.KPROBE, 0, _NONE, ATTACH_KPROBE),
    _S("uprobe+", ProgType.KPROBE, 0, _NONE, ATTACH_UPROBE),
    _S("uprobe.s+", ProgType.KPROBE, 0, _SLEEP, ATTACH_UPROBE),
    _S("kretprobe+", ProgType.KPROBE, 0, _NONE, ATTACH_KRETPROBE),
    _S("uretprobe+", ProgType.KPROBE, 0, _NONE, ATTACH_URETPROBE),
    _S("uretprobe.s+", ProgType.KPROBE, 0, _SLEEP, ATTACH_URETPROBE),
    _S("kprobe.multi+", ProgType.KPROBE, AttachType.TRACE_KPROBE_MULTI, _NONE, ATTACH_KPROBE_MULTI),
    _S("kretprobe.multi+", ProgType.KPROBE,
       AttachType.TRACE_KPROBE_MULTI, _NONE, ATTACH_KRETPROBE_MULTI),
    _S("kprobe.session+", ProgType.KPROBE,
       AttachType.TRACE_KPROBE_SESSION, _NONE, ATTACH_KPROBE_SESSION),
    _S("uprobe.multi+", ProgType.KPROBE, AttachType.TRACE_UPROBE_MULTI, _NONE, ATTACH_UPROBE_MULTI),
    _S("uretprobe.multi+", ProgType.KPROBE,
       AttachType.TRACE_UPROBE_MULTI, _NONE, ATTACH_URETPROBE_MULTI),
    _S("uprobe.multi.s+", ProgType.KPROBE,
       AttachType.TRACE_UPROBE_MULTI, _SLEEP, ATTACH_UPROBE_MULTI),
    _S("uretprobe.multi.s+", ProgType.KPROBE,
       AttachType.TRACE_UPROBE_MULTI, _SLEEP, ATTACH_URETPROBE_MULTI),
    _S("ksyscall+", ProgType.KPROBE, 0, _NONE, ATTACH_KSYSCALL),
    _S("kretsyscall+", ProgType.KPROBE, 0, _NONE, ATTACH_KRETSYSCALL),
    _S("usdt+", ProgType.KPROBE, 0, SEC_USDT, ATTACH_USDT),
    _S("usdt.s+", ProgType.KPROBE, 0, SEC_USDT | _SLEEP, ATTACH_USDT),
    _S("tc/ingress", ProgType.SCHED_CLS, AttachType.TCX_INGRESS),  # alias for tcx
    _S("tc/egress", ProgType.SCHED_CLS, AttachType.TCX_EGRESS),
    _S("tcx/ingress", ProgType.SCHED_CLS, AttachType.TCX_INGRESS),
    _S("tcx/egress", ProgType.SCHED_CLS, AttachType.TCX_EGRESS),
    _S("tc", ProgType.SCHED_CLS, 0),  # legacy tc (netlink), like the next two
    _S("classifier", ProgType.SCHED_CLS, 0),
    _S("action", ProgType.SCHED_ACT, 0),
    _S("netkit/primary", ProgType.SCHED_CLS, AttachType.NETKIT_PRIMARY),
    _S("netkit/peer", ProgType.SCHED_CLS, AttachType.NETKIT_PEER),
    _S("tracepoint+", ProgType.TRACEPOINT, 0, _NONE, ATTACH_TRACEPOINT),
    _S("tp+", ProgType.TRACEPOINT, 0, _NONE, ATTACH_TRACEPOINT),
    _S("raw_tracepoint+", ProgType.RAW_TRACEPOINT, 0, _NONE, ATTACH_RAW_TP),
    _S("raw_tp+", ProgType.RAW_TRACEPOINT, 0, _NONE, ATTACH_RAW_TP),
    _S("raw_tracepoint.w+", ProgType.RAW_TRACEPOINT_WRITABLE, 0, _NONE, ATTACH_RAW_TP),
    _S("raw_tp.w+", ProgType.RAW_TRACEPOINT_WRITABLE, 0, _NONE, ATTACH_RAW_TP),
    _S("tp_btf+", ProgType.TRACING, AttachType.TRACE_RAW_TP, _BTF, ATTACH_TP_BTF),
    _S("fentry+", ProgType.TRACING, AttachType.TRACE_FENTRY, _BTF, ATTACH_TRACING),
    _S("fmod_ret+", ProgType.TRACING, AttachType.MODIFY_RETURN, _BTF, ATTACH_TRACING),
    _S("fexit+", ProgType.TRACING, AttachType.TRACE_FEXIT, _BTF, ATTACH_TRACING),
    _S("fentry.s+", ProgType.TRACING, AttachType.TRACE_FENTRY, _BTF | _SLEEP, ATTACH_TRACING),
    _S("fmod_ret.s+", ProgType.TRACING, AttachType.MODIFY_RETURN, _BTF | _SLEEP, ATTACH_TRACING),
    _S("fexit.s+", ProgType.TRACING, AttachType.TRACE_FEXIT, _BTF | _SLEEP, ATTACH_TRACING),
    _S("freplace+", ProgType.EXT, 0, _BTF, ATTACH_FREPLACE),
    _S("lsm+", ProgType.LSM, AttachType.LSM_MAC, _BTF, ATTACH_TRACING),
    _S("lsm.s+", ProgType.LSM, AttachType.LSM_MAC, _BTF | _SLEEP, ATTACH_TRACING),
    _S("lsm_cgroup+", ProgType.LSM, AttachType.LSM_CGROUP, _BTF),
    _S("iter+", ProgType.TRACING, AttachType.TRACE_ITER, _BTF, ATTACH_ITER),
    _S("iter.s+", ProgType.TRACING, AttachType.TRACE_ITER, _BTF | _SLEEP, ATTACH_ITER),
    _S("syscall", ProgType.SYSCALL, 0, _SLEEP, ATTACH_RUN),
    _S("xdp.frags/devmap", ProgType.XDP, AttachType.XDP_DEVMAP, _FRAGS),
    _S("xdp/devmap", ProgType.XDP, AttachType.XDP_DEVMAP, _ABLE),
    _S("xdp.frags/cpumap", ProgType.XDP, AttachType.XDP_CPUMAP, _FRAGS),
    _S("xdp/cpumap", ProgType.XDP, AttachType.XDP_CPUMAP, _ABLE),
    _S("xdp.frags", ProgType.XDP, AttachType.XDP, _FRAGS),
    _S("xdp", ProgType.XDP, AttachType.XDP, _OPT),
    _S("perf_event", ProgType.PERF_EVENT, 0),
    _S("lwt_in", ProgType.LWT_IN, 0),
    _S("lwt_out", ProgType.LWT_OUT, 0),
    _S("lwt_xmit", ProgType.LWT_XMIT, 0),
    _S("lwt_seg6local", ProgType.LWT_SEG6LOCAL, 0),
    _S("sockops", ProgType.SOCK_OPS, AttachType.CGROUP_SOCK_OPS, _OPT),
    _S("sk_skb/stream_parser", ProgType.SK_SKB, AttachType.SK_SKB_STREAM_PARSER, _OPT),
    _S("sk_skb/stream_verdict", ProgType.SK_SKB, AttachType.SK_SKB_STREAM_VERDICT, _OPT),
    _S("sk_skb/verdict", ProgType.SK_SKB, AttachType.SK_SKB_VERDICT, _OPT),
    _S("sk_skb", ProgType.SK_SKB, 0),
    _S("sk_msg", ProgType.SK_MSG, AttachType.SK_MSG_VERDICT, _OPT),
    _S("lirc_mode2", ProgType.LIRC_MODE2, AttachType.LIRC_MODE2, _OPT),
    _S("flow_dissector", ProgType.FLOW_DISSECTOR, AttachType.FLOW_DISSECTOR, _OPT),
    _S("cgroup_skb/ingress", ProgType.CGROUP_SKB, AttachType.CGROUP_INET_INGRESS, _OPT),
    _S("cgroup_skb/egress", ProgType.CGROUP_SKB, AttachType.CGROUP_INET_EGRESS, _OPT),
    _S("cgroup/skb", ProgType.CGROUP_SKB, 0),
    _S("cgroup/sock_create", ProgType.CGROUP_SOCK, AttachType.CGROUP_INET_SOCK_CREATE, _ABLE),
    _S("cgroup/sock_release", ProgType.CGROUP_SOCK, AttachType.CGROUP_INET_SOCK_RELEASE, _ABLE),
    _S("cgroup/sock", ProgType.CGROUP_SOCK, AttachType.CGROUP_INET_SOCK_CREATE, _OPT),
    _S("cgroup/post_bind4", ProgType.CGROUP_SOCK, AttachType.CGROUP_INET4_POST_BIND, _ABLE),
    _S("cgroup/post_bind6", ProgType.CGROUP_SOCK, AttachType.CGROUP_INET6_POST_BIND, _ABLE),
    _S("cgroup/bind4", ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET4_BIND, _ABLE),
    _S("cgroup/bind6", ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET6_BIND, _ABLE),
    _S("cgroup/connect4", ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET4_CONNECT, _ABLE),
    _S("cgroup/connect6", ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET6_CONNECT, _ABLE),
    _S("cgroup/connect_unix", ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_UNIX_CONNECT, _ABLE),
    _S("cgroup/sendmsg4", ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_UDP4_SENDMSG, _ABLE),
    _S("cgroup/sendmsg6", ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_UDP6_SENDMSG, _ABLE),
    _S("cgroup/sendmsg_unix", ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_UNIX_SENDMSG, _ABLE),
    _S("cgroup/recvmsg4", ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_UDP4_RECVMSG, _ABLE),
    _S("cgroup/recvmsg6", ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_UDP6_RECVMSG, _ABLE),
    _S("cgroup/recvmsg_unix", ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_UNIX_RECVMSG, _ABLE),
    _S("cgroup/getpeername4", ProgType.CGROUP_SOCK_ADDR,
       AttachType.CGROUP_INET4_GETPEERNAME, _ABLE),
    _S("cgroup/getpeername6", ProgType.CGROUP_SOCK_ADDR,
       AttachType.CGROUP_INET6_GETPEERNAME, _ABLE),
    _S("cgroup/getpeername_unix", ProgType.CGROUP_SOCK_ADDR,
       AttachType.CGROUP_UNIX_GETPEERNAME, _ABLE),
    _S("cgroup/getsockname4", ProgType.CGROUP_SOCK_ADDR,
       AttachType.CGROUP_INET4_GETSOCKNAME, _ABLE),
    _S("cgroup/getsockname6", ProgType.CGROUP_SOCK_ADDR,
       AttachType.CGROUP_INET6_GETSOCKNAME, _ABLE),
    _S("cgroup/getsockname_unix", ProgType.CGROUP_SOCK_ADDR,
       AttachType.CGROUP_UNIX_GETSOCKNAME, _ABLE),
    _S("cgroup/sysctl", ProgType.CGROUP_SYSCTL, AttachType.CGROUP_SYSCTL, _ABLE),
    _S("cgroup/getsockopt", ProgType.CGROUP_SOCKOPT, AttachType.CGROUP_GETSOCKOPT, _ABLE),
    _S("cgroup/setsockopt", ProgType.CGROUP_SOCKOPT, AttachType.CGROUP_SETSOCKOPT, _ABLE),
    _S("cgroup/dev", ProgType.CGROUP_DEVICE, AttachType.CGROUP_DEVICE, _OPT),
    _S("struct_ops+", ProgType.STRUCT_OPS, 0),
    _S("struct_ops.s+", ProgType.STRUCT_OPS, 0, _SLEEP),
    _S("sk_lookup", ProgType.SK_LOOKUP, AttachType.SK_LOOKUP, _ABLE),
    _S("netfilter", ProgType.NETFILTER, AttachType.NETFILTER),
)


def find(section: str) -> SectionDef | None:
    """The convention a section name follows (the first row that matches), or None."""
    for sdef in SECTIONS:
        if sdef.matches(section):
            return sdef
    return None


def unknown_section_message(section: str) -> str:
    """What to tell a user about a section name no convention matches."""
    return (f"unknown program section '{section}' (not one of libbpf's SEC() names: "
            f"fentry/FUNC, kprobe/FUNC, tp/CAT/NAME, tp_btf/NAME, syscall, xdp, tc, "
            f"cgroup/..., ...)")


def lookup(section: str) -> SectionDef:
    """The convention a section name follows; ObjectError naming it if none does."""
    sdef = find(section)
    if sdef is None:
        raise ObjectError(unknown_section_message(section))
    return sdef
