"""bpfload.procfs: the capability masks of /proc/PID/status and the kernel's id lists,
against hand-written texts and against this machine's own files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bpfload import procfs

SYS_ADMIN_ONLY = "Name:\tx\nCapPrm:\t000001ffffffffff\nCapEff:\t0000000000200000\n"


def test_effective_capabilities_is_the_capeff_line():
    assert procfs.effective_capabilities(SYS_ADMIN_ONLY) == 1 << 21
    assert procfs.effective_capabilities("Name:\tx\n") is None
    with pytest.raises(ValueError):
        procfs.effective_capabilities("CapEff:\tzz\n")


def test_missing_capabilities_in_the_order_asked():
    want = ("CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN")
    # CAP_SYS_ADMIN alone is not CAP_BPF and CAP_PERFMON (6.x kernels split them out)
    assert procfs.missing_capabilities(SYS_ADMIN_ONLY, want) == ["CAP_BPF", "CAP_PERFMON"]
    assert procfs.missing_capabilities("CapEff:\t000000c000200000\n", want) == []
    assert procfs.missing_capabilities("CapEff:\t0000004000000000\n", want) == [
        "CAP_BPF", "CAP_SYS_ADMIN"]
    assert procfs.missing_capabilities("Name:\tx\n", want) == []  # no CapEff: no verdict


def test_privileges_read_from_this_process_capeff():
    caps = Path("/proc/self/status").read_text().split("CapEff:")[1].split()[0]
    assert procfs.has_all_bpf_privileges() == bool(int(caps, 16) >> 21 & 1)


def test_id_lists():
    assert procfs.parse_id_list("0-1\n") == [0, 1]
    assert procfs.parse_id_list("0,2-4,7") == [0, 2, 3, 4, 7]
    assert procfs.parse_id_list("") == []


def test_possible_cpus_covers_every_cpu_this_process_may_run_on():
    text = Path("/sys/devices/system/cpu/possible").read_text()
    assert procfs.possible_cpus() == max(procfs.parse_id_list(text)) + 1
    assert procfs.possible_cpus() > max(os.sched_getaffinity(0))
