"""The kernel scripts' child processes (make, QEMU), each started in a session of its
own: ending one with everything it started, and the tail of what it wrote."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child's whole process group (make's compilers, QEMU's helpers) and
    reap it.  The child itself is killed too, should it have left its group."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()


def read_text(path: Path) -> str:
    """A child's log or output file as text; "" if it is not there (yet)."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def tail(text: str | None, n: int) -> str:
    """The last n lines of a child's output (None: nothing was captured)."""
    return "\n".join((text or "").splitlines()[-n:])
