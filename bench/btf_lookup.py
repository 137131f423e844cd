"""Resolving the heatmap object's kernel references in vmlinux BTF, cold and warm,
against `bpftool btf dump file /sys/kernel/btf/vmlinux` in the same run.

    python3 bench/btf_lookup.py [RUNS]

The references are the heatmap's attach target and kfuncs (the series' tracepoint and
kfunc exist only in the patched kernel: on other kernels they are looked up and not
found, which costs the same or more) plus names every kernel has. Each measurement is a
fresh process of Debian's /usr/bin/python3: "cold" with an empty index cache (bpfload scans the type
section), "warm" with the index bpfload cached on disk. Reported per run: the lookups
inside the process (KernelBTF() to the last result) and the whole process's wall time.
Prints figures and ratios; asserts nothing.
"""

from __future__ import annotations

import json
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
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
VMLINUX = "/sys/kernel/btf/vmlinux"

FUNCS = ["__bpf_trace_lru_gen_young_tp", "do_nanosleep"]
KFUNCS = ["bpf_lru_gen_scan_task", "bpf_task_from_pid", "bpf_task_release"]
STRUCTS = ["task_struct"]

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from bpfload.btf import format as btf_format
from bpfload.btf.kernel import KernelBTF
t1 = time.perf_counter()
kb = KernelBTF()
found = {}
for name in FUNCS + KFUNCS:
    r = kb.func(name)
    found[name] = r[1] if r else None
for name in STRUCTS:
    r = kb.find(name, btf_format.KIND_STRUCT)
    found[name] = r[1] if r else None
    if r:  # what CO-RE does with it: decode the struct and one member's type
        t = r[0][r[1]]
        r[0][t.members[0].type]
t2 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "lookup_ms": (t2 - t1) * 1e3,
                  "found": found}))
"""


def _child(cache: str) -> tuple[float, dict]:
    code = (f"FUNCS={FUNCS!r}\nKFUNCS={KFUNCS!r}\nSTRUCTS={STRUCTS!r}\n" + CHILD)
    env = dict(os.environ, BPFLOAD_CACHE=cache, PYTHONPATH=str(REPO))
    # as installed: bytecode cached (the first run below writes it)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    t0 = time.perf_counter()
    r = subprocess.run([PYTHON, "-c", code], env=env, cwd=REPO, capture_output=True,
                       text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"lookup process failed:\n{r.stderr}")
    return wall * 1e3, json.loads(r.stdout)


def _bpftool_dump() -> float:
    t0 = time.perf_counter()
    r = subprocess.run(["bpftool", "btf", "dump", "file", VMLINUX], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    if r.returncode:
        raise SystemExit(f"bpftool btf dump failed: {r.stderr.decode().strip()}")
    return (time.perf_counter() - t0) * 1e3


def _python_startup() -> float:
    t0 = time.perf_counter()
    subprocess.run([PYTHON, "-c", "pass"], check=True)
    return (time.perf_counter() - t0) * 1e3


def main() -> None:
    runs = runs_arg(7)
    if not os.path.exists(VMLINUX):
        raise SystemExit("the kernel has no BTF (/sys/kernel/btf/vmlinux)")
    if not shutil.which("bpftool"):
        raise SystemExit("needs bpftool")
    cold_wall, cold_in, warm_wall, warm_in, dump, bare = [], [], [], [], [], []
    imports = []
    found = {}
    with tempfile.TemporaryDirectory(prefix="bpfload-bench-") as cache:
        _child(cache)  # compiles bpfload's bytecode, as an installed package has it
    for _ in range(runs):  # interleaved, so all see the same machine state
        with tempfile.TemporaryDirectory(prefix="bpfload-bench-") as cache:
            wall, res = _child(cache)  # empty cache: cold
            imports.append(res["import_ms"])
            cold_wall.append(wall)
            cold_in.append(res["lookup_ms"])
            found = res["found"]
            wall, res = _child(cache)  # the first run left the index: warm
            warm_wall.append(wall)
            warm_in.append(res["lookup_ms"])
        dump.append(_bpftool_dump())
        bare.append(_python_startup())
    med = statistics.median
    with open(VMLINUX, "rb") as f:  # sysfs reports no size
        size = len(f.read())
    print(f"vmlinux BTF: {size / 1e6:.1f} MB; python: {PYTHON}; {runs} runs, medians")
    print("lookups: " + ", ".join(f"{k}={'-' if v is None else v}" for k, v in found.items()))
    print(f"{'':34} {'lookups':>9} {'process':>9}")
    print(f"{'bpfload cold (no index cache)':34} {med(cold_in):8.1f}ms {med(cold_wall):8.1f}ms")
    print(f"{'bpfload warm (index cached)':34} {med(warm_in):8.1f}ms {med(warm_wall):8.1f}ms")
    print(f"{'bpftool btf dump file vmlinux':34} {'':>9} {med(dump):8.1f}ms")
    print(f"{'python3 -c pass (interpreter only)':34} {'':>9} {med(bare):8.1f}ms")
    print(f"importing bpfload.btf.kernel: {med(imports):.1f} ms")
    print(f"cold process / bpftool dump: {med(cold_wall) / med(dump):.2f}x "
          f"(target < 1); warm lookups: {med(warm_in):.1f} ms (target < 20 ms); "
          f"warm process / bpftool dump: {med(warm_wall) / med(dump):.2f}x")


if __name__ == "__main__":
    main()
