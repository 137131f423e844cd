"""heatmap.py's time axis on synthetic data: several agings per column (--aging-interval),
the working set per interval, the absolute time of each interval, old recordings."""

from __future__ import annotations

import io
import json
import time

import pytest
from heatmap_fakes import SMALL_MAPS, FakeClock, heatmap, make_factory, make_proc, region

HEAP = region(0x10000000)
ENV = {"COLUMNS": "80", "LINES": "24"}


def bands_script(columns: int, agings: int = 4) -> list:
    """One drain per aging: heap region 0 young at every aging, region 1 at every 2nd,
    region 2 at every 4th (all 512 pages each time)."""
    out = []
    for i in range(columns * agings):
        drained = [(HEAP, 0, 512, 0)]
        if i % 2 == 0:
            drained.append((HEAP + 1, 0, 512, 0))
        if i % 4 == 0:
            drained.append((HEAP + 2, 0, 0, 512))
        out.append(drained)
    return out


def run(tmp_path, *args, script=None, on_age=None):
    make_proc(tmp_path, 4242, SMALL_MAPS)
    clock = FakeClock()
    factory = make_factory(bands_script(3) if script is None else script, clock=clock,
                           on_age=on_age)
    out, err = io.StringIO(), io.StringIO()
    rc = heatmap.main(["4242", *args], counts_factory=factory, proc_root=str(tmp_path),
                      clock=clock, sleep=clock.sleep, stdout=out, stderr=err, environ=ENV)
    return rc, out.getvalue(), err.getvalue(), factory


def replay(path, *args):
    out, err = io.StringIO(), io.StringIO()
    clock = FakeClock()
    rc = heatmap.main(["--replay", str(path), *args], clock=clock, sleep=clock.sleep,
                      stdout=out, stderr=err, environ=ENV)
    return rc, out.getvalue(), err.getvalue()


def accessed(obj: dict) -> dict[int, float]:
    return {r["start"]: r["accessed"] for r in obj["regions"]}


def test_four_agings_per_column_give_mean_shares(tmp_path):
    rc, out, err, factory = run(tmp_path, "--json", "--count", "3", "--interval", "2",
                                "--aging-interval", "0.5")
    assert rc == 0, err
    objs = [json.loads(ln) for ln in out.splitlines()]
    assert len(objs) == 3
    assert factory.instances[0].ages == 1 + 3 * 4  # the warm-up, then 4 per column
    for obj in objs:
        assert obj["agings"] == 4 and obj["interval"] == 2.0
        assert accessed(obj) == {0x10000000: 512, 0x10200000: 256, 0x10400000: 128}
        # the working set: the mean young bytes per aging (512 + 256 + 128 pages)
        assert obj["wss_bytes"] == 896 * 4096
    assert [o["t"] for o in objs] == pytest.approx([2.04, 4.04, 6.04], abs=0.05)


def test_mean_shares_in_the_heat_view_and_the_legend(tmp_path):
    rc, out, err, _ = run(tmp_path, "--count", "3", "--aging-interval", "0.5")
    assert rc == 0, err
    frame = out.split("\n\n")[-2].split("\n")
    row = {ln.split("|")[0].strip(): ln.split("|")[-1][-3:] for ln in frame if "|" in ln}
    # 1 (every aging) '@' >=80%, 1/2 '#' 40-60%, 1/4 '*' 20-40%
    assert row["000010000000 [heap]"] == "@@@"
    assert row["000010200000 [heap]"] == "###"
    assert row["000010400000 [heap]"] == "***"
    assert "every 2 s x4 agings" in frame[0] + frame[1]
    assert any("mean of 4 agings per column" in ln for ln in frame)


def test_one_aging_per_column_stays_as_it_was(tmp_path):
    rc, out, err, factory = run(tmp_path, "--json", "--count", "2", "--interval", "2")
    assert rc == 0, err
    first = json.loads(out.splitlines()[0])
    assert first["agings"] == 1 and factory.instances[0].ages == 3
    assert accessed(first) == {0x10000000: 512, 0x10200000: 512, 0x10400000: 512}


def test_agings_and_time_are_recorded_and_replayed(tmp_path):
    rec = tmp_path / "run.jsonl"
    before = time.time()
    rc, out, err, _ = run(tmp_path, "--json", "--count", "3", "--aging-interval", "0.5",
                          "--record", str(rec))
    assert rc == 0, err
    lines = [json.loads(ln) for ln in rec.read_text().splitlines()]
    assert lines[0]["aging_interval"] == 0.5
    intervals = [ln for ln in lines if ln["type"] == "interval"]
    assert [ln["agings"] for ln in intervals] == [4, 4, 4]
    assert all(before - 1 <= ln["time"] <= time.time() + 1 for ln in intervals)
    # counts are recorded as found: summed over the agings
    found = [sum(c[2] + c[3] for c in intervals[0]["counts"] if c[0] == HEAP + k)
             for k in range(3)]
    assert found == [512 * 4, 512 * 2, 512]
    rc, again, err = replay(rec, "--json")
    assert rc == 0, err
    assert again == out  # the same objects, the recorded time included
    rec2 = tmp_path / "again.jsonl"
    assert replay(rec, "--record", str(rec2))[0] == 0
    assert rec2.read_text() == rec.read_text()


def test_a_recording_without_time_or_agings_still_replays(tmp_path):
    rec = tmp_path / "old.jsonl"
    maps = [[0x10000000, 0x11000000, "rw-p", 0, "00:00", 0, "[heap]"]]
    rec.write_text("\n".join(json.dumps(o) for o in [
        {"type": "heatmap-record", "version": 1, "pid": 7, "comm": "old", "region_shift": 21,
         "page_size": 4096, "interval": 2.0, "started": 1700000000.5},
        {"type": "maps", "maps": maps},
        {"type": "interval", "seq": 1, "t": 2.0, "aging": 0.01, "dropped": 0, "rss_kb": 1,
         "counts": [[HEAP, 0, 256, 0]]},
    ]) + "\n")
    rc, out, err = replay(rec, "--json")
    assert rc == 0, err
    obj = json.loads(out)
    assert obj["time"] == 1700000002.5 and obj["agings"] == 1
    assert obj["wss_bytes"] == 256 * 4096
    assert accessed(obj) == {0x10000000: 256}


def test_working_set_header_trend_and_summary(tmp_path):
    sizes = [100, 400, 200, 300]  # young pages per interval
    script = [[(HEAP, 0, n, 0)] for n in sizes]
    rc, out, err, _ = run(tmp_path, "--count", "4", script=script)
    assert rc == 0, err
    last = out.split("\n\n")[-2]
    assert f"wss {heatmap.fmt_size(300 * 4096)} [.^-=]" in last
    # min 100 pages, median 250, max 400
    assert "working set min 400 KiB, median 1000 KiB, max 1.6 MiB" in err


def test_wss_trend_strip():
    assert heatmap.wss_trend([]) == "[]"
    assert heatmap.wss_trend([0, 0]) == "[__]"
    assert heatmap.wss_trend([1, 2, 3, 4]) == "[.-=^]"
    assert heatmap.wss_trend(list(range(20))) == "[" + "=" * 0 + heatmap.wss_trend(
        list(range(12, 20)))[1:]
    assert len(heatmap.wss_trend(list(range(20)))) == heatmap.TREND_LEN + 2


@pytest.mark.parametrize("args, message", [
    (["--interval", "2", "--aging-interval", "0.3"], "is not a whole number of agings"),
    (["--interval", "1", "--aging-interval", "2"], "is not a whole number of agings"),
    (["--aging-interval", "0"], "must be from"),
])
def test_aging_interval_must_divide_the_interval(tmp_path, args, message):
    rc, out, err, factory = run(tmp_path, *args)
    assert rc == 2 and err.count("\n") == 1 and message in err
    assert factory.instances == []


def test_replay_refuses_an_aging_interval(tmp_path):
    rc, _, err = replay(tmp_path / "x.jsonl", "--aging-interval", "1")
    assert rc == 2 and "--aging-interval applies to live runs" in err
