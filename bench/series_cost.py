"""What the kernel series costs with nothing attached: the aging time and the code size
of the patched test kernel against the same kernel without the series (build-kernel
--variant pristine: same source, same config), as ratios (target: at most 1.01x).

    python3 bench/series_cost.py [ROUNDS]

Run on the host, it boots the two kernels in turn, BOOTS times each (P, S, P, S, ...),
and runs itself inside. In every guest a worker pinned to CPU 0 (so its memory is on
node 0 every time) populates 1 GiB of 4 KiB pages (MADV_NOHUGEPAGE: the PTE walk, where
the series adds the most) and writes all of it before every one of ROUNDS agings of the
root memcg on every node through /sys/kernel/debug/lru_gen ('+ memcg node max_seq 1 1':
the page table walk, force_scan), timed around the write. Nothing is attached to the
tracepoint, so the patched kernel runs its static branches only.

The guests run with QEMU's -icount: their clock advances with the instructions they
execute, so a pass's time measures the work the kernel does and not the host's load
(under plain TCG, boot medians of the same kernel differ by 15%). Medians over all
passes of a kernel and the median of each boot are printed.

Code size: `size` of vmlinux, mm/vmscan.o and mm/rmap.o from each build (sizes.txt in
the kernel cache).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from runs_arg import runs_arg

REPO = Path(__file__).resolve().parent.parent
GIB = 1 << 30
BOOTS = 3
LRU_GEN = "/sys/kernel/debug/lru_gen"

WORKER = r"""
import ctypes, mmap, os, sys
os.sched_setaffinity(0, {0})  # its memory on node 0, boot after boot
size = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
m = mmap.mmap(-1, size + (2 << 20), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
base = ctypes.addressof(ctypes.c_char.from_buffer(m))
off = (-base) % (2 << 20)
libc.madvise(ctypes.c_void_p(base + off), ctypes.c_size_t(size), 15)  # NOHUGEPAGE
view = memoryview(m)
ones = b"\1" * (size // 4096)
def touch():
    view[off:off + size:4096] = ones
touch()
print("ready", flush=True)
for line in sys.stdin:
    touch()
    print("touched", flush=True)
"""


def _age_root() -> float:
    """One forced aging of the root memcg on every node; its wall time."""
    text = Path(LRU_GEN).read_text()
    cmds, memcg, node = [], None, None
    for line in text.splitlines():
        fields = line.split()
        if fields[:1] == ["memcg"]:
            memcg = fields[1] if len(fields) > 2 and fields[2] == "/" else None
        elif fields[:1] == ["node"]:
            node = fields[1]
        elif memcg and node and fields and fields[0].isdigit():
            seq = fields[0]
            cmds = [c for c in cmds if not c.startswith(f"+ {memcg} {node} ")]
            cmds.append(f"+ {memcg} {node} {seq} 1 1")
    t0 = time.perf_counter()
    with open(LRU_GEN, "w") as f:
        f.write(";".join(cmds))
    return time.perf_counter() - t0


def _in_guest(rounds: int) -> None:
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(GIB)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert worker.stdout.readline().strip() == "ready"
    _age_root()  # settle
    times = []
    for _ in range(rounds):
        worker.stdin.write("t\n")
        worker.stdin.flush()
        assert worker.stdout.readline().strip() == "touched"
        times.append(_age_root())
    worker.kill()
    worker.wait()
    print("times " + " ".join(f"{t:.6f}" for t in times))


def _sizes(kernel_dir: Path) -> dict[str, int]:
    """object -> text size, from the build's sizes.txt."""
    out = {}
    for line in (kernel_dir / "sizes.txt").read_text().splitlines()[1:]:
        f = line.split()
        out[f[-1]] = int(f[0])
    return out


def main() -> None:
    rounds = runs_arg(30)
    if os.environ.get("HEATMAP_IN_GUEST") == "1":
        _in_guest(rounds)
        return
    sys.path.insert(0, str(REPO / "kernel"))
    import guest

    kernels = {v: guest.kernel_image(build=True, variant=v) for v in ("pristine", "default")}
    times: dict[str, list[list[float]]] = {v: [] for v in kernels}
    for boot in range(BOOTS):
        for variant, image in kernels.items():
            try:
                res = guest.run([sys.executable, str(Path(__file__).resolve()), str(rounds)],
                                timeout=3600, mem="3G", cwd=str(REPO), kernel=image,
                                icount=True)
            except guest.GuestError as e:
                raise SystemExit(f"series_cost.py: {e}") from None
            m = re.search(r"^times (.*)$", res.output, re.M)
            if res.returncode or not m:
                raise SystemExit(f"series_cost.py: the guest run failed:\n{res.output}")
            times[variant].append([float(t) for t in m.group(1).split()])
            print(f"boot {boot + 1} {variant:>8}: median aging "
                  f"{statistics.median(times[variant][-1]) * 1e3:.1f} ms", flush=True)
    med = {v: statistics.median(t for run in runs for t in run) for v, runs in times.items()}
    spread = {v: [statistics.median(run) for run in runs] for v, runs in times.items()}
    print(f"aging 1 GiB of 4 KiB pages (root memcg, every node), {BOOTS} boots x {rounds} "
          f"passes per kernel, nothing attached:")
    for v in kernels:
        print(f"  {v:<8} median {med[v] * 1e3:7.1f} ms  (boot medians "
              f"{', '.join(f'{s * 1e3:.1f}' for s in spread[v])})")
    print(f"  patched / pristine: {med['default'] / med['pristine']:.3f}x")
    sizes = {v: _sizes(image.parent) for v, image in kernels.items()}
    print("code size (text bytes), patched / pristine:")
    for obj, base in sizes["pristine"].items():
        new = sizes["default"][obj]
        print(f"  {obj:<12} {base:>9} -> {new:>9}  {new - base:+6d}  {new / base:.4f}x")


if __name__ == "__main__":
    main()
