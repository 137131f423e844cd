"""kernel/run-guest as a user runs it: exit status passed through, files out through
--scratch. One boot (7-15 s under TCG); needs the cached test kernel."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from required import cannot_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kernel_image() -> str:
    r = subprocess.run([str(REPO / "kernel" / "build-kernel"), "--cached-only"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        cannot_run(f"the test kernel is not built: {r.stderr.strip()}", "HEATMAP_REQUIRE_GUEST")
    return r.stdout.strip()


def test_status_output_and_scratch_files(kernel_image, tmp_path):
    scratch = tmp_path / "scratch"
    r = subprocess.run([str(REPO / "kernel" / "run-guest"), "--kernel", kernel_image,
                        "--scratch", str(scratch), "--", "sh", "-c",
                        'echo from-guest >"$HEATMAP_SCRATCH/result"; echo out; exit 7'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 7, r.stderr
    assert r.stdout == "out\n"
    assert (scratch / "result").read_text() == "from-guest\n"
