"""Compiling the tests' small BPF C programs with the documented toolchain (Debian's
clang and libbpf-dev headers). Objects land in build/ and are rebuilt when their source
(or a header next to it) changes, so the guest, which sees the checkout read-only, finds
them already built by the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BPF_SRC = REPO / "tests" / "bpf"
BUILD = REPO / "build" / "tests"
IN_GUEST = os.environ.get("HEATMAP_IN_GUEST") == "1"
#: the project's BPF compiler flags (a clang response file the Makefile reads too)
CFLAGS_FILE = REPO / "kernel" / "bpf.cflags"


class CompileError(Exception):
    pass


def clang() -> str | None:
    return shutil.which("clang")


def compile_bpf(src: Path, out_dir: Path, extra: list[str] | None = None) -> Path:
    """Compile `src` into out_dir/<name>.o unless an up-to-date object is there."""
    out = out_dir / (src.name[:-2] + ".o")
    deps = [src, CFLAGS_FILE, *src.parent.glob("*.h")]
    if out.exists() and out.stat().st_mtime >= max(d.stat().st_mtime for d in deps):
        return out
    cc = clang()
    if cc is None:
        raise CompileError("clang is not installed (apt install clang llvm libbpf-dev)")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".o.tmp")
    cmd = [cc, f"@{CFLAGS_FILE}", *(extra or []), f"-I{src.parent}", f"-I{out_dir}", "-c", str(src),
           "-o", str(tmp)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise CompileError(f"compiling {src.name} failed:\n{r.stderr}")
    tmp.replace(out)
    return out


def _vmlinux_h() -> None:
    """build/tests/vmlinux.h from the running kernel's BTF, for CO-RE test programs."""
    out = BUILD / "vmlinux.h"
    if out.exists() or IN_GUEST:
        return
    BUILD.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux",
                        "format", "c"], capture_output=True, text=True)
    if r.returncode:
        raise CompileError(f"bpftool btf dump failed: {r.stderr.strip()}")
    out.with_suffix(".tmp").write_text(r.stdout)
    out.with_suffix(".tmp").replace(out)


def build_object(name: str) -> Path:
    """Path of tests/bpf/<name>.bpf.c compiled (compiling on the host if needed)."""
    src = BPF_SRC / f"{name}.bpf.c"
    out = BUILD / f"{name}.bpf.o"
    if IN_GUEST:  # the checkout is read-only in the guest: the host built it
        if not out.exists():
            raise FileNotFoundError(f"{out} was not built on the host before the guest "
                                    f"booted")
        return out
    if "vmlinux.h" in src.read_text():
        _vmlinux_h()
    return compile_bpf(src, BUILD)
