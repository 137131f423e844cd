"""heatmap.py's own CPU time per interval for a 1 GiB target at --interval 2: its user
plus system time between one aging pass and the next, the aging itself excluded (it
is the kernel's work), start-up excluded. Target: under 1% of one core.

    python3 bench/heatmap_cpu.py [INTERVALS]

Run on the host, it boots the QEMU guest on the patched kernel and runs itself inside.
QEMU emulates the guest's CPU (TCG), so the same pure-Python reference loop is timed
on the host and in the guest, and the guest figure is also shown scaled by that ratio.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import guestbench

REPO = Path(__file__).resolve().parent.parent
INTERVAL = 2.0

WORKER = r"""
import mmap, sys, time
size = 1 << 30
m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
view = memoryview(m)
view[0:size:4096] = b"\1" * (size // 4096)         # all 1 GiB resident
print("ready", flush=True)
i = 0
while True:                                          # a quarter of it stays hot
    lo = (i % 4) * (size // 16)
    view[lo:lo + size // 4:4096] = b"\2" * (size // 4 // 4096)
    i += 1
    time.sleep(0.2)
"""


def reference_loop() -> float:
    """Seconds for a fixed amount of pure-Python work (the TCG slowdown yardstick)."""
    t0 = time.process_time()
    acc = 0
    for i in range(2_000_000):
        acc += i * i % 7
    return time.process_time() - t0


class _Timed:
    """Wraps KernelCounts and the sleep heatmap.main() uses, timing both."""

    def __init__(self):
        self.agings: list[tuple[float, float, float, float]] = []  # wall/cpu, start/end
        self.slept: list[tuple[float, float]] = []  # (wall start, duration)

    def counts(self, *args):
        import heatmap

        timed = self
        real = heatmap.KernelCounts(*args)

        class Counts:
            def __getattr__(self, name):
                return getattr(real, name)

            def age(self):
                w0, c0 = time.perf_counter(), time.process_time()
                ret = real.age()
                timed.agings.append((w0, time.perf_counter(), c0, time.process_time()))
                return ret

        return Counts()

    def sleep(self, d: float) -> None:
        self.slept.append((time.perf_counter(), d))
        time.sleep(d)


def _in_guest(intervals: int) -> None:
    import io

    sys.path.insert(0, str(REPO))
    import heatmap

    worker = subprocess.Popen([sys.executable, "-c", WORKER], stdout=subprocess.PIPE,
                              text=True)
    assert worker.stdout.readline().strip() == "ready"
    timed = _Timed()
    out = io.StringIO()
    try:
        rc = heatmap.main([str(worker.pid), "--interval", str(INTERVAL), "--color", "never",
                           "--count", str(intervals + 1)], counts_factory=timed.counts,
                          sleep=timed.sleep, stdout=out, stderr=io.StringIO(),
                          environ={"COLUMNS": "160", "LINES": "50"})
    finally:
        worker.kill()
        worker.wait()
    assert rc == 0 and out.getvalue().count("heatmap pid") == intervals + 1
    # one interval = from the end of one aging to the end of the next; take out the
    # aging itself and the sleep in between (the warm-up aging comes first)
    ag = timed.agings[-(intervals + 1):]
    wall = cpu = 0.0
    for (_, prev_end_w, _, prev_end_c), (w0, _, c0, _) in zip(ag, ag[1:]):
        slept = sum(d for t, d in timed.slept if prev_end_w <= t < w0)
        wall += (w0 - prev_end_w - slept)
        cpu += (c0 - prev_end_c)
    wall /= intervals
    cpu /= intervals
    aging = sum(a[1] - a[0] for a in ag[1:]) / intervals
    print(f"1 GiB target, --interval {INTERVAL:g}, {intervals} intervals, 160x50 frames")
    print(f"  per interval in the guest: {cpu * 1e3:.1f} ms CPU, {wall * 1e3:.1f} ms awake "
          f"(aging, {aging * 1e3:.1f} ms, excluded) = {cpu / INTERVAL:.2%} of one core")
    host_ref = float(os.environ.get("HEATMAP_BENCH_HOST_REF") or 0)
    if host_ref:
        slow = reference_loop() / host_ref
        print(f"  TCG slowdown of a pure-Python reference loop: {slow:.1f}x")
        print(f"  scaled to native: {cpu / slow * 1e3:.2f} ms = {cpu / slow / INTERVAL:.3%} "
              f"of one core (target < 1%)")


if __name__ == "__main__":
    host_ref = "" if os.environ.get("HEATMAP_IN_GUEST") else repr(
        min(reference_loop() for _ in range(3)))
    guestbench.main(__file__, _in_guest, 10, mem="3G",
                    env={"HEATMAP_BENCH_HOST_REF": host_ref})
