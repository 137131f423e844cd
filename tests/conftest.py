"""Shared test fixtures: compiled test BPF objects, root/kernel checks, leak checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(TESTS))

sys.path.insert(0, str(REPO / "tools"))

from required import cannot_run  # noqa: E402

import bpfc  # noqa: E402
import deps  # noqa: E402
from bpfc import BPF_SRC, IN_GUEST, build_object  # noqa: E402
from kernelstate import bpf_unavailable, kernel_ids, leftovers  # noqa: E402


def missing_prerequisites() -> str | None:
    """What the suite needs and this machine lacks, as one line (None: nothing)."""
    apt = deps.missing_apt(deps.GROUPS["check"])
    pip = deps.missing_pip(sys.executable, deps.requirements_for("check"))
    if not apt and not pip:
        return None
    what = [a.package for a in apt] + [f"{r.requirement} for {sys.executable}" for r in pip]
    return (f"the tests need {', '.join(what)}: run `make check`, which installs them "
            f"(tools/deps.py --list check says why each is needed)")


def pytest_configure(config) -> None:
    # One line instead of a hundred failures that all say the same thing. In the
    # guest the host's tools are there (its root is the host's /).
    if not IN_GUEST:
        missing = missing_prerequisites()
        if missing:
            pytest.exit(missing, returncode=4)


@pytest.fixture(scope="session")
def bpf_object():
    """A function name -> compiled object path; failures to compile fail the test."""
    def get(name: str) -> Path:
        try:
            return build_object(name)
        except bpfc.CompileError as e:
            pytest.fail(str(e))
        except FileNotFoundError as e:  # in the guest: not built by the host
            pytest.fail(str(e))
    return get


def pytest_sessionstart(session) -> None:
    # Build every test object up front on the host, so a guest booted later finds
    # them (it sees the checkout read-only).
    if IN_GUEST or bpfc.clang() is None:
        return
    for src in sorted(BPF_SRC.glob("*.bpf.c")):
        try:
            build_object(src.name[:-len(".bpf.c")])
        except bpfc.CompileError:
            pass  # the test that needs it reports the compiler's message


#: CI sets it: a host kernel test these fixtures cannot set up fails instead of skipping
HOST_BPF = "HEATMAP_REQUIRE_HOST_BPF"


@pytest.fixture
def root():
    why = bpf_unavailable()
    if why:
        cannot_run(why, HOST_BPF)


@pytest.fixture
def no_leaks(root):
    """Fails the test if it leaves programs, maps, links or BTF objects in the kernel."""
    before = kernel_ids()
    yield
    extra = leftovers(before)
    assert not extra, f"left in the kernel: {extra}"


@pytest.fixture(scope="session")
def tracefs():
    """tracefs mounted at /sys/kernel/tracing (mounted here if needed)."""
    path = "/sys/kernel/tracing"
    if not os.path.isdir(os.path.join(path, "events")):
        if os.geteuid() != 0:
            cannot_run("tracefs is not mounted and mounting it needs root", HOST_BPF)
        r = subprocess.run(["mount", "-t", "tracefs", "nodev", path], capture_output=True,
                           text=True)
        if r.returncode:
            cannot_run(f"cannot mount tracefs: {r.stderr.strip()}", HOST_BPF)
    return path


@pytest.fixture(scope="session")
def bpffs():
    path = "/sys/fs/bpf"
    with open("/proc/mounts") as f:
        mounted = any(line.split()[1] == path and line.split()[2] == "bpf" for line in f)
    if not mounted:
        r = subprocess.run(["mount", "-t", "bpf", "bpf", path], capture_output=True, text=True)
        if r.returncode:
            cannot_run(f"cannot mount bpffs at {path}: {r.stderr.strip()}", HOST_BPF)
    return path


def _cgroup2_root() -> str | None:
    with open("/proc/mounts") as f:
        for line in f:
            _dev, mnt, fstype, *_ = line.split()
            if fstype == "cgroup2" and not mnt.startswith("/work/"):
                return mnt
    return None


@pytest.fixture
def cgroup(root):
    """A cgroup v2 directory made for the test (cgroup program attach tests)."""
    base = _cgroup2_root()
    if base is None:
        cannot_run("no cgroup v2 hierarchy is mounted", HOST_BPF)
    path = os.path.join(base, f"bpfload-test-{os.getpid()}")
    os.mkdir(path)
    yield path
    os.rmdir(path)


@pytest.fixture
def veth(root):
    """A veth pair into a network namespace made for the test (XDP and tc tests)."""
    from netns import VethPair

    try:
        pair = VethPair()
    except (RuntimeError, FileNotFoundError) as e:
        cannot_run(f"cannot make a veth pair in a network namespace here: {e}", HOST_BPF)
    yield pair
    pair.close()
