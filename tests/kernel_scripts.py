"""The scripts in kernel/ as modules, for the tests: they are command-line scripts,
not a package, and kernel/guest.py's name would clash with tests/guest/."""

from __future__ import annotations

import importlib.util
from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parent.parent / "kernel"


def _load(name: str, filename: str):
    spec = importlib.util.spec_from_file_location(name, KERNEL_DIR / filename)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def build_kernel():
    """kernel/build_kernel.py: the cache, the source tarball, building the kernel."""
    return _load("heatmap_build_kernel", "build_kernel.py")


def guest():
    """kernel/guest.py: booting the test kernel under QEMU."""
    return _load("heatmap_guest", "guest.py")
