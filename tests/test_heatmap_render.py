"""heatmap.py rendering: exact frames (plain and colour) for known inputs, every view,
terminal sizes from tiny to huge, colour selection."""

from __future__ import annotations

import io
import re

import pytest
from heatmap_fakes import (
    SMALL_MAPS,
    FakeClock,
    heatmap,
    make_factory,
    make_proc,
    region,
    small_script,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_small(tmp_path, *extra, width=60, height=16, environ=None):
    """Run main() on the small synthetic target for 3 intervals; return stdout."""
    make_proc(tmp_path, 4242, SMALL_MAPS)
    clock = FakeClock()
    factory = make_factory(small_script(), warmup=[(region(0x10000000), 0, 99999, 0)],
                           clock=clock)
    out, err = io.StringIO(), io.StringIO()
    env = {"COLUMNS": str(width), "LINES": str(height)}
    env.update(environ or {})
    rc = heatmap.main(["4242", "--count", "3", *extra], counts_factory=factory,
                      proc_root=str(tmp_path), clock=clock, sleep=clock.sleep, stdout=out,
                      stderr=err, environ=env)
    assert rc == 0, err.getvalue()
    assert factory.instances[0].closed == 1
    return out.getvalue(), err.getvalue()


def frames(text: str) -> list[str]:
    """Plain frames are separated by one empty line."""
    assert text.endswith("\n\n")
    return text[:-2].split("\n\n")


# 60 columns: the last item of the header ("dropped 9") gives way
HEADER3 = ["heatmap pid 4242 (hotspot)  rss 256 MiB  every 2 s",
           "via mglru  scan 10.0 ms  region 2 MiB  view {view}  #3 6.0 s"]
LABELS = ["000000400000 hotspot", "000010000000 [heap] ", "000010200000 [heap] ",
          "000010400000 [heap] ", "000010600000 [heap] ", "000010800000 [heap] ",
          "000010a00000 [heap] ", "000010c00000 [heap] ", "7f0000000000 anon   ",
          "7ffc00000000 [stack]"]
PAD = " " * 36  # 39 columns of cells, 3 intervals on the right
AXIS = " " * 20 + "+" + " " * 36 + "now"


def expected_plain(view: str, cells: list[str], legend: list[str]) -> str:
    rows = [label + "|" + PAD + c for label, c in zip(LABELS, cells)]
    return "\n".join([HEADER3[0], HEADER3[1].format(view=view), *rows, AXIS, *legend])


def test_plain_heat_frame_exact(tmp_path):
    out, err = run_small(tmp_path)
    fr = frames(out)
    assert len(fr) == 3
    # 2 MiB regions = 512 pages: binary 10 file pages (1.95% -> ':'), heap region 0
    # full (@), region 1 half (50% -> '#'), region 2 384/512 (75% -> '%'), stack 1 page
    # (0.2% -> '.').  The warm-up drain (99999 pages) is discarded.  The heap's 8
    # regions get 7 rows (the last one covers 2 regions).
    cells = [":  ", "@  ", " # ", "  %", "   ", "   ", "   ", "   ", "   ", " . "]
    legend = ["% of the row's pages found young (blank: none):  . <1%",
              ": 1-2%  - 2-5%  = 5-10%  + 10-20%  * 20-40%  # 40-60%",
              "% 60-80%  @ >=80%"]
    assert fr[2] == expected_plain("heat", cells, legend)
    assert "hottest region 0x10000000-0x10200000 [heap]: 512 young pages" in err
    assert err.startswith("heatmap: 3 intervals in 6.0 s (count reached)")


def test_plain_first_frame_has_one_column(tmp_path):
    out, _ = run_small(tmp_path)
    first = frames(out)[0].split("\n")
    assert first[2] == LABELS[0] + "|" + " " * 38 + ":"
    assert first[3] == LABELS[1] + "|" + " " * 38 + "@"
    assert first[12] == " " * 20 + "+" + " " * 36 + "now"
    assert first[1].endswith("#1 2.0 s")


def test_plain_node_frame_exact(tmp_path):
    # the node legend takes 2 lines, so 15 lines leave the same 10 rows as above
    out, _ = run_small(tmp_path, "--view", "node", height=15)
    # heap region 2: 200 pages on node 0, 184 on node 1 -> no node has 3/4 -> mixed
    cells = ["0  ", "0  ", " 0 ", "  *", "   ", "   ", "   ", "   ", "   ", " 0 "]
    legend = ["NUMA node of >=75% of the young pages (blank: none):",
              "0 node0  1 node1  * mixed"]
    assert frames(out)[2] == expected_plain("node", cells, legend)


def test_one_more_line_gives_the_heap_one_more_row(tmp_path):
    out, _ = run_small(tmp_path, "--view", "node", height=16)
    rows = [ln for ln in frames(out)[2].split("\n") if "|" in ln]
    assert len(rows) == 11
    assert [r[:20] for r in rows if "[heap]" in r] == [
        f"0000{0x10000000 + i * (2 << 20):08x} [heap] " for i in range(8)]


def test_plain_anon_frame_exact(tmp_path):
    out, _ = run_small(tmp_path, "--view", "anon", width=60, height=15)
    fr = frames(out)[2].split("\n")
    # the binary's young pages are file-backed, the rest anon
    assert fr[1] == HEADER3[1].format(view="anon")
    assert len(fr) == 15
    assert fr[2] == LABELS[0] + "|" + PAD + "f  "
    assert fr[3] == LABELS[1] + "|" + PAD + "a  "
    assert fr[4] == LABELS[2] + "|" + PAD + " a "
    assert fr[5] == LABELS[3] + "|" + PAD + "  a"
    assert fr[-2:] == ["kind of >=75% of the young pages (blank: none):  a anon",
                       "f file  * mixed"]
    assert fr[-4] == "7ffc00000000 [stack]|" + PAD + " a "


def esc(n: int) -> str:
    return f"\x1b[48;5;{n}m"


def test_colour_256_frame_exact(tmp_path):
    out, _ = run_small(tmp_path, "--color", "always")
    lines = frames(out)[2].split("\n")
    # viridis levels as xterm-256: level 1 (68,1,84) -> 53, level 2 (71,44,122) -> 54,
    # level 7 (92,200,99) -> 77, level 8 (170,220,50) -> 149, level 9 (253,231,37) -> 220
    assert lines[:2] == [HEADER3[0], HEADER3[1].format(view="heat")]
    assert lines[2] == LABELS[0] + "|" + PAD + esc(54) + " \x1b[49m  "
    assert lines[3] == LABELS[1] + "|" + PAD + esc(220) + " \x1b[49m  "
    assert lines[4] == LABELS[2] + "|" + PAD + " " + esc(77) + " \x1b[49m "
    assert lines[5] == LABELS[3] + "|" + PAD + "  " + esc(149) + " \x1b[0m"
    assert lines[6] == LABELS[4] + "|" + PAD + "   "
    assert lines[11] == LABELS[9] + "|" + PAD + " " + esc(53) + " \x1b[49m "
    assert lines[12] == AXIS
    sw = "  \x1b[0m "
    assert lines[13:] == [
        "% of the row's pages found young (blank: none):  " + esc(53) + sw + "<1%",
        esc(54) + sw + "1-2%  " + esc(60) + sw + "2-5%  " + esc(24) + sw + "5-10%  "
        + esc(30) + sw + "10-20%  " + esc(36) + sw + "20-40%  " + esc(77) + sw + "40-60%",
        esc(149) + sw + "60-80%  " + esc(220) + sw + ">=80%",
    ]
    assert len(lines) == 16


def test_colour_truecolor_frame(tmp_path):
    out, _ = run_small(tmp_path, "--color", "always", environ={"COLORTERM": "truecolor"})
    lines = frames(out)[2].split("\n")
    assert lines[3] == LABELS[1] + "|" + PAD + "\x1b[48;2;253;231;37m \x1b[49m  "
    assert lines[5] == LABELS[3] + "|" + PAD + "  \x1b[48;2;170;220;50m \x1b[0m"


def test_node_colours(tmp_path):
    out, _ = run_small(tmp_path, "--color", "always", "--view", "node")
    lines = frames(out)[2].split("\n")
    orange = esc(178)  # Okabe-Ito orange (230,159,0) for node 0
    grey = esc(250)  # mixed (187,187,187)
    # cells are shaded by heat: a 1-2% cell (level 2) at 0.35 + 0.65/8 of its colour,
    # (99,69,0) -> xterm 58; a 60-80% cell (level 8) at 0.35 + 0.65*7/8: (172,172,172)
    # -> xterm 145
    assert lines[2] == LABELS[0] + "|" + PAD + esc(58) + " \x1b[49m  "
    assert lines[5] == LABELS[3] + "|" + PAD + "  " + esc(145) + " \x1b[0m"
    # the legend shows the full colours
    assert lines[-1] == (orange + "  \x1b[0m node0  " + esc(74) + "  \x1b[0m node1  " + grey
                         + "  \x1b[0m mixed  (brighter: hotter)")


def test_shading_keeps_the_hue_and_spans_the_heat_levels():
    orange = heatmap.NODE_RGB[0]
    assert heatmap.shade(orange, 9) == orange
    assert heatmap.shade(orange, 1) == (80, 56, 0)  # 35 %
    assert heatmap.shade(None, 5) is None
    levels = [heatmap.shade(orange, lv)[0] for lv in range(1, 10)]
    assert levels == sorted(set(levels))  # strictly brighter with heat
    assert heatmap.cell_class("anon", 10, 10, 0, 10) == ("a", heatmap.KIND_RGB[1])


def test_color_mode_selection():
    cm = heatmap.color_mode
    assert cm("auto", True, {}) == "256"
    assert cm("auto", True, {"COLORTERM": "truecolor"}) == "truecolor"
    assert cm("auto", True, {"COLORTERM": "24bit"}) == "truecolor"
    assert cm("auto", False, {}) is None
    assert cm("auto", True, {"NO_COLOR": "1"}) is None
    assert cm("auto", True, {"NO_COLOR": ""}) == "256"  # empty NO_COLOR does not count
    assert cm("auto", True, {"TERM": "dumb"}) is None
    assert cm("always", False, {"NO_COLOR": "1"}) == "256"  # the flag wins
    assert cm("never", True, {"COLORTERM": "truecolor"}) is None


def test_no_color_env_plain_even_with_auto(tmp_path):
    out, _ = run_small(tmp_path, "--color", "auto", environ={"NO_COLOR": "1"})
    assert "\x1b" not in out


def test_heat_levels_and_ramp():
    lv = heatmap.heat_level
    assert lv(0, 512) == 0
    assert lv(1, 512) == 1
    assert lv(5.12, 512) == 2  # exactly 1 %
    assert lv(511, 512) == 9
    assert lv(600, 512) == 9  # reported twice (look-around + walk): capped
    assert lv(3, 0) == 9
    # the ramp is perceptually ordered: relative luminance strictly increasing
    lum = [0.2126 * r + 0.7152 * g + 0.0722 * b for r, g, b in heatmap.HEAT_RGB[1:]]
    assert lum == sorted(lum) and len(set(lum)) == len(lum)
    idx = [heatmap.xterm_index(c) for c in heatmap.HEAT_RGB[1:]]
    assert idx == [53, 54, 60, 24, 30, 36, 77, 149, 220]
    assert len(set(idx)) == 9


def test_xterm_index_nearest():
    assert heatmap.xterm_index((0, 0, 0)) == 16
    assert heatmap.xterm_index((255, 255, 255)) == 231
    assert heatmap.xterm_index((128, 128, 128)) == 244  # grey ramp 8 + 10 * 12
    assert heatmap.xterm_index((255, 0, 0)) == 196


def synthetic_model(nmaps=40, intervals=30, shift=21):
    M = heatmap.Mapping
    maps = [M(0x400000, 0x800000, "r-xp", 0, "08:01", 1, "/usr/bin/app"),
            M(0x10000000, 0x10000000 + (4 << 30), "rw-p", 0, "00:00", 0, "[heap]")]
    for i in range(nmaps):
        base = 0x7f0000000000 + i * (8 << 20)
        maps.append(M(base, base + (1 << 20), "r-xp", 0, "08:01", 10 + i, f"/lib/lib{i}.so"))
    maps.append(M(0x7ffc00000000, 0x7ffc00010000, "rw-p", 0, "00:00", 0, "[stack]"))
    model = heatmap.Model({"pid": 7, "comm": "app", "region_shift": shift, "interval": 1.0,
                           "page_size": 4096})
    heap_r = 0x10000000 >> shift
    for i in range(intervals):
        counts = [(heap_r + (i * 7) % 2048, i % 2, 300, 10), (0x7ffc00000000 >> shift, 0, 3, 0)]
        model.add(heatmap.Sample(i + 1, float(i + 1), 0.001, 0, 1000, maps if i == 0 else None,
                                 sorted(counts)))
    return model


@pytest.mark.parametrize("width,height", [(1, 1), (2, 2), (5, 3), (10, 4), (20, 5),
                                          (40, 10), (80, 24), (200, 60), (500, 300)])
@pytest.mark.parametrize("view", heatmap.VIEWS)
@pytest.mark.parametrize("color", [None, "256", "truecolor"])
def test_sizes_tiny_to_huge(width, height, view, color):
    model = synthetic_model()
    frame = heatmap.render_frame(model, view, width, height, color, keys=True)
    lines = frame.split("\n")
    for line in lines:
        assert len(ANSI.sub("", line)) <= width, (line, width)
    if height >= 4:
        assert len(lines) <= height
    assert len(lines) >= 2  # header and at least one row
    if width >= 80 and height >= 24:
        assert any("[heap]" in ln for ln in lines) and any("[stack]" in ln for ln in lines)


def test_huge_terminal_shows_all_history_and_every_mapping():
    model = synthetic_model(intervals=30)
    frame = heatmap.render_frame(model, "heat", 500, 300)
    lines = frame.split("\n")
    rows = [ln for ln in lines if "|" in ln]
    for i in range(40):
        assert sum(f"lib{i}.so" in ln for ln in rows) == 1
    heap_rows = [ln for ln in rows if "[heap]" in ln]
    assert len(heap_rows) > 100  # most rows go to the big mapping
    # 30 intervals: data in the last 30 columns only
    assert all(set(ln.split("|", 1)[1][:-30]) <= {" "} for ln in rows)
    axis = [ln for ln in lines if "+" in ln and ln.rstrip().endswith("now")][0]
    assert "-29s" in axis


def test_empty_model_and_no_interval_yet():
    model = heatmap.Model({"pid": 1, "comm": "x", "region_shift": 21, "interval": 2})
    frame = heatmap.render_frame(model, "heat", 40, 10)
    assert "(no mappings)" in frame
    assert frame.split("\n")[0].startswith("heatmap pid 1 (x)")
    model.set_maps(heatmap.parse_maps(SMALL_MAPS))
    frame = heatmap.render_frame(model, "node", 40, 10)
    assert "scan -" in frame


def test_labels_sanitised():
    M = heatmap.Mapping
    model = heatmap.Model({"pid": 1, "comm": "x\x1b[2J", "region_shift": 21, "interval": 2})
    model.set_maps([M(0x400000, 0x600000, "r--p", 0, "08:01", 1, "/tmp/evil\x1b[31mname")])
    frame = heatmap.render_frame(model, "heat", 80, 10)
    assert "\x1b" not in frame
    assert "evil?[31mname" in frame


def test_live_keys_hint_and_paused_status():
    model = synthetic_model()
    frame = heatmap.render_frame(model, "heat", 120, 30, status="paused", keys=True)
    lines = frame.split("\n")
    assert lines[-1] == heatmap.KEYS_HINT
    assert "paused" in lines[0] + lines[1]


def test_live_screen_that_cannot_start_undoes_its_setup():
    """A terminal that fails as the live view starts (EIO) must not leave our signal
    handlers installed or the wake-up pipe open."""
    import os
    import signal

    class DeadTerminal(io.StringIO):
        def write(self, s):
            raise OSError(5, "Input/output error")

    before = {s: signal.getsignal(s) for s in (signal.SIGWINCH, signal.SIGTSTP,
                                               signal.SIGCONT)}
    fds = set(os.listdir("/proc/self/fd"))
    screen = heatmap.LiveScreen(DeadTerminal(), None, "heat", None, lambda: 0.0)
    with pytest.raises(OSError), screen:
        pass
    assert {s: signal.getsignal(s) for s in before} == before
    assert set(os.listdir("/proc/self/fd")) == fds
