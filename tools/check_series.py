#!/usr/bin/env python3
"""Build every step of kernel/patches in several configurations, with W=1.

    python3 tools/check_series.py [--whole-series-only] [--keep]

For each configuration (the test kernel's, then the same with one option the series
depends on switched off) and each prefix of the series (none, patch 1, patches 1-2,
...), compile the C files the series touches and report:

  - a failure to compile (a patch that does not compile away with its options off),
  - a W=1 warning in those files that the unpatched tree does not have,
  - the text size of each object, against the unpatched tree.

Slow (it configures one tree per configuration and compiles each step in each: about
40 minutes on two cores): run it under `flock /work/coord/cpu.lock` when the series
changes, not in `make check`. --whole-series-only checks the unpatched tree and the whole
series, not every step between (about a quarter of the time). The kernel source is
Debian's linux-source-6.12; the copy it builds in is removed at the end unless --keep.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "kernel"))

import build_kernel as bk  # noqa: E402

#: name -> options switched off on top of kernel/config.fragment
CONFIGS = {
    "test-kernel": [],
    "no-bpf": ["BPF_SYSCALL"],
    "no-memcg": ["MEMCG"],
    "no-thp": ["TRANSPARENT_HUGEPAGE"],
    # (LRU_GEN_WALKS_MMU is def_bool y under LRU_GEN where the arch has hardware young
    # bits, as x86_64 always does: it cannot be off here, only with LRU_GEN, below)
    "no-lru-gen": ["LRU_GEN"],
    # what selects TRACEPOINTS in the fragment goes too
    # (x86_64 selects PERF_EVENTS itself; it does not select TRACEPOINTS)
    "no-tracepoints": ["TRACEPOINTS", "FTRACE", "BPF_EVENTS", "KPROBE_EVENTS", "KPROBES",
                       "DEBUG_INFO_BTF"],
}
WARNING = re.compile(r"^(\S+?):\d+:\d+: warning: (.*)$", re.M)


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def touched_sources(patches: list[Path]) -> list[str]:
    files = set()
    for p in patches:
        files |= set(re.findall(r"^\+\+\+ b/(\S+\.c)$", p.read_text(), re.M))
    return sorted(f for f in files if not f.startswith("tools/"))


def configure(tree: Path, out: Path, off: list[str]) -> str:
    """Configure out/ (tinyconfig + fragment - off); "" or what went wrong."""
    frag = out.parent / f"{out.name}.fragment"
    text = bk.FRAGMENT.read_text()
    for opt in off:
        text = re.sub(rf"^CONFIG_{opt}=.*$", "", text, flags=re.M)
        text += f"\n# CONFIG_{opt} is not set\n"
    frag.write_text(text)
    make = ["make", "-C", str(tree), f"O={out}", "ARCH=x86_64", "-s"]
    for step in (["tinyconfig"], None, ["olddefconfig"], ["prepare"]):
        if step is None:
            r = run([str(tree / "scripts/kconfig/merge_config.sh"), "-m", "-O", str(out),
                     str(out / ".config"), str(frag)], cwd=tree)
        else:
            r = run([*make, f"-j{os.cpu_count() or 1}", *step])
        if r.returncode:
            return (r.stdout + r.stderr)[-2000:]
    config = (out / ".config").read_text()
    still = [o for o in off if re.search(rf"^CONFIG_{o}=", config, re.M)]
    return f"could not switch off {still}" if still else ""


def compile_objects(tree: Path, out: Path, sources: list[str]) -> tuple[str, dict, dict]:
    """(error, {file: warnings}, {object: text size}) for the sources, with W=1."""
    objs = [s[:-2] + ".o" for s in sources]
    for o in objs:
        (out / o).unlink(missing_ok=True)
    r = run(["make", "-C", str(tree), f"O={out}", "ARCH=x86_64", "W=1",
             f"-j{os.cpu_count() or 1}", *objs])
    if r.returncode:
        return (r.stdout + r.stderr)[-3000:], {}, {}
    warnings: dict[str, set[str]] = {}
    for path, msg in WARNING.findall(r.stderr):
        rel = os.path.relpath(path, tree) if path.startswith("/") else path
        warnings.setdefault(rel, set()).add(msg)
    sizes = {}
    size = run(["size", *(str(out / o) for o in objs)])
    for line in size.stdout.splitlines()[1:]:
        f = line.split()
        sizes[os.path.relpath(f[-1], out)] = int(f[0])
    return "", warnings, sizes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", action="store_true", help="keep the build trees")
    ap.add_argument("--whole-series-only", action="store_true",
                    help="compile the unpatched tree and the whole series only")
    args = ap.parse_args()
    patches = bk.patches()
    sources = touched_sources(patches)
    work = Path(tempfile.mkdtemp(prefix="check-series-", dir=bk.cache_root()))
    failed = False
    try:
        tree = work / "linux"
        print(f"copying the pristine tree into {tree}", flush=True)
        shutil.copytree(bk.pristine_tree(), tree, symlinks=True)
        outs = {}
        for name, off in CONFIGS.items():
            out = work / f"out-{name}"
            out.mkdir()
            problem = configure(tree, out, off)
            if problem:
                print(f"{name}: cannot configure: {problem}")
                return 1
            outs[name] = out
        base_warn, base_size = {}, {}
        for step in range(len(patches) + 1):
            if step:
                p = patches[step - 1]
                r = run(["patch", "-p1", "--batch", "-s", "-d", str(tree), "-i", str(p)])
                if r.returncode:
                    print(f"{p.name} does not apply: {r.stdout}{r.stderr}")
                    return 1
            if args.whole_series_only and 0 < step < len(patches):
                continue
            label = f"patch {step:04d}" if step else "unpatched"
            for name, out in outs.items():
                err, warn, sizes = compile_objects(tree, out, sources)
                if err:
                    print(f"{label} {name}: does not compile:\n{err}")
                    failed = True
                    continue
                if not step:
                    base_warn[name], base_size[name] = warn, sizes
                new = {f: w - base_warn[name].get(f, set()) for f, w in warn.items()}
                new = {f: w for f, w in new.items() if w}
                delta = " ".join(f"{Path(o).name} {s - base_size[name][o]:+d}"
                                 for o, s in sizes.items())
                print(f"{label} {name:<15} {'new W=1 warnings: ' + str(new) if new else 'ok'}"
                      f"  text {delta}", flush=True)
                failed |= bool(new)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
