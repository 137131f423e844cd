"""Ctrl-C in tests of child processes.

A child must start with SIGINT at its default action, as a terminal's foreground job
does: shells start background jobs with SIGINT ignored, children inherit that, and a
test run launched that way (some CI runners do) would otherwise test a program that
rightly ignores Ctrl-C. And a deterministic Ctrl-C at a chosen point of a program's
start-up: a child Python that sends itself SIGINT when it first imports a module.
"""

from __future__ import annotations

import signal
import subprocess
import sys


def foreground_sigint() -> None:
    """preexec_fn for subprocess: SIGINT as in a terminal's foreground job."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

_SCRIPT = """
import os, runpy, signal, sys

module = sys.argv[1]

class InterruptAt:
    def find_spec(self, name, path=None, target=None):
        if name == module:
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, InterruptAt())
if sys.argv[2] == "-m":
    sys.argv = [sys.argv[3], *sys.argv[4:]]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
else:
    sys.argv = sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_interrupted(module: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run `python ARGV...` (a script path, or "-m", package) with SIGINT raised when
    it first imports `module`; returns the finished process, output as text."""
    return subprocess.run([sys.executable, "-c", _SCRIPT, module, *argv], capture_output=True,
                          text=True, timeout=60, preexec_fn=foreground_sigint, **kwargs)
