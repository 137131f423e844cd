"""Accuracy of heatmap.py against a workload whose true access rates are known: bands
of 2 MiB regions where every k-th page is written every 100 ms (k = 1, 2, 4, ... and
never), watched by `heatmap.py PID --json`; prints the Spearman rank correlation
between measured heat and the true rate per region (target: at least 0.9), and each
band's measured share next to its true share.

    python3 bench/heatmap_accuracy.py [INTERVALS]

Run on the host, it boots the QEMU guest on the patched kernel and runs itself inside.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import guestbench

REPO = Path(__file__).resolve().parent.parent
STRIDES = [1, 2, 4, 8, 16, 32, 64, 0]  # 0: touched once, then never
REGIONS_PER_BAND = 4

WORKER = r"""
import ctypes, mmap, sys, time
strides, per = [int(s) for s in sys.argv[1].split(",")], int(sys.argv[2])
n = len(strides) * per
libc = ctypes.CDLL(None)
m = mmap.mmap(-1, (n + 1) << 21, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
base = ctypes.addressof(ctypes.c_char.from_buffer(m))
off = (-base) % (2 << 20)
libc.madvise(ctypes.c_void_p(base + off), ctypes.c_size_t(n << 21), 15)  # NOHUGEPAGE
view = memoryview(m)
def touch(band, stride):
    lo = off + (band * per << 21)
    view[lo:lo + (per << 21):4096 * stride] = b"\1" * ((per << 21) // (4096 * stride))
for b in range(len(strides)):
    touch(b, 1)
print(base + off, flush=True)
while True:
    for b, s in enumerate(strides):
        if s:
            touch(b, s)
    time.sleep(0.1)
"""


def spearman(xs: list[float], ys: list[float]) -> float:
    def ranks(v):
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):  # ties share their mean rank
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / var if var else 0.0


def _in_guest(intervals: int) -> None:
    worker = subprocess.Popen([sys.executable, "-c", WORKER, ",".join(map(str, STRIDES)),
                               str(REGIONS_PER_BAND)], stdout=subprocess.PIPE, text=True)
    base = int(worker.stdout.readline())
    try:
        r = subprocess.run([sys.executable, str(REPO / "heatmap.py"), str(worker.pid),
                            "--json", "--interval", "1", "--count", str(intervals)],
                           capture_output=True, text=True, cwd=REPO, timeout=1800)
    finally:
        worker.kill()
        worker.wait()
    if r.returncode:
        raise SystemExit(f"heatmap.py failed: {r.stderr.strip()}")
    measured: dict[int, float] = {}
    for line in r.stdout.splitlines():
        for reg in json.loads(line).get("regions", ()):  # (the last line: the summary)
            measured[reg["start"]] = measured.get(reg["start"], 0) + reg["accessed"]
    truth, got, bands = [], [], []
    for b, stride in enumerate(STRIDES):
        share = 1 / stride if stride else 0.0
        band = []
        for i in range(REGIONS_PER_BAND):
            start = base + ((b * REGIONS_PER_BAND + i) << 21)
            value = measured.get(start, 0) / intervals / 512
            truth.append(share)
            got.append(value)
            band.append(value)
        bands.append((stride, share, sum(band) / len(band)))
    print(f"{intervals} intervals of 1 s, {len(truth)} regions of 2 MiB")
    print(f"{'every k-th page':>16} {'true share':>11} {'measured':>9}")
    for stride, share, value in bands:
        k = f"{stride}" if stride else "never"
        print(f"{k:>16} {share:>10.1%} {value:>9.1%}")
    print(f"Spearman rank correlation: {spearman(got, truth):.3f} (target >= 0.9)")


if __name__ == "__main__":
    guestbench.main(__file__, _in_guest, 8)
