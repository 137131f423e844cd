"""Running a benchmark in the QEMU guest on the patched kernel.

A guest benchmark is one script: run on the host it boots the guest (kernel/guest.py)
and runs itself inside with the same argument; inside (HEATMAP_IN_GUEST=1) it measures.
HEATMAP_KERNEL names a bzImage to boot instead of the one kernel/build-kernel builds.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

from runs_arg import runs_arg

REPO = Path(__file__).resolve().parent.parent


def main(script: str, measure: Callable[[int], None], default: int, *, mem: str = "2G",
         env: dict[str, str] | None = None) -> None:
    """measure(N) in the guest; N from argv[1] or `default`. Exits with its status."""
    n = runs_arg(default)
    if os.environ.get("HEATMAP_IN_GUEST") == "1":
        measure(n)
        return
    sys.path.insert(0, str(REPO / "kernel"))
    import guest

    t0 = time.perf_counter()
    try:
        res = guest.run([sys.executable, str(Path(script).resolve()), str(n)], timeout=3600,
                        mem=mem, cwd=str(REPO), env=env,
                        kernel=os.environ.get("HEATMAP_KERNEL") or None)
    except guest.GuestError as e:
        raise SystemExit(f"{Path(script).name}: {e}") from None
    print(res.output, end="")
    print(f"(guest run: {time.perf_counter() - t0:.0f} s, accel {res.accel})")
    sys.exit(res.returncode)
