"""Load time: `python -m bpfload load OBJ` against `bpftool prog loadall OBJ` (libbpf),
whole processes, both cold-started, repeated; prints medians and the ratio. `attach` is
the tp_btf object (a raw_tp, a tp_btf and a tracepoint program, .bss and .rodata); the
last lines are the floor: what `python -m` and the stdlib modules any ctypes loader
needs cost before any work, and the same bpf(2) calls made by a script with no loader
logic (bench/bpf_replay.py), in the same ratio.

    python3 bench/load_time.py [RUNS]

Needs root, bpftool and bpffs. Uses Debian's /usr/bin/python3 (a real interpreter,
not a pyenv shim) with apt's pyelftools, as on a minimal system.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runs_arg import runs_arg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
import bpfc  # noqa: E402

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
PIN = "/sys/fs/bpf/bench_load_time"
# objects libbpf also accepts (it refuses calls into .text.* sections, which
# relocs.bpf.c has, and the deliberately rejected program of globals.bpf.c)
OBJECTS = ["attach", "globals"]


def _time(cmd: list[str], after=None, env=None, cwd=REPO) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       env=env)
    dt = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr.decode().strip()}")
    if after:
        after()
    return dt


def _unpin() -> None:
    shutil.rmtree(PIN, ignore_errors=True)


def main() -> None:
    runs = runs_arg(15)
    if os.geteuid() != 0 or not shutil.which("bpftool"):
        raise SystemExit("needs root and bpftool")
    # byte-compile first, as an installed package is: with PYTHONDONTWRITEBYTECODE set
    # every run would compile the modules again and we would time the compiler
    subprocess.run([PYTHON, "-m", "compileall", "-q", "bpfload"], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    print(f"python: {PYTHON}; {runs} runs each, median wall time")
    print("bpfload cold: BPFLOAD_CACHE=off (no cache at all: parses the ELF with pyelftools")
    print("  and scans vmlinux BTF);  new: an object bpfload has not seen, on a machine it")
    print("  has run on (the kernel BTF index is cached, the object is parsed);  warm: the")
    print("  parsed object comes from bpfload's cache too")
    print(f"{'object':<10} {'cold':>9} {'new':>9} {'warm':>9} {'bpftool':>9} {'cold/bt':>8} "
          f"{'new/bt':>8} {'warm/bt':>8}")
    nocache = dict(os.environ, BPFLOAD_CACHE="off")
    fresh_dir = tempfile.mkdtemp(prefix="bench-load-time-")
    fresh = dict(os.environ, BPFLOAD_CACHE=fresh_dir)

    def forget_objects() -> None:
        shutil.rmtree(os.path.join(fresh_dir, "objects"), ignore_errors=True)

    for name in OBJECTS:
        obj = bpfc.compile_bpf(REPO / "tests" / "bpf" / f"{name}.bpf.c", REPO / "build" / "bench")
        progs = []
        if name == "globals":  # write_rodata is rejected on purpose; load the other one
            progs = ["--program", "run_globals"]
        cold, new, warm, theirs = [], [], [], []
        cmd = [PYTHON, "-m", "bpfload", "load", str(obj), *progs]
        _time(cmd, forget_objects, env=fresh)  # builds the kernel BTF index there
        for _ in range(runs):  # interleave so all see the same machine state
            cold.append(_time(cmd, env=nocache))
            new.append(_time(cmd, forget_objects, env=fresh))
            warm.append(_time(cmd))
            if name == "globals":
                continue
            theirs.append(_time(["bpftool", "prog", "loadall", str(obj), PIN], _unpin))
        c, n, w = statistics.median(cold), statistics.median(new), statistics.median(warm)
        if theirs:
            t = statistics.median(theirs)
            print(f"{name:<10} {c * 1e3:>7.1f}ms {n * 1e3:>7.1f}ms {w * 1e3:>7.1f}ms "
                  f"{t * 1e3:>7.1f}ms {c / t:>7.2f}x {n / t:>7.2f}x {w / t:>7.2f}x")
            # the fastest runs: what the machine's load (shared cores) added least to
            print(f"{'':<10} fastest: warm {min(warm) * 1e3:.1f}ms, bpftool "
                  f"{min(theirs) * 1e3:.1f}ms ({min(warm) / min(theirs):.2f}x)")
        else:
            print(f"{name:<10} {c * 1e3:>7.1f}ms {n * 1e3:>7.1f}ms {w * 1e3:>7.1f}ms   "
                  f"(bpftool refuses write_rodata)")
    shutil.rmtree(fresh_dir, ignore_errors=True)
    _floor(runs)


#: What a warm `load` imports from the stdlib (ctypes for the system calls, the rest for
#: the cache): with `python -m` (how bpfload is run) this, plus runpy's own imports, is
#: the floor under a load, before bpfload's own modules and work.
FLOOR_MODULES = "ctypes, struct, zlib, fcntl, errno, _pickle"


def _floor(runs: int) -> None:
    """The same interpreter running, with -m, an empty module, one that only imports
    ctypes (what any loader in Python needs for bpf(2)), one that imports FLOOR_MODULES,
    and bpf_replay (the bpf(2) calls of bpfload's load of the tp_btf object, replayed with
    no loader logic), against bpftool on that object in the same runs."""
    where = tempfile.mkdtemp(prefix="bench-load-floor-")
    try:
        Path(where, "bench_empty.py").write_text("")
        Path(where, "bench_ctypes.py").write_text("import ctypes\n")
        Path(where, "bench_floor.py").write_text(f"import {FLOOR_MODULES}\n")
        shutil.copy(Path(__file__).with_name("bpf_replay.py"), where)
        subprocess.run([PYTHON, "-m", "compileall", "-q", where], check=True,
                       stdout=subprocess.DEVNULL)
        obj = REPO / "build" / "bench" / "attach.bpf.o"
        plan = os.path.join(where, "attach.plan")
        sys.path.insert(0, str(REPO))
        from bpf_replay import capture

        capture(str(obj), plan)
        empty, only_ctypes, floor, replayed, theirs = [], [], [], [], []
        for _ in range(runs):
            empty.append(_time([PYTHON, "-m", "bench_empty"], cwd=where))
            only_ctypes.append(_time([PYTHON, "-m", "bench_ctypes"], cwd=where))
            floor.append(_time([PYTHON, "-m", "bench_floor"], cwd=where))
            replayed.append(_time([PYTHON, "-m", "bpf_replay", plan], cwd=where))
            theirs.append(_time(["bpftool", "prog", "loadall", str(obj), PIN], _unpin))
    finally:
        shutil.rmtree(where, ignore_errors=True)
    e, c, f, r, t = (statistics.median(x) for x in (empty, only_ctypes, floor, replayed,
                                                     theirs))
    print(f"floor: `python -m` of an empty module {e * 1e3:.1f}ms ({e / t:.2f}x bpftool); "
          f"of one importing ctypes {c * 1e3:.1f}ms ({c / t:.2f}x); {FLOOR_MODULES} "
          f"{f * 1e3:.1f}ms ({f / t:.2f}x); bpftool {t * 1e3:.1f}ms")
    print(f"floor: attach's bpf(2) calls replayed by bpf_replay (ctypes only, no loader "
          f"logic) {r * 1e3:.1f}ms ({r / t:.2f}x); fastest {min(replayed) * 1e3:.1f}ms vs "
          f"bpftool {min(theirs) * 1e3:.1f}ms ({min(replayed) / min(theirs):.2f}x)")


if __name__ == "__main__":
    main()
