"""Peak resident memory of `python -m bpfload load` on an object that needs the
kernel's BTF, against bpftool's for `prog loadall` of the same object.

    python3 bench/load_rss.py [RUNS]

The object is tests/bpf/core_kernel.bpf.c: syscall programs with CO-RE relocations
against task_struct, kfunc calls (bpf_task_from_pid/bpf_task_release) and a global
subprogram, so both loaders read vmlinux BTF, match CO-RE candidates and resolve
kfuncs. (An fentry target is left out because this host's kernel refuses
fentry programs; resolving one is a lookup like the kfunc's.) Peak RSS is
/usr/bin/time -v's "Maximum resident set size"; bpfload runs under Debian's
/usr/bin/python3 with an empty (cold) and a filled (warm) BTF index cache. Prints
figures and ratios; asserts nothing. Needs root, bpftool, bpffs and clang.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from runs_arg import runs_arg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
import bpfc  # noqa: E402

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
PIN = "/sys/fs/bpf/bench_load_rss"
BUILD = REPO / "build" / "bench"
TARGET_MIB = 64


def _object() -> Path:
    BUILD.mkdir(parents=True, exist_ok=True)
    header = BUILD / "vmlinux.h"
    if not header.exists():
        r = subprocess.run(["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux",
                            "format", "c"], capture_output=True, text=True, check=True)
        header.write_text(r.stdout)
    return bpfc.compile_bpf(REPO / "tests" / "bpf" / "core_kernel.bpf.c", BUILD)


def _peak_kib(cmd: list[str], env: dict | None = None) -> int:
    r = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=REPO, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
    return int(m.group(1))


def main() -> None:
    runs = runs_arg(5)
    if os.geteuid() != 0 or not shutil.which("bpftool") or not os.path.exists("/usr/bin/time"):
        raise SystemExit("needs root, bpftool and /usr/bin/time")
    obj = str(_object())
    load = [PYTHON, "-m", "bpfload", "load", obj]
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode cached
    cold, warm, tool, bare = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bpfload-rss-") as cache:
        subprocess.run(load, cwd=REPO, env=dict(env, BPFLOAD_CACHE=cache), check=True,
                       stdout=subprocess.DEVNULL)  # writes the bytecode
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bpfload-rss-") as cache:
            run_env = dict(env, BPFLOAD_CACHE=cache)
            cold.append(_peak_kib(load, run_env))
            warm.append(_peak_kib(load, run_env))
        shutil.rmtree(PIN, ignore_errors=True)
        try:
            tool.append(_peak_kib(["bpftool", "prog", "loadall", obj, PIN]))
        finally:
            shutil.rmtree(PIN, ignore_errors=True)
        bare.append(_peak_kib([PYTHON, "-c", "pass"], env))
    med = statistics.median
    mib = lambda kib: kib / 1024  # noqa: E731
    print(f"object: {os.path.relpath(obj, REPO)} (CO-RE + kfuncs + global subprogram); "
          f"{runs} runs, median peak RSS")
    print(f"{'python -m bpfload load (cold cache)':40} {mib(med(cold)):6.1f} MiB")
    print(f"{'python -m bpfload load (warm cache)':40} {mib(med(warm)):6.1f} MiB")
    print(f"{'bpftool prog loadall':40} {mib(med(tool)):6.1f} MiB")
    print(f"{'python3 -c pass (interpreter only)':40} {mib(med(bare)):6.1f} MiB")
    print(f"bpfload / bpftool: {med(cold) / med(tool):.2f}x cold, {med(warm) / med(tool):.2f}x "
          f"warm; target < {TARGET_MIB} MiB: cold {mib(med(cold)):.1f} MiB, "
          f"warm {mib(med(warm)):.1f} MiB")


if __name__ == "__main__":
    main()
