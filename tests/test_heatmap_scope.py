"""Several processes in one run, on synthetic data (a fake /proc and fake counts):
rows grouped per process under a heading, JSON and recordings carrying each region's
process, a process exiting while the others live on, --children and --cgroup finding
processes, the mglru-style shared counts source and its slots."""

from __future__ import annotations

import io
import json
import os

import pytest
from heatmap_fakes import (
    SMALL_MAPS,
    FakeClock,
    end_of_run,
    exit_target,
    heatmap,
    json_intervals,
    json_summary,
    make_proc,
    maps_line,
    region,
)

ENV = {"COLUMNS": "70", "LINES": "30"}
OTHER_MAPS = "\n".join([
    maps_line(0x400000, 0x800000, "r-xp", 0, "08:01", 99, "/usr/bin/worker"),
    maps_line(0x10000000, 0x10400000, "rw-p", 0, "00:00", 0, "[heap]"),
]) + "\n"
HEAP = region(0x10000000)


def per_pid_factory(scripts: dict[int, list], clock: FakeClock, on_age=None):
    """A counts source per process (like idle and refs): each drains its own script."""
    class Counts:
        instances: list = []

        def __init__(self, pid, region_shift, max_regions, interval=None):
            self.pid, self.drains, self.ages, self.closed = pid, 0, 0, 0
            self.instances.append(self)

        def age(self):
            self.ages += 1
            if on_age is not None:
                on_age(self.pid, self.ages)
            clock.t += 0.01
            return 0.01

        def drain(self):
            self.drains += 1
            if self.drains == 1:
                return [(HEAP, 0, 99999, 0)]  # the warm-up: never shown
            script = scripts.get(self.pid, [])
            i = self.drains - 2
            return list(script[i]) if i < len(script) else []

        def dropped(self):
            return 0

        def resize(self, n):
            pass

        def close(self):
            self.closed += 1
    return Counts


def run(tmp_path, *args, factory=None, clock=None, environ=ENV):
    clock = clock or FakeClock()
    out, err = io.StringIO(), io.StringIO()
    rc = heatmap.main([str(a) for a in args], counts_factory=factory, proc_root=str(tmp_path),
                      clock=clock, sleep=clock.sleep, stdout=out, stderr=err, environ=environ)
    return rc, out.getvalue(), err.getvalue()


def two_processes(tmp_path):
    make_proc(tmp_path, 100, SMALL_MAPS, comm="server")
    make_proc(tmp_path, 200, OTHER_MAPS, comm="worker")


def test_json_gives_each_regions_process_and_its_own_addresses(tmp_path):
    two_processes(tmp_path)
    clock = FakeClock()
    scripts = {100: [[(HEAP, 0, 512, 0)]] * 2, 200: [[(HEAP + 1, 0, 256, 0)]] * 2}
    factory = per_pid_factory(scripts, clock)
    rc, out, err = run(tmp_path, "100", "200", "--json", "--count", "2", factory=factory,
                       clock=clock)
    assert rc == 0, err
    first = json.loads(out.splitlines()[0])
    assert first["targets"] == [{"pid": 100, "comm": "server"}, {"pid": 200, "comm": "worker"}]
    assert [(r["pid"], r["start"], r["mapping"], r["accessed"]) for r in first["regions"]] == [
        (100, 0x10000000, "[heap]", 512), (200, 0x10200000, "[heap]", 256)]
    assert "hottest region 0x10000000-0x10200000 of pid 100 [heap]" in err
    untouched = json_summary(out)["never_touched"]  # each range in its own process
    assert {r["pid"] for r in untouched} == {100, 200}
    assert all(r["start"] < 1 << 47 for r in untouched)
    assert "  0x10200000-0x11000000 pid 100 [heap] 14 MiB" in err.splitlines()
    assert {c.pid for c in factory.instances} == {100, 200}
    assert all(c.closed == 1 for c in factory.instances)


def test_rows_are_grouped_under_a_heading_per_process(tmp_path):
    two_processes(tmp_path)
    clock = FakeClock()
    factory = per_pid_factory({100: [[(HEAP, 0, 512, 0)]], 200: [[(HEAP + 1, 0, 512, 0)]]},
                              clock)
    rc, out, err = run(tmp_path, "100", "200", "--count", "1", factory=factory, clock=clock)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("heatmap 2 processes")
    heads = [i for i, line in enumerate(lines) if line.startswith("-- pid ")]
    assert [lines[i].split("(")[0] for i in heads] == ["-- pid 100 ", "-- pid 200 "]
    assert len(lines[heads[0]]) == 70
    server = [row.split("|")[0].split()[:2] for row in lines[heads[0] + 1: heads[1]]]
    worker = [row.split("|")[0].split()[:2] for row in lines[heads[1] + 1: heads[1] + 5]]
    assert {name for _, name in server} == {"hotspot", "[heap]", "anon", "[stack]"}
    assert {name for _, name in worker} == {"worker", "[heap]"}
    hot = [row.split()[0] for row in lines[heads[0] + 1: heads[1] + 5]
           if row.rstrip().endswith("@")]
    assert hot == ["000010000000", "000010200000"]  # each process's own addresses


def test_a_process_that_exits_is_one_line_and_the_others_live_on(tmp_path):
    two_processes(tmp_path)
    clock = FakeClock()

    def leave(pid, n):
        if pid == 200 and n == 3:
            exit_target(tmp_path, 200)
        if pid == 100 and n == 5:
            exit_target(tmp_path, 100)

    factory = per_pid_factory({100: [[(HEAP, 0, 512, 0)]] * 9}, clock, on_age=leave)
    rc, out, err = run(tmp_path, "100", "200", "--json", factory=factory, clock=clock)
    assert rc == 0, err
    lines = err.strip().splitlines()
    assert lines[0] == "heatmap: process 200 (worker) exited; watching 1 other"
    last = end_of_run(err)
    assert last.startswith("heatmap: 3 intervals") and "(target exited)" in last
    objs = json_intervals(out)
    assert [len(o["targets"]) for o in objs] == [2, 1, 1]  # then one process
    assert all(c.closed == 1 for c in factory.instances)


def test_a_recording_of_several_processes_replays_the_same(tmp_path):
    two_processes(tmp_path)
    clock = FakeClock()
    factory = per_pid_factory({100: [[(HEAP, 0, 512, 0)]] * 3, 200: [[(HEAP, 0, 100, 0)]] * 3},
                              clock)
    rec = tmp_path / "run.jsonl"
    rc, live, _ = run(tmp_path, "100", "200", "--json", "--count", "3", "--record", rec,
                      factory=factory, clock=clock)
    assert rc == 0
    header = json.loads(rec.read_text().splitlines()[0])
    assert header["targets"] == [[0, 100, "server"], [1, 200, "worker"]]
    rc, replayed, _ = run(tmp_path, "--replay", rec, "--json")
    assert rc == 0 and replayed == live
    rc, frame, _ = run(tmp_path, "--replay", rec, "--count", "1")
    assert "-- pid 200 (worker)" in frame
    svg = tmp_path / "run.svg"
    assert run(tmp_path, "--replay", rec, "--svg", svg)[0] == 0
    labels = [line for line in svg.read_text().splitlines() if 'text-anchor="end"' in line]
    assert any(">100: 10000000 [heap]<" in line for line in labels)
    assert any(">200: 10000000 [heap]<" in line for line in labels)


def test_a_given_pid_that_does_not_exist_is_one_line(tmp_path):
    two_processes(tmp_path)
    rc, _, err = run(tmp_path, "100", "300", factory=per_pid_factory({}, FakeClock()))
    assert (rc, err) == (1, "heatmap: no such process: 300\n")


class SharedCounts:
    """Like KernelCounts: one source for every target, slots in the region index."""

    multi_target = True
    instances: list = []

    def __init__(self, pid, region_shift, max_regions, interval=None):
        self.shift = region_shift
        self.targets = {0: pid}
        self.pending: list = []
        self.log: list = []
        self.instances.append(self)

    def add_target(self, pid, slot):
        self.targets[slot] = pid
        self.log.append(("add", pid, slot))

    def remove_target(self, slot):
        self.log.append(("remove", self.targets.pop(slot), slot))

    def warm(self, slot):
        self.log.append(("warm", slot))

    def age(self):
        off = heatmap.TARGET_BITS - self.shift
        self.pending = [(HEAP + (slot << off), 0, 10 * (slot + 1), 0) for slot in self.targets]
        return 0.01

    def drain(self):
        out, self.pending = self.pending, []
        return out

    def dropped(self):
        return 0

    def resize(self, n):
        pass

    def close(self):
        self.log.append(("close",))


def test_a_shared_source_that_samples_itself_sets_the_agings_per_column(tmp_path):
    # like DamonCounts: one source for every process, several samples per column
    two_processes(tmp_path)
    counts = type("Sampling", (SharedCounts,), {"instances": [], "samples_per_column": 5})
    rc, out, err = run(tmp_path, "100", "200", "--json", "--count", 2, factory=counts)
    assert rc == 0, err
    objs = json_intervals(out)
    assert [o["agings"] for o in objs] == [5, 5]
    (shared,) = counts.instances
    assert ("add", 200, 1) in shared.log
    assert {r["pid"] for r in objs[-1]["regions"]} == {100, 200}


def write_stat(root, pid, ppid, comm):
    (root / str(pid) / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 0\n")


def test_children_started_mid_run_are_watched(tmp_path):
    make_proc(tmp_path, 100, SMALL_MAPS, comm="server")
    clock = FakeClock()
    counts = type("Shared", (SharedCounts,), {"instances": []})

    def spawn():  # a child and a grandchild appear after the second interval
        if clock.t > 1004.5 and not (tmp_path / "101").exists():
            make_proc(tmp_path, 101, OTHER_MAPS, comm="child")
            write_stat(tmp_path, 101, 100, "child")
            make_proc(tmp_path, 102, OTHER_MAPS, comm="grandchild")
            write_stat(tmp_path, 102, 101, "grandchild")
        return real_sleep_fake(0)

    real_sleep_fake = clock.sleep

    def sleep(d):
        real_sleep_fake(d)
        spawn()

    out, err = io.StringIO(), io.StringIO()
    rc = heatmap.main(["100", "--children", "--json", "--count", "4"], counts_factory=counts,
                      proc_root=str(tmp_path), clock=clock, sleep=sleep, stdout=out,
                      stderr=err, environ=ENV)
    assert rc == 0, err.getvalue()
    objs = json_intervals(out.getvalue())
    pids = [sorted({r["pid"] for r in o["regions"]}) for o in objs]
    assert pids[0] == [100] and pids[-1] == [100, 101, 102]
    (shared,) = counts.instances
    assert ("add", 101, 1) in shared.log and ("warm", 1) in shared.log
    assert ("add", 102, 2) in shared.log
    assert "process 101 (child) joined; watching 2" in err.getvalue()


def test_cgroup_directories_are_checked(tmp_path):
    with pytest.raises(heatmap.HeatmapError, match="no such directory"):
        heatmap.cgroup_dir(str(tmp_path / "nope"))
    (tmp_path / "file").write_text("")
    with pytest.raises(heatmap.HeatmapError, match="not a directory"):
        heatmap.cgroup_dir(str(tmp_path / "file"))
    with pytest.raises(heatmap.HeatmapError, match=r"not a cgroup directory \(no cgroup.procs\)"):
        heatmap.cgroup_dir(str(tmp_path))
    (tmp_path / "cgroup.procs").write_text("")
    with pytest.raises(heatmap.HeatmapError, match="a cgroup v1 directory; --cgroup needs "
                                                   "cgroup v2"):
        heatmap.cgroup_dir(str(tmp_path))
    (tmp_path / "cgroup.controllers").write_text("")
    assert heatmap.cgroup_dir(str(tmp_path)) == str(tmp_path)


def test_a_cgroup_holds_its_child_cgroups_processes(tmp_path):
    (tmp_path / "cgroup.procs").write_text("10\n11\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "cgroup.procs").write_text("12\n")
    assert sorted(heatmap.cgroup_procs(str(tmp_path))) == [10, 11, 12]
    scope = heatmap.ProcessSet([5], cgroup=str(tmp_path))
    assert scope.current()[0] == 5 and sorted(scope.current()) == [5, 10, 11, 12]


def test_descendants_in_order():
    ppids = {1: 0, 10: 1, 11: 10, 12: 10, 13: 11, 20: 1}
    assert heatmap.descendants([10], ppids) == [11, 12, 13]
    assert heatmap.descendants([10, 20], ppids) == [11, 12, 13]


def test_an_empty_cgroup_is_one_line(tmp_path):
    cg = tmp_path / "cg"
    cg.mkdir()
    for name in ("cgroup.procs", "cgroup.controllers"):
        (cg / name).write_text("")
    rc, _, err = run(tmp_path, "--cgroup", str(cg), factory=SharedCounts)
    assert (rc, err) == (1, f"heatmap: cgroup {cg} has no process to watch\n")


def test_old_single_process_recordings_have_no_headings(tmp_path):
    make_proc(tmp_path, 100, SMALL_MAPS)
    clock = FakeClock()
    rc, out, _ = run(tmp_path, "100", "--count", "1",
                     factory=per_pid_factory({100: [[(HEAP, 0, 5, 0)]]}, clock), clock=clock)
    assert rc == 0 and "-- pid" not in out and out.startswith("heatmap pid 100 (hotspot)")
    assert os.environ.get("X") is None


TOUCHER = """
import sys, time
buf = bytearray(8 << 20)
print("ready", flush=True)
while True:
    for i in range(0, len(buf), 4096):
        buf[i] = 1
    time.sleep(0.02)
"""


def test_two_real_processes_with_the_refs_source(tmp_path):
    """On this machine's kernel (refs: one instance per process), each process's
    regions come back under its own pid."""
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", TOUCHER], stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline() == "ready\n"
        r = subprocess.run([sys.executable, str(heatmap.__file__), *(str(p.pid) for p in procs),
                            "--source", "refs", "--json", "--count", "2", "--interval", "0.3"],
                           capture_output=True, text=True, timeout=60)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert r.returncode == 0, r.stderr
    last = json_intervals(r.stdout)[-1]
    assert [t["pid"] for t in last["targets"]] == [p.pid for p in procs]
    busy = {x["pid"] for x in last["regions"] if x["mapping"] == "anon" and x["accessed"]}
    assert busy == {p.pid for p in procs}


# -- zoom into one process of several ---------------------------------------------------

MiB = 1 << 20


class ZoomCounts(SharedCounts):
    """Shared counts (mglru-like) that find, at any region size, 4 young pages of every
    16 KiB in the first 256 KiB of each target's heap."""

    def age(self):
        off = heatmap.TARGET_BITS - self.shift
        young: dict = {}
        for slot in self.targets:
            for addr in range(0x10000000, 0x10000000 + (256 << 10), 16 << 10):
                key = (addr >> self.shift) + (slot << off)
                young[key] = young.get(key, 0) + 4
        self.pending = [(r, 0, n, 0) for r, n in sorted(young.items())]
        self.ages = getattr(self, "ages", 0) + 1
        return 0.01


class PerProcessZoomCounts(ZoomCounts):
    """The same, one instance per process (like idle): no multi_target."""

    multi_target = False


def zoom_source(tmp_path, counts, children=False, pids=(100, 200)):
    two_processes(tmp_path)
    clock = FakeClock()
    processes = heatmap.ProcessSet(list(pids), children=children, proc_root=str(tmp_path))
    source = heatmap.ProcessSetSource(processes, 21, 1.0, counts, str(tmp_path), clock,
                                      page_size=4096)
    said: list[str] = []
    source.say = said.append
    source.open()
    return source, clock, said


def slot_regions(sample, shift):
    """{slot: sorted own addresses of the regions found young}."""
    out: dict = {}
    for r, _n, _a, _f in sample.counts:
        addr = r << shift
        out.setdefault(heatmap.target_slot(addr), []).append(addr & heatmap.TARGET_MASK)
    return {s: sorted(v) for s, v in out.items()}


@pytest.mark.parametrize("kind", [ZoomCounts, PerProcessZoomCounts])
def test_zoom_into_one_of_two_processes_and_back_out(tmp_path, kind):
    counts = type("Counts", (kind,), {"instances": []})
    source, clock, said = zoom_source(tmp_path, counts)
    try:
        clock.t += 1
        whole = source.take()
        assert slot_regions(whole, 21) == {0: [0x10000000], 1: [0x10000000]}
        # zoom into process 200's first heap row (slot 1), 64 rows: 32 KiB regions
        worker = 1 << heatmap.TARGET_BITS
        source.zoom(worker + 0x10000000, worker + 0x10200000, 64)
        assert source.shift == 15 and source.header["zoom"] == 1
        assert source.header["range"] == [worker + 0x10000000, worker + 0x10200000]
        focus = counts.instances[-1]
        assert (focus.targets, focus.shift) == ({0: 200}, 15)
        clock.t += 1
        fine = source.take()
        assert slot_regions(fine, 15) == {1: list(range(0x10000000, 0x10040000, 1 << 15))}
        assert all(a == 8 for _r, _n, a, _f in fine.counts)  # 4 pages of every 16 KiB
        assert [(m.start - worker, m.end - worker) for m in fine.maps] == [
            (0x10000000, 0x10200000)]
        assert fine.zoom == {"zoom": 1, "region_shift": 15,
                             "range": [worker + 0x10000000, worker + 0x10200000]}
        # a level further down, then back out level by level to the whole view
        source.zoom(worker + 0x10000000, worker + 0x10010000, 16)
        assert source.shift == 12 and counts.instances[-1].shift == 12
        assert focus.log[-1] == ("close",)
        assert source.unzoom() and source.shift == 15 and source.header["zoom"] == 1
        assert source.unzoom() and source.shift == 21 and source.header["zoom"] == 0
        assert not source.unzoom()
        assert all(c.log[-1:] == [("close",)] for c in counts.instances if c.shift < 21)
        clock.t += 1
        back = source.take()
        assert slot_regions(back, 21) == {0: [0x10000000], 1: [0x10000000]}
        assert [m.start >> heatmap.TARGET_BITS for m in back.maps].count(1) == 2
    finally:
        source.close()
    assert all(c.log[-1:] == [("close",)] for c in counts.instances)
    assert said == []


def test_the_header_and_json_name_the_zoomed_process_and_its_own_range(tmp_path):
    worker = 1 << heatmap.TARGET_BITS
    info = {"zoom": 2, "range": [worker + 0x10000000, worker + 0x10200000],
            "targets": [[0, 100, "server"], [1, 200, "worker"]]}
    assert heatmap.zoomed_process(info) == (200, "worker", 0x10000000, 0x10200000)
    assert heatmap._zoom_json(info) == {"zoom": {"level": 2, "pid": 200,
                                                 "start": 0x10000000, "end": 0x10200000}}
    assert heatmap.zoomed_process(dict(info, zoom=0)) is None
    assert heatmap.zoomed_process({"zoom": 1, "range": [0x1000, 0x2000]}) is None


def test_the_zoomed_process_exiting_zooms_back_out_to_the_others(tmp_path):
    counts = type("Counts", (ZoomCounts,), {"instances": []})
    source, clock, said = zoom_source(tmp_path, counts)
    try:
        clock.t += 1
        source.take()
        worker = 1 << heatmap.TARGET_BITS
        source.zoom(worker + 0x10000000, worker + 0x10200000, 64)
        focus = counts.instances[-1]
        exit_target(tmp_path, 200)
        clock.t += 1
        gone = source.take()  # (the interval it exited in: nothing of it)
        assert gone.counts == [] and said == ["process 200 (worker) exited; watching 1 other"]
        clock.t += 1
        back = source.take()
        assert len(said) == 1
        assert focus.log[-1] == ("close",) and source.shift == 21 and not source.zooms
        assert back.zoom == {"zoom": 0, "region_shift": 21}
        clock.t += 1
        assert slot_regions(source.take(), 21) == {0: [0x10000000]}
        with pytest.raises(heatmap.HeatmapError, match="that row's process has exited"):
            source.zoom(worker + 0x10000000, worker + 0x10200000, 64)
    finally:
        source.close()
    assert all(c.log[-1:] == [("close",)] for c in counts.instances)


def test_a_child_joining_while_zoomed_is_watched_at_the_runs_region_size(tmp_path):
    counts = type("Counts", (PerProcessZoomCounts,), {"instances": []})
    source, clock, said = zoom_source(tmp_path, counts, children=True, pids=(100,))
    try:
        clock.t += 1
        source.take()
        source.zoom(0x10000000, 0x10200000, 64)  # (slot 0: its own addresses)
        make_proc(tmp_path, 101, OTHER_MAPS, comm="child")
        write_stat(tmp_path, 101, 100, "child")
        clock.t += 1
        fine = source.take()
        assert said == ["process 101 (child) joined; watching 2"]
        child = counts.instances[-1]
        assert (child.targets, child.shift) == ({0: 101}, 21)
        assert set(slot_regions(fine, 15)) == {0}  # (the view: the zoomed process only)
        assert source.unzoom()
        clock.t += 1
        assert slot_regions(source.take(), 21) == {0: [0x10000000], 1: [0x10000000]}
    finally:
        source.close()
    assert all(c.log[-1:] == [("close",)] for c in counts.instances)
