"""heatmap.py's time axis on synthetic data: several agings per column (--aging-interval),
the working set per interval, the absolute time of each interval, old recordings."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
import xml.etree.ElementTree as ET

import pytest
from heatmap_fakes import (
    SMALL_MAPS,
    FakeClock,
    end_of_run,
    heatmap,
    json_intervals,
    json_summary,
    make_factory,
    make_proc,
    region,
)

HEAP = region(0x10000000)
SVG_NS = "{http://www.w3.org/2000/svg}"
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
    objs = json_intervals(out)
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
    first = json_intervals(out)[0]
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
    (obj,) = json_intervals(out)
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


def fake_pagemap(tmp_path, present_pages) -> None:
    """/proc/4242/pagemap (sparse) with these virtual pages present."""
    with open(tmp_path / "4242" / "pagemap", "wb") as f:
        for page in present_pages:
            f.seek(8 * page)
            f.write((heatmap.PM_PRESENT | 1234).to_bytes(8, "little"))


def test_never_touched_ranges_largest_first_with_resident_size(tmp_path):
    # heap regions 0 and 4 young (in different intervals), the binary and stack too:
    # never young are heap region 1-3 (6 MiB), 5-7 (6 MiB) and the 2 MiB anon mapping
    script = [[(HEAP, 0, 5, 0), (region(0x400000), 0, 0, 1)],
              [(HEAP + 4, 0, 1, 0), (region(0x7ffc00000000), 0, 1, 0)]]
    make_proc(tmp_path, 4242, SMALL_MAPS)
    heap3 = (0x10000000 >> 12) + 3 * 512
    fake_pagemap(tmp_path, [heap3 + i for i in range(100)] +  # 100 pages in region 3
                 [(0x7f0000000000 >> 12) + i for i in range(7)] +  # 7 of the anon ones
                 [(0x10000000 >> 12) + 1])  # (in a young region: not counted)
    rec = tmp_path / "run.jsonl"
    rc, out, err, _ = run(tmp_path, "--json", "--count", "2", "--record", str(rec),
                          script=script)
    assert rc == 0, err
    summary = json_summary(out)
    assert [(r["start"], r["end"], r["mapping"], r["bytes"], r["resident_bytes"])
            for r in summary["never_touched"]] == [
        (0x10200000, 0x10800000, "[heap]", 6 << 20, 100 * 4096),
        (0x10a00000, 0x11000000, "[heap]", 6 << 20, 0),
        (0x7f0000000000, 0x7f0000200000, "anon", 2 << 20, 7 * 4096)]
    assert summary["never_touched_bytes"] == 14 << 20
    assert summary["never_touched_resident_bytes"] == 107 * 4096
    assert summary["intervals"] == 2
    assert summary["wss_bytes"] == {"min": 2 * 4096, "median": 4 * 4096, "max": 6 * 4096}
    # stderr: the end-of-run line, then the same ranges
    lines = err.splitlines()
    assert lines[-4] == "heatmap: never found young: 3 ranges, 14 MiB, 428 KiB of it resident:"
    assert lines[-3] == "  0x10200000-0x10800000 [heap] 6 MiB, 400 KiB resident"
    assert lines[-1] == "  0x7f0000000000-0x7f0000200000 anon 2 MiB, 28 KiB resident"
    # the recording ends with it; a replay says the same (resident sizes as recorded)
    assert json.loads(rec.read_text().splitlines()[-1]) == summary
    rc, again, err2 = replay(rec, "--json")
    assert rc == 0 and json_summary(again) == summary
    assert err2.splitlines()[-4:] == lines[-4:]


def test_never_touched_without_pagemap_or_in_a_partial_replay(tmp_path):
    rec = tmp_path / "run.jsonl"
    rc, out, err, _ = run(tmp_path, "--json", "--count", "3", "--record", str(rec))
    assert rc == 0, err
    summary = json_summary(out)
    # bands_script: heap regions 0-2 young; 5 heap regions, binary, anon, stack not
    assert [r["start"] for r in summary["never_touched"]] == [
        0x10600000, 0x400000, 0x7f0000000000, 0x7ffc00000000]
    assert all(r["resident_bytes"] is None for r in summary["never_touched"])
    assert summary["never_touched_resident_bytes"] is None
    assert "heatmap: never found young: 4 ranges, 16 MiB:" in err
    rc, part, _ = replay(rec, "--json", "--count", "1")
    assert rc == 0 and json_summary(part)["intervals"] == 1


def test_a_run_that_found_everything_young_says_so(tmp_path):
    maps = "10000000-10200000 rw-p 00000000 00:00 0  [heap]\n"
    make_proc(tmp_path, 4242, maps)
    clock = FakeClock()
    factory = make_factory([[(HEAP, 0, 1, 0)]], clock=clock)
    out, err = io.StringIO(), io.StringIO()
    assert heatmap.main(["4242", "--count", "1", "--json"], counts_factory=factory,
                        proc_root=str(tmp_path), clock=clock, sleep=clock.sleep,
                        stdout=out, stderr=err, environ=ENV) == 0
    assert json_summary(out.getvalue())["never_touched"] == []
    assert err.getvalue().splitlines()[-1] == (
        "heatmap: never found young: nothing (every shown region was young at least once)")


@pytest.mark.parametrize("interval, aging, want", [
    (2.0, None, (10_000, 200_000, 1_000_000)),  # DAMON's own: 20 samples x 10 per column
    (2.0, 0.5, (500_000, 500_000, 1_000_000)),  # 4 samples, each its own aggregation
    (2.0, 0.1, (100_000, 200_000, 1_000_000)),  # 20 samples: 10 aggregations of 2
    (3.0, 0.2, (200_000, 600_000, 1_000_000)),  # 15 samples: 5 aggregations of 3
    (0.5, 0.5, (500_000, 500_000, 500_000)),
])
def test_damon_samples_at_the_aging_interval(interval, aging, want):
    sample, aggr, update = heatmap.damon_intervals(interval, aging)
    assert (sample, aggr, update) == want
    if aging is not None:  # a whole number of aggregations per column, of whole samples
        assert round(interval * 1e6) % aggr == 0 and aggr % sample == 0


def test_a_self_sampling_source_is_aged_once_per_column(tmp_path):
    """Like DAMON: told the aging interval, it reports its measured share; the column
    is its samples_per_column samples, its counts scaled to page-samples."""
    class Sampling(make_factory([[(HEAP, 0, 128, 0)]] * 3)):
        samples_itself = True

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.samples_per_column = 4

    make_proc(tmp_path, 4242, SMALL_MAPS)
    clock = FakeClock()
    Sampling.clock = clock
    out, err = io.StringIO(), io.StringIO()
    rc = heatmap.main(["4242", "--json", "--count", "2", "--aging-interval", "0.5"],
                      counts_factory=Sampling, proc_root=str(tmp_path), clock=clock,
                      sleep=clock.sleep, stdout=out, stderr=err, environ=ENV)
    assert rc == 0, err.getvalue()
    assert Sampling.instances[0].ages == 3  # the warm-up, then one per column
    ivs = json_intervals(out.getvalue())
    assert [iv["agings"] for iv in ivs] == [4, 4]
    assert accessed(ivs[0]) == {0x10000000: 128}


def test_svg_draws_the_working_set_as_a_strip_above_the_heatmap(tmp_path):
    sizes = [100, 400, 0, 200]  # young pages per interval
    rec = tmp_path / "run.jsonl"
    rc, _, err, _ = run(tmp_path, "--count", "4", "--record", str(rec),
                        script=[[(HEAP, 0, n, 0)] if n else [] for n in sizes])
    assert rc == 0, err
    svg = tmp_path / "run.svg"
    assert heatmap.write_svg(str(svg), str(rec)) == 4
    root = ET.parse(svg).getroot()
    rects = list(root.iter(SVG_NS + "rect"))
    bars = [r for r in rects if r.get("class") == "wss"]
    cells = [r for r in rects if r.get("class") == "cell"]
    columns = sorted({float(c.get("x")) for c in cells})
    # one bar per interval with a working set, over its column, as tall as its share
    assert [float(b.get("x")) for b in bars] == [columns[0], columns[1], columns[3]]
    assert [int(b.get("height")) for b in bars] == [9, heatmap.SVG_WSS_H, 18]
    bottoms = {float(b.get("y")) + float(b.get("height")) for b in bars}
    assert len(bottoms) == 1 and bottoms.pop() < min(float(c.get("y")) for c in cells)
    assert any(t.text == "working set (max 1.6 MiB)" for t in root.iter(SVG_NS + "text"))


def test_never_touched_spans_a_zoom_to_another_region_size():
    """A zoomed model (64 KiB regions) goes on with the run's figures: what it found
    young counts for the outer model's 2 MiB regions, and the outer's young 2 MiB
    region keeps the zoom from calling any part of it never young."""
    maps = heatmap.parse_maps("10000000-10400000 rw-p 00000000 00:00 0  [heap]\n")
    outer = heatmap.Model({"region_shift": 21, "page_size": 4096})
    outer.add(heatmap.Sample(1, 1.0, 0, 0, 0, maps, [(HEAP + 1, 0, 3, 0)]))
    zoomed = heatmap.Model({"region_shift": 16, "page_size": 4096})
    zoomed.share_run(outer)
    zoomed.add(heatmap.Sample(2, 2.0, 0, 0, 0, maps, [(0x10000000 >> 16, 0, 1, 0)]))
    assert outer.never_touched() == []  # (region 0 young while zoomed in)
    assert outer.wss == zoomed.wss == [3 * 4096, 4096]
    assert zoomed.never_touched() == [(0x10010000, 0x10200000, "[heap]")]


def test_key_u_shows_what_was_never_young_so_far(tmp_path):
    """In the live view (a pty), u swaps the heatmap for the never-young list and back;
    the list follows the run."""
    from test_heatmap_cli import pty_replay, read_until  # noqa: F401  (its fixture)

    gen = pty_replay.__wrapped__(tmp_path)
    proc, master, _, _ = next(gen)
    try:
        read_until(master, b"#2 ")
        os.write(master, b"u")
        out = read_until(master, b"never found young:")
        assert b"so far" in out and b"keys: u back to the heatmap" in read_until(
            master, b"q quit")
        os.write(master, b"u")
        read_until(master, heatmap.KEYS_HINT.encode())
        os.write(master, b"q")
        assert proc.wait(timeout=20) == 0
    finally:
        with contextlib.suppress(StopIteration):
            next(gen)


def test_the_never_young_list_fits_the_screen():
    maps = heatmap.parse_maps("".join(
        f"{0x10000000 + i * 0x400000:x}-{0x10200000 + i * 0x400000:x} rw-p 00000000 "
        f"00:00 0\n" for i in range(30)))
    model = heatmap.Model({"region_shift": 21, "page_size": 4096, "pid": 1, "comm": "x"})
    model.add(heatmap.Sample(1, 1.0, 0, 0, 4, maps, [(HEAP, 0, 1, 0)]))
    text = heatmap.render_untouched(model, 80, 12, lambda rs: [4096] * len(rs))
    lines = text.split("\n")
    assert len(lines) == 12 and all(len(ln) <= 80 for ln in lines)
    assert "view never young" in text and "so far" in text
    assert any(ln.startswith("never found young: 29 ranges, 58 MiB, 116 KiB of it resident;"
                             " the largest") for ln in lines)
    assert lines[-1] == "keys: u back to the heatmap  q quit"


@pytest.mark.parametrize("agings", ["1", "0.5"])
def test_a_target_whose_memory_is_gone_has_exited(tmp_path, agings):
    """An exiting process loses its memory before /proc shows it a zombie: the scan's
    ESRCH then ends the run as an exit, at the column's last aging or one inside it."""
    def gone(n):
        if n == 4:  # (the warm-up is the first)
            raise ProcessLookupError(3, "process 4242 has no memory left")

    rc, out, err, _ = run(tmp_path, "--json", "--interval", "1", "--aging-interval", agings,
                          on_age=gone)
    assert rc == 0, err
    assert "(target exited)" in end_of_run(err)
    assert len(json_intervals(out)) == (2 if agings == "1" else 1)
