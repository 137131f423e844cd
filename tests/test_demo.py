"""make demo's parts that need no guest: the workload (demo/hotspot.py) and demo/run's
argument checks and frame streaming."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from heatmap_fakes import ROOT, heatmap


def test_demo_workload_runs_and_reports_itself():
    res = subprocess.run([sys.executable, str(ROOT / "demo" / "hotspot.py"), "--size", "8M",
                          "--duration", "0.3"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    line = res.stdout.strip()
    fields = line.split()
    assert fields[:2] == ["hotspot:", "pid"] and int(fields[2]) > 0
    base = int(fields[fields.index("base") + 1], 16)
    assert base % (2 << 20) == 0  # bands aligned to 2 MiB regions
    hot = fields[fields.index("hot") + 1].split("-")
    assert int(hot[0], 16) == base and int(hot[1], 16) == base + (1 << 20)


def test_demo_workload_is_visible_in_its_own_maps():
    proc = subprocess.Popen([sys.executable, str(ROOT / "demo" / "hotspot.py"), "--size",
                             "16M", "--duration", "30"], stdout=subprocess.PIPE, text=True)
    try:
        fields = proc.stdout.readline().split()
        pid = int(fields[2])
        base = int(fields[fields.index("base") + 1], 16)
        with open(f"/proc/{pid}/maps") as f:
            maps = heatmap.parse_maps(f.read())
        # (its bands are mappings of their own: huge pages asked for, or not)
        covered = sum(max(0, min(m.end, base + (16 << 20)) - max(m.start, base))
                      for m in maps)
        assert covered == 16 << 20
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize("args,message", [
    (["--interval", "0"], "argument --interval: '0' must be from 0.1 to 86400 seconds"),
    (["--duration", "-5"], "argument --duration: '-5' must be a positive number of seconds"),
    (["--size", "lots"], "argument --size: 'lots' is not a size (try 256M)"),
])
def test_demo_checks_its_arguments_before_booting(args, message):
    """Bad demo arguments fail in one line at once, not after a kernel build and a boot
    (--interval 0 was a ZeroDivisionError there)."""
    res = subprocess.run([sys.executable, str(ROOT / "demo" / "run"), *args],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines()[-1] == f"demo/run: error: {message}"


def _demo_module():
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader("heatmap_demo_run", str(ROOT / "demo" / "run"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def test_demo_redraws_frames_that_fit_the_terminal(tmp_path):
    """Each redrawn frame is exactly as tall as heatmap.py made it: no newline after
    its last line, which on a terminal of that height would scroll the header away."""
    demo = _demo_module()
    out_file = tmp_path / "out"
    frame = ["heatmap pid 7 (w) ...", "row 1", "row 2", ""]
    out_file.write_text("booting\n" + "\n".join(frame * 2) + "\nheatmap: 2 intervals\n")
    out = io.StringIO()
    s = demo.Streamer(out_file, out, redraw=True)
    s.stop.set()
    s.run()
    text = out.getvalue()
    assert text == ("booting\n" + demo.CLEAR + "heatmap pid 7 (w) ...\nrow 1\nrow 2"
                    + demo.CLEAR + "heatmap pid 7 (w) ...\nrow 1\nrow 2\n\nheatmap: 2 intervals"
                    + "\n")
    assert s.frames == 2


def test_demo_draws_nothing_after_an_interrupt(tmp_path):
    demo = _demo_module()
    out_file = tmp_path / "out"
    out_file.write_text("heatmap pid 7 (w)\nrow\n" * 3)
    out = io.StringIO()
    s = demo.Streamer(out_file, out, redraw=True)
    s.abort.set()
    s.run()
    assert out.getvalue() == ""
