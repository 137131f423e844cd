"""What a live run says about its target and how it ends, on a fake /proc and fake
counts: a thread id stands for its process, the name follows an exec, and a run
stopped between intervals keeps the one under way as a partial interval.  (The guest
tests check the same on the real kernel.)"""

from __future__ import annotations

import io
import json

import pytest
from heatmap_fakes import (
    SMALL_MAPS,
    FakeClock,
    end_of_run,
    heatmap,
    json_intervals,
    make_factory,
    make_proc,
    region,
    small_script,
)

ENV = {"TERM": "dumb"}


def run(tmp_path, argv, factory, clock, sleep=None):
    out, err = io.StringIO(), io.StringIO()
    rc = heatmap.main(argv, counts_factory=factory, proc_root=str(tmp_path), clock=clock,
                      sleep=sleep or clock.sleep, stdout=out, stderr=err, environ=ENV)
    return rc, out.getvalue(), err.getvalue()


def test_a_thread_id_watches_its_process(tmp_path):
    make_proc(tmp_path, 4242, SMALL_MAPS)
    make_proc(tmp_path, 4250, SMALL_MAPS, comm="worker")
    status = tmp_path / "4250" / "status"
    status.write_text(status.read_text() + "Tgid:\t4242\n")
    clock = FakeClock()
    factory = make_factory(small_script(), clock=clock)
    rc, out, err = run(tmp_path, ["4250", "--json", "--count", "2"], factory, clock)
    assert rc == 0, err
    assert err.splitlines()[0] == ("heatmap: 4250 is a thread of process 4242 (hotspot): "
                                   "watching the process")
    assert [iv["pid"] for iv in json_intervals(out)] == [4242, 4242]
    assert factory.instances[0].pid == 4242  # what the counts are asked for


def test_the_name_follows_an_exec(tmp_path):
    make_proc(tmp_path, 4242, SMALL_MAPS)
    stat = tmp_path / "4242" / "stat"

    def exec_at(n):
        if n == 3:  # (the warm-up aging is the first)
            stat.write_text(stat.read_text().replace("(hotspot)", "(sleep)"))

    clock = FakeClock()
    factory = make_factory(small_script(), clock=clock, on_age=exec_at)
    rec = tmp_path / "run.jsonl"
    rc, out, err = run(tmp_path, ["4242", "--json", "--count", "3", "--record", str(rec),
                                  "--svg", str(tmp_path / "run.svg")], factory, clock)
    assert rc == 0, err
    assert [iv["comm"] for iv in json_intervals(out)] == ["hotspot", "sleep", "sleep"]
    assert [o.get("comm") for o in map(json.loads, rec.read_text().splitlines())
            if o["type"] == "interval"] == [None, "sleep", None]  # when it changed
    assert "heatmap: pid 4242 (sleep)," in (tmp_path / "run.svg").read_text()
    rc, out, err = run(tmp_path, ["--replay", str(rec)], None, FakeClock())
    assert rc == 0, err
    frames = out.rstrip("\n").split("\n\n")
    assert frames[0].startswith("heatmap pid 4242 (hotspot)")
    assert frames[-1].startswith("heatmap pid 4242 (sleep)")


@pytest.mark.parametrize("stop", [heatmap._Stop("terminated"), KeyboardInterrupt()])
def test_a_stopped_run_keeps_its_partial_interval(tmp_path, stop):
    """Stopped 3 s into the third 10 s interval: those 3 s are drained, shown, written
    and recorded as a last interval marked partial."""
    make_proc(tmp_path, 4242, SMALL_MAPS)
    clock = FakeClock()
    heap = region(0x10000000)
    factory = make_factory([[(heap, 0, 5, 0)]] * 3, clock=clock, aging=0)
    sleeps = []

    def sleep(d):
        sleeps.append(d)
        if len(sleeps) == 3:
            clock.t += 3
            raise stop
        clock.sleep(d)

    rec = tmp_path / "run.jsonl"
    rc, out, err = run(tmp_path, ["4242", "--json", "--interval", "10", "--record",
                                  str(rec)], factory, clock, sleep)
    assert rc == 0, err
    ivs = json_intervals(out)
    assert [(iv["t"], iv["partial"]) for iv in ivs] == [(10, False), (20, False),
                                                        (23, True)]
    assert ivs[-1]["regions"][0]["accessed"] == 5
    assert end_of_run(err).startswith("heatmap: 3 intervals in 23.0 s, the last one "
                                      "partial (")
    recorded = [o for o in map(json.loads, rec.read_text().splitlines())
                if o["type"] == "interval"]
    assert [o.get("partial") for o in recorded] == [None, None, True]
    rc, out, err = run(tmp_path, ["--replay", str(rec), "--json"], None, FakeClock())
    assert rc == 0 and [iv["partial"] for iv in json_intervals(out)] == [False, False, True]


def test_a_run_stopped_right_after_an_interval_adds_none(tmp_path):
    make_proc(tmp_path, 4242, SMALL_MAPS)
    clock = FakeClock()
    factory = make_factory([[]] * 3, clock=clock, aging=0)
    sleeps = []

    def sleep(d):
        sleeps.append(d)
        if len(sleeps) == 2:
            raise heatmap._Stop("terminated")
        clock.sleep(d)

    rc, out, err = run(tmp_path, ["4242", "--json", "--interval", "10"], factory, clock,
                       sleep)
    assert rc == 0 and len(json_intervals(out)) == 1, (out, err)
    assert "partial" not in err
