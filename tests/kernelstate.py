"""What the running kernel holds: whether bpf(2) is usable here, and which BPF
programs, maps, links and BTF objects exist (for tests that nothing is left behind).
Shared by tests/conftest.py and the tests that need it directly."""

from __future__ import annotations

import os
import time

_BPF_STATUS: str | None = None


def bpf_unavailable() -> str | None:
    """Why bpf(2) cannot be used here, or None if it can."""
    global _BPF_STATUS
    if _BPF_STATUS is None:
        if os.geteuid() != 0:
            _BPF_STATUS = "needs root for bpf(2)"
        else:
            from bpfload.errors import BPFLoadError
            from bpfload.maps import Map
            from bpfload.sys.constants import MapType
            try:
                Map.create("probe", MapType.ARRAY, 4, 4, 1).close()
                _BPF_STATUS = ""
            except BPFLoadError as e:
                _BPF_STATUS = f"bpf(2) does not work here: {e}"
    return _BPF_STATUS or None


def kernel_ids() -> dict[str, set[int]]:
    from bpfload.sys.constants import Cmd
    from bpfload.sys.syscall import ids

    return {"prog": set(ids(Cmd.PROG_GET_NEXT_ID)), "map": set(ids(Cmd.MAP_GET_NEXT_ID)),
            "link": set(ids(Cmd.LINK_GET_NEXT_ID)), "btf": set(ids(Cmd.BTF_GET_NEXT_ID))}


def leftovers(before: dict[str, set[int]], timeout: float = 10.0) -> dict[str, set[int]]:
    """Kernel objects created since `before` that are still there after `timeout`.

    The kernel frees maps and programs asynchronously after their last fd closes, so
    this polls instead of looking once.
    """
    deadline = time.monotonic() + timeout
    while True:
        now = kernel_ids()
        extra = {k: now[k] - before[k] for k in now if now[k] - before[k]}
        if not extra or time.monotonic() > deadline:
            return extra
        time.sleep(0.05)
