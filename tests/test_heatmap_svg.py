"""heatmap.py --svg as it renders (rsvg-convert, then the PNG's pixels): no text drawn
over other text, time ticks evenly spaced and readable, and a canvas sized to what it
shows, for runs from one interval to hundreds."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pngread
import pytest
from heatmap_fakes import heatmap
from required import cannot_run

NS = "{http://www.w3.org/2000/svg}"
MAPS = [[0x400000, 0x600000, "r-xp", 0, "08:01", 1, "/usr/bin/hotspot"],
        [0x10000000, 0x11000000, "rw-p", 0, "00:00", 0, "[heap]"],
        [0x7ffc00000000, 0x7ffc00200000, "rw-p", 0, "00:00", 0, "[stack]"]]


def recording(path, intervals: int, step: float = 1.0):
    header = {"type": "heatmap-record", "version": 1, "pid": 4242, "comm": "hotspot",
              "region_shift": 21, "page_size": 4096, "interval": step, "started": 0}
    lines = [header, {"type": "maps", "maps": MAPS}]
    for i in range(intervals):
        lines.append({"type": "interval", "seq": i + 1, "t": round(step * (i + 1), 3),
                      "aging": 0.01, "dropped": 0, "rss_kb": 1000,
                      "counts": [[(0x10000000 >> 21) + i % 8, 0, 100 + i % 400, 0]]})
    path.write_text("".join(json.dumps(o) + "\n" for o in lines))
    return path


def svg_of(tmp_path, intervals: int, step: float = 1.0):
    rec = recording(tmp_path / f"run{intervals}.jsonl", intervals, step)
    svg = tmp_path / f"run{intervals}.svg"
    assert heatmap.write_svg(str(svg), str(rec)) == intervals
    return svg, ET.parse(svg).getroot()


def png_of(svg):
    tool = shutil.which("rsvg-convert")
    if tool is None:  # tools/deps.py installs it for make check
        cannot_run("rsvg-convert (librsvg2-bin) is not installed", "HEATMAP_REQUIRE_GUEST")
    png = svg.with_suffix(".png")
    subprocess.run([tool, str(svg), "-o", str(png)], check=True)
    return pngread.read(png)


def texts(root):
    return [t for t in root.iter(NS + "text") if t.text]


def cells(root):
    return [r for r in root.iter(NS + "rect") if r.get("class") == "cell"]


def ink_bands(img, xs, ys) -> list[tuple[int, int]]:
    """Runs of consecutive y (in ys) with ink somewhere in xs."""
    bands, start, last = [], None, None
    for y in ys:
        if any(img.is_ink(x, y) for x in xs):
            if start is None:
                start = y
            last = y
        elif start is not None:
            bands.append((start, last))
            start = None
    if start is not None:
        bands.append((start, last))
    return bands


def ink_runs(img, xs, ys, gap: int = 3) -> list[tuple[int, int]]:
    """Runs of x (in xs) with ink in some y of ys, split where gap columns are blank."""
    runs, start, last = [], None, None
    for x in xs:
        if any(img.is_ink(x, y) for y in ys):
            if start is not None and x - last > gap:
                runs.append((start, last))
                start = None
            if start is None:
                start = x
            last = x
    if start is not None:
        runs.append((start, last))
    return runs


@pytest.mark.parametrize("intervals", [1, 6, 30, 400])
def test_lines_above_the_plot_do_not_overlap(tmp_path, intervals):
    """Title, subtitle and the column heading are separate lines of ink, as many as
    there are lines of text above the plot."""
    svg, root = svg_of(tmp_path, intervals)
    img = png_of(svg)
    assert (img.width, img.height) == (int(root.get("width")), int(root.get("height")))
    top = min(float(c.get("y")) for c in cells(root))
    above = {float(t.get("y")) for t in texts(root) if float(t.get("y")) < top}
    bands = ink_bands(img, range(img.width), range(int(top)))
    assert len(bands) == len(above), (bands, sorted(above))


@pytest.mark.parametrize("intervals", [1, 2, 6, 12, 30, 99, 400, 2000])
def test_time_ticks_are_evenly_spaced_and_readable(tmp_path, intervals):
    svg, root = svg_of(tmp_path, intervals)
    ticks = [t for t in root.iter(NS + "text") if t.get("class") == "tick"]
    xs = [float(t.get("x")) for t in ticks]
    steps = {round(b - a, 3) for a, b in zip(xs, xs[1:-1])}
    assert len(steps) <= 1, xs  # evenly spaced, but for the last tick
    assert ticks and ticks[-1].text == str(intervals)  # the run's end is labelled
    img = png_of(svg)
    y = int(float(ticks[0].get("y")))
    plot = cells(root)
    left = int(min(float(c.get("x")) for c in plot))
    right = int(max(float(c.get("x")) + float(c.get("width")) for c in plot))
    runs = ink_runs(img, range(max(0, left - 20), min(img.width, right + 20)),
                    range(y - 8, y + 2))
    assert len(runs) == len(ticks), (runs, [t.text for t in ticks])


def test_six_intervals_get_six_ticks(tmp_path):
    _, root = svg_of(tmp_path, 6)
    ticks = [t.text for t in root.iter(NS + "text") if t.get("class") == "tick"]
    assert ticks == ["1", "2", "3", "4", "5", "6"]


@pytest.mark.parametrize("intervals", [1, 6, 30])
def test_a_short_run_fills_the_canvas(tmp_path, intervals):
    """The canvas is as wide as what it holds; a short run's cells widen to use it."""
    _, root = svg_of(tmp_path, intervals)
    plot = cells(root)
    left = min(float(c.get("x")) for c in plot)
    right = max(float(c.get("x")) + float(c.get("width")) for c in plot)
    width = float(root.get("width"))
    assert right - left >= 0.5 * width, (left, right, width)
