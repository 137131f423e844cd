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
    """The syscall program "scan", as test_run() sees it: it writes ret into the ctx
    (the last of rets again once they run out)."""

    def __init__(self, *rets: int):
        self.rets = list(rets)
        self.calls = 0
        self.ctx_in = b""

    def test_run(self, ctx: bytes):
        self.ctx_in = ctx
        _, slot, tgid, pad = struct.unpack("<iIiI", ctx)
        ret = self.rets[min(self.calls, len(self.rets) - 1)]
        self.calls += 1
        return type("Run", (), {"ctx": struct.pack("<iIiI", ret, slot, tgid, pad)})()


def _counts(*rets: int) -> tuple[heatmap.KernelCounts, _Scan]:
    import bpfload

    scan = _Scan(*rets)
    counts = object.__new__(heatmap.KernelCounts)
    counts.pid, counts._bpfload, counts.targets = 42, bpfload, {0: 0}
    counts._obj = type("Obj", (), {"program": lambda self, name: {"scan": scan}[name]})()
    return counts, scan


def test_a_scan_that_worked_is_timed():
    counts, scan = _counts(0)
    assert counts.age() >= 0
    # struct scan_args: ret cleared, slot 0, tgid 0 (the object's target_tgid)
    assert scan.ctx_in == struct.pack("<iIiI", 0, 0, 0, 0)


def test_a_target_without_memory_is_a_lookup_error_the_run_checks():
    # LiveSource.take() turns an OSError into TargetExited when /proc says it is gone
    with pytest.raises(ProcessLookupError):
        _counts(-errno.ESRCH)[0].age()


@pytest.mark.parametrize("err", [errno.EOPNOTSUPP, errno.EINTR, errno.EBUSY, errno.EINVAL])
def test_a_failed_scan_is_one_line_naming_the_kfunc_and_errno(err, no_waiting):
    counts, scan = _counts(-err)
    with pytest.raises(heatmap.HeatmapError) as e:
        counts.age()
    assert str(e.value).startswith(f"the scan failed: {heatmap.SCAN_KFUNC}() returned "
                                   f"{errno.errorcode[err]} (")
    assert "\n" not in str(e.value)
    assert scan.calls == (heatmap.KernelCounts.BUSY_TRIES if err == errno.EBUSY else 1)


@pytest.fixture
def no_waiting(monkeypatch) -> list[float]:
    """The waits between retries, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr(heatmap.time, "sleep", waits.append)
    return waits


def test_a_busy_scan_is_retried_until_it_passes(no_waiting):
    """-EBUSY lasts while cgroup v1 charges are moved: a few waits, then the scan runs."""
    counts, scan = _counts(-errno.EBUSY, -errno.EBUSY, 0)
    assert counts.age() >= 0
    assert scan.calls == 3
    assert no_waiting == [0.02, 0.04]


def test_a_scan_that_stays_busy_says_so_after_the_last_try(no_waiting):
    counts, scan = _counts(-errno.EBUSY)
    with pytest.raises(heatmap.HeatmapError) as e:
        counts.age()
    tries = heatmap.KernelCounts.BUSY_TRIES
    assert scan.calls == tries and len(no_waiting) == tries - 1
    assert str(e.value).endswith(f"EBUSY (Device or resource busy) {tries} times in a row "
                                 "(cgroup v1 charges of the target's memcg kept moving)")


def test_a_busy_scan_then_another_error_reports_that_error(no_waiting):
    counts, scan = _counts(-errno.EBUSY, -errno.ESRCH)
    with pytest.raises(ProcessLookupError):
        counts.age()
    assert scan.calls == 2
