"""Tests that CI must run: where this machine cannot run one, it is skipped here but
fails in CI, which sets the variable that names the requirement (.ci/run):
HEATMAP_REQUIRE_GUEST (the QEMU guest), HEATMAP_REQUIRE_REFERENCE (the libbpf build to
compare with), HEATMAP_REQUIRE_OLDEST_PYTHON (a Python 3.9 to run the loader on),
HEATMAP_REQUIRE_HOST_BPF (root with BPF, tracefs, bpffs, cgroup v2 and a veth pair in a
network namespace on the host: the conftest fixtures the host kernel tests stand on)."""

from __future__ import annotations

import os

import pytest


def cannot_run(why: str, requirement: str):
    """Skip the test with `why`, or fail it when the environment sets requirement=1."""
    if os.environ.get(requirement) == "1":
        pytest.fail(f"{why} ({requirement}=1)", pytrace=False)
    pytest.skip(why)
