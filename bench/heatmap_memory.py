#!/usr/bin/env python3
"""Peak memory of heatmap.py's model + layout + rendering over a long run of a big target.

A synthetic target spanning 32,768 regions (64 GiB at 2 MiB: a binary, 2 GiB heap,
a 61 GiB anon arena, 40 libraries, a stack) is fed 1,000 intervals of synthetic counts
(a static hot band, a hot window sweeping the arena, a sprinkle elsewhere; about 5,000
young regions per interval, or all 32,768 with --dense), with mapping changes every 100
intervals and terminal resizes every 250 (each forces a re-layout of the kept history).
Every interval is rendered as a colour frame (160x50, then 500x300 and back) and, with
--outputs, also streamed as JSON and to a gzip recording.

Each measurement runs in its own interpreter and reports its own peak RSS
(getrusage ru_maxrss); references measured in the same run: the bare interpreter and
the interpreter after `import heatmap`.  Target: under 100 MiB.  Exit status 1 if over.

    python3 bench/heatmap_memory.py [--intervals N] [--dense] [--outputs]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_MIB = 100
SHIFT = 21
REGIONS = 32768


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def synthetic_maps(extra: int):
    """Mappings spanning exactly REGIONS regions of 2 MiB (+ `extra` thread stacks)."""
    sys.path.insert(0, ROOT)
    import heatmap

    M = heatmap.Mapping
    R = 1 << SHIFT
    maps = [M(0x400000, 0x400000 + 2 * R, "r-xp", 0, "08:01", 11, "/usr/bin/bigapp")]
    heap = 0x10000000
    maps.append(M(heap, heap + 1024 * R, "rw-p", 0, "00:00", 0, "[heap]"))
    arena = 0x7e0000000000
    libs = 40
    arena_regions = REGIONS - 2 - 1024 - libs - 1
    maps.append(M(arena, arena + arena_regions * R, "rw-p", 0, "00:00", 0, ""))
    lib = 0x7f0000000000
    for i in range(libs):
        maps.append(M(lib + i * R, lib + i * R + R // 2, "r-xp", 0, "08:01", 100 + i,
                      f"/usr/lib/x86_64-linux-gnu/libthing{i}.so.1"))
    for i in range(extra):  # thread stacks appearing over time
        base = 0x7f1000000000 + i * 4 * R
        maps.append(M(base, base + R, "rw-p", 0, "00:00", 0, ""))
    stack = 0x7ffc00000000
    maps.append(M(stack, stack + R, "rw-p", 0, "00:00", 0, "[stack]"))
    return maps, heap >> SHIFT, arena >> SHIFT, arena_regions


def child_workload(intervals: int, dense: bool, outputs: bool) -> None:
    sys.path.insert(0, ROOT)
    import heatmap

    header = {"type": "heatmap-record", "version": 1, "pid": 4242, "comm": "bigapp",
              "region_shift": SHIFT, "page_size": 4096, "interval": 2.0, "started": 0.0}
    model = heatmap.Model(header)
    sinks = []
    if outputs:
        import tempfile

        tmp = tempfile.mkdtemp()
        rec = heatmap.Recorder(os.path.join(tmp, "run.jsonl.gz"))
        rec.start(header)
        devnull = open(os.devnull, "w")  # noqa: SIM115 - closed with the sinks below
        sinks = [rec, heatmap.JsonSink(devnull)]
    sizes = [(160, 50), (500, 300), (160, 50), (80, 24)]
    size = sizes[0]
    all_regions = None
    t0 = time.process_time()
    frames_chars = 0
    for i in range(intervals):
        maps = None
        if i % 100 == 0:
            maps, heap_r, arena_r, arena_n = synthetic_maps(i // 100)
            all_regions = [r for m in heatmap.shown_mappings(maps)
                           for r in range(m.start >> SHIFT, ((m.end - 1) >> SHIFT) + 1)]
        if i % 250 == 0:
            size = sizes[(i // 250) % len(sizes)]
        if dense:
            counts = [(r, r & 1, 300, 12) for r in all_regions]
        else:
            counts = [(heap_r + j, 0, 512, 0) for j in range(256)]  # static hot band
            w0 = (i * 37) % (arena_n - 4096)
            counts += [(arena_r + w0 + j, j & 1, 400, 0) for j in range(4096)]  # moving window
            counts += [(r, 0, 1 + (r % 7), r % 3) for r in all_regions[(i % 50)::50]]
            counts.sort()
        sample = heatmap.Sample(i + 1, 2.0 * (i + 1), 0.012, 0, 64 << 20, maps, counts)
        model.add(sample)
        for s in sinks:
            s.write(sample, model)
        model.ensure_history(max(heatmap.HISTORY_MIN, 2 * size[0]))
        frames_chars += len(heatmap.render_frame(model, "heat" if i % 3 else "node",
                                                 size[0], size[1], "256"))
        del counts, sample
    cpu = time.process_time() - t0
    for s in sinks:
        if hasattr(s, "close"):
            s.close()
    if outputs:
        devnull.close()
    print(f"{maxrss_mib():.1f} {cpu:.1f} {len(model.columns)} {frames_chars}")


def run_child(*args: str) -> list[str]:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", *args],
                         check=True, capture_output=True, text=True).stdout
    return out.split()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--intervals", type=int, default=1000)
    ap.add_argument("--dense", action="store_true", help="every region young every interval")
    ap.add_argument("--outputs", action="store_true", help="also stream JSON and a recording")
    ap.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        what = args.child[0]
        if what == "bare":
            print(f"{maxrss_mib():.1f}")
        elif what == "import":
            sys.path.insert(0, ROOT)
            import heatmap  # noqa: F401

            print(f"{maxrss_mib():.1f}")
        else:
            child_workload(int(args.child[1]), args.child[2] == "1", args.child[3] == "1")
        return 0
    bare = float(run_child("bare")[0])
    imported = float(run_child("import")[0])
    peak, cpu, kept, chars = run_child("work", str(args.intervals), str(int(args.dense)),
                                       str(int(args.outputs)))
    peak = float(peak)
    mode = "dense" if args.dense else "sparse"
    print(f"heatmap memory: {REGIONS} regions (64 GiB at 2 MiB) x {args.intervals} intervals, "
          f"{mode} counts{', JSON + recording' if args.outputs else ''}")
    print(f"  reference: bare interpreter           {bare:7.1f} MiB peak RSS")
    print(f"  reference: interpreter + heatmap      {imported:7.1f} MiB")
    print(f"  model + layout + render               {peak:7.1f} MiB  "
          f"({peak - imported:+.1f} MiB over the import, {peak / bare:.2f}x the bare "
          f"interpreter; target < {TARGET_MIB} MiB)")
    print(f"  columns kept in memory: {kept}; CPU {float(cpu):.1f} s "
          f"({1000 * float(cpu) / args.intervals:.1f} ms per interval incl. synthetic data)")
    verdict = "OK" if peak < TARGET_MIB else "OVER TARGET"
    print(f"  {verdict}")
    return 0 if peak < TARGET_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
