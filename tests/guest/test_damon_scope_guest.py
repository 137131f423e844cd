"""The damon source with several processes in the QEMU guest: one kdamond target per
process.  Two PIDs at the same addresses with different hot regions are told apart;
--children and --cgroup, whose processes join a running kdamond, are refused in one
line; a kdamond with two targets that a killed run left is stopped by the next run.
DAMON samples one page per adaptive region, and under TCG not often: each process's hot
regions must come out hotter than its others (in order), not exact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heatmap_fakes import end_of_run  # noqa: E402
from test_heatmap_guest import REPO  # noqa: E402
from test_heatmap_scope_guest import (  # noqa: E402
    cgroup,  # noqa: F401 (the fixture)
    regions_of,
    start_worker,
    stop,
    two_pids_run,
    worker_with_hot,
)
from test_sources_guest import KDAMONDS, RECORD  # noqa: E402

from kernelstate import kernel_ids, leftovers  # noqa: E402

pytestmark = pytest.mark.skipif(os.environ.get("HEATMAP_IN_GUEST") != "1",
                                reason="runs inside the test guest only")

HEATMAP = [sys.executable, str(REPO / "heatmap.py"), "--source", "damon"]


def damon_state() -> tuple:
    return int((KDAMONDS / "nr_kdamonds").read_text()), RECORD.exists()


def assert_clean(before, what: str) -> None:
    assert damon_state() == (0, False), f"DAMON state left behind after {what}"
    assert not leftovers(before), f"BPF objects left behind after {what}"


def shares(intervals, pid: int, regions: list[int]) -> float:
    """pid's mean accessed pages per region over regions and intervals (under pid only)."""
    total = sum(x["accessed"] for iv in intervals for x in iv["regions"]
                if x["pid"] == pid and x["start"] in regions)
    return total / (len(regions) * max(1, len(intervals)))


def with_target(intervals, pid: int) -> list[dict]:
    return [iv for iv in intervals if pid in [t["pid"] for t in iv["targets"]]]


def test_two_pids_at_the_same_addresses_each_get_their_own_hot_regions():
    before = kernel_ids()
    intervals, err, a, b, base = two_pids_run(HEATMAP, 6, 4)
    regions = regions_of(base)
    hot_a, hot_b, cold = regions[4:8], regions[10:12], regions[13:16]
    both = intervals[1:4]  # (the first: DAMON's regions still adapting)
    for iv in both:
        assert [t["pid"] for t in iv["targets"]] == [a.pid, b.pid]
        assert {x["pid"] for x in iv["regions"]} <= {a.pid, b.pid}
    # each process's hot regions hotter than the other's (cold for it) and its cold ones
    assert shares(both, a.pid, hot_a) > max(shares(both, a.pid, hot_b),
                                            shares(both, a.pid, cold)), both
    assert shares(both, b.pid, hot_b) > max(shares(both, b.pid, hot_a),
                                            shares(both, b.pid, cold)), both
    last = intervals[-1]
    assert [t["pid"] for t in last["targets"]] == [a.pid]
    assert shares([last], a.pid, hot_a) > shares([last], a.pid, cold)
    assert f"heatmap: process {b.pid} (" in err and "exited; watching 1 other" in err
    assert "Traceback" not in err and "(count reached)" in end_of_run(err)
    assert_clean(before, "two pids")


REFUSED = ("heatmap: the damon source watches only the processes there when it starts: "
           "for --children or --cgroup use mglru, idle or refs")


def test_children_are_refused_in_one_line(tmp_path):
    """A process committed to a running kdamond was now and then counted as nothing for
    as long as it lived (CI, 2 runs of 3): until that is understood, damon refuses the
    scopes that take joiners, in one line, leaving nothing behind."""
    before = kernel_ids()
    r = subprocess.run([*HEATMAP, "--children", "--json", "--interval", "1", "--",
                        sys.executable, "-c", "import time; time.sleep(30)"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [REFUSED]
    assert_clean(before, "--children refused")


def test_a_cgroup_is_refused_in_one_line(cgroup):  # noqa: F811
    before = kernel_ids()
    a, _ = start_worker(worker_with_hot(4, 8))
    try:
        (cgroup / "cgroup.procs").write_text(str(a.pid))
        r = subprocess.run([*HEATMAP, "--cgroup", cgroup.name, "--json", "--interval", "1"],
                           capture_output=True, text=True, timeout=120)
    finally:
        stop(a)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [REFUSED]
    assert_clean(before, "--cgroup refused")


def test_a_killed_runs_kdamond_with_two_targets_is_stopped_by_the_next():
    before = kernel_ids()
    a, _ = start_worker(worker_with_hot(4, 8))
    b, _ = start_worker(worker_with_hot(10, 12))
    try:
        p = subprocess.Popen([*HEATMAP, str(a.pid), str(b.pid), "--json", "--interval", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.stdout.readline(), p.stderr.read()
        k = KDAMONDS / "0"
        kdamond = int((k / "pid").read_text())
        targets = k / "contexts" / "0" / "targets"
        assert int((targets / "nr_targets").read_text()) == 2
        assert [int((targets / str(i) / "pid_target").read_text()) for i in (0, 1)] == \
            [a.pid, b.pid]
        p.kill()  # no clean-up possible
        p.communicate(timeout=60)
        assert damon_state() == (1, True)
        r = subprocess.run([*HEATMAP, str(a.pid), "--count", "1", "--interval", "1"],
                           capture_output=True, text=True, timeout=300)
    finally:
        stop(a, b)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[0] == (
        f"heatmap: stopped the kdamond (pid {kdamond}) that an earlier heatmap run "
        f"(pid {p.pid}, watching pids {a.pid}, {b.pid}) left behind")
    assert_clean(before, "the second run")
