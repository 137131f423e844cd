"""heatmap.py's scope in the QEMU guest on the patched kernel (mglru): a command it
starts and watches (-- CMD), several PIDs, --children, --cgroup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heatmap_fakes import end_of_run, json_intervals  # noqa: E402
from test_heatmap_guest import PAGES, REGION, REPO, WORKER, _no_aslr  # noqa: E402

from kernelstate import kernel_ids, leftovers  # noqa: E402

pytestmark = pytest.mark.skipif(os.environ.get("HEATMAP_IN_GUEST") != "1",
                                reason="runs inside the test guest only")

HEATMAP = [sys.executable, str(REPO / "heatmap.py"), "--source", "mglru"]


def regions_of(base: int) -> list[int]:
    return [base + i * REGION for i in range(16)]


def test_command_watched_from_its_first_interval_exit_status_and_output(tmp_path):
    """The worker touches all 16 regions at its start, then 4 of them over and over;
    heatmap sees the whole start (it attached before the exec): each of the 12 regions
    touched only then is found young exactly once per page over the run, from interval
    0 or 1 on (the start's 8192 page faults may straddle a scan, so it may be split over
    two intervals); later intervals have the hot regions alone.  Its output goes to
    --cmd-output, never into the JSON, and heatmap exits with the worker's status."""
    before = kernel_ids()
    out = tmp_path / "cmd.out"
    r = subprocess.run([*HEATMAP, "--json", "--interval", "1", "--cmd-output", out, "--",
                        sys.executable, "-c", WORKER + "\nsys.exit(5)\n", "6"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 5, r.stderr
    base = int(out.read_text().split()[0])
    intervals = json_intervals(r.stdout)
    assert len(intervals) >= 3
    ours = set(regions_of(base))
    hot = set(regions_of(base)[4:8])
    total = dict.fromkeys(ours, 0)
    seen: dict[int, list[int]] = {}  # region -> the intervals it was found young in
    for i, iv in enumerate(intervals):
        for x in iv["regions"]:
            if x["start"] in ours and x["accessed"]:
                total[x["start"]] += x["accessed"]
                seen.setdefault(x["start"], []).append(i)
    assert {a: total[a] for a in ours - hot} == dict.fromkeys(ours - hot, PAGES), total
    assert min(min(v) for v in seen.values()) <= 1, seen  # (python's start-up: ~1 s)
    cold_done = max(max(seen[a]) for a in ours - hot)
    full = [{x["start"] for x in iv["regions"] if x["accessed"] == PAGES} for iv in intervals]
    for young in full[cold_done + 1:-1]:  # then its hot regions alone
        assert hot <= young and not (young & ours) - hot, young
    assert cold_done + 1 < len(intervals) - 1, seen  # (some such intervals were checked)
    assert "exited with status 5" in end_of_run(r.stderr)
    assert not leftovers(before)


def test_ctrl_c_stops_the_command_and_leaves_nothing(tmp_path):
    before = kernel_ids()
    out = tmp_path / "cmd.out"  # (the worker's KeyboardInterrupt traceback)
    p = subprocess.Popen([*HEATMAP, "--json", "--interval", "1", "--cmd-output", out, "--",
                          sys.executable, "-c", WORKER, "120"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        pid = json.loads(p.stdout.readline())["pid"]
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 128 + signal.SIGINT, err
    assert "Traceback" not in err and "interrupted" in end_of_run(err)
    assert not os.path.exists(f"/proc/{pid}"), "the command lives on"
    assert not leftovers(before)


def worker_with_hot(first: int, last: int, worker: str = WORKER) -> str:
    return worker.replace("n, hot = 16, range(4, 8)", f"n, hot = 16, range({first}, {last})")


def young_by_pid(interval: dict) -> dict[int, set[int]]:
    """pid -> starts of its fully young regions."""
    out: dict[int, set[int]] = {}
    for x in interval["regions"]:
        if x["accessed"] == PAGES:
            out.setdefault(x["pid"], set()).add(x["start"])
    return out


def start_worker(script: str, seconds: float = 120) -> tuple[subprocess.Popen, int]:
    p = subprocess.Popen([sys.executable, "-c", script, str(seconds)], stdout=subprocess.PIPE,
                         text=True, preexec_fn=_no_aslr)
    return p, int(p.stdout.readline())


def stop(*procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def two_pids_run(heatmap: list, count: int, exit_after: int, worker: str = WORKER):
    """heatmap on two workers without ASLR (the same addresses; hot regions 4-8 in a,
    10-12 in b); b exits after `exit_after` intervals.  Returns the JSON intervals,
    heatmap's stderr, the workers a and b and their base address."""
    a, base = start_worker(worker_with_hot(4, 8, worker))
    b, base_b = start_worker(worker_with_hot(10, 12, worker))
    assert base == base_b  # (the point: the same addresses in both)
    heat = subprocess.Popen([*heatmap, str(a.pid), str(b.pid), "--json", "--count",
                             str(count), "--interval", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = [heat.stdout.readline() for _ in range(exit_after)]
        stop(b)  # exits mid-run; a lives on
        rest, err = heat.communicate(timeout=180)
    finally:
        stop(a, b)
        if heat.poll() is None:
            heat.kill()
    assert heat.returncode == 0, err
    intervals = json_intervals("".join(lines) + rest)
    assert len(intervals) == count
    return intervals, err, a, b, base


def test_several_pids_at_the_same_addresses_are_told_apart():
    """Two workers without ASLR: the same addresses, different hot regions; then one
    exits and the other is watched on."""
    before = kernel_ids()
    intervals, err, a, b, base = two_pids_run(HEATMAP, 4, 2)
    regions = regions_of(base)
    for iv in intervals[:2]:
        assert [t["pid"] for t in iv["targets"]] == [a.pid, b.pid]
        young = young_by_pid(iv)
        assert young[a.pid] & set(regions) == set(regions[4:8]), young
        assert young[b.pid] & set(regions) == set(regions[10:12]), young
    last = intervals[-1]
    assert [t["pid"] for t in last["targets"]] == [a.pid]
    assert young_by_pid(last)[a.pid] & set(regions) == set(regions[4:8])
    assert f"heatmap: process {b.pid} (" in err and "exited; watching 1 other" in err
    assert "Traceback" not in err and "(count reached)" in end_of_run(err)
    assert not leftovers(before)


PARENT = r"""
import subprocess, sys, time
time.sleep(2.5)  # heatmap is well under way
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], "5"], stdout=subprocess.PIPE)
print(child.pid, child.stdout.readline().decode().strip(), flush=True)
sys.exit(child.wait())
"""


def children_run(heatmap: list, parent: str, tmp_path: Path, worker: str = WORKER):
    """heatmap --children on `-- python -c parent WORKER`: the run, and what the
    parent printed (its children's pids and bases)."""
    out = tmp_path / "cmd.out"
    r = subprocess.run([*heatmap, "--children", "--json", "--interval", "1", "--cmd-output",
                        out, "--", sys.executable, "-c", parent, worker],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r, out.read_text()


def test_children_started_mid_run_are_watched(tmp_path):
    before = kernel_ids()
    r, printed = children_run(HEATMAP, PARENT, tmp_path)
    child, base = map(int, printed.split())
    intervals = json_intervals(r.stdout)
    parent = intervals[0]["targets"][0]["pid"]
    assert [t["pid"] for t in intervals[0]["targets"]] == [parent]
    joined = [i for i, iv in enumerate(intervals) if child in [t["pid"] for t in iv["targets"]]]
    assert joined and joined[0] >= 1, "the child was there from the start"
    # its start (all 16 regions written) is seen once it joined: each region touched
    # only then is found young exactly once per page (the start's page faults may
    # straddle a scan, so it may be split over two intervals); then its hot regions
    ours, hot = set(regions_of(base)), set(regions_of(base)[4:8])
    total = dict.fromkeys(ours, 0)
    last = 0  # the last interval a once-touched region was found young in
    for i, iv in enumerate(intervals):
        for x in iv["regions"]:
            if x.get("pid") == child and x["start"] in ours and x["accessed"]:
                assert i >= joined[0], (i, joined)
                total[x["start"]] += x["accessed"]
                if x["start"] not in hot:
                    last = max(last, i)
    assert {a: total[a] for a in ours - hot} == dict.fromkeys(ours - hot, PAGES), total
    seen = [young_by_pid(iv).get(child, set()) for iv in intervals]
    steady = seen[last + 1:-1]
    assert steady and all(hot <= young for young in steady), seen
    assert f"heatmap: process {child} (" in r.stderr and ") joined; watching 2" in r.stderr
    assert not leftovers(before)


@pytest.fixture
def cgroup():
    path = Path("/sys/fs/cgroup") / f"heatmap-test-{os.getpid()}"
    path.mkdir()
    yield path
    for pid in (path / "cgroup.procs").read_text().split():
        with open("/sys/fs/cgroup/cgroup.procs", "w") as f:
            f.write(pid)
    path.rmdir()


def cgroup_run(heatmap: list, cgroup: Path, count: int, worker: str = WORKER):
    """heatmap on a cgroup holding a worker (hot regions 4-8, pid a); a second one (hot
    10-12, pid b) joins after the first interval; a third (every region hot) stays
    outside.  Returns the JSON intervals, the pids a, b and outside, and the workers'
    base address (the same in all three: no ASLR)."""
    a, base = start_worker(worker_with_hot(4, 8, worker))
    b, _ = start_worker(worker_with_hot(10, 12, worker))
    outside, _ = start_worker(worker_with_hot(0, 16, worker))
    (cgroup / "cgroup.procs").write_text(str(a.pid))
    heat = subprocess.Popen([*heatmap, "--cgroup", cgroup.name, "--json", "--count",
                             str(count), "--interval", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = [heat.stdout.readline()]
        (cgroup / "cgroup.procs").write_text(str(b.pid))  # joins mid-run
        rest, err = heat.communicate(timeout=180)
    finally:
        stop(a, b, outside)
        if heat.poll() is None:
            heat.kill()
    assert heat.returncode == 0, err
    return json_intervals("".join(lines) + rest), a, b, outside, base


def test_a_cgroups_processes_are_watched_and_one_joining_is_picked_up(cgroup):
    before = kernel_ids()
    intervals, a, b, outside, base = cgroup_run(HEATMAP, cgroup, 5)
    assert [t["pid"] for t in intervals[0]["targets"]] == [a.pid]
    assert [t["pid"] for t in intervals[-1]["targets"]] == [a.pid, b.pid]
    regions = set(regions_of(base))
    last = young_by_pid(intervals[-1])
    assert last[a.pid] & regions == set(regions_of(base)[4:8])
    assert last[b.pid] & regions == set(regions_of(base)[10:12])
    assert outside.pid not in {x["pid"] for iv in intervals for x in iv["regions"]}
    assert not leftovers(before)


@pytest.mark.parametrize("path, message", [
    ("/proc", "--cgroup /proc: not a cgroup directory (no cgroup.procs)"),
    ("/no/such/cgroup", "--cgroup /no/such/cgroup: no such directory"),
])
def test_not_a_cgroup_is_one_line(path, message):
    r = subprocess.run([*HEATMAP, "--cgroup", path], capture_output=True, text=True,
                       timeout=60)
    assert (r.returncode, r.stderr) == (2, f"heatmap: {message}\n")
