"""libbpf's SEC() naming conventions: a section name decides the program type, the
expected attach type, load flags and how the program attaches.

The table is data: one row per convention, matched like libbpf does (a name ending in
'+' matches the bare word or the word followed by '/...'; others match exactly).
"""

from __future__ import annotations

from .errors import ObjectError
from .record import REQUIRED, Record
from .sys.constants import AttachType as A
from .sys.constants import ProgType as P

# How a program of a section gets attached (bpfload.links).
ATTACH_NONE = "none"  # loaded only (socket filters, tc, xdp need a target we do not know)
ATTACH_TRACING = "tracing"  # fentry/fexit/fmod_ret/lsm: BPF_LINK_CREATE with a BTF id
ATTACH_TP_BTF = "tp_btf"  # BTF-enabled raw tracepoint: BPF_LINK_CREATE
ATTACH_RAW_TP = "raw_tp"  # BPF_RAW_TRACEPOINT_OPEN
ATTACH_TRACEPOINT = "tracepoint"  # perf_event_open(PERF_TYPE_TRACEPOINT)
ATTACH_KPROBE = "kprobe"  # perf_event_open(kprobe PMU)
ATTACH_KRETPROBE = "kretprobe"
ATTACH_RUN = "run"  # syscall programs are run with BPF_PROG_TEST_RUN, not attached


class SectionDef(Record):
    _fields = (
        ("pattern", REQUIRED),
        ("prog_type", REQUIRED),  # ProgType
        ("attach_type", REQUIRED),  # expected_attach_type at load time (0 when none)
        ("attach", ATTACH_NONE),  # how it attaches: one of the ATTACH_* kinds
        ("sleepable", False),
        ("btf_target", False),  # attach_btf_id names a kernel function/tracepoint in BTF
    )

    def matches(self, name: str) -> bool:
        if self.pattern.endswith("+"):
            word = self.pattern[:-1]
            return name == word or name.startswith(word + "/")
        return name == self.pattern

    def target(self, name: str) -> str:
        """The part after 'word/' (function, tracepoint, ...), '' if none."""
        word = self.pattern.rstrip("+")
        return name[len(word) + 1:] if name.startswith(word + "/") else ""


_S = SectionDef
SECTIONS: tuple[SectionDef, ...] = (
    _S("socket", P.SOCKET_FILTER, 0),
    _S("kprobe+", P.KPROBE, 0, ATTACH_KPROBE),
    _S("kretprobe+", P.KPROBE, 0, ATTACH_KRETPROBE),
    _S("tc/ingress", P.SCHED_CLS, A.TCX_INGRESS),
    _S("tc/egress", P.SCHED_CLS, A.TCX_EGRESS),
    _S("tc", P.SCHED_CLS, 0),
    _S("classifier", P.SCHED_CLS, 0),
    _S("action", P.SCHED_ACT, 0),
    _S("tracepoint+", P.TRACEPOINT, 0, ATTACH_TRACEPOINT),
    _S("tp+", P.TRACEPOINT, 0, ATTACH_TRACEPOINT),
    _S("raw_tracepoint+", P.RAW_TRACEPOINT, 0, ATTACH_RAW_TP),
    _S("raw_tp+", P.RAW_TRACEPOINT, 0, ATTACH_RAW_TP),
    _S("raw_tracepoint.w+", P.RAW_TRACEPOINT_WRITABLE, 0, ATTACH_RAW_TP),
    _S("raw_tp.w+", P.RAW_TRACEPOINT_WRITABLE, 0, ATTACH_RAW_TP),
    _S("tp_btf+", P.TRACING, A.TRACE_RAW_TP, ATTACH_TP_BTF, btf_target=True),
    _S("fentry+", P.TRACING, A.TRACE_FENTRY, ATTACH_TRACING, btf_target=True),
    _S("fmod_ret+", P.TRACING, A.MODIFY_RETURN, ATTACH_TRACING, btf_target=True),
    _S("fexit+", P.TRACING, A.TRACE_FEXIT, ATTACH_TRACING, btf_target=True),
    _S("fentry.s+", P.TRACING, A.TRACE_FENTRY, ATTACH_TRACING, True, True),
    _S("fmod_ret.s+", P.TRACING, A.MODIFY_RETURN, ATTACH_TRACING, True, True),
    _S("fexit.s+", P.TRACING, A.TRACE_FEXIT, ATTACH_TRACING, True, True),
    _S("lsm+", P.LSM, A.LSM_MAC, ATTACH_TRACING, btf_target=True),
    _S("lsm.s+", P.LSM, A.LSM_MAC, ATTACH_TRACING, True, True),
    _S("syscall", P.SYSCALL, 0, ATTACH_RUN, sleepable=True),
    _S("xdp.frags", P.XDP, A.XDP),
    _S("xdp", P.XDP, A.XDP),
    _S("perf_event", P.PERF_EVENT, 0),
    _S("cgroup_skb/ingress", P.CGROUP_SKB, A.CGROUP_INET_INGRESS),
    _S("cgroup_skb/egress", P.CGROUP_SKB, A.CGROUP_INET_EGRESS),
    _S("cgroup/skb", P.CGROUP_SKB, 0),
    _S("cgroup/sock", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE),
    _S("cgroup/dev", P.CGROUP_DEVICE, A.CGROUP_DEVICE),
    _S("cgroup/sysctl", P.CGROUP_SYSCTL, A.CGROUP_SYSCTL),
    _S("sk_skb/stream_parser", P.SK_SKB, A.SK_SKB_STREAM_PARSER),
    _S("sk_skb/stream_verdict", P.SK_SKB, A.SK_SKB_STREAM_VERDICT),
    _S("sk_skb", P.SK_SKB, 0),
    _S("sk_msg", P.SK_MSG, A.SK_MSG_VERDICT),
    _S("flow_dissector", P.FLOW_DISSECTOR, A.FLOW_DISSECTOR),
    _S("sk_lookup", P.SK_LOOKUP, A.SK_LOOKUP),
)


def lookup(section: str) -> SectionDef:
    """The convention a section name follows; ObjectError naming it if none does."""
    for sdef in SECTIONS:
        if sdef.matches(section):
            return sdef
    known = ", ".join(s.pattern.rstrip("+") for s in SECTIONS[:24])
    raise ObjectError(f"unknown program section '{section}' (bpfload understands libbpf's "
                      f"SEC() names: {known}, ...)")
