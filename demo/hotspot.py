#!/usr/bin/env python3
"""A workload for heatmap.py whose hot spot moves through its memory.

    python3 demo/hotspot.py [--size 256M] [--duration 600] [--step 0.1]

It maps --size of anonymous memory, touches every page once, then every --step seconds:

  * hot band   (first 1/8):  writes every page           -> ~100 % young per interval
  * warm band  (next 1/8):   writes every 4th page       -> ~25 % young
  * cold band  (next 1/8):   never touched again         -> 0 %
  * moving     (last 5/8):   writes every page of a window of 1/16 of the size that
                             moves by 1/64 of the zone each step and wraps around

The hot band asks for transparent huge pages (MADV_HUGEPAGE), so heatmap shows how it
marks rows huge pages back (one byte touched makes a whole huge page young); the rest
asks for 4 KiB pages (MADV_NOHUGEPAGE), so the warm band reads ~25 % also where
transparent huge pages are "always".

It prints one line with its PID and the band addresses (so tests and `make demo`
know what to expect), then runs for --duration seconds (0: until killed).
Standard library only.
"""

from __future__ import annotations

import argparse
import mmap
import os
import signal
import sys
import time

PAGE = mmap.PAGESIZE
ALIGN = 2 << 20
MADV_HUGEPAGE, MADV_NOHUGEPAGE = 14, 15


def parse_size(text: str) -> int:
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    n = int(t[:-1] if mult > 1 else t) * mult
    if n < 64 * PAGE:
        raise argparse.ArgumentTypeError(f"{text}: at least {64 * PAGE // 1024} KiB")
    return n


def touch(m: memoryview, lo: int, hi: int, stride: int, value: bytes) -> None:
    """Write one byte every `stride` bytes of [lo, hi)."""
    lo -= lo % PAGE
    if hi > lo:
        n = (hi - lo + stride - 1) // stride
        m[lo:lo + (n - 1) * stride + 1:stride] = value * n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=parse_size, default=256 << 20,
                    help="anonymous memory to map (default 256M)")
    ap.add_argument("--duration", type=float, default=600.0,
                    help="seconds to run, 0 = until killed (default 600)")
    ap.add_argument("--step", type=float, default=0.1,
                    help="seconds between touches (default 0.1)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    size = args.size - args.size % PAGE
    # 2 MiB-aligned bands (heatmap's default region size): map 2 MiB more, use an
    # aligned window of it, and say where it is
    m = mmap.mmap(-1, size + ALIGN, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    skip = -_address(m) % ALIGN
    m = memoryview(m)[skip:skip + size]
    base = _address_view(m)
    eighth = (size // 8) - (size // 8) % PAGE
    hot = (0, eighth)
    warm = (eighth, 2 * eighth)
    cold = (2 * eighth, 3 * eighth)
    zone = (3 * eighth, size)
    window = max(PAGE, (size // 16) - (size // 16) % PAGE)
    shift = max(PAGE, ((zone[1] - zone[0]) // 64) - ((zone[1] - zone[0]) // 64) % PAGE)
    advise(base + hot[1], size - hot[1], MADV_NOHUGEPAGE)
    advise(base, hot[1], MADV_HUGEPAGE)  # (a kernel without THP ignores both)
    touch(m, 0, size, PAGE, b"\1")  # populate everything once

    def span(r):
        return f"{base + r[0]:#x}-{base + r[1]:#x}"

    print(f"hotspot: pid {os.getpid()} size {size >> 20} MiB base {base:#x} "
          f"hot {span(hot)} warm {span(warm)} cold {span(cold)} moving {span(zone)} "
          f"window {window >> 10} KiB step {args.step:g} s", flush=True)

    deadline = time.monotonic() + args.duration if args.duration > 0 else None
    pos = 0
    value = 2
    while deadline is None or time.monotonic() < deadline:
        v = bytes((value,))
        touch(m, *hot, PAGE, v)
        touch(m, *warm, 4 * PAGE, v)
        lo = zone[0] + pos
        hi = min(zone[1], lo + window)
        touch(m, lo, hi, PAGE, v)
        if lo + window > zone[1]:  # wrap around
            touch(m, zone[0], zone[0] + (lo + window - zone[1]), PAGE, v)
        pos = (pos + shift) % (zone[1] - zone[0])
        value = value % 250 + 1
        time.sleep(args.step)
    return 0


def advise(addr: int, length: int, advice: int) -> None:
    """madvise(2); a kernel without transparent huge pages refuses (EINVAL): no matter."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    libc.madvise(addr, length, advice)


def _address(m: mmap.mmap) -> int:
    """The mapping's virtual address."""
    import ctypes

    buf = (ctypes.c_char * 1).from_buffer(m)
    try:
        return ctypes.addressof(buf)
    finally:
        del buf


def _address_view(v: memoryview) -> int:
    import ctypes

    buf = (ctypes.c_char * len(v)).from_buffer(v)
    try:
        return ctypes.addressof(buf)
    finally:
        del buf


if __name__ == "__main__":
    sys.exit(main())
