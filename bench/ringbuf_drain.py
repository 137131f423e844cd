"""Ring buffer drain from Python: records of 16 bytes, written by a BPF program
(tests/bpf/events.bpf.c's fill_ring, run with BPF_PROG_TEST_RUN) into a 16 MiB ring
until it is full, then drained; only the drain is timed. Prints events per second for
bpfload's RingBuffer (a Python callback per record, and read() into a list), against
the target (1M events/s) and, in the same run, against libbpf's ring_buffer__consume
(the reference libbpf 1.5, through ctypes) with a Python callback per record — what a
Python program on libbpf gets — and with a C function that does nothing, its ceiling.

    python3 bench/ringbuf_drain.py [ROUNDS]

Needs root. Uses Debian's /usr/bin/python3 when run by it (make bench runs $(PYTHON)).
"""

from __future__ import annotations

import ctypes
import os
import statistics
import sys
import time
from pathlib import Path

from runs_arg import runs_arg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
import bpfc  # noqa: E402
import bpfload  # noqa: E402
from bpfload.ringbuf import RingBuffer  # noqa: E402

RING = 16 << 20
RECORD = 16
PER_ROUND = RING // (RECORD + 8)  # records that fit: 8-byte header each
TARGET = 1_000_000

_SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


def _fill(obj) -> None:
    obj.set("fill_count", PER_ROUND)
    obj.program("fill_ring").test_run()
    if obj.get("dropped"):
        raise SystemExit(f"the ring took fewer than {PER_ROUND} records")


def _bpfload_rounds(obj, rounds: int) -> tuple[list[float], list[float]]:
    count = [0]

    def on_record(data: bytes) -> None:
        count[0] += 1

    callback, listing = [], []
    with RingBuffer(obj.map("records"), on_record) as rb:
        for _ in range(rounds):
            _fill(obj)
            t0 = time.perf_counter()
            n = rb.consume()
            callback.append(n / (time.perf_counter() - t0))
            _fill(obj)
            t0 = time.perf_counter()
            n = len(rb.read())
            listing.append(n / (time.perf_counter() - t0))
    assert count[0] == rounds * PER_ROUND, count[0]
    return callback, listing


def _libbpf(obj, rounds: int) -> tuple[list[float], list[float]] | None:
    try:
        import reference_libbpf

        _bpftool, so = reference_libbpf.build()
    except Exception as e:  # the reference is optional here: say why it is missing
        print(f"(no libbpf reference: {e})")
        return None
    lib = ctypes.CDLL(str(so))
    lib.ring_buffer__new.restype = ctypes.c_void_p
    lib.ring_buffer__new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                     ctypes.c_void_p]
    lib.ring_buffer__consume.argtypes = [ctypes.c_void_p]
    lib.ring_buffer__free.argtypes = [ctypes.c_void_p]
    count = [0]

    def on_record(ctx, data, size) -> int:
        count[0] += 1
        ctypes.string_at(data, size)  # the bytes, as bpfload's callback gets them
        return 0

    python_cb = _SAMPLE_FN(on_record)
    noop = ctypes.cast(ctypes.CDLL(None).getpid, ctypes.c_void_p)  # int f(): ignores args
    results = []
    for cb in (ctypes.cast(python_cb, ctypes.c_void_p), noop):
        rb = lib.ring_buffer__new(obj.map("records").fileno(), cb, None, None)
        if not rb:
            raise SystemExit("ring_buffer__new failed")
        rates = []
        try:
            for _ in range(rounds):
                _fill(obj)
                t0 = time.perf_counter()
                n = lib.ring_buffer__consume(rb)
                rates.append(n / (time.perf_counter() - t0))
        finally:
            lib.ring_buffer__free(rb)
        results.append(rates)
    return results[0], results[1]


def main() -> None:
    rounds = runs_arg(5, "ROUNDS")
    if os.geteuid() != 0:
        raise SystemExit("needs root")
    obj_path = bpfc.build_object("events")
    with bpfload.load(obj_path, programs=["fill_ring"], max_entries={"records": RING}) as obj:
        callback, listing = _bpfload_rounds(obj, rounds)
        ref = _libbpf(obj, rounds)
    med = statistics.median
    print(f"python: {sys.executable}; {rounds} rounds of {PER_ROUND} records of {RECORD} "
          f"bytes (a full {RING >> 20} MiB ring), median events/s of the drain")
    print(f"bpfload RingBuffer.consume (callback)   {med(callback) / 1e6:6.2f} M/s  "
          f"{med(callback) / TARGET:5.2f}x the 1M/s target")
    print(f"bpfload RingBuffer.read (list)          {med(listing) / 1e6:6.2f} M/s  "
          f"{med(listing) / TARGET:5.2f}x the 1M/s target")
    if ref is not None:
        py, c = ref
        print(f"libbpf ring_buffer__consume, Python cb  {med(py) / 1e6:6.2f} M/s  "
              f"bpfload callback / this: {med(callback) / med(py):.2f}x")
        print(f"libbpf ring_buffer__consume, C no-op    {med(c) / 1e6:6.2f} M/s  "
              f"bpfload callback / this: {med(callback) / med(c):.2f}x")


if __name__ == "__main__":
    main()
