"""Fakes for the heatmap.py tests: the BPF side (KernelCounts), a /proc tree and a
clock.  They live here, not in heatmap.py: the product has no fake data path."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data" / "heatmap"
HEATMAP = ROOT / "heatmap.py"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import heatmap  # noqa: E402

MiB = 1 << 20
FULL_CAPS = "CapEff:\t000001ffffffffff\n"


class FakeClock:
    """Monotonic time that only moves when slept on (or advanced by a fake aging)."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, d: float) -> None:
        assert d >= 0
        self.t += d


class FakeCounts:
    """Stands in for heatmap.KernelCounts.  `script` is one drained list per interval;
    the warm-up drain (the first after attach) returns `warmup`, which main() must
    discard.  Everything the tool does to it is logged in `log` (a class attribute,
    reset by make_factory)."""

    script: list = []
    warmup: list = []
    aging = 0.01
    clock: FakeClock | None = None
    instances: list = []
    fail_at: str | None = None  # raise HeatmapError from this method
    on_age = None  # callable(n) run at the n-th aging (e.g. to make the target exit)

    def __init__(self, pid, region_shift, max_regions, interval=None):
        if self.fail_at == "init":
            raise heatmap.HeatmapError("kernel lacks the lru_gen_young_tp tracepoint: see kernel/")
        self.pid = pid
        self.region_shift = region_shift
        self.max_regions = max_regions
        self.ages = 0
        self.drains = 0
        self.resizes: list[int] = []
        self.closed = 0
        self.instances.append(self)

    def age(self):
        if self.fail_at == "age" and self.ages >= 1:
            raise heatmap.HeatmapError("aging failed: MGLRU is disabled")
        self.ages += 1
        if self.on_age:
            type(self).on_age(self.ages)
        if self.clock is not None:
            self.clock.t += self.aging
        return self.aging

    def drain(self):
        self.drains += 1
        if self.drains == 1:
            return list(self.warmup)
        i = self.drains - 2
        return list(self.script[i]) if i < len(self.script) else []

    def dropped(self):
        return 3 * max(0, self.drains - 1)

    def resize(self, max_regions):
        self.resizes.append(max_regions)
        self.max_regions = max_regions

    def close(self):
        self.closed += 1


def make_factory(script, warmup=None, clock=None, aging=0.01, fail_at=None, on_age=None):
    """A fresh FakeCounts subclass (so class state does not leak between tests)."""
    return type("Counts", (FakeCounts,), {
        "script": script, "warmup": warmup or [], "clock": clock, "aging": aging,
        "instances": [], "fail_at": fail_at, "on_age": staticmethod(on_age) if on_age else None,
    })


def maps_line(start, end, perms="rw-p", offset=0, dev="00:00", inode=0, path=""):
    line = f"{start:x}-{end:x} {perms} {offset:08x} {dev} {inode}"
    return line + (" " * max(1, 73 - len(line)) + path if path else " ")


def make_proc(root: Path, pid: int, maps_text: str, comm="hotspot", rss_kb=262144,
              caps=FULL_CAPS, state="S") -> Path:
    """A fake /proc with /proc/PID/{stat,status,maps} and /proc/self/status."""
    d = root / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    (d / "stat").write_text(f"{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 4194560 0 0\n")
    (d / "status").write_text(f"Name:\t{comm}\nState:\t{state}\nVmRSS:\t  {rss_kb} kB\n")
    (d / "maps").write_text(maps_text)
    (root / "self").mkdir(exist_ok=True)
    (root / "self" / "status").write_text(f"Name:\tpython3\n{caps}")
    return root


def set_maps(root: Path, pid: int, maps_text: str) -> None:
    (root / str(pid) / "maps").write_text(maps_text)


def exit_target(root: Path, pid: int) -> None:
    for name in ("stat", "status", "maps"):
        os.unlink(root / str(pid) / name)
    (root / str(pid)).rmdir()


# A small synthetic target: binary (1 region), a 16 MiB heap at 0x10000000 (8 regions of
# 2 MiB), a 2 MiB anon mapping and a stack, all 2 MiB aligned so every region is exact.
SMALL_MAPS = "\n".join([
    maps_line(0x400000, 0x600000, "r-xp", 0, "08:01", 1234, "/usr/bin/hotspot"),
    maps_line(0x10000000, 0x11000000, "rw-p", 0, "00:00", 0, "[heap]"),
    maps_line(0x7f0000000000, 0x7f0000200000, "rw-p"),
    maps_line(0x7ffc00000000, 0x7ffc00200000, "rw-p", 0, "00:00", 0, "[stack]"),
    maps_line(0xffffffffff600000, 0xffffffffff601000, "--xp", 0, "00:00", 0, "[vsyscall]"),
]) + "\n"


def region(addr: int, shift: int = 21) -> int:
    return addr >> shift


def small_script():
    """Three intervals on SMALL_MAPS (2 MiB regions of 512 pages):
    1: heap region 0 fully young (anon), binary 10 pages (file)
    2: heap region 1 half young (anon), stack 1 page
    3: heap region 2 young on two nodes (mixed), anon 3/4 of its pages."""
    h = region(0x10000000)
    return [
        [(region(0x400000), 0, 0, 10), (h, 0, 512, 0)],
        [(h + 1, 0, 256, 0), (region(0x7ffc00000000), 0, 1, 0)],
        [(h + 2, 0, 200, 0), (h + 2, 1, 184, 0)],
    ]


def json_intervals(out: str) -> list[dict]:
    """--json's interval objects: every line but the last, the run's summary."""
    objs = [json.loads(line) for line in out.splitlines()]
    assert objs and objs[-1]["type"] == heatmap.SUMMARY_TYPE, objs[-1:]
    assert all("type" not in o for o in objs[:-1])
    return objs[:-1]


def json_summary(out: str) -> dict:
    """--json's last object: the run's summary."""
    obj = json.loads(out.splitlines()[-1])
    assert obj["type"] == heatmap.SUMMARY_TYPE
    return obj


def end_of_run(err: str) -> str:
    """A run's end-of-run line from its stderr, checking that what follows it is the
    never-found-young list and nothing else."""
    lines = err.splitlines()
    line, rest = lines[-1], []
    for i, text in enumerate(lines):
        if text.startswith("heatmap: never found young"):
            line, rest = lines[i - 1], lines[i + 1:]
            assert all(r.startswith("  0x") for r in rest), rest
            assert i + 1 + len(rest) == len(lines)
            break
    return line
