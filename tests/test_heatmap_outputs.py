"""heatmap.py outputs: --json schema and round trip, --record/--replay round trips
(plain and gzip), --svg well-formed with one cell per row and interval."""

from __future__ import annotations

import gzip
import io
import json
import time
import xml.etree.ElementTree as ET

import pytest
from heatmap_fakes import (
    SMALL_MAPS,
    FakeClock,
    end_of_run,
    heatmap,
    json_intervals,
    make_factory,
    make_proc,
    maps_line,
    region,
    set_maps,
    small_script,
)

ENV = {"COLUMNS": "60", "LINES": "16"}


def live(tmp_path, *args, script=None, on_age=None, maps=SMALL_MAPS, warmup=None):
    make_proc(tmp_path, 4242, maps)
    clock = FakeClock()
    factory = make_factory(small_script() if script is None else script, clock=clock,
                           warmup=warmup, on_age=on_age)
    out, err = io.StringIO(), io.StringIO()
    rc = heatmap.main(["4242", *args], counts_factory=factory, proc_root=str(tmp_path),
                      clock=clock, sleep=clock.sleep, stdout=out, stderr=err, environ=ENV)
    return rc, out.getvalue(), err.getvalue(), factory


def replay(path, *args, environ=ENV):
    out, err = io.StringIO(), io.StringIO()
    clock = FakeClock()
    rc = heatmap.main(["--replay", str(path), *args], clock=clock, sleep=clock.sleep,
                      stdout=out, stderr=err, environ=environ)
    return rc, out.getvalue(), err.getvalue()


def test_json_schema_and_values(tmp_path):
    heap = region(0x10000000)
    rc, out, err, _ = live(tmp_path, "--json", "--count", "3",
                           warmup=[(heap, 0, 99999, 0)])
    assert rc == 0
    objs = json_intervals(out)
    assert len(objs) == 3
    first = objs[0]
    assert list(first) == ["seq", "t", "time", "source", "pid", "comm", "interval",
                           "agings", "aging_s", "dropped", "rss_kb", "wss_bytes",
                           "region_size", "page_size", "partial", "regions"]
    assert abs(first["time"] - time.time()) < 60 and first["agings"] == 1
    # the working set: 10 file pages of the binary and a whole heap region
    assert first["wss_bytes"] == (10 + 512) * 4096
    assert first["source"] == "mglru"  # a counts factory without a name: the hooks' own
    assert (first["seq"], first["t"], first["pid"], first["comm"]) == (1, 2.01, 4242,
                                                                        "hotspot")
    assert (first["interval"], first["aging_s"], first["dropped"]) == (2.0, 0.01, 3)
    assert (first["rss_kb"], first["region_size"], first["page_size"]) == (262144, 2 << 20,
                                                                           4096)
    # the warm-up's 99999 pages never show up; regions come sorted by address
    assert first["regions"] == [
        {"pid": 4242, "start": 0x400000, "end": 0x600000, "mapping": "hotspot", "pages": 512,
         "huge": None, "accessed": 10, "anon": 0, "file": 10, "node": 0, "nodes": {"0": 10}},
        {"pid": 4242, "start": 0x10000000, "end": 0x10200000, "mapping": "[heap]", "pages": 512,
         "huge": None, "accessed": 512, "anon": 512, "file": 0, "node": 0, "nodes": {"0": 512}},
    ]
    assert [r["mapping"] for r in objs[1]["regions"]] == ["[heap]", "[stack]"]
    (mixed,) = objs[2]["regions"]
    assert mixed["node"] == "mixed" and mixed["nodes"] == {"0": 200, "1": 184}
    assert mixed["accessed"] == 384
    assert "3 intervals" in err


def test_json_partial_regions_and_unmapped(tmp_path):
    maps = maps_line(0x10000000, 0x10003000, "rw-p", 0, "00:00", 0, "[heap]") + "\n"
    script = [[(region(0x10000000), 0, 2, 1), (region(0x20000000), 0, 4, 0)]]
    rc, out, _, _ = live(tmp_path, "--json", "--count", "1", script=script, maps=maps)
    assert rc == 0
    regs = json_intervals(out)[0]["regions"]
    assert regs[0]["pages"] == 3 and regs[0]["accessed"] == 3  # a 12 KiB heap
    assert regs[1]["mapping"] == "" and regs[1]["pages"] == 0  # not mapped (any more)


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_record_replay_round_trip(tmp_path, suffix):
    rec = tmp_path / ("run" + suffix)
    heap = region(0x10000000)

    def grow(n):  # aging 1 is the warm-up: the heap grows during interval 3
        if n == 4:
            set_maps(tmp_path, 4242, SMALL_MAPS.replace("10000000-11000000",
                                                        "10000000-12000000"))

    script = small_script() + [[(heap + 12, 0, 7, 0)]]
    rc, frames_live, _, _ = live(tmp_path, "--count", "4", "--record", str(rec),
                                 script=script, on_age=grow)
    assert rc == 0
    rc, json_live, _, _ = live(tmp_path / "j", "--count", "4", "--json", script=script)
    assert rc == 0
    opener = gzip.open if suffix.endswith(".gz") else open
    with opener(rec, "rt") as f:
        lines = [json.loads(ln) for ln in f]
    assert [ln["type"] for ln in lines] == ["heatmap-record", "maps", "interval", "interval",
                                            "maps", "interval", "interval", "summary"]
    assert lines[0]["pid"] == 4242 and lines[0]["region_shift"] == 21
    assert lines[2]["counts"] == [[2, 0, 0, 10], [heap, 0, 512, 0]]
    # replay renders the same frames and re-records an identical file
    rec2 = tmp_path / ("again" + suffix)
    rc, frames_replay, err, = replay(rec, "--record", str(rec2))
    assert rc == 0 and "end of recording" in err
    assert frames_replay == frames_live
    with opener(rec, "rt") as a, opener(rec2, "rt") as b:
        assert a.read() == b.read()
    # and the same JSON as the live run (without its mapping change)
    rc, json_rep, _ = replay(rec, "--json", "--count", "2")
    assert [timeless(ln) for ln in json_rep.splitlines()[:2]] == \
        [timeless(ln) for ln in json_live.splitlines()[:2]]


def timeless(line: str) -> dict:
    """An interval's JSON without its Unix time (two runs never share it)."""
    obj = json.loads(line)
    assert isinstance(obj.pop("time"), float)
    return obj


def test_replay_views_count_and_colour(tmp_path):
    rec = tmp_path / "run.jsonl"
    live(tmp_path, "--count", "3", "--record", str(rec))
    rc, out, err = replay(rec, "--view", "anon", "--count", "2", "--color", "always")
    assert rc == 0
    assert out.count("heatmap pid 4242") == 2
    assert "view anon" in out and "\x1b[48;5;" in out
    assert "2 intervals" in err and "count reached" in err


def test_replay_pacing(tmp_path):
    rec = tmp_path / "run.jsonl"
    live(tmp_path, "--count", "3", "--record", str(rec))
    clock = FakeClock()
    src = heatmap.ReplaySource(str(rec), speed=2.0, clock=clock)
    src.open()
    due = [src.due()]
    src.take()
    due.append(src.due())
    src.take()
    due.append(src.due())
    assert due == [1000.0, 1001.0, 1002.0]  # recorded 2 s apart, replayed at 2x
    src.close()
    src = heatmap.ReplaySource(str(rec), speed=0.0, clock=clock)
    src.open()
    assert src.due() == float("-inf")
    src.close()


def test_replay_bad_files(tmp_path):
    missing = tmp_path / "missing.jsonl"
    rc, _, err = replay(missing)
    assert rc == 1 and err.startswith("heatmap: cannot read") and err.count("\n") == 1
    junk = tmp_path / "junk.jsonl"
    junk.write_text("hello\n")
    rc, _, err = replay(junk)
    assert (rc, err) == (1, f"heatmap: {junk}: not a heatmap recording\n")
    bad = tmp_path / "bad.jsonl"
    header = json.dumps({"type": "heatmap-record", "version": 1, "pid": 1, "comm": "x",
                         "region_shift": 21, "page_size": 4096, "interval": 2.0})
    maps = json.dumps({"type": "maps", "maps": [[4096, 8192, "rw-p", 0, "00:00", 0, ""]]})
    bad.write_text(header + "\n" + maps + "\n" + '{"type":"interval","seq":1}\n')
    rc, _, err = replay(bad)
    assert rc == 1 and err.startswith(f"heatmap: {bad}:3: bad interval record")
    newer = tmp_path / "newer.jsonl"
    newer.write_text(header.replace('"version": 1', '"version": 9') + "\n")
    rc, _, err = replay(newer)
    assert rc == 1 and "version 9" in err
    # an interrupted recording (last line cut) replays what is complete
    cut = tmp_path / "cut.jsonl"
    good = json.dumps({"type": "interval", "seq": 1, "t": 2.0, "aging": 0.1, "dropped": 0,
                       "rss_kb": 4, "counts": [[0, 0, 1, 0]]})
    cut.write_text(header + "\n" + maps + "\n" + good + "\n" + good[:20])
    rc, out, err = replay(cut, "--json")
    assert rc == 0 and len(json_intervals(out)) == 1
    assert "(the recording ends mid-record: an interrupted run?)" in err


def test_a_damaged_record_mid_file_is_salvaged_like_a_cut(tmp_path):
    """A corrupt line in the middle of a recording: what comes before it is rendered
    (frames, --json, --svg), one line says where it broke, and the exit is non-zero."""
    rec = tmp_path / "run.jsonl"
    live(tmp_path, "--count", "5", "--record", str(rec))
    lines = rec.read_text().splitlines(keepends=True)
    kinds = [json.loads(ln)["type"] for ln in lines]
    assert kinds[-1] == "summary"
    third = [i for i, k in enumerate(kinds) if k == "interval"][2]
    lines[third] = lines[third][:30] + "#" + lines[third][31:]
    rec.write_text("".join(lines))
    where = f"{rec}:{third + 1}: not JSON"
    rc, out, err = replay(rec, "--json")
    assert (rc, len(out.splitlines())) == (1, 2)
    assert err == f"heatmap: {where}; shown: the 2 intervals before it\n"
    svg = tmp_path / "run.svg"
    rc, out, err = replay(rec, "--svg", str(svg))
    assert rc == 1 and err == f"heatmap: {where}; shown: the 2 intervals before it\n"
    assert out.count("heatmap pid") == 2
    _, _, cells = svg_cells(svg)
    rows = len({c.get("y") for c in cells})
    assert len(cells) == 2 * rows
    copy = tmp_path / "copy.jsonl"
    rc, _, _ = replay(rec, "--record", str(copy))
    assert rc == 1 and copy.read_text() == "".join(lines[:third])


def _gz_recording(tmp_path, intervals=40):
    rec = tmp_path / "run.jsonl.gz"
    live(tmp_path, "--count", str(intervals), "--record", str(rec))
    return rec, rec.read_bytes()


def test_replay_of_a_gzip_recording_cut_short_says_so(tmp_path):
    rec, data = _gz_recording(tmp_path)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) // 2])
    rc, out, err = replay(cut, "--json")
    assert rc == 0 and 0 < len(json_intervals(out)) < 40
    assert "(the recording ends mid-record" in end_of_run(err)
    assert "(the recording ends mid-record: an interrupted run?)" in err


def test_replay_of_a_corrupt_gzip_recording_is_an_error(tmp_path):
    rec, data = _gz_recording(tmp_path)
    bad_crc = tmp_path / "crc.jsonl.gz"
    bad_crc.write_bytes(data[:-8] + bytes(b ^ 0xFF for b in data[-8:-4]) + data[-4:])
    rc, _, err = replay(bad_crc, "--json")
    assert rc == 1 and err.count("\n") == 1
    assert err.startswith(f"heatmap: {bad_crc}:") and "damaged recording (CRC check failed" in err
    flipped = tmp_path / "flipped.jsonl.gz"
    start = data.index(b"\0", 10) + 1  # past the gzip header and its file name
    for at in range(start, len(data) - 8, max(1, (len(data) - start) // 16)):
        flipped.write_bytes(data[:at] + bytes([data[at] ^ 0x55]) + data[at + 1:])
        # garbage out of the inflater, an inflater error (in the header line too), or a
        # bad CRC: always one line naming the file
        rc, _, err = replay(flipped, "--json")
        assert rc == 1 and err.count("\n") == 1, (at, err)
        assert err.startswith((f"heatmap: {flipped}:", f"heatmap: cannot read {flipped}:"))


def test_replay_rejects_counts_no_kernel_can_report(tmp_path):
    header = {"type": "heatmap-record", "version": 1, "pid": 1, "comm": "x",
              "region_shift": 21, "page_size": 4096, "interval": 2.0}
    for counts in ([[5, 0, 10 ** 23, 0]], [[1 << 60, 0, 1, 0]]):
        interval = {"type": "interval", "seq": 1, "t": 2.0, "aging": 0.1, "dropped": 0,
                    "rss_kb": 4, "counts": counts}
        rec = tmp_path / "rec.jsonl"
        rec.write_text("".join(json.dumps(o) + "\n" for o in (header, interval)))
        rc, _, err = replay(rec)
        assert rc == 1 and "out of any possible range" in err and err.count("\n") == 1


def svg_cells(path):
    root = ET.parse(path).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == ns + "svg"
    rects = root.iter(ns + "rect")
    cells = [r for r in rects if r.get("class") == "cell"]
    return root, ns, cells


@pytest.mark.parametrize("view", heatmap.VIEWS)
def test_svg_one_cell_per_row_and_interval(tmp_path, view):
    rec = tmp_path / "run.jsonl.gz"
    svg = tmp_path / "run.svg"
    rc, _, err, _ = live(tmp_path, "--count", "3", "--record", str(rec), "--svg", str(svg),
                         "--view", view)
    assert rc == 0, err
    root, ns, cells = svg_cells(svg)
    labels = [t.text for t in root.iter(ns + "text")
              if t.text and t.text.split(" ")[0] in ("400000", "10000000", "7f0000000000",
                                                     "7ffc00000000")]
    nrows = len({c.get("y") for c in cells})
    assert nrows == 11  # 11 regions in shown mappings, 48 rows available
    assert len(cells) == nrows * 3
    assert len({(c.get("x"), c.get("y")) for c in cells}) == len(cells)
    assert len(labels) == 4  # first row of each mapping starts at its address
    assert root.find(ns + "title").text.startswith("heatmap: pid 4242 (hotspot), 3 intervals")
    texts = " ".join(t.text or "" for t in root.iter(ns + "text"))
    assert "time since start (s)" in texts and "address (start, mapping)" in texts
    swatches = [r for r in root.iter(ns + "rect") if r.get("class") == "swatch"]
    assert swatches  # the legend
    if view == "heat":
        # heap region 0 in interval 1: every page young -> the top of the ramp
        by_pos = {(int(c.get("x")), int(c.get("y"))): c.get("fill") for c in cells}
        xs = sorted({x for x, _ in by_pos})
        ys = sorted({y for _, y in by_pos})
        assert by_pos[(xs[0], ys[1])] == "#fde725"
        assert by_pos[(xs[1], ys[1])] == heatmap.SVG_NONE


def test_svg_from_replay_and_without_record(tmp_path):
    rec = tmp_path / "run.jsonl"
    live(tmp_path, "--count", "3", "--record", str(rec))
    svg = tmp_path / "replay.svg"
    rc, _, _ = replay(rec, "--svg", str(svg), "--count", "2")
    assert rc == 0
    _, _, cells = svg_cells(svg)
    assert len(cells) == 11 * 2
    svg2 = tmp_path / "live.svg"
    rc, _, _, _ = live(tmp_path / "b", "--count", "3", "--svg", str(svg2))
    assert rc == 0
    _, _, cells = svg_cells(svg2)
    assert len(cells) == 11 * 3
    assert not list((tmp_path / "b").glob("*.tmp"))


def test_svg_escapes_names_and_handles_unwritable(tmp_path):
    maps = maps_line(0x400000, 0x600000, "r-xp", 0, "08:01", 1, '/tmp/a<b>&"c".so') + "\n"
    rec = tmp_path / "run.jsonl"
    svg = tmp_path / "x.svg"
    rc, _, err, _ = live(tmp_path, "--count", "1", "--record", str(rec), "--svg", str(svg),
                         maps=maps, script=[[(2, 0, 1, 0)]])
    assert rc == 0, err
    root, ns, cells = svg_cells(svg)
    assert len(cells) == 1
    assert any('a<b>&"c".so' in (t.text or "") for t in root.iter(ns + "text"))
    rc, _, err = replay(rec, "--svg", str(tmp_path / "no" / "dir" / "x.svg"))
    assert rc == 1 and err.splitlines()[0].startswith("heatmap: cannot write")


@pytest.mark.parametrize("header_change, interval_change", [
    ({"page_size": 0}, {}),
    ({"page_size": 3000}, {}),
    ({"interval": "soon"}, {}),
    ({"interval": "nan"}, {}),
    ({}, {"t": "nan"}),
    ({}, {"t": "inf"}),
    ({}, {"aging": "-inf"}),
    ({}, {"counts": [[2, 40000, 1, 0]]}),  # node out of range
    ({}, {"counts": [[2, -1, 1, 0]]}),  # node -1 is the renderer's "mixed"
])
def test_replay_rejects_impossible_values_in_one_line(tmp_path, header_change,
                                                      interval_change):
    """A damaged or hand-edited recording ends with one line, not a traceback from the
    renderer (a zero page size, a text interval, a node the arrays cannot hold)."""
    header = {"type": "heatmap-record", "version": 1, "pid": 1, "comm": "x",
              "region_shift": 21, "page_size": 4096, "interval": 2.0, **header_change}
    maps = {"type": "maps", "maps": [[0x400000, 0x800000, "rw-p", 0, "00:00", 0, ""]]}
    interval = {"type": "interval", "seq": 1, "t": 2.0, "aging": 0.1, "dropped": 0,
                "rss_kb": 4, "counts": [[2, 0, 1, 0]], **interval_change}
    rec = tmp_path / "rec.jsonl"
    rec.write_text("".join(json.dumps(o) + "\n" for o in (header, maps, interval)))
    for args in ((), ("--json",), ("--view", "node"), ("--svg", str(tmp_path / "x.svg"))):
        rc, _, err = replay(rec, *args)
        assert rc == 1 and err.count("\n") == 1 and err.startswith(f"heatmap: {rec}"), err


def test_svg_never_replaces_what_is_not_a_regular_file(tmp_path):
    """--svg through a symlink (or onto /dev/stdout) writes through it; renaming a
    temporary file over it would replace the link (as root, even a device node)."""
    rec = tmp_path / "run.jsonl"
    live(tmp_path, "--count", "2", "--record", str(rec))
    target = tmp_path / "real.svg"
    target.write_text("old")
    link = tmp_path / "link.svg"
    link.symlink_to(target)
    rc, _, err = replay(rec, "--svg", str(link))
    assert rc == 0, err
    assert link.is_symlink() and target.read_text().startswith("<?xml")
    rc, _, err = replay(rec, "--svg", str(tmp_path))  # a directory
    assert rc == 1 and err.splitlines()[0] == f"heatmap: cannot write {tmp_path}: Is a directory"
    assert not list(tmp_path.parent.glob("*.tmp")) and not list(tmp_path.glob("*.tmp"))


def test_full_disk_under_record_is_one_line(tmp_path):
    rc, _, err, _ = live(tmp_path, "--count", "2", "--record", "/dev/full")
    assert rc == 1
    assert err == "heatmap: cannot write /dev/full: No space left on device\n"


@pytest.mark.parametrize("stop", [KeyboardInterrupt, lambda: heatmap._Stop("terminated")])
def test_interrupted_svg_leaves_no_files(tmp_path, monkeypatch, stop):
    """Ctrl-C or SIGTERM while the SVG is written: one line, no partial image, no
    temporary recording left behind."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    calls = []

    def interrupted(*args):
        calls.append(args)
        if len(calls) == 5:
            raise stop()
        return heatmap.SVG_NONE

    monkeypatch.setattr(heatmap, "_hex", interrupted)
    svg = tmp_path / "run.svg"
    rc, _, err, _ = live(tmp_path, "--count", "3", "--svg", str(svg))
    assert rc == 1 and err.splitlines()[0] == f"heatmap: {svg} not written: interrupted"
    assert not svg.exists() and not list(tmp_path.glob("*.tmp"))
    assert not list((tmp_path / "tmp").iterdir())  # the spooled recording is gone


def test_unexpected_error_still_removes_the_spool_and_restores_handlers(tmp_path,
                                                                        monkeypatch):
    import signal
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    def broken(self, sample):
        raise RuntimeError("a bug")

    monkeypatch.setattr(heatmap.Model, "add", broken)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RuntimeError):
        live(tmp_path, "--count", "2", "--svg", str(tmp_path / "x.svg"))
    assert not list((tmp_path / "tmp").iterdir())
    assert signal.getsignal(signal.SIGTERM) == before


def test_unwritable_svg_is_refused_before_the_run(tmp_path):
    svg = tmp_path / "no" / "dir" / "x.svg"
    rc, out, err, factory = live(tmp_path, "--count", "3", "--svg", str(svg))
    assert (rc, out) == (1, "")
    assert err == f"heatmap: cannot write {svg}: No such file or directory\n"
    assert not factory.instances  # nothing was loaded into the kernel


def test_svg_failing_at_the_end_keeps_the_run(tmp_path, monkeypatch):
    """When the image cannot be written after all (a full disk), the run it would have
    shown is kept, and the message says where and how to render it."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    def full_disk(out_path, *args, **kwargs):
        raise heatmap.HeatmapError(f"cannot write {out_path}: No space left on device")

    monkeypatch.setattr(heatmap, "write_svg", full_disk)
    svg = tmp_path / "run.svg"
    rc, _, err, _ = live(tmp_path, "--count", "3", "--svg", str(svg))
    (spool,) = (tmp_path / "tmp").iterdir()
    assert rc == 1
    assert err.splitlines()[0] == (
        f"heatmap: cannot write {svg}: No space left on device; the run is kept in {spool} "
        f"(render it with --replay {spool} --svg FILE)")
    rc, _, err = replay(spool)
    assert rc == 0 and "3 intervals" in err
