"""Every heatmap source on the same 1 GiB workload, in one guest run: how right each
is and what it costs.

    python3 bench/sources.py [INTERVALS]

The workload is bench/bands.py with 64 regions per band (eight 128 MiB mappings: hot,
warm, cool and cold, of 4 KiB pages and of THPs).  Each source watches it in turn for
INTERVALS intervals of 1 s (default 12; the first is left out) with `heatmap.py PID
--source S --json`; so does "damon-snapshot", the DAMON source reading DAMON's
results from a tried-regions snapshot through sysfs instead of its tracepoint.

  accuracy  Spearman rank correlation of the per-region shares against the true ones,
            and the worst band error: max over bands |measured share - true share|
            (for damon a frequency against a share: its ranks are what count)
  cost      heatmap.py's own CPU per interval (user, and system: the kernel work it
            asks for in its own context), the kernel's time per interval as the source
            reports it (JSON aging_s: MGLRU's scan, the idle bitmap's rmap walks, the
            kdamond's CPU, smaps + clear_refs), and the workload's slowdown: its busy
            time per pass while watched, over the same just before (1.00 = none)

Targets: idle correlation >= 0.99 and band error <= 0.02 (as mglru); damon >= 0.9;
refs within 0.05 per mapping.  The "x mglru" column is each source's user CPU per
interval over mglru's, measured side by side (the idle target is at most 5x).

Run on the host, it boots the QEMU guest on the patched kernel and runs itself inside.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import guestbench
from heatmap_accuracy import spearman

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import heatmap  # noqa: E402

SOURCES = ("mglru", "idle", "damon", "damon-snapshot", "refs")
REGIONS = 64  # per band: 8 x 128 MiB = 1 GiB
PAGES = 512
BASELINE_S = 5.0


class SnapshotDamon(heatmap.DamonCounts):
    """The DAMON source reading a tried-regions snapshot instead of the tracepoint: a
    "stat" scheme that matches every region, one aggregation per interval, and
    update_schemes_tried_regions (which waits for the kdamond) at every interval."""

    def __init__(self, pid, region_shift, max_regions, interval=2.0):
        self._snapshots = 0
        super().__init__(pid, region_shift, max_regions, interval)

    @staticmethod
    def _intervals(interval: float) -> tuple[int, int, int]:
        """One aggregation per interval, with as many samples as the tracepoint way."""
        sample, _aggr, update = heatmap.damon_intervals(interval)
        return sample, round(interval * 1e6), update

    def _load(self) -> None:
        ctx = f"{heatmap.DAMON_KDAMONDS}/0/contexts/0"
        scheme = f"{ctx}/schemes/0"
        heatmap._write(f"{ctx}/schemes/nr_schemes", 1)
        heatmap._write(f"{scheme}/action", "stat")
        # every region: the pattern's maxima are 0 until set
        for what, top in (("sz", (1 << 64) - 1), ("nr_accesses", (1 << 32) - 1),
                          ("age", (1 << 32) - 1)):
            heatmap._write(f"{scheme}/access_pattern/{what}/max", top)

    def _follow(self, kdamond: int) -> None:
        pass

    def _records(self):
        k = f"{heatmap.DAMON_KDAMONDS}/0"
        try:
            heatmap._write(f"{k}/state", "update_schemes_tried_regions")
        except OSError:
            return []  # the kdamond stopped: its target exited
        d = f"{k}/contexts/0/schemes/0/tried_regions"
        names = [n for n in os.listdir(d) if n.isdigit()]
        self._snapshots += 1
        recs = []
        for n in names:
            start, end, acc = (int(heatmap._read(f"{d}/{n}/{f}"))
                               for f in ("start", "end", "nr_accesses"))
            recs.append((self._snapshots, 0, start, end, acc, len(names)))  # (target 0)
        return recs

    def _aggregations(self) -> int:
        return self._snapshots

    def dropped(self) -> int:
        return 0


def _snapshot_run(argv: list[str]) -> None:
    """heatmap.py's main() with the snapshot source (what bench runs as a subprocess)."""
    sys.exit(heatmap.main(argv, counts_factory=SnapshotDamon))


class Workload:
    """bench/bands.py with its per-second reports collected by a thread."""

    def __init__(self):
        from bandsload import Bands

        self.bands = Bands(regions=REGIONS)
        self.reports: list[tuple[float, int, float]] = []  # (time, passes, busy_s)
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        for line in self.bands.proc.stdout:
            r = json.loads(line)
            self.reports.append((time.monotonic(), r["passes"], r["busy_s"]))

    def busy_per_pass(self, t0: float, t1: float) -> float:
        inside = [r for r in self.reports if t0 <= r[0] <= t1]
        if len(inside) < 2:
            return float("nan")
        (_, p0, b0), (_, p1, b1) = inside[0], inside[-1]
        return (b1 - b0) / max(1, p1 - p0)


def _cpu(pid: int) -> tuple[float, float]:
    """(user, system) seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def baseline(work: Workload) -> float:
    """The workload's busy time per pass, unwatched, over the next BASELINE_S."""
    t0 = time.monotonic()
    time.sleep(BASELINE_S)
    return work.busy_per_pass(t0, time.monotonic())


def watch(work: Workload, source: str, intervals: int) -> dict:
    """One source's run: accuracy and cost (the slowdown against the unwatched
    workload just before and just after)."""
    before = baseline(work)
    if source == "damon-snapshot":
        cmd = [sys.executable, __file__, "--snapshot-run"]
        src_args = []
    else:
        cmd = [sys.executable, str(REPO / "heatmap.py")]
        src_args = ["--source", source]
    p = subprocess.Popen([*cmd, str(work.bands.pid), *src_args, "--json", "--interval", "1",
                          "--count", str(intervals + 1)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO)
    lines = [p.stdout.readline()]
    t0, cpu0 = time.monotonic(), _cpu(p.pid)  # after the first interval: start-up excluded
    for _ in range(intervals - 1):
        lines.append(p.stdout.readline())
    t1, cpu1 = time.monotonic(), _cpu(p.pid)
    rest, err = p.communicate(timeout=600)
    if p.returncode or not all(lines):
        raise SystemExit(f"{source}: heatmap.py failed: {err.strip()}")
    slow = work.busy_per_pass(t0, t1) / ((before + baseline(work)) / 2)
    ivs = [json.loads(line) for line in lines[1:]]  # the first interval left out
    n = len(ivs)
    measured: dict[int, float] = {}
    for iv in ivs:
        for reg in iv["regions"]:
            measured[reg["start"]] = measured.get(reg["start"], 0) + reg["accessed"] / PAGES / n
    truth = work.bands.truth()
    got = [measured.get(a, 0.0) for a in truth]
    errs = {}
    for b in work.bands.bands.values():
        share = sum(measured.get(a, 0.0) for a, _ in b["regions"]) / len(b["regions"])
        errs[b["name"]] = abs(share - b["share"])
    return {"source": source, "rho": spearman(got, list(truth.values())),
            "band_err": max(errs.values()),
            "worst_band": max(errs, key=errs.get) if max(errs.values()) >= 0.0005 else "-",
            "user_ms": (cpu1[0] - cpu0[0]) * 1e3 / (n - 1 or 1),
            "sys_ms": (cpu1[1] - cpu0[1]) * 1e3 / (n - 1 or 1),
            "kernel_ms": sum(iv["aging_s"] for iv in ivs) * 1e3 / n, "slowdown": slow,
            "wall_s": t1 - t0}


def _in_guest(intervals: int) -> None:
    work = Workload()
    try:
        print(f"workload: 8 bands x {REGIONS} regions of 2 MiB, THP bands backed: "
              f"{work.bands.thp_backed()}; {intervals} intervals of 1 s per source "
              f"(the first left out)", flush=True)
        time.sleep(2 * BASELINE_S)  # past the start-up (khugepaged, first passes)
        rows = [watch(work, s, intervals) for s in SOURCES]
    finally:
        work.bands.close()
    ref = next(r for r in rows if r["source"] == "mglru")["user_ms"]
    print(f"{'source':<15}{'spearman':>9}{'band err':>9} {'(worst)':<10}{'user ms':>8}"
          f"{'x mglru':>8}{'sys ms':>8}{'kernel ms':>10}{'slowdown':>9}")
    for r in rows:
        print(f"{r['source']:<15}{r['rho']:>9.3f}{r['band_err']:>9.3f} "
              f"{'(' + r['worst_band'] + ')':<10}{r['user_ms']:>8.1f}"
              f"{r['user_ms'] / ref if ref else float('nan'):>8.2f}{r['sys_ms']:>8.1f}"
              f"{r['kernel_ms']:>10.1f}{r['slowdown']:>9.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--snapshot-run"]:
        _snapshot_run(sys.argv[2:])
    guestbench.main(__file__, _in_guest, 12, mem="3G")
