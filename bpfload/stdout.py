"""A command's standard output once writing to it has failed (its reader gone, EPIPE,
or a full disk): the interpreter flushes sys.stdout again at exit, and that second
failure would print a traceback after the command's own one-line message."""

from __future__ import annotations

import os
import sys


def silence_stdout() -> None:
    """Point file descriptor 1 at /dev/null so that later flushes (at exit too) succeed
    quietly; nothing written after this reaches anyone."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no stdout at all, or one closed
        pass
