"""Cost of one MGLRU aging pass over a process with a 1 GiB resident working set, in
the QEMU guest on the patched kernel: with the heatmap's BPF programs attached against
without, as ratios measured in one guest run (target: at most 1.15x).

    python3 bench/aging_overhead.py [ROUNDS]

Run on the host, it boots the guest (kernel/run-guest) and runs itself inside. Every
round makes the worker touch all of its memory, then ages once per mode, interleaved:
  bare     no counting: only the TLB flush after the walk (see below)
  hooks    the young-page hooks attached (every mm walked, as in 'bare')
  heatmap  hooks plus the skip_mm filter: what `heatmap.py` runs
Every mode flushes the worker's TLB after its walk (the heatmap's flush_tlb program),
so that every touch sets accessed bits again and every pass finds the whole 1 GiB
young: without it, cached translations make some passes find (and cost) much less.
Aging is triggered the same way in every mode (the heatmap's syscall program calling
the aging kfunc, which ages every node and says how many it aged) and timed around
that call. Both 4 KiB pages (MADV_NOHUGEPAGE: the PTE walk, the
worst case for the hooks) and transparent huge pages (the PMD walk) are measured.

TCG stalls for tens of milliseconds now and then, so whole-pass times are noisy even
as medians; the bench also reports the hook programs' own run time per pass from the
kernel's BPF statistics, which the stalls do not reach.
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


AGE_ARGS = struct.Struct("<QiI")  # struct age_args of kernel/heatmap.bpf.c


def _age(prog) -> float:
    """One aging pass of the root memcg on every node, through the kfunc."""
    t0 = time.perf_counter()
    ctx = prog.test_run(AGE_ARGS.pack(0, 0, 0)).ctx
    elapsed = time.perf_counter() - t0
    nodes = AGE_ARGS.unpack(ctx)[1]
    if nodes < 1:
        raise SystemExit(f"aging failed: {nodes}")
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
        times: dict[str, list[float]] = {"bare": [], "hooks": [], "heatmap": []}
        pages = []
        touch()
        age = obj.program("age")
        _age(age)  # settle: the first pass after populating sees everything
        obj.map("counts").lookup_batch(delete=True)
        modes = list(times)
        hook_progs = ["young_pte", "young_pmd", "young_look_around", "skip_mm"]
        bpf_ns: list[int] = []  # the hook programs' own run time in each heatmap pass
        calls: list[int] = []
        for r in range(rounds):
            # rotate the order so no mode always comes first after the previous one
            for mode in modes[r % 3:] + modes[:r % 3]:
                # every mode flushes the worker's TLB after the walk: otherwise
                # cached translations keep some of the next touches from setting
                # accessed bits, and a pass would find (and cost) less than 1 GiB
                progs = ["flush_tlb"]
                if mode != "bare":
                    progs += ["young_pte", "young_pmd", "young_look_around"]
                if mode == "heatmap":
                    progs.append("skip_mm")
                links = obj.attach(progs)
                touch()
                before = _run_stats(obj, hook_progs)
                times[mode].append(_age(age))
                if mode == "heatmap":
                    after = _run_stats(obj, hook_progs)
                    bpf_ns.append(after[0] - before[0])
                    calls.append(after[1] - before[1])
                for link in links:
                    link.close()
                _, values, n = obj.map("counts").lookup_batch(delete=True)
                if mode != "bare":
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
        print(f"  the heatmap's BPF programs themselves (kernel.bpf_stats_enabled): "
              f"{own * 1e3:.2f} ms and {statistics.median(calls):.0f} runs per pass = "
              f"{own / statistics.median(times['bare']) * 100:.1f}% of a bare pass")


if __name__ == "__main__":
    guestbench.main(__file__, _in_guest, 20, mem="3G")
