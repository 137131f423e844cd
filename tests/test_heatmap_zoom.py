"""heatmap.py zoom and scope: --range and --mapping (parsing, clipping, errors, what
reaches the JSON and a recording), on a fake /proc and fake counts."""

from __future__ import annotations

import argparse
import io
import json

import pytest
from heatmap_fakes import (
    SMALL_MAPS,
    FakeClock,
    heatmap,
    make_factory,
    make_proc,
    maps_line,
    set_maps,
    small_script,
)

MiB = 1 << 20
HEAP = 0x10000000
ENV = {"COLUMNS": "70", "LINES": "20"}


def run(tmp_path, *args, script=None, maps=SMALL_MAPS, on_age=None):
    make_proc(tmp_path, 4242, maps)
    clock = FakeClock()
    factory = make_factory(small_script() if script is None else script, clock=clock,
                           on_age=on_age)
    out, err = io.StringIO(), io.StringIO()
    rc = heatmap.main(["4242", *args], counts_factory=factory, proc_root=str(tmp_path),
                      clock=clock, sleep=clock.sleep, stdout=out, stderr=err, environ=ENV)
    return rc, out.getvalue(), err.getvalue()


# -- --range parsing -------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("0x10000000-0x10400000", (HEAP, HEAP + 4 * MiB)),
    ("0X7F00-0x8000", (0x7000, 0x8000)),  # widened to whole pages
    ("4096-8193", (4096, 12288)),
    ("268435456-0x10001000", (HEAP, HEAP + 4096)),
    ("0x0-0x10000000000000000", (0, 1 << 64)),
])
def test_range_parses_hex_and_decimal(text, expected):
    assert heatmap.parse_range(text) == expected


@pytest.mark.parametrize("text,message", [
    ("0x1000", "is not START-END"),
    ("0x1000-", "is not START-END"),
    ("-0x1000", "is not START-END"),
    ("0xg000-0x2000", "is not START-END"),
    ("12ab-20000", "is not START-END"),  # hex digits need 0x
    ("0x2000-0x1000", "END must be above START"),
    ("0x1000-0x1000", "END must be above START"),
    ("0-0x10000000000000001", "past the 64-bit address space"),
])
def test_bad_ranges_are_refused(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        heatmap.parse_range(text)


@pytest.mark.parametrize("args,message", [
    (["--range", "0x3000-0x1000"], "heatmap: argument --range: '0x3000-0x1000': END must be "
                                   "above START\n"),
    (["--mapping", ""], "heatmap: argument --mapping: needs a mapping's name, e.g. [heap] "
                        "or libc.so.6\n"),
])
def test_bad_scope_arguments_are_one_line(tmp_path, args, message):
    rc, out, err = run(tmp_path, *args)
    assert (rc, err) == (2, message)


def test_scope_is_for_live_runs(tmp_path):
    err = io.StringIO()
    assert heatmap.main(["--replay", "x", "--mapping", "[heap]"], stderr=err,
                        stdout=io.StringIO()) == 2
    assert "--mapping applies to live runs" in err.getvalue()


# -- clipping ------------------------------------------------------------------------------

def test_clip_maps_cuts_at_the_edges_and_moves_the_offset():
    maps = heatmap.parse_maps(
        maps_line(0x400000, 0x600000, "r-xp", 0x1000, "08:01", 7, "/bin/x") + "\n"
        + maps_line(0x800000, 0x900000, "rw-p") + "\n")
    clipped = heatmap.clip_maps(maps, 0x500000, 0x880000)
    assert [(m.start, m.end, m.offset) for m in clipped] == [
        (0x500000, 0x600000, 0x101000), (0x800000, 0x880000, 0)]
    assert heatmap.clip_maps(maps, 0x600000, 0x800000) == []


def test_scope_by_name_and_path_inside_a_range():
    maps = heatmap.parse_maps(SMALL_MAPS)
    assert [m.start for m in heatmap.Scope(mapping="[heap]").apply(maps)] == [HEAP]
    assert [m.path for m in heatmap.Scope(mapping="/usr/bin/hotspot").apply(maps)] == [
        "/usr/bin/hotspot"]
    assert [m.name for m in heatmap.Scope(mapping="hotspot").apply(maps)] == ["hotspot"]
    both = heatmap.Scope(HEAP + MiB, HEAP + 3 * MiB, "[heap]")
    assert [(m.start, m.end) for m in both.apply(maps)] == [(HEAP + MiB, HEAP + 3 * MiB)]
    assert both.describe() == "mapping [heap] in range 0x10100000-0x10300000"


def test_counted_in_keeps_the_regions_that_hold_the_scope():
    maps = heatmap.clip_maps(heatmap.parse_maps(SMALL_MAPS), HEAP + MiB, HEAP + 5 * MiB)
    h = HEAP >> 21
    counts = [(1, 0, 1, 0), (h, 0, 5, 0), (h + 1, 0, 6, 0), (h + 2, 0, 7, 0), (h + 3, 0, 8, 0)]
    assert heatmap.counted_in(counts, maps, 21) == counts[1:4]


# -- a run with a scope ----------------------------------------------------------------------

def test_range_run_shows_and_reports_only_the_range(tmp_path):
    rc, out, err = run(tmp_path, "--count", "3", "--json", "--range",
                       f"{HEAP + 2 * MiB:#x}-{HEAP + 6 * MiB:#x}")
    assert rc == 0, err
    regions = [[r["start"] for r in json.loads(line)["regions"]] for line in out.splitlines()]
    # the script's heap region 0 (interval 1) and the binary are outside
    assert regions == [[], [HEAP + 2 * MiB], [HEAP + 4 * MiB]]
    rc, out, err = run(tmp_path, "--count", "3", "--range",
                       f"{HEAP + 2 * MiB:#x}-{HEAP + 6 * MiB:#x}")
    frame = out.split("\n\n")[-2]
    assert "range 0x10200000-0x10600000" in frame
    rows = [line.split("|")[0] for line in frame.splitlines() if "|" in line]
    assert rows == ["10200000 [heap]", "10400000 [heap]"]


def test_mapping_run_follows_a_growing_heap(tmp_path):
    grown = SMALL_MAPS.replace("10000000-11000000", "10000000-12000000")

    def grow(n):
        if n == 3:
            set_maps(tmp_path, 4242, grown)

    rc, out, err = run(tmp_path, "--count", "2", "--json", "--mapping", "[heap]",
                       "--record", str(tmp_path / "rec.jsonl"), on_age=grow)
    assert rc == 0, err
    records = [json.loads(line) for line in (tmp_path / "rec.jsonl").read_text().splitlines()]
    assert records[0]["mapping"] == "[heap]"
    maps = [r["maps"] for r in records if r["type"] == "maps"]
    assert [[m[:2] for m in ms] for ms in maps] == [[[HEAP, HEAP + 16 * MiB]],
                                                    [[HEAP, HEAP + 32 * MiB]]]
    # the recording replays with its scope in the header
    out2 = io.StringIO()
    assert heatmap.main(["--replay", str(tmp_path / "rec.jsonl")], stdout=out2,
                        stderr=io.StringIO(), environ=ENV) == 0
    assert "mapping [heap]" in out2.getvalue()


def test_a_mapping_the_process_lacks_is_one_line(tmp_path):
    rc, out, err = run(tmp_path, "--mapping", "libfoo.so")
    assert (rc, err) == (1, "heatmap: process 4242 (hotspot) has no mapping named "
                            "'libfoo.so'; its mappings: hotspot, [heap], anon, [stack]\n")
    rc, out, err = run(tmp_path, "--range", "0x20000000-0x30000000")
    assert (rc, err) == (1, "heatmap: process 4242 (hotspot) has nothing mapped in range "
                            "0x20000000-0x30000000\n")
    # a hidden mapping ([vsyscall]) is nothing to watch either
    rc, out, err = run(tmp_path, "--mapping", "[vsyscall]")
    assert (rc, err) == (1, "heatmap: process 4242 (hotspot) has nothing mapped in mapping "
                            "[vsyscall]\n")


def test_bad_scope_in_a_recording_is_a_bad_header(tmp_path):
    rec = tmp_path / "r.jsonl"
    rec.write_text(json.dumps({"type": "heatmap-record", "version": 1, "pid": 1, "comm": "x",
                               "region_shift": 21, "range": [5, 1]}) + "\n")
    err = io.StringIO()
    assert heatmap.main(["--replay", str(rec)], stdout=io.StringIO(), stderr=err) == 1
    assert err.getvalue() == f"heatmap: {rec}: bad recording header\n"
