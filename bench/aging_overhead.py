"""What the heatmap's BPF program costs the kernel: one scan of a process with a 1 GiB
resident working set (bpf_lru_gen_scan_task() with the TLB flush, what heatmap.py runs
every interval), with the heatmap's tracepoint program attached against without, as
ratios measured in one guest run (target: at most 1.15x).

    python3 bench/aging_overhead.py [ROUNDS]

Run on the host, it boots the guest (kernel/run-guest) and runs itself inside. Every
round makes the worker touch all of its memory, then scans it once per mode,
interleaved:
  bare     nothing attached to lru_gen_young_tp: the scan and its static branches
  heatmap  the heatmap's tracepoint program attached, counting every young run
Both modes run the heatmap's own syscall program "scan" (it flushes the worker's TLB,
so every touch sets accessed bits again and every pass finds the whole 1 GiB young)
and are timed around that call. Both 4 KiB pages (MADV_NOHUGEPAGE: the PTE walk, the
worst case for the tracepoint) and transparent huge pages (the PMD walk) are measured.
What the series costs with nothing attached, against a kernel without it, is
bench/series_cost.py's question.

TCG stalls for tens of milliseconds now and then, so whole-pass times are noisy even
as medians; the bench also reports the tracepoint program's own run time per pass from
the kernel's BPF statistics, which the stalls do not reach.
"""

from __future__ import annotations

import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import guestbench

REPO = Path(__file__).resolve().parent.parent
GIB = 1 << 30

WORKER = r"""
import ctypes, mmap, sys
size, huge = int(sys.argv[1]), sys.argv[2] == "huge"
libc = ctypes.CDLL(None, use_errno=True)
m = mmap.mmap(-1, size + (2 << 20), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
base = ctypes.addressof(ctypes.c_char.from_buffer(m))
off = (-base) % (2 << 20)
libc.madvise(ctypes.c_void_p(base + off), ctypes.c_size_t(size), 14 if huge else 15)
def touch():
    for i in range(off, off + size, 4096):
        m[i] = 1
touch()
print("ready", flush=True)
for line in sys.stdin:
    touch()
    print("touched", flush=True)
"""


#: struct scan_args of kernel/heatmap.bpf.c: ret, slot, tgid (0: target_tgid), pad
SCAN_ARGS = struct.Struct("<iIiI")


def _scan(prog) -> float:
    """One scan of the worker on every node, through the kfunc; its wall time."""
    t0 = time.perf_counter()
    ctx = prog.test_run(SCAN_ARGS.pack(0, 0, 0, 0)).ctx
    elapsed = time.perf_counter() - t0
    ret = SCAN_ARGS.unpack(ctx)[0]
    if ret:
        raise SystemExit(f"the scan failed: {ret}")
    return elapsed


def _run_stats(obj, names) -> tuple[int, int]:
    """Summed run_time_ns and run_cnt of the named programs (needs bpf_stats)."""
    infos = [obj.program(n).info()[0] for n in names]
    return sum(i.run_time_ns for i in infos), sum(i.run_cnt for i in infos)


def _in_guest(rounds: int) -> None:
    sys.path.insert(0, str(REPO))
    import bpfload

    # the programs' own run time is counted only while this is on (it costs two clock
    # reads per run, in the heatmap mode's timed passes too: a conservative choice)
    Path("/proc/sys/kernel/bpf_stats_enabled").write_text("1")

    for kind in ("4k", "huge"):
        worker = subprocess.Popen([sys.executable, "-c", WORKER, str(GIB), kind],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert worker.stdout.readline().strip() == "ready"

        def touch(worker=worker):
            worker.stdin.write("t\n")
            worker.stdin.flush()
            assert worker.stdout.readline().strip() == "touched"

        obj = bpfload.BPFObject(REPO / "kernel" / "heatmap.bpf.o")
        obj.set("target_tgid", worker.pid)
        obj.set_max_entries("counts", 4096)
        obj.load()
        times: dict[str, list[float]] = {"bare": [], "heatmap": []}
        pages = []
        touch()
        scan = obj.program("scan")
        _scan(scan)  # settle: the first pass after populating sees everything
        obj.map("counts").lookup_batch(delete=True)
        modes = list(times)
        bpf_ns: list[int] = []  # the tracepoint program's own run time per heatmap pass
        calls: list[int] = []
        for r in range(rounds):
            # alternate the order so no mode always comes first after the previous one
            for mode in modes[r % 2:] + modes[:r % 2]:
                links = obj.attach(["young"]) if mode == "heatmap" else []
                touch()
                before = _run_stats(obj, ["young"])
                times[mode].append(_scan(scan))
                if mode == "heatmap":
                    after = _run_stats(obj, ["young"])
                    bpf_ns.append(after[0] - before[0])
                    calls.append(after[1] - before[1])
                for link in links:
                    link.close()
                _, values, n = obj.map("counts").lookup_batch(delete=True)
                if mode == "heatmap":
                    pages.append(sum(a + f for a, f in struct.iter_unpack("<QQ", values)))
        obj.close()
        worker.kill()
        worker.wait()
        print(f"{kind:>4} pages, 1 GiB touched, {rounds} rounds: median aging time; median "
              f"of each round's ratio to that round's bare pass (quartiles); fastest")
        best = min(times["bare"])
        for mode, ts in times.items():
            med = statistics.median(ts)
            # TCG stalls now and then for tens of ms: a ratio within one round (the
            # modes run back to back) cancels the slow drifts a median of each mode
            # alone does not
            ratios = [t / b for t, b in zip(ts, times["bare"])]
            q1, q2, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
            print(f"  {mode:<8} {med * 1e3:8.1f} ms   {q2:5.2f}x bare ({q1:.2f}-{q3:.2f})   "
                  f"fastest {min(ts) * 1e3:.1f} ms, {min(ts) / best:.2f}x")
        print(f"  young pages counted per pass: {min(pages)}..{max(pages)} "
              f"(1 GiB = {GIB // 4096})")
        own = statistics.median(bpf_ns) / 1e9
        print(f"  the heatmap's tracepoint program itself (kernel.bpf_stats_enabled): "
              f"{own * 1e3:.2f} ms and {statistics.median(calls):.0f} runs per pass = "
              f"{own / statistics.median(times['bare']) * 100:.1f}% of a bare pass")


if __name__ == "__main__":
    guestbench.main(__file__, _in_guest, 20, mem="3G")
