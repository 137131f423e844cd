"""heatmap.py zoom and scope: --range and --mapping (parsing, clipping, errors, what
reaches the JSON and a recording), on a fake /proc and fake counts."""

from __future__ import annotations

import argparse
import io
import json
import os

import pytest
from heatmap_fakes import (
    SMALL_MAPS,
    FakeClock,
    heatmap,
    json_intervals,
    make_factory,
    make_proc,
    maps_line,
    set_maps,
    small_script,
)

MiB = 1 << 20
SLOT1 = 1 << heatmap.TARGET_BITS  # (process slot 1 of several: TARGET_BITS)
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
    regions = [[r["start"] for r in iv["regions"]] for iv in json_intervals(out)]
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


# -- symbols of file-backed ELF mappings ------------------------------------------------------

@pytest.fixture(scope="module", params=["pie", "no-pie"])
def hotsym(request):
    """tests/targets/hotsym running, as a position-independent executable and linked at
    a fixed address (its segments' addresses then are not their file offsets):
    (its pid, {symbol: address}, binary)."""
    import targets

    if request.param == "pie":
        binary = targets.build_target("hotsym")
    else:
        binary = targets.compile_program("hotsym", targets.BUILD / "targets" / "hotsym-no-pie",
                                         "-no-pie", "-fno-pie")
    running = targets.HotSym(binary)
    yield running.pid, running.where, binary
    running.close()


SIZES = {"hot_code": 64 << 10, "cold_code": 64 << 10, "hot_table": 4 * MiB,
         "cold_table": 4 * MiB}


def test_symbols_at_the_addresses_the_program_prints(hotsym):
    pid, where, _ = hotsym
    maps = heatmap.read_maps("/proc", pid)
    files = heatmap.SymbolFiles(f"/proc/{pid}/root")
    for name, addr in where.items():
        assert files.inside(maps, addr, addr + 1) == [(name, 1)]
        # the whole object, and nothing else, from its first byte to its last
        inside = files.inside(maps, addr, addr + SIZES[name])
        assert inside[0][0] == name and inside[0][1] >= SIZES[name] - 64, inside
    # a page of the table is the table's alone; a page of code is the function's
    assert files.inside(maps, where["hot_table"] + 8192, where["hot_table"] + 12288) == [
        ("hot_table", 4096)]


def test_hot_symbols_rank_a_rows_symbols_by_young_pages(hotsym):
    pid, where, _ = hotsym
    maps = heatmap.read_maps("/proc", pid)
    model = heatmap.Model({"pid": pid, "comm": "hotsym", "region_shift": 12,
                           "page_size": 4096})
    hot, cold = where["hot_code"] >> 12, where["cold_code"] >> 12
    table = where["hot_table"] >> 12
    counts = [(hot + i, 0, 0, 1) for i in range(16)] + [(cold, 0, 0, 1)] + \
        [(table + i, 0, 0, 1) for i in range(8)]
    model.add(heatmap.Sample(1, 1.0, 0.0, 0, 0, maps, sorted(counts)))
    files = heatmap.SymbolFiles(f"/proc/{pid}/root")
    lo = min(where.values()) - MiB
    ranked = heatmap.hot_symbols(model, files, lo, lo + 64 * MiB)
    assert [name for name, _ in ranked] == ["hot_code", "hot_table", "cold_code"]
    assert ranked[0][1] == pytest.approx(16 / 25, abs=0.01)
    # the JSON names each region's symbol
    sample = heatmap.Sample(2, 2.0, 0.0, 0, 0, None, [(hot, 0, 0, 1), (table, 0, 0, 1)])
    model.add(sample)
    regions = json.loads(heatmap.interval_json(sample, model, files))["regions"]
    assert [r["symbols"] for r in regions] == [["hot_code"], ["hot_table"]]
    assert "symbols" not in json.loads(heatmap.interval_json(sample, model))["regions"][0]


def _mapping_of(path, start=0x400000, size=1 << 20, offset=0):
    st = os.stat(path)
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    return heatmap.Mapping(start, start + size, "r--p", offset, dev, st.st_ino, str(path))


def test_files_without_symbols_never_fail(tmp_path, hotsym):
    import shutil
    import subprocess

    _, _, binary = hotsym
    files = heatmap.SymbolFiles()
    text = tmp_path / "notes.txt"
    text.write_text("not an ELF file\n" * 1000)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(binary.read_bytes()[:200])
    damaged = tmp_path / "damaged"
    raw = bytearray(binary.read_bytes())
    raw[0x28:0x30] = (len(raw) - 10).to_bytes(8, "little")  # e_shoff: past the end
    damaged.write_bytes(bytes(raw))
    for path in (text, truncated, damaged, tmp_path):
        assert files.of(_mapping_of(path)) is None, path
        assert files.inside([_mapping_of(path)], 0x400000, 0x500000) == []
    stripped = tmp_path / "stripped"
    shutil.copy(binary, stripped)
    subprocess.run(["strip", "--strip-all", str(stripped)], check=True)
    m = _mapping_of(stripped, offset=0x1000)
    assert files.of(m) is not None and files.inside([m], 0x400000, 0x500000) == []
    # a file replaced since it was mapped (another inode) is not read
    other = _mapping_of(binary, offset=0x1000)._replace(inode=1)
    assert files.of(other) is None
    assert files.inside([_mapping_of(binary, offset=0x1000)], 0x400000 + 0x2000,
                        0x400000 + 0x2001) == [("hot_code", 1)]



def test_prefetch_reads_the_files_in_the_background_and_of_waits_for_them(hotsym,
                                                                          monkeypatch):
    """What prefetch() read is what of() gives, read once and not in the caller's
    thread (the run's main loop, which must age on time); of() on a file still being
    read waits for it rather than reading it again."""
    import threading

    pid, where, _ = hotsym
    maps = heatmap.read_maps("/proc", pid)
    files = heatmap.SymbolFiles(f"/proc/{pid}/root")
    readers = []
    gate = threading.Event()
    real_read = heatmap.SymbolFiles._read

    def read(self, m):
        readers.append((m.path, threading.current_thread()))
        gate.wait(10)
        return real_read(self, m)

    monkeypatch.setattr(heatmap.SymbolFiles, "_read", read)
    worker = files.prefetch(maps)
    assert worker is not None and worker.is_alive()  # held at the gate
    got = []
    asker = threading.Thread(target=lambda: got.append(
        files.inside(maps, where["hot_code"], where["hot_code"] + 1)))
    asker.start()
    asker.join(0.2)
    assert asker.is_alive()  # waiting for the prefetch, not reading itself
    gate.set()
    asker.join(10)
    worker.join(10)
    assert got == [[("hot_code", 1)]]
    paths = [path for path, _ in readers]
    assert len(paths) == len(set(paths))  # each file read once
    assert all(t is worker for _, t in readers)
    assert files.prefetch(maps) is None  # nothing left to read


# -- zoom: layouts, region sizes, the live view's keys ------------------------------------------

def heap_model(shift=21, maps=SMALL_MAPS):
    model = heatmap.Model({"pid": 4242, "comm": "hotspot", "region_shift": shift,
                           "page_size": 4096})
    model.set_maps(heatmap.parse_maps(maps) if isinstance(maps, str) else maps)
    return model


def test_a_rows_span_is_its_mapped_addresses():
    rows = heap_model().rows_for(11)
    spans = [rows.span(r) for r in range(rows.n)]
    assert spans[0] == (0x400000, 0x600000)
    assert spans[1:9] == [(HEAP + i * 2 * MiB, HEAP + (i + 1) * 2 * MiB) for i in range(8)]
    # a row of several small mappings spans from the first one's start to the last's end
    crowd = "".join(maps_line(0x20000000 + i * 0x10000, 0x20000000 + i * 0x10000 + 0x3000)
                    + "\n" for i in range(40))
    rows = heap_model(maps=crowd).rows_for(4)
    assert rows.span(0)[0] == 0x20000000 and rows.span(rows.n - 1)[1] == 0x20273000
    assert all(rows.span(r)[1] <= rows.span(r + 1)[0] for r in range(rows.n - 1))


def test_zooming_into_a_row_lays_its_range_out_at_a_finer_region_size():
    maps = heatmap.parse_maps(SMALL_MAPS)
    lo, hi = heap_model().rows_for(11).span(3)
    shift = heatmap.zoom_shift(hi - lo, 16, 4096, 21, maps)
    assert shift == 17  # 2 MiB on 16 rows: 128 KiB each
    zoomed = heap_model(shift, heatmap.Scope(lo, hi).apply(maps)).rows_for(16)
    assert [zoomed.span(r) for r in range(zoomed.n)] == [
        (lo + i * (128 << 10), lo + (i + 1) * (128 << 10)) for i in range(16)]
    assert [label[0] for label in zoomed.labels] == [lo + i * (128 << 10) for i in range(16)]


@pytest.mark.parametrize("span,rows,shift,expected", [
    (2 * MiB, 16, 21, 17),
    (2 * MiB, 1, 21, 21),  # never coarser than before
    (48 << 10, 16, 21, 12),  # never finer than a page
    (3 * MiB, 10, 16, 16),
])
def test_zoom_region_sizes(span, rows, shift, expected):
    assert heatmap.zoom_shift(span, rows, 4096, shift, heatmap.parse_maps(SMALL_MAPS)) == expected


def test_zoom_stops_at_the_deepest_level_a_recording_takes(tmp_path, monkeypatch):
    make_proc(tmp_path, 4242, SMALL_MAPS)
    source = heatmap.LiveSource(4242, 21, 1.0, make_factory(small_script()), str(tmp_path),
                                FakeClock())
    source.open()
    monkeypatch.setattr(heatmap, "MAX_ZOOM", 2)
    source.zoom(HEAP, HEAP + 2 * MiB, 16)
    source.zoom(HEAP, HEAP + MiB, 16)
    with pytest.raises(heatmap.HeatmapError, match="^2 levels deep: zoom out first$"):
        source.zoom(HEAP, HEAP + MiB // 2, 16)
    assert source.unzoom() and source.unzoom() and not source.unzoom()
    source.close()



def test_a_zoom_keeps_a_self_sampling_sources_aging_interval(tmp_path):
    """DAMON samples on its own at the aging interval it was told: the counts a zoom
    opens at the finer region size are told it too."""
    base = make_factory(small_script())

    class Sampling(base):
        samples_itself = True
        samples_per_column = 2
        told = []

        def __init__(self, pid, region_shift, max_regions, interval=None,
                     aging_interval=None):
            super().__init__(pid, region_shift, max_regions, interval)
            self.told.append((region_shift, aging_interval))

    make_proc(tmp_path, 4242, SMALL_MAPS)
    source = heatmap.LiveSource(4242, 21, 1.0, Sampling, str(tmp_path), FakeClock(),
                                aging_interval=0.5)
    Sampling.told.clear()
    source.open()
    source.zoom(HEAP, HEAP + 2 * MiB, 16)
    assert Sampling.told[-1] == (17, 0.5)
    source.close()

def test_a_source_that_cannot_zoom_finer_zooms_at_the_runs_region_size(tmp_path):
    """DAMON (zooms_finer False): a zoom narrows the range at the run's region size and
    never opens a second instance of the counts."""
    base = make_factory(small_script())

    class Fixed(base):
        zooms_finer = False
        opened = []

        def __init__(self, pid, region_shift, max_regions, interval=None):
            super().__init__(pid, region_shift, max_regions, interval)
            self.opened.append(region_shift)

    make_proc(tmp_path, 4242, SMALL_MAPS)
    source = heatmap.LiveSource(4242, 21, 1.0, Fixed, str(tmp_path), FakeClock())
    Fixed.opened.clear()
    source.open()
    source.zoom(HEAP, HEAP + 2 * MiB, 16)
    assert (Fixed.opened, source.shift) == ([21], 21)
    assert (source.scope.lo, source.scope.hi) == (HEAP, HEAP + 2 * MiB)
    assert source.unzoom() and source.shift == 21 and Fixed.opened == [21]
    source.close()


def test_damon_zooms_at_the_runs_region_size():
    assert heatmap.DamonCounts.zooms_finer is False


def test_zoom_keeps_the_whole_processs_map_bounded():
    big = heatmap.parse_maps(maps_line(0x7e0000000000, 0x7e0000000000 + (4 << 30)) + "\n")
    assert heatmap.zoom_shift(64 << 10, 16, 4096, 21, big) == 14  # 4 GiB / 2^18 regions
    assert heatmap.spanned_regions(big, 14) <= heatmap.ZOOM_REGIONS


def test_zoom_keys_are_in_the_legend():
    screen = heatmap.LiveScreen(io.StringIO(), None, "heat", None, lambda: 0.0)
    assert [screen._key(ch) for ch in "jjkzx"] == ["redraw"] * 3 + ["zoom", "unzoom"]
    assert screen.cursor == 1
    assert "j/k row" in heatmap.KEYS_HINT and "z/x zoom" in heatmap.KEYS_HINT
    assert len(heatmap.KEYS_HINT) <= 80


class Terminal:
    """An 80x24 pseudo-terminal for main(), its output collected by a thread."""

    def __init__(self):
        import fcntl
        import pty
        import struct
        import termios
        import threading

        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self):
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.chunks.append(data)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def main(self, argv, **kw) -> tuple[int, str]:
        """main(argv) on the terminal, then closed; (status, stderr)."""
        err = io.StringIO()
        try:
            with open(self.slave, "w", closefd=False) as out, open(os.dup(self.slave)) as inp:
                rc = heatmap.main(argv, stdin=inp, stdout=out, stderr=err,
                                  environ={"TERM": "xterm", "NO_COLOR": "1"}, **kw)
        finally:
            os.close(self.slave)
            self.reader.join(5)
            os.close(self.master)
        return rc, err.getvalue()


def live_run_on_a_pty(tmp_path, keys_at: dict, *args, young=None, others=None):
    """main() on a pseudo-terminal with fake counts, `keys_at[n]` typed (or called) during
    the n-th aging of any counts instance; (status, frames without escapes, stderr, factory).
    young(region_shift), if given, is what every drain after the warm-up finds.
    others: {pid: maps text} of more processes to watch (named "worker")."""
    make_proc(tmp_path, 4242, SMALL_MAPS)
    for pid, maps in (others or {}).items():
        make_proc(tmp_path, pid, maps, comm="worker")
        args = (str(pid), *args)
    term = Terminal()
    agings = [0]

    def on_age(_n):
        agings[0] += 1
        act = keys_at.get(agings[0])
        if callable(act):  # (something else than keys: a process exits)
            act()
        elif act is not None:
            term.type(act)

    factory = make_factory(small_script() * 4, on_age=on_age)
    if young is not None:
        factory.drain = lambda self: young(self.region_shift) if self.ages > 1 else []
    rc, err = term.main(["4242", "--interval", "0.1", *args], counts_factory=factory,
                        proc_root=str(tmp_path))
    return rc, screen_frames(term.chunks), err, factory


def screen_frames(chunks: list[bytes]) -> list[str]:
    """What a terminal was sent, as frames (one per cursor-home) without escapes."""
    import re

    text = b"".join(chunks).decode("latin-1")
    return [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", f).replace("\r", "")
            for f in text.split("\x1b[H")]


def test_zoom_in_twice_and_back_out_on_a_terminal(tmp_path):
    # agings: 1 warm-up, 2 interval 1; each zoom reopens the counts and ages once
    rc, frames, err, factory = live_run_on_a_pty(
        tmp_path, {2: b"jz", 4: b"\x1b[Bjz", 6: b"x", 8: b"x", 10: b"x"}, "--count", "6")
    assert rc == 0, err
    assert "6 intervals" in err
    shifts = [c.region_shift for c in factory.instances]
    assert shifts[0] == shifts[4] == 21 and 21 > shifts[1] == shifts[3] > shifts[2] >= 12
    assert [c.closed for c in factory.instances] == [1] * 5
    heads = ["\n".join(f.splitlines()[:3]) for f in frames]

    def first(text):
        return next(i for i, h in enumerate(heads) if text in h)

    size = heatmap.fmt_size
    one = first(f"range 0x10000000-0x10200000  zoom 1  region {size(1 << shifts[1])}")
    # zoomed in once, the rows are the selected 2 MiB row, in steps of whole regions
    rows = [int(line.split()[0], 16) for line in frames[one].splitlines()
            if line.endswith("|") or "|" in line and line[:1] in "0123456789abcdef"]
    assert rows[0] == HEAP and len(rows) > 8
    assert all(b > a and (b - a) % (1 << shifts[1]) == 0 for a, b in zip(rows, rows[1:]))
    assert rows[-1] < HEAP + 2 * MiB
    two = first(f"range {rows[2]:#x}-{rows[3]:#x}  zoom 2  region {size(1 << shifts[2])}")
    assert first("> 10000000-10200000 [heap] (2 MiB)") < one < two < first("not zoomed in")
    back = first("not zoomed in")
    assert "zoom" not in heads[back].splitlines()[1] and "region 2 MiB" in heads[back]


# -- zoom in a recording: the zoom record, its replay, its checks, --svg --------------

def heap_pages(shift):
    """Young pages the fake kernel finds at any region size: 4 of every 16 KiB in
    the heap's first 256 KiB (a band finer than 2 MiB regions can tell)."""
    young: dict[int, int] = {}
    for addr in range(HEAP, HEAP + (256 << 10), 4 << 12):
        young[addr >> shift] = young.get(addr >> shift, 0) + 4
    return [(r, 0, n, 0) for r, n in sorted(young.items())]


def recorded_live_run(tmp_path, monkeypatch, keys_at, *args, others=None):
    """A live run on a pty with --record and zoom keys; (recording, the JSON of every
    interval and the summary as the live run's models gave them, factory)."""
    rec = tmp_path / "zoomed.jsonl"
    live: list[dict] = []
    write, finish = heatmap.Recorder.write, heatmap.Recorder.finish

    def spy_write(self, sample, model=None):
        write(self, sample, model)
        live.append(json.loads(heatmap.interval_json(sample, model)))

    def spy_finish(self, summary):
        finish(self, summary)
        live.append(summary)

    monkeypatch.setattr(heatmap.Recorder, "write", spy_write)
    monkeypatch.setattr(heatmap.Recorder, "finish", spy_finish)
    rc, frames, err, factory = live_run_on_a_pty(tmp_path, keys_at, "--record", str(rec),
                                                 *args, young=heap_pages, others=others)
    assert rc == 0, err
    return rec, live, frames, factory


def replay_json(rec, *args):
    out, err = io.StringIO(), io.StringIO()
    rc = heatmap.main(["--replay", str(rec), "--json", *args], stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def test_zoom_while_recording_replays_identically(tmp_path, monkeypatch):
    # intervals 1 at the top, 2 zoomed into the heap's first row, 3 into a row of
    # that, 4 back at level 1, 5 and 6 at the top again
    rec, live, frames, factory = recorded_live_run(
        tmp_path, monkeypatch, {2: b"jz", 4: b"z", 6: b"x", 8: b"x"}, "--count", "6")
    shifts = [c.region_shift for c in factory.instances]
    assert shifts[0] == shifts[4] == 21 and 21 > shifts[1] == shifts[3] > shifts[2]
    records = [json.loads(line) for line in rec.read_text().splitlines()]
    assert records[0]["version"] == heatmap.RECORD_VERSION_ZOOM
    zooms = [(i, r) for i, r in enumerate(records) if r["type"] == "zoom"]
    assert [(r["zoom"], r["region_shift"]) for _, r in zooms] == [
        (1, shifts[1]), (2, shifts[2]), (1, shifts[1]), (0, 21)]
    assert zooms[0][1]["range"] == [HEAP, HEAP + 2 * MiB] and "range" not in zooms[3][1]
    assert all(records[i + 1]["type"] == "maps" for i, _ in zooms)
    # the live run's JSON, interval by interval, is the replay's
    rc, out, err = replay_json(rec)
    assert rc == 0, err
    assert json_intervals(out) + [json.loads(out.splitlines()[-1])] == live
    sizes = [o["region_size"] for o in live[:-1]]
    assert sizes == [2 * MiB, 1 << shifts[1], 1 << shifts[2], 1 << shifts[1], 2 * MiB, 2 * MiB]
    assert [o.get("zoom", {}).get("level", 0) for o in live[:-1]] == [0, 1, 2, 1, 0, 0]
    # the deepest zoom counts the part of the band in its range, in finer regions
    lo, hi = zooms[1][1]["range"]
    fine = live[2]["regions"]
    assert fine and all(lo <= r["start"] < r["end"] <= hi for r in fine)
    assert sum(r["accessed"] for r in fine) == 4 * len(range(lo, min(hi, HEAP + (256 << 10)),
                                                               16 << 10))
    assert [(r["start"], r["accessed"], r["pages"]) for r in live[0]["regions"]] == [
        (HEAP, 64, 512)]
    # the replay's live view: each level as the live run showed it, its history too
    # (back at the top, interval 1 from before the zooms is there)
    rc, shown, err = replay_on_a_pty(tmp_path, rec, [], "--speed", "0")
    assert rc == 0, err
    for seq in range(1, 7):  # (the frame each interval brought)
        assert first_frame(shown, f"#{seq} ") == first_frame(frames, f"#{seq} ")
    # (the top level's own columns: intervals 1, 5 and 6, side by side)
    assert first_frame(shown, "#6 ").splitlines()[4][-4:] == " +++"
    again = tmp_path / "again.jsonl"
    rc, _, err = replay_json(rec, "--record", str(again))
    assert rc == 0, err
    assert again.read_bytes() == rec.read_bytes()


def first_frame(frames: list[str], text: str) -> str:
    """The first frame with text, up to its keys line (a replay's last frame is
    followed by the copy it leaves on the terminal's own screen)."""
    return next(f for f in frames if text in f).split("q quit")[0]


def test_a_zoom_no_interval_followed_is_not_recorded(tmp_path, monkeypatch):
    # paused (no partial interval at the end), zoomed in, quit: the run's last view
    # counted nothing, so neither the recording nor its summary has it
    rec, live, frames, factory = recorded_live_run(
        tmp_path, monkeypatch, {4: b"pjz", 5: b"q"}, "--count", "6")
    assert [c.region_shift < 21 for c in factory.instances] == [False, True]
    assert any("zoom 1" in f for f in frames)
    records = [json.loads(line) for line in rec.read_text().splitlines()]
    assert [r["type"] for r in records].count("zoom") == 0
    # 3 intervals, the summary: of the whole process (the zoomed view has no stack)
    assert len(live) == 4 and "[stack]" in {r["mapping"] for r in live[-1]["never_touched"]}
    rc, out, err = replay_json(rec)
    assert rc == 0, err
    assert json_intervals(out) + [json.loads(out.splitlines()[-1])] == live


def test_a_recording_no_key_can_zoom_stays_version_1(tmp_path):
    rec = tmp_path / "plain.jsonl"
    rc, _, err = run(tmp_path, "--count", "2", "--record", str(rec))
    assert rc == 0, err
    records = [json.loads(line) for line in rec.read_text().splitlines()]
    assert records[0]["version"] == 1 and "zoom" not in {r["type"] for r in records}


def zoom_recording(path, zoom: dict, version=2, maps_after=True, header=None):
    """A recording: an interval at 2 MiB, the zoom record, an interval after it."""
    head = {"type": "heatmap-record", "version": version, "pid": 1, "comm": "x",
            "region_shift": 21, "page_size": 4096, "interval": 1.0, "started": 0,
            **(header or {})}
    maps = {"type": "maps", "maps": [[HEAP, HEAP + 16 * MiB, "rw-p", 0, "00:00", 0, "[heap]"]]}
    lines = [head, maps,
             {"type": "interval", "seq": 1, "t": 1.0, "aging": 0, "dropped": 0, "rss_kb": 1,
              "counts": [[HEAP >> 21, 0, 8, 0]]},
             {"type": "zoom", **zoom}] + ([maps] if maps_after else []) + [
             {"type": "interval", "seq": 2, "t": 2.0, "aging": 0, "dropped": 0, "rss_kb": 1,
              "counts": [[HEAP >> 16, 0, 8, 0]]}]
    path.write_text("".join(json.dumps(o) + "\n" for o in lines))
    return path


def test_a_recorded_zoom_replays_at_its_region_size(tmp_path):
    rec = zoom_recording(tmp_path / "z.jsonl", {"zoom": 1, "region_shift": 16,
                                                 "range": [HEAP, HEAP + 2 * MiB]})
    rc, out, err = replay_json(rec)
    assert rc == 0, err
    one, two = json_intervals(out)
    assert one["region_size"] == 2 * MiB and "zoom" not in one
    assert two["region_size"] == 64 << 10
    assert two["zoom"] == {"level": 1, "start": HEAP, "end": HEAP + 2 * MiB}
    assert [(r["start"], r["accessed"], r["pages"]) for r in two["regions"]] == [
        (HEAP, 8, 16)]


@pytest.mark.parametrize("zoom,kw,why", [
    ({"zoom": 1, "region_shift": 22, "range": [HEAP, HEAP + MiB]}, {},
     "region_shift 22 coarser than the recording's"),
    ({"zoom": 1, "region_shift": 11, "range": [HEAP, HEAP + MiB]}, {},
     "region_shift 11 finer than a 4 KiB page"),
    ({"zoom": 1, "region_shift": 16}, {}, "level 1 without its range"),
    ({"zoom": 1, "region_shift": 16, "range": [HEAP, HEAP + MiB]}, {"header": {
        "range": [HEAP + MiB, HEAP + 4 * MiB]}},
     "range 0x10000000-0x10100000 outside the recording's"),
    # several processes: a zoom's range is in one process's slot, checked in its addresses
    ({"zoom": 1, "region_shift": 16, "range": [SLOT1 + HEAP, SLOT1 + HEAP + 2 * MiB]},
     {"header": {"range": [HEAP + MiB, HEAP + 4 * MiB], "targets": [[0, 1, "x"], [1, 2, "y"]]}},
     "range 0x10000000-0x10200000 outside the recording's"),
    ({"zoom": 1, "region_shift": 16, "range": [HEAP, SLOT1 + HEAP]},
     {"header": {"targets": [[0, 1, "x"], [1, 2, "y"]]}},
     "range 0x10000000-0x200000010000000 across two processes"),
    ({"zoom": 0, "region_shift": 16}, {}, "level 0 other than the recording's own view"),
    ({"zoom": 1, "region_shift": 16, "range": [HEAP, HEAP + MiB], "mapping": "libc.so.6"},
     {}, "a mapping other than the recording's"),
    ({"zoom": -1, "region_shift": 16}, {}, "zoom level -1 out of range"),
    ({"zoom": 1, "region_shift": "16", "range": [HEAP, HEAP + MiB]}, {}, "not an integer"),
    ({"zoom": 1, "region_shift": 16, "range": [HEAP, HEAP + MiB]}, {"maps_after": False},
     "the first interval after a zoom comes without the maps of the zoomed view"),
    ({"zoom": 1, "region_shift": 16, "range": [HEAP, HEAP + MiB]}, {"version": 1},
     "a version 1 recording has none"),
])
def test_a_malformed_zoom_record_is_refused_in_one_line(tmp_path, zoom, kw, why):
    rec = zoom_recording(tmp_path / "bad.jsonl", zoom, **kw)
    rc, out, err = replay_json(rec)
    assert rc == 1
    where = "5: bad interval record" if "maps_after" in kw else "4: bad zoom record"
    assert err.startswith(f"heatmap: {rec}:{where} (") and err.count("\n") == 1, err
    assert f"({why}" in err and err.endswith("; shown: the 1 interval before it\n"), err
    assert [o["seq"] for o in map(json.loads, out.splitlines())] == [1]


ALIASED = """\
	.text
	.globl	zlabel, sized
	.type	zlabel, @function
	.type	sized, @function
zlabel:
sized:
	.fill	4096, 1, 0x90
	.size	sized, 4096
"""


@pytest.mark.parametrize("bits", ["64", "32"])
def test_a_zero_size_label_does_not_hide_the_symbol_it_shares_an_address_with(tmp_path, bits):
    import shutil
    import subprocess

    src, obj = tmp_path / "aliased.s", tmp_path / "aliased.o"
    src.write_text(ALIASED)
    subprocess.run([shutil.which("gcc") or "cc", f"-m{bits}", "-c", str(src), "-o", str(obj)],
                   check=True)
    with open(obj, "rb") as f:
        syms = heatmap.ElfSymbols(f)
    assert syms.inside(0, 1) == [("sized", 1)]
    assert syms.inside(0, 8192) == [("sized", 4096)]


# -- a replay's view zoom: the selected row at the recorded region size -------------------

BIG_HEAP = 256 * MiB  # 128 regions of 2 MiB: a screen row holds several


def long_recording(path, intervals=40, step=0.05, zoom_at=None):
    """A recording of a 256 MiB heap after a binary; each interval finds heap region
    (seq % 4) young (all 512 pages) and region 100 half young.  zoom_at: the interval
    before which the recorded run zoomed into the heap's first 8 MiB at 64 KiB."""
    maps = {"type": "maps", "maps": [
        [0x400000, 0x600000, "r-xp", 0, "08:01", 7, "/usr/bin/hotspot"],
        [HEAP, HEAP + BIG_HEAP, "rw-p", 0, "00:00", 0, "[heap]"]]}
    lines = [{"type": "heatmap-record", "version": 2, "pid": 1, "comm": "x",
              "region_shift": 21, "page_size": 4096, "interval": step, "started": 0}, maps]
    shift = 21
    for seq in range(1, intervals + 1):
        if seq == zoom_at:
            shift = 16
            lines += [{"type": "zoom", "zoom": 1, "region_shift": 16,
                       "range": [HEAP, HEAP + 8 * MiB]},
                      {"type": "maps", "maps": [[HEAP, HEAP + 8 * MiB, "rw-p", 0, "00:00", 0,
                                                 "[heap]"]]}]  # (what a live zoom writes)
        counts = [[(HEAP >> shift) + (seq % 4 << (21 - shift)), 0, 512 >> (21 - shift), 0]]
        if shift == 21:
            counts.append([(HEAP >> 21) + 100, 0, 256, 0])
        lines.append({"type": "interval", "seq": seq, "t": round(seq * step, 3), "aging": 0,
                      "dropped": 0, "rss_kb": 1, "counts": counts})
    path.write_text("".join(json.dumps(o) + "\n" for o in lines))
    return path


def test_a_view_zoom_narrows_the_rows_at_the_recorded_region_size(tmp_path):
    rec = long_recording(tmp_path / "r.jsonl", intervals=10, zoom_at=7)
    src = heatmap.ReplaySource(str(rec))
    src.open()
    base = heatmap.Model(src.header)
    for _ in range(6):
        base.add(src.take())
    src.close()
    lo, hi = HEAP, HEAP + 16 * MiB
    view = heatmap.ViewZoom(base, lo, hi, 1)
    # the first 9 intervals: 6 at the recording's own view, then 3 zoomed in (not this
    # level's, so not in its history)
    view.rebuild(str(rec), 9, heatmap.zoom_view(base.info))
    model = view.model
    assert model.shift == 21 and model.intervals == 6
    rows = model.rows_for(20)
    assert [rows.span(r) for r in range(rows.n)] == [
        (lo + i * 2 * MiB, lo + (i + 1) * 2 * MiB) for i in range(8)]
    assert set(model.region_totals) == {HEAP >> 21, (HEAP >> 21) + 1, (HEAP >> 21) + 2,
                                        (HEAP >> 21) + 3}  # (region 100: outside)
    young = [model.cells(col, rows)[0][:4] for col in model.columns]
    assert [list(y).index(512) for y in young] == [1, 2, 3, 0, 1, 2]
    items = heatmap.header_items(model, "heat")
    assert "range 0x10000000-0x11000000" in items and "view zoom 1" in items
    assert "region 2 MiB as recorded" in items
    # an interval that follows, of this level, goes in too
    view.feed(heatmap.Sample(11, 0.55, 0, 0, 1, None, [((HEAP >> 21) + 7, 0, 5, 0),
                                                        ((HEAP >> 21) + 8, 0, 5, 0)]))
    assert model.intervals == 7 and model.region_totals[(HEAP >> 21) + 7] == 5
    assert (HEAP >> 21) + 8 not in model.region_totals


def replay_on_a_pty(tmp_path, rec, steps, *args):
    """main() replaying `rec` on an 80x24 pseudo-terminal: each (text, keys) of steps
    typed once the screen has shown text (after the previous step's); (status, frames
    without escapes, stderr)."""
    import threading
    import time

    term = Terminal()
    missed: list[str] = []

    def type_keys():
        seen = 0
        for text, keys in steps:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                frames = screen_frames(list(term.chunks))
                hit = next((i for i in range(seen, len(frames)) if text in frames[i]), None)
                if hit is not None:
                    seen = hit + 1
                    term.type(keys)
                    break
                time.sleep(0.01)
            else:
                missed.append(text)
                term.type(b"q")  # (a paused replay would wait for ever)
                return

    typist = threading.Thread(target=type_keys, daemon=True)
    typist.start()
    rc, err = term.main(["--replay", str(rec), *args])
    typist.join(1)
    frames = screen_frames(term.chunks)
    assert not missed, f"never shown: {missed[0]!r}; the last frame:\n{frames[-1]}"
    return rc, frames, err


def row_starts(frame: str) -> list[int]:
    """The start addresses of a frame's rows."""
    return [int(line.split()[0], 16) for line in frame.splitlines()
            if "|" in line and line[:1] in "0123456789abcdef" and " " in line]


def test_replay_keys_zoom_the_view_into_a_row_and_back_out(tmp_path):
    rec = long_recording(tmp_path / "r.jsonl", intervals=3000, step=0.01)
    rc, frames, err = replay_on_a_pty(tmp_path, rec, [
        ("#5 ", b"p"),  # paused (at #5 or a little later): nothing moves while keys act
        ("paused", b"z"),  # row 0: the binary, one recorded region
        ("one recorded region (2 MiB): a recording has nothing finer", b"jz"),
        ("view zoom 1", b"z"),  # row 0 of the zoomed view: one region again
        ("one recorded region", b"x"),
        ("1f000000 [heap]", b"x"),  # (back out: the top view's rows again)
        ("not zoomed in", b"q"),
    ], "--speed", "1")
    assert rc == 0, err
    assert "quit" in err

    def first(text, after=0):
        return next(i for i in range(after, len(frames)) if text in frames[i])

    zoomed = first("view zoom 1")
    head = "\n".join(frames[zoomed].splitlines()[:2])
    top_rows = row_starts(frames[zoomed - 1])
    lo, hi = top_rows[1], top_rows[2]  # (the heap's first row on the unzoomed screen)
    assert f"range {lo:#x}-{hi:#x}" in head and "region 2 MiB as recorded" in head
    rows = row_starts(frames[zoomed])
    assert rows == list(range(lo, hi, 2 * MiB)) and len(rows) > 1
    # the zoomed view has the history so far (paused at #n): row i hot at the
    # intervals k with k % 4 == i, the others never
    n = int(frames[zoomed - 1].split("  #")[1].split()[0])
    m = min(n, 40)  # (the newest m intervals: all of them, on a screen this wide)
    cells = [x.split("|", 1)[1] for x in frames[zoomed].splitlines() if x[:1] == "1"]
    assert [row[-m:] for row in cells[:5]] == [
        "".join("@" if k % 4 == i else " " for k in range(n - m + 1, n + 1))
        for i in range(4)] + [" " * m]
    assert n > m or all(not row[:-n].strip() for row in cells)
    back = first("1f000000 [heap]", zoomed)
    assert "view zoom" not in frames[back] and row_starts(frames[back]) == top_rows
    assert first("not zoomed in", back) > back


def test_svg_of_a_zoomed_run_draws_a_panel_per_view(tmp_path):
    import xml.etree.ElementTree as ET

    ns = "{http://www.w3.org/2000/svg}"
    rec = long_recording(tmp_path / "r.jsonl", intervals=10, zoom_at=7)
    svg = tmp_path / "r.svg"
    assert heatmap.write_svg(str(svg), str(rec)) == 10
    root = ET.parse(svg).getroot()
    texts = [t.text for t in root.iter(ns + "text") if t.text]
    assert "the run's own view: everything, 2 MiB regions, intervals 1-6 (blank: another " \
           "zoom level)" in texts
    assert "zoom 1: range 0x10000000-0x10800000, 64 KiB regions, intervals 7-10 (blank: " \
           "another zoom level)" in texts
    cells = [r for r in root.iter(ns + "rect") if r.get("class") == "cell"]
    xs = sorted({float(r.get("x")) for r in cells})
    by_column = [[r for r in cells if float(r.get("x")) == x] for x in xs]
    top = [min(float(r.get("y")) for r in col) for col in by_column]
    # the first 6 columns in the upper panel, the last 4 in the lower one, no column in both
    assert len(set(top[:6])) == 1 and len(set(top[6:])) == 1 and top[6] > top[0]
    upper = {float(r.get("y")) for col in by_column[:6] for r in col}
    lower = {float(r.get("y")) for col in by_column[6:] for r in col}
    assert max(upper) < min(lower)
    assert len(lower) == len(by_column[6]) and len(lower) > 16  # (64 KiB rows of 8 MiB)
    # the zoomed panel's rows: the zoomed range, 64 KiB regions drawn from its counts
    labels = [t.text for t in root.iter(ns + "text") if t.text and t.text.endswith("[heap]")]
    assert HEAP + 7 * MiB <= int(labels[-1].split()[0], 16) < HEAP + 8 * MiB
    lines = [e for e in root.iter(ns + "line") if e.get("class") == "zoom"]
    assert len(lines) == 1 and float(lines[0].get("x1")) == xs[6]
    # a run without zooms: one panel, no zoom marks (as before)
    plain = tmp_path / "plain.svg"
    heatmap.write_svg(str(plain), str(long_recording(tmp_path / "p.jsonl", intervals=10)))
    assert not [g for g in ET.parse(plain).getroot().iter(ns + "g") if g.get("class") == "zoom"]


# -- zoom into one process of several ---------------------------------------------------

WORKER_MAPS = "\n".join([
    maps_line(0x400000, 0x600000, "r-xp", 0, "08:01", 99, "/usr/bin/worker"),
    maps_line(HEAP, HEAP + 2 * MiB, "rw-p", 0, "00:00", 0, "[heap]"),
]) + "\n"


def test_zoom_into_one_of_two_processes_on_a_terminal_and_its_replay(tmp_path, monkeypatch):
    # two processes, each aged per interval (agings 1-2: warm-up); the cursor to the
    # last row, the worker's heap; zoomed in for two intervals, then back out
    rec, live, frames, factory = recorded_live_run(
        tmp_path, monkeypatch, {4: b"j" * 30 + b"z", 7: b"x"}, "--count", "5",
        others={4343: WORKER_MAPS})
    shifts = [(c.pid, c.region_shift) for c in factory.instances]
    assert shifts[:2] == [(4242, 21), (4343, 21)] and shifts[2][0] == 4343
    assert 12 <= shifts[2][1] < 21 and len(shifts) == 3  # (the others wait at 2 MiB)
    assert [c.closed for c in factory.instances] == [1, 1, 1]
    heads = ["\n".join(f.splitlines()[:3]) for f in frames]
    size = heatmap.fmt_size(1 << shifts[2][1])
    zoomed = next(i for i, h in enumerate(heads)
                  if f"pid 4343 (worker) range 0x10000000-0x10200000  zoom 1  region {size}"
                  in h)
    lines = frames[zoomed].splitlines()
    assert [line for line in lines if line.startswith("-- pid")] == [
        line for line in lines if line.startswith("-- pid 4343 (worker)")] != []
    back = next(i for i, h in enumerate(heads) if i > zoomed and "zoom 1" not in h)
    assert "zoom" not in heads[back].splitlines()[1] and "range" not in heads[back]
    assert "heatmap 2 processes" in heads[back] and "region 2 MiB" in heads[back]
    assert [line[:12] for line in frames[back].splitlines() if line.startswith("-- pid")] == [
        "-- pid 4242 ", "-- pid 4343 "]
    # JSON: the zoomed intervals name the process and its own range; the replay's the same
    zooms = [o.get("zoom") for o in live[:-1]]
    assert zooms[0] is None and zooms[-1] is None
    assert {"level": 1, "pid": 4343, "start": HEAP, "end": HEAP + 2 * MiB} in zooms
    fine = next(o for o in live[:-1] if o.get("zoom"))
    assert {r["pid"] for r in fine["regions"]} == {4343}
    assert sum(r["accessed"] for r in fine["regions"]) == 4 * 16  # (256 KiB: 16 steps)
    rc, out, err = replay_json(rec)
    assert rc == 0, err
    assert json_intervals(out) + [json.loads(out.splitlines()[-1])] == live


def test_the_zoomed_process_exiting_on_a_terminal_zooms_back_out(tmp_path):
    # zoomed into the worker (aging 4), it exits (aging 6): one line, the server's rows
    # at 2 MiB again, its history from before the zoom kept, the run goes on
    from heatmap_fakes import exit_target

    rc, frames, err, factory = live_run_on_a_pty(
        tmp_path, {4: b"j" * 30 + b"z", 6: lambda: exit_target(tmp_path, 4343)},
        "--count", "5", young=heap_pages, others={4343: WORKER_MAPS})
    assert rc == 0, err
    note = "the zoomed process exited: zoomed back out to every process"
    assert any(note in f for f in frames)
    assert "5 intervals" in err and "Traceback" not in err
    assert [c.closed for c in factory.instances] == [1, 1, 1]
    last = frames[-1] if "#5 " in frames[-1] else next(f for f in frames if "#5 " in f)
    head = "\n".join(last.splitlines()[:3])
    assert "zoom 1" not in head and "region 2 MiB" in head and "heatmap 1 process" in head
    assert "-- pid 4343" not in last
    heap = next(line for line in last.splitlines() if line.startswith("000010000000"))
    # 1/8 of its pages young: interval 1 (before the zoom) and 3-5 (after it), the
    # zoomed interval 2 at the zoom level's model
    assert heap.split("|")[1].strip() == "++++"
