"""Cost of one MGLRU aging pass over a process with a 1 GiB resident working set, in
the QEMU guest on the patched kernel: with the heatmap's BPF programs attached against
without, as ratios measured in one guest run (target: at most 1.15x).

    python3 bench/aging_overhead.py [ROUNDS]

Run on the host, it boots the guest (kernel/run-guest) and runs itself inside. Every
round makes the worker touch all of its memory, then ages once per mode, interleaved:
  bare     no BPF program attached
  hooks    the young-page hooks attached (every mm walked, as in 'bare')
  heatmap  hooks plus the skip_mm filter and the TLB flush: what `heatmap.py` runs
Aging is triggered the same way in every mode (a write to /sys/kernel/debug/lru_gen)
and timed around that write. Both 4 KiB pages (MADV_NOHUGEPAGE: the PTE walk, the
worst case for the hooks) and transparent huge pages (the PMD walk) are measured.
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


def _lru_gen_root() -> tuple[int, dict[int, int]]:
    memcg, seqs, node = None, {}, None
    for line in Path("/sys/kernel/debug/lru_gen").read_text().splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "memcg":
            if memcg is not None:
                break  # the root memcg comes first
            memcg = int(f[1])
        elif f[0] == "node":
            node = int(f[1])
        elif node is not None and f[0].isdigit():
            seqs[node] = max(seqs.get(node, 0), int(f[0]))
    return memcg, seqs


def _age() -> float:
    memcg, seqs = _lru_gen_root()
    cmds = "".join(f"+ {memcg} {nid} {seq} 1 1\n" for nid, seq in sorted(seqs.items()))
    t0 = time.perf_counter()
    with open("/sys/kernel/debug/lru_gen", "w") as f:
        f.write(cmds)
    return time.perf_counter() - t0


def _in_guest(rounds: int) -> None:
    sys.path.insert(0, str(REPO))
    import bpfload

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
        obj.set_autoload("age", False)
        obj.load()
        times: dict[str, list[float]] = {"bare": [], "hooks": [], "heatmap": []}
        pages = []
        touch()
        _age()  # settle: the first pass after populating sees everything
        obj.map("counts").lookup_batch(delete=True)
        for _ in range(rounds):
            for mode in times:
                links = []
                if mode != "bare":
                    progs = ["young_pte", "young_pmd", "young_look_around"]
                    links = obj.attach(progs + (["skip_mm", "flush_tlb"]
                                                if mode == "heatmap" else []))
                touch()
                times[mode].append(_age())
                for link in links:
                    link.close()
                _, values, n = obj.map("counts").lookup_batch(delete=True)
                if mode != "bare":
                    pages.append(sum(a + f for a, f in struct.iter_unpack("<QQ", values)))
        obj.close()
        worker.kill()
        worker.wait()
        bare = statistics.median(times["bare"])
        print(f"{kind:>4} pages, 1 GiB touched, {rounds} rounds (median aging time):")
        for mode, ts in times.items():
            med = statistics.median(ts)
            print(f"  {mode:<8} {med * 1e3:8.1f} ms   {med / bare:5.2f}x bare")
        print(f"  young pages counted per pass: {min(pages)}..{max(pages)} "
              f"(1 GiB = {GIB // 4096})")


if __name__ == "__main__":
    guestbench.main(__file__, _in_guest, 5, mem="3G")
