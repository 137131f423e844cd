"""A workload with known access bands, for comparing heatmap's sources.

    python3 bench/bands.py [--regions N] [--seconds S]

Eight mappings of N 2 MiB regions each (default 8), separated by PROT_NONE gaps so that
each is its own mapping: four of 4 KiB pages (MADV_NOHUGEPAGE) and four of
transparent huge pages (MADV_HUGEPAGE), each four banded

    hot   every page (every THP) touched in every pass
    warm  every 4th page (every 4th THP)
    cool  every 16th page (every 16th THP)
    cold  touched once at the start, never again

A pass touches each band once, then sleeps 10 ms.  Everything is populated before the
first line on stdout, a JSON object describing the layout:

    {"pid": ..., "bands": [{"name": "4k-hot", "start": ADDR, "end": ADDR, "thp": false,
       "share": 1.0, "regions": [[ADDR, TRUE_SHARE], ...]}, ...]}

(true share per 2 MiB region: the part of its pages touched in every pass).  After that
one line per second: {"passes": N, "busy_s": S}, the passes so far and the seconds spent
touching (not sleeping), from which a slowdown shows.  Ends after --seconds (default
600) or when stdin closes.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import select
import stat
import time

REGION = 2 << 20
PAGE = 4096
BANDS = (("hot", 1), ("warm", 4), ("cool", 16), ("cold", 0))
MADV_HUGEPAGE, MADV_NOHUGEPAGE = 14, 15
PROT_NONE = 0

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long)
_libc.mprotect.argtypes = _libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t,
                                                    ctypes.c_int)


def _check(ret, what: str):
    if ret in (-1, None, ctypes.c_void_p(-1).value):
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


class Band:
    def __init__(self, name: str, start: int, regions: int, stride: int, thp: bool):
        self.name, self.start, self.regions, self.stride, self.thp = (
            name, start, regions, stride, thp)
        self.end = start + regions * REGION
        self.view = memoryview((ctypes.c_char * (self.end - start)).from_address(start)).cast("B")
        self.step = (REGION if thp else PAGE) * stride  # bytes between touched bytes
        self.count = len(range(0, self.end - start, self.step)) if stride else 0

    def share_of(self, i: int) -> float:
        if not self.stride:
            return 0.0
        if self.thp:
            return 1.0 if i % self.stride == 0 else 0.0
        return 1.0 / self.stride

    def populate(self) -> None:
        n = (self.end - self.start) // PAGE
        self.view[::PAGE] = b"\1" * n

    def touch(self, value: bytes) -> None:
        if self.count:
            self.view[::self.step] = value * self.count

    def describe(self) -> dict:
        share = sum(self.share_of(i) for i in range(self.regions)) / self.regions
        return {"name": self.name, "start": self.start, "end": self.end, "thp": self.thp,
                "share": share,
                "regions": [[self.start + i * REGION, self.share_of(i)]
                            for i in range(self.regions)]}


def build(regions: int) -> list[Band]:
    kinds = [(f"{'thp' if thp else '4k'}-{name}", stride, thp)
             for thp in (False, True) for name, stride in BANDS]
    span = len(kinds) * (regions + 1) * REGION + REGION
    base = _check(_libc.mmap(None, span, mmap.PROT_READ | mmap.PROT_WRITE,
                             mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0), "mmap")
    first = (base + REGION - 1) // REGION * REGION
    bands = []
    at = first
    for name, stride, thp in kinds:
        size = regions * REGION
        _check(_libc.madvise(at, size, MADV_HUGEPAGE if thp else MADV_NOHUGEPAGE), "madvise")
        bands.append(Band(name, at, regions, stride, thp))
        # a gap of no access between bands makes every band its own mapping
        _check(_libc.mprotect(at + size, REGION, PROT_NONE), "mprotect")
        at += size + REGION
    if first > base:
        _check(_libc.mprotect(base, first - base, PROT_NONE), "mprotect")
    return bands


def main() -> None:
    p = argparse.ArgumentParser(description="A workload with hot/warm/cool/cold bands.")
    p.add_argument("--regions", type=int, default=8, help="2 MiB regions per band")
    p.add_argument("--seconds", type=float, default=600)
    args = p.parse_args()
    bands = build(args.regions)
    for b in bands:
        b.populate()
    print(json.dumps({"pid": os.getpid(), "bands": [b.describe() for b in bands]}),
          flush=True)
    end = time.monotonic() + args.seconds
    passes = 0
    busy = 0.0
    report = time.monotonic() + 1
    values = (b"\2", b"\3")
    watch = stat.S_ISFIFO(os.fstat(0).st_mode)  # a parent's pipe: end when it closes
    while time.monotonic() < end:
        t0 = time.perf_counter()
        for b in bands:
            b.touch(values[passes & 1])
        busy += time.perf_counter() - t0
        passes += 1
        now = time.monotonic()
        if now >= report:
            print(json.dumps({"passes": passes, "busy_s": round(busy, 6)}), flush=True)
            report = now + 1
        if not watch:
            time.sleep(0.01)
        elif select.select([0], [], [], 0.01)[0] and not os.read(0, 1):
            return  # stdin closed


if __name__ == "__main__":
    main()
