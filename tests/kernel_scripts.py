"""The scripts in kernel/ as modules, for the tests, imported the one way every user of
them does (kernel/run-guest, demo/run, bench/guestbench.py): kernel/ on sys.path, then
by name, so kernel/guest.py and the tests share one build_kernel module.  They are
reached through these functions because `guest` reads like tests/guest/ in a test."""

from __future__ import annotations

import sys
from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parent.parent / "kernel"
if str(KERNEL_DIR) not in sys.path:
    sys.path.insert(0, str(KERNEL_DIR))


def build_kernel():
    """kernel/build_kernel.py: the cache, the source tarball, building the kernel."""
    import build_kernel

    return build_kernel


def procs():
    """kernel/procs.py: the scripts' child processes and the tails of their output."""
    import procs

    return procs


def guest():
    """kernel/guest.py: booting the test kernel under QEMU."""
    import guest

    return guest
