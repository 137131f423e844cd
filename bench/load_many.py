"""Kernel bring-up over many objects: `python -m bpfload load A.o B.o ...` over Linux
6.12's BPF selftest corpus (tests/compat/corpus.py builds it, ~2 min once) in one
process, against one `bpftool prog loadall OBJ DIR` per object (the reference bpftool
7.5 with libbpf 1.5, and Debian's bpftool 7.1) in the same run. Both load every object
whole; both pay the verifier for the objects that fail. Prints wall times, how many
objects each loaded and the ratio.

bpfload is timed three ways: new (objects it has not seen, on a machine it has run on:
its kernel BTF index is cached, each object is parsed with pyelftools), warm (the
parsed objects come from its cache too: a CI job re-testing the same objects) and cold
(BPFLOAD_CACHE=off: no cache at all).

    python3 bench/load_many.py [OBJECTS]    # the first OBJECTS of the corpus (default all)

Needs root, bpffs at /sys/fs/bpf. Run with Debian's /usr/bin/python3, byte-compiled.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runs_arg import runs_arg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "compat"))
import corpus  # noqa: E402
import reference_libbpf  # noqa: E402

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
BPFFS = "/sys/fs/bpf"
PIN = f"{BPFFS}/bench_load_many"
#: where bpfload pins LIBBPF_PIN_BY_NAME maps (bpftool puts them in BPFFS itself)
PIN_ROOT = f"{BPFFS}/bench_load_many_pins"


def _remove_new_pins(before: set[str]) -> None:
    """Unpin what a run left in BPFFS (maps pinned by name): the bench leaves nothing."""
    for name in set(os.listdir(BPFFS)) - before:
        path = os.path.join(BPFFS, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)


def _bpftool_each(bpftool: str, objects: list[Path]) -> tuple[float, int]:
    """Total wall time of one loadall process per object, and how many loaded."""
    total, ok = 0.0, 0
    before = set(os.listdir(BPFFS))
    for obj in objects:
        t0 = time.perf_counter()
        r = subprocess.run([bpftool, "prog", "loadall", str(obj), PIN],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        total += time.perf_counter() - t0
        ok += r.returncode == 0
        _remove_new_pins(before)
    return total, ok


def _bpfload_all(objects: list[Path], env: dict) -> tuple[float, int]:
    before = set(os.listdir(BPFFS))
    os.makedirs(PIN_ROOT, exist_ok=True)
    t0 = time.perf_counter()
    r = subprocess.run([PYTHON, "-m", "bpfload", "load", "--pin-root", PIN_ROOT,
                        *map(str, objects)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    dt = time.perf_counter() - t0
    _remove_new_pins(before - {os.path.basename(PIN_ROOT)})
    ok = sum(line.startswith("ok ") for line in r.stdout.splitlines())
    if not r.stdout.rstrip().splitlines()[-1].startswith("loaded "):
        raise SystemExit(f"bpfload did not finish: {r.stdout[-500:]}")
    return dt, ok


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("needs root")
    built = corpus.find() or corpus.build(progress=print)
    objects = [built.objects / n for n in built.names()]
    objects = objects[:runs_arg(len(objects), "OBJECTS")]
    ref_bpftool, _ = reference_libbpf.build()
    subprocess.run([PYTHON, "-m", "compileall", "-q", "bpfload"], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    cache = tempfile.mkdtemp(prefix="bench-load-many-")
    try:
        fresh = dict(os.environ, BPFLOAD_CACHE=cache)
        _bpfload_all(objects[:2], fresh)  # the kernel BTF index, as on any used machine
        shutil.rmtree(os.path.join(cache, "objects"), ignore_errors=True)
        new, ok_new = _bpfload_all(objects, fresh)
        warm, ok_warm = _bpfload_all(objects, fresh)
        cold, ok_cold = _bpfload_all(objects, dict(os.environ, BPFLOAD_CACHE="off"))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    ref, ok_ref = _bpftool_each(str(ref_bpftool), objects)
    deb, ok_deb = (_bpftool_each("bpftool", objects) if shutil.which("bpftool")
                   else (float("nan"), 0))
    print(f"{len(objects)} objects of the selftest corpus; python {PYTHON}")
    rows = [("bpfload, one process, new", new, ok_new),
            ("bpfload, one process, warm", warm, ok_warm),
            ("bpfload, one process, cold", cold, ok_cold),
            ("bpftool 7.5 (libbpf 1.5), one per object", ref, ok_ref),
            ("bpftool 7.1 (libbpf 1.1), one per object", deb, ok_deb)]
    for name, t, ok in rows:
        print(f"{name:<42} {t:7.1f} s  {ok:4d} loaded  {t / ref:5.2f}x bpftool 7.5")


if __name__ == "__main__":
    main()
