"""The one optional argument of a benchmark: how many runs (or entries) to measure."""

from __future__ import annotations

import sys


def runs_arg(default: int, name: str = "RUNS") -> int:
    """sys.argv[1] as a positive integer, else `default`; -h/--help prints the running
    script's docstring and exits."""
    if len(sys.argv) < 2:
        return default
    arg = sys.argv[1]
    if arg in ("-h", "--help"):
        try:
            print((sys.modules["__main__"].__doc__ or "").strip(), flush=True)
        except BrokenPipeError:  # --help | head
            sys.stdout = None
        raise SystemExit(0)
    try:
        n = int(arg)
    except ValueError:
        n = 0
    if n < 1 or len(sys.argv) > 2:
        script = sys.argv[0].rsplit("/", 1)[-1]
        raise SystemExit(f"{script}: usage: {script} [{name}] ({name} a positive integer, "
                         f"default {default}; --help says more)")
    return n
