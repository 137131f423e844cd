"""make demo's workload (demo/hotspot.py) under heatmap.py in the guest: its bands read
what its docstring promises also where transparent huge pages are "always" (Debian's
default; the test guest boots with "madvise")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from heatmap_fakes import json_intervals

from bpfc import REPO

pytestmark = pytest.mark.skipif(os.environ.get("HEATMAP_IN_GUEST") != "1",
                                reason="runs inside the test guest only")


def span(fields: list[str], name: str) -> tuple[int, int]:
    lo, hi = fields[fields.index(name) + 1].split("-")
    return int(lo, 16), int(hi, 16)


THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@pytest.fixture
def thp_always():
    saved = THP.read_text().split("[")[1].split("]")[0]
    THP.write_text("always")
    yield
    THP.write_text(saved)


def test_the_bands_read_what_the_docstring_says(thp_always):
    w = subprocess.Popen([sys.executable, str(REPO / "demo" / "hotspot.py"), "--size", "64M",
                          "--duration", "300"], stdout=subprocess.PIPE, text=True)
    try:
        fields = w.stdout.readline().split()
        r = subprocess.run([sys.executable, str(REPO / "heatmap.py"), str(w.pid), "--json",
                            "--count", "3", "--interval", "1"], capture_output=True,
                           text=True, timeout=300, cwd=REPO)
    finally:
        w.kill()
        w.wait()
    assert r.returncode == 0, r.stderr
    last = json_intervals(r.stdout)[-1]

    def share(name: str, key: str = "accessed") -> float:
        lo, hi = span(fields, name)
        young = sum(reg[key] for reg in last["regions"] if lo <= reg["start"] < hi)
        return young / ((hi - lo) // 4096)

    assert share("hot") >= 0.95
    assert 0.2 <= share("warm") <= 0.3, share("warm")
    assert share("cold") <= 0.02
    # the hot band is on huge pages, to show how heatmap marks them; the others not
    assert share("hot", "huge") == 1.0 and share("warm", "huge") == 0
