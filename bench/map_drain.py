"""Draining a 1M-entry hash map from Python: batch lookup-and-delete against per-key
get_next_key/lookup/delete, in the same run; prints entries per second and the ratio.

    python3 bench/map_drain.py [ENTRIES]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from runs_arg import runs_arg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bpfload.maps import Map  # noqa: E402
from bpfload.sys.constants import MapType  # noqa: E402

KEY, VALUE = 8, 16  # the heatmap's own key and value sizes


def _filled(n: int) -> Map:
    m = Map.create("drainbench", MapType.HASH, KEY, VALUE, n)
    keys = b"".join(i.to_bytes(KEY, "little") for i in range(n))
    values = b"".join((i * 7).to_bytes(VALUE, "little") for i in range(n))
    for start in range(0, n, 1 << 16):  # update in chunks to keep buffers small
        end = min(n, start + (1 << 16))
        m.update_batch(keys[start * KEY:end * KEY], values[start * VALUE:end * VALUE],
                       end - start)
    return m


def main() -> None:
    n = runs_arg(1_000_000, "ENTRIES")
    if os.geteuid() != 0:
        raise SystemExit("needs root")
    with _filled(n) as m:
        t0 = time.perf_counter()
        keys, values, got = m.lookup_batch(delete=True)
        batch = time.perf_counter() - t0
        assert got == n, got
    per_key_n = n  # the same map size: per-key calls slow down as the table empties
    with _filled(per_key_n) as m:
        m._batch_ok = False
        t0 = time.perf_counter()
        _, _, got = m.lookup_batch(delete=True)
        per_key = time.perf_counter() - t0
        assert got == per_key_n
    b_rate, p_rate = n / batch, per_key_n / per_key
    print(f"batch:   {n:>9} entries in {batch * 1e3:8.1f} ms = {b_rate / 1e6:6.2f} M entries/s")
    print(f"per-key: {per_key_n:>9} entries in {per_key * 1e3:8.1f} ms = "
          f"{p_rate / 1e6:6.2f} M entries/s")
    print(f"batch / per-key: {b_rate / p_rate:.1f}x (target: >= 1 M entries/s with batch)")


if __name__ == "__main__":
    main()
