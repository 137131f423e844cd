"""The user-space programs the uprobe and USDT tests attach to, built from the C
sources in tests/targets/ with gcc (rebuilt when the source changes), and the BPF
objects whose sections name them (tests/bpf/uprobes.bpf.c with -DPROBED=...)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import bpfc
from bpfc import BPF_SRC, BUILD, IN_GUEST, CompileError, compile_bpf

TARGETS = Path(__file__).resolve().parent / "targets"


def build_target(name: str) -> Path:
    """build/tests/targets/NAME from tests/targets/NAME.c."""
    src = TARGETS / f"{name}.c"
    out = BUILD / "targets" / name
    if out.exists() and (IN_GUEST or out.stat().st_mtime >= src.stat().st_mtime):
        return out
    if IN_GUEST:
        raise FileNotFoundError(f"{out} was not built on the host before the guest booted")
    return compile_program(name, out)


def compile_program(name: str, out: Path, *flags: str) -> Path:
    """tests/targets/NAME.c compiled with gcc (and extra flags) into out, if out is not
    newer than the source (also in the guest, into a directory it can write)."""
    src = TARGETS / f"{name}.c"
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise CompileError("gcc is not installed (make check installs it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    r = subprocess.run([cc, "-O2", "-Wall", "-Werror", *flags, "-o", str(tmp), str(src)],
                       capture_output=True, text=True)
    if r.returncode:
        raise CompileError(f"compiling {src.name} failed:\n{r.stderr}")
    tmp.replace(out)
    return out


class HotSym:
    """A running tests/targets/hotsym (sleeping 1 ms a pass, so it leaves the CPU to
    others): its process and the addresses it printed, {symbol: address}."""

    def __init__(self, binary: Path):
        self.proc = subprocess.Popen([str(binary), "slow"], stdout=subprocess.PIPE,
                                     text=True)
        self.pid = self.proc.pid
        self.where: dict[str, int] = {}
        for line in self.proc.stdout:
            if line.strip() == "ready":
                break
            name, addr = line.split()
            self.where[name] = int(addr, 16)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def named_uprobes_object(binary: Path) -> Path:
    """tests/bpf/uprobes.bpf.c with `binary` named in its sections."""
    bpfc.build_object("uprobes")  # and vmlinux.h with it
    return compile_bpf(BPF_SRC / "uprobes.bpf.c", BUILD / "named-uprobes",
                       [f'-DPROBED="{binary}"', f"-I{BUILD}"])


class Probed:
    """A running tests/targets/probed: run(n) makes it call probed_add and fire the
    tick probe n times, and returns how often the probe's semaphore was set."""

    def __init__(self, path: Path):
        self.proc = subprocess.Popen([str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid

    def run(self, n: int) -> int:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()

    def __enter__(self) -> Probed:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
