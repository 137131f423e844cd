"""heatmap.HugePages on the running kernel: the regions of this process that
transparent huge pages back are found (pagemap + kpageflags), those of 4 KiB pages not.
The guest tests check the same end to end, for every source."""

from __future__ import annotations

import ctypes
import io
import json
import mmap
import os
from pathlib import Path

import pytest
from heatmap_fakes import heatmap, json_intervals
from required import cannot_run

REGION = 2 << 20
MADV_HUGEPAGE, MADV_NOHUGEPAGE = 14, 15
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def madvise(addr: int, length: int, advice: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    if libc.madvise(addr, length, advice):
        raise OSError(ctypes.get_errno(), "madvise")


@pytest.fixture
def two_bands():
    """4 MiB asking for THPs, then 4 MiB of 4 KiB pages, both touched: region indexes."""
    if os.geteuid() != 0 or "[never]" in (THP.read_text() if THP.exists() else "[never]"):
        cannot_run("needs root and transparent huge pages", "HEATMAP_REQUIRE_GUEST")
    m = mmap.mmap(-1, 10 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf = ctypes.c_char.from_buffer(m)
    base = ctypes.addressof(buf)
    lo = base + (-base) % REGION
    madvise(lo, 4 << 20, MADV_HUGEPAGE)
    madvise(lo + (4 << 20), 4 << 20, MADV_NOHUGEPAGE)
    off = lo - base
    m[off:off + (8 << 20):4096] = b"\1" * 2048
    yield lo // REGION
    del buf
    m.close()


def huge_pages_found(shift: int) -> dict[int, int]:
    maps = heatmap.read_maps("/proc", os.getpid())
    finder = heatmap.HugePages("/proc", os.getpid(), shift, 4096)
    try:
        return dict(finder.find(maps))
    finally:
        finder.close()


def test_regions_huge_pages_back_are_found(two_bands):
    first = two_bands
    found = huge_pages_found(21)
    assert [found.get(first + i, 0) for i in range(4)] == [512, 512, 0, 0], found


def test_smaller_regions_are_wholly_huge(two_bands):
    """With 1 MiB regions a huge page backs two regions, each all of its 256 pages."""
    first = two_bands * 2
    found = huge_pages_found(20)
    assert [found.get(first + i, 0) for i in range(8)] == [256] * 4 + [0] * 4, found


def test_unknown_without_kpageflags(tmp_path):
    """No pagemap to read (a fake /proc here, an unprivileged run): unknown, not 0."""
    finder = heatmap.HugePages(str(tmp_path), 1, 21, 4096)
    assert finder.find([]) is None
    finder.close()


def test_rows_huge_pages_back_are_marked_in_frames_json_and_svg(tmp_path):
    """A recording whose first 4 MiB of heap huge pages back: those rows read "H" where
    the others read "|", the legend says what that means, JSON and SVG carry it."""
    header = {"type": "heatmap-record", "version": 1, "pid": 4242, "comm": "hotspot",
              "region_shift": 21, "page_size": 4096, "interval": 1.0, "started": 0}
    heap = 0x10000000 >> 21
    maps = [[0x10000000, 0x10800000, "rw-p", 0, "00:00", 0, "[heap]"]]
    lines = [header, {"type": "maps", "maps": maps}]
    for i in range(3):
        lines.append({"type": "interval", "seq": i + 1, "t": i + 1.0, "aging": 0.01,
                      "dropped": 0, "rss_kb": 1000,
                      "counts": [[heap + r, 0, 512, 0] for r in range(4)],
                      **({"huge": [[heap, 512], [heap + 1, 512]]} if i == 0 else {})})
    rec = tmp_path / "run.jsonl"
    rec.write_text("".join(json.dumps(o) + "\n" for o in lines))
    out, err = io.StringIO(), io.StringIO()
    assert heatmap.main(["--replay", str(rec), "--svg", str(tmp_path / "run.svg")],
                        stdout=out, stderr=err, environ={"TERM": "dumb", "COLUMNS": "100",
                                                         "LINES": "12"}) == 0, err
    frame = out.getvalue().rstrip("\n").split("\n\n")[-1]
    rows = [ln for ln in frame.splitlines() if ln.startswith("1")]
    marks = [ln[len("10000000 [heap]")] for ln in rows]
    assert marks == ["H", "H", "|", "|"], frame
    assert f"H {heatmap.HUGE_NOTE}" in frame
    svg = (tmp_path / "run.svg").read_text()
    assert svg.count('class="huge"') == 2 and heatmap.HUGE_NOTE in svg
    out = io.StringIO()
    assert heatmap.main(["--replay", str(rec), "--json"], stdout=out, stderr=err) == 0
    last = json_intervals(out.getvalue())[-1]
    assert [r["huge"] for r in last["regions"]] == [512, 512, 0, 0]
