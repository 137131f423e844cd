"""What the kernel says about this machine and this process in /proc and /sys text files:
the capability masks of /proc/PID/status and the id lists ("0-3,8") of CPUs and nodes.

The one reader of each format, for bpfload and for the tools built on it (heatmap.py).
"""

from __future__ import annotations

import os

#: Numbers of the capabilities bpf(2) and perf_event_open(2) check
#: (include/uapi/linux/capability.h).
CAPABILITY_BITS = {"CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}


def effective_capabilities(status_text: str) -> int | None:
    """The CapEff mask of a /proc/PID/status text; None if it has no CapEff line.
    A CapEff line that is not hex raises ValueError."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return None


def missing_capabilities(status_text: str, names) -> list[str]:
    """Those of `names` (keys of CAPABILITY_BITS) that the CapEff line of a
    /proc/PID/status text lacks, in the order given; [] if it has no CapEff line."""
    eff = effective_capabilities(status_text)
    if eff is None:
        return []
    return [name for name in names if not (eff >> CAPABILITY_BITS[name]) & 1]


def has_all_bpf_privileges() -> bool:
    """Whether this process has CAP_SYS_ADMIN, which passes every capability check of
    bpf(2) and perf_event_open(2) (CAP_BPF and CAP_PERFMON included)."""
    try:
        with open("/proc/self/status") as f:
            eff = effective_capabilities(f.read())
    except (OSError, ValueError, IndexError):
        eff = None
    if eff is None:
        return os.geteuid() == 0
    return bool(eff >> CAPABILITY_BITS["CAP_SYS_ADMIN"] & 1)


def parse_id_list(text: str) -> list[int]:
    """The kernel's list format for CPUs and nodes ('0-3,8,10-11'), as the ids."""
    ids = []
    for part in filter(None, text.strip().split(",")):
        lo, _, hi = part.partition("-")
        ids.extend(range(int(lo), int(hi or lo) + 1))
    return ids


def online_cpus() -> list[int]:
    """The ids of the CPUs online now (a perf buffer has one ring for each)."""
    try:
        with open("/sys/devices/system/cpu/online") as f:
            return parse_id_list(f.read())
    except OSError:
        return list(range(os.cpu_count() or 1))


def possible_cpus() -> int:
    """Number of possible CPUs: per-CPU map values have one slot for each."""
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            ids = parse_id_list(f.read())
    except OSError:
        return os.cpu_count() or 1
    return max(ids) + 1
