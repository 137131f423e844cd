"""The parts of heatmap.py's mglru side that need no kernel: the node lists it reads
from sysfs, and what a scan's return value means to the run (the scan itself runs in
the guest: tests/guest/test_heatmap_guest.py)."""

from __future__ import annotations

import errno
import struct

import pytest

import heatmap


def test_node_lists():
    assert heatmap._node_list("has_memory")  # this machine's own list
    assert heatmap._node_list("no_such_state") == [0]


class _Scan:
    """The syscall program "scan", as test_run() sees it: it writes ret into the ctx."""

    def __init__(self, ret: int):
        self.ret = ret
        self.ctx_in = b""

    def test_run(self, ctx: bytes):
        self.ctx_in = ctx
        return type("Run", (), {"ctx": struct.pack("<iI", self.ret, 0)})()


def _counts(ret: int) -> tuple[heatmap.KernelCounts, _Scan]:
    import bpfload

    scan = _Scan(ret)
    counts = object.__new__(heatmap.KernelCounts)
    counts.pid, counts._bpfload = 42, bpfload
    counts._obj = type("Obj", (), {"program": lambda self, name: {"scan": scan}[name]})()
    return counts, scan


def test_a_scan_that_worked_is_timed():
    counts, scan = _counts(0)
    assert counts.age() >= 0
    assert scan.ctx_in == struct.pack("<iI", 0, 0)  # struct scan_args, ret cleared


def test_a_target_without_memory_is_a_lookup_error_the_run_checks():
    # LiveSource.take() turns an OSError into TargetExited when /proc says it is gone
    with pytest.raises(ProcessLookupError):
        _counts(-errno.ESRCH)[0].age()


@pytest.mark.parametrize("err", [errno.EOPNOTSUPP, errno.EINTR, errno.EBUSY, errno.EINVAL])
def test_a_failed_scan_is_one_line_naming_the_kfunc_and_errno(err):
    with pytest.raises(heatmap.HeatmapError) as e:
        _counts(-err)[0].age()
    assert str(e.value).startswith(f"the scan failed: {heatmap.SCAN_KFUNC}() returned "
                                   f"{errno.errorcode[err]} (")
