"""heatmap.py's time axis in the QEMU guest: several agings per column.  Three bands of
4 KiB pages are written once per aging interval, once per 2 and once per 4, each write
placed midway between heatmap's agings (the workload takes its phase from the first
interval's "time", "t" and "aging_s"), so a 4 s column of four 1 s agings must read
exactly 1, 1/2 and 1/4 for each band with the sources that see every access: mglru, refs
and idle (the workload drops its TLB entries before each write, see BANDS; DAMON samples
on its own clock and is checked for its intervals and order only)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bpfc import REPO

pytestmark = pytest.mark.skipif(os.environ.get("HEATMAP_IN_GUEST") != "1",
                                reason="runs inside the test guest only")

PAGES = 512  # per 2 MiB region
# 1 s: the writes are half a second from heatmap's agings, so an emulated CPU starved
# by a busy host for less than that changes nothing
AGING = 1.0
AGINGS = 4  # per 4 s column
COLUMNS = 6
SETTLED = 2  # columns before the workload is in phase

# Four separate 2 MiB mappings (so refs sees each band as its own mapping), 4 KiB pages
# or (argv[2]) one THP each.
# Reads its phase from stdin, then writes every page of band k at phase + AGING * j for
# every j divisible by its period.
BANDS = r"""
import ctypes, mmap, sys, time
libc = ctypes.CDLL(None)
periods = (1, 2, 4, 0)  # 0: written once, before the run
advice = int(sys.argv[2])  # MADV_NOHUGEPAGE, or MADV_HUGEPAGE: one THP per band
views, starts = [], []
for _ in periods:
    m = mmap.mmap(-1, 2 * (2 << 20), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    off = (-base) % (2 << 20)
    libc.madvise(ctypes.c_void_p(base + off), ctypes.c_size_t(2 << 20), advice)
    v = memoryview(m)[off:off + (2 << 20)]
    v[::4096] = b"\1" * 512
    views.append(v)
    starts.append(base + off)
print(" ".join(map(str, starts)), flush=True)
phase = float(sys.stdin.readline())
aging = float(sys.argv[1])
j = 0
while True:
    due = phase + aging * j
    now = time.time()
    if due > now:
        time.sleep(due - now)
    if due >= now - aging / 4:  # (not one the phase came too late for)
        for p, v, start in zip(periods, views, starts):
            if p and j % p == 0:
                # drop the band's TLB entries first (mprotect flushes them): emulated,
                # they would live on for seconds and a write through one sets no young
                # bit again once idle page tracking cleared it without a flush
                for prot in (mmap.PROT_READ, mmap.PROT_READ | mmap.PROT_WRITE):
                    libc.mprotect(ctypes.c_void_p(start), ctypes.c_size_t(2 << 20), prot)
                v[::4096] = b"\2" * 512
    j += 1
"""


MADV_HUGEPAGE, MADV_NOHUGEPAGE = 14, 15


def start_bands(advice: int = MADV_NOHUGEPAGE):
    proc = subprocess.Popen([sys.executable, "-c", BANDS, str(AGING), str(advice)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return proc, [int(s) for s in proc.stdout.readline().split()]


@pytest.fixture
def bands():
    proc, starts = start_bands()
    yield proc, starts
    proc.kill()
    proc.wait()


@pytest.fixture
def thp_bands():
    proc, starts = start_bands(MADV_HUGEPAGE)
    yield proc, starts
    proc.kill()
    proc.wait()


def phase_of(first: dict) -> float:
    """When to write: midway between an aging's end and the next one's start.  heatmap
    ages at its start (Unix time "time" - "t", up to the few ms between the two clock
    reads) plus whole aging intervals; an aging takes about aging_s / agings."""
    start = first["time"] - first["t"]
    took = first["aging_s"] / first["agings"]
    return start + took + (AGING - took) / 2


def run_in_phase(bands, source: str, summary: bool = False):
    """heatmap's intervals on the bands, the workload phased from the first one (or
    with summary=True the run's summary object)."""
    proc, _ = bands
    hm = subprocess.Popen([sys.executable, str(REPO / "heatmap.py"), str(proc.pid),
                           "--source", source, "--json", "--count", str(COLUMNS),
                           "--interval", str(AGING * AGINGS), "--aging-interval", str(AGING)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        first = json.loads(hm.stdout.readline())
        proc.stdin.write(f"{phase_of(first)}\n")
        proc.stdin.flush()
        rest, err = hm.communicate(timeout=300)
    finally:
        if hm.poll() is None:
            hm.kill()
            hm.wait()
    assert hm.returncode == 0, err
    objs = [first] + [json.loads(line) for line in rest.splitlines()]
    assert objs[-1]["type"] == "summary"
    return objs[-1] if summary else objs[:-1]


def band_shares(interval: dict, starts: list[int]) -> list[float]:
    got = {r["start"]: r["accessed"] for r in interval["regions"]}
    return [got.get(s, 0) / PAGES for s in starts]


TRIES = 4  # runs of the phased workload before the test gives up


@pytest.mark.parametrize("source", ["mglru", "refs", "idle"])
def test_bands_young_every_2nd_and_4th_aging_read_1_half_and_quarter(source):
    """Exact shares in every settled column of one run.  The workload's writes are
    phased by wall clock; when an aging is late by a quarter of its slot (a host busy
    with other work starves the emulated CPU), two writes fall to one aging or heatmap
    moves its aging grid (it skips rather than bursts) and the workload is out of phase
    for the rest of that run, so the test takes up to TRIES runs.  A source that counts
    agings wrongly reads wrong shares in every run (1, 1, 1 if every aging counted fully;
    1/4, 1/4, 1/4 if only one did), so no number of tries passes it.  Each run has a
    fresh workload, as it takes its phase once."""
    tries = []
    for _ in range(TRIES):
        bands = start_bands()
        try:
            intervals = run_in_phase(bands, source)
        finally:
            bands[0].kill()
            bands[0].wait()
        assert len(intervals) == COLUMNS
        assert all(iv["agings"] == AGINGS and iv["source"] == source for iv in intervals)
        shares = [band_shares(iv, bands[1][:3]) for iv in intervals[SETTLED:]]
        tries.append(shares)
        if all(got == [1.0, 0.5, 0.25] for got in shares):
            break
    else:
        pytest.fail(f"no run of {TRIES} read [1, 1/2, 1/4] in every settled column: {tries}")
    for iv in intervals[SETTLED:]:
        # the working set: the three bands' mean young bytes per aging
        assert iv["wss_bytes"] >= (1 + 0.5 + 0.25) * PAGES * 4096


def test_never_touched_names_the_band_written_only_before_the_run(bands):
    summary = run_in_phase(bands, "mglru", summary=True)
    ranges = {r["start"]: r for r in summary["never_touched"]}
    written_once = bands[1][3]
    assert ranges[written_once]["bytes"] == 2 << 20
    assert ranges[written_once]["resident_bytes"] == 2 << 20
    assert not set(bands[1][:3]) & set(ranges)
    # the unused halves of the bands' mmaps: never young, never resident
    others = [r for r in summary["never_touched"] if r["start"] != written_once
              and any(0 < abs(r["start"] - s) < 4 << 20 for s in bands[1])]
    assert others and all(r["resident_bytes"] == 0 for r in others)


def damon_intervals_now() -> tuple[int, int]:
    attrs = Path("/sys/kernel/mm/damon/admin/kdamonds/0/contexts/0/monitoring_attrs")
    return (int((attrs / "intervals" / "sample_us").read_text()),
            int((attrs / "intervals" / "aggr_us").read_text()))


def test_damon_samples_at_the_aging_interval(thp_bands):
    """DAMON's sampling interval is the aging interval and a column averages its four
    samples.  DAMON samples on its own clock, not in phase with the workload, and under
    emulation misses accesses a TLB entry hides (see test_sources_guest.py): the bands
    come out in order, not exact."""
    proc, starts = thp_bands
    seen = []

    def watch():  # while heatmap runs: what its kdamond was set to
        for _ in range(100):
            with contextlib.suppress(OSError, ValueError):
                seen.append(damon_intervals_now())
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    intervals = run_in_phase(thp_bands, "damon")
    watcher.join()
    assert seen == [(round(AGING * 1e6), round(AGING * 1e6))]
    assert all(iv["agings"] == AGINGS and iv["source"] == "damon" for iv in intervals)
    shares = [sum(band_shares(iv, starts[:4])[k] for iv in intervals[SETTLED:])
              / (COLUMNS - SETTLED) for k in range(4)]
    # (the band written only before the run the coldest, not always 0: a DAMON region
    # can span the unused half-mapping between two bands for a few aggregations)
    assert shares[0] >= shares[1] >= shares[2] > shares[3], shares
    assert shares[0] > shares[2], shares
