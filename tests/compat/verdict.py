"""Judging compare.py's results against the checked-in known differences
(known_differences.txt), the same way on the host and in the guest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KNOWN = HERE / "known_differences.txt"
OK = "ok"
LOADERS = ("libbpf", "bpfload")


class Known:
    def __init__(self, what: str, where: str, loads: str, says: str, why: str, line: int,
                 file: str):
        self.object, _, self.program = what.partition(":")
        self.where, self.loads, self.says, self.why = where, loads, says, why
        self.line, self.file = line, file
        self.used = False

    def covers(self, obj: str, program: str, where: str) -> bool:
        return (self.object == obj and self.program in ("", program)
                and self.where in ("any", where))


def read_known(path: Path = KNOWN) -> list[Known]:
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(" | ")]
        if len(fields) != 5 or fields[1] not in ("host", "guest", "any") \
                or fields[2] not in LOADERS or not all(fields):
            raise ValueError(f"{path.name}:{n}: not 'what | where | loads | says | why'")
        out.append(Known(*fields, n, path.name))
    return out


def run(libbpf: str, objects: list[Path], out: Path, timeout: float) -> dict:
    """compare.py in a process of its own over `objects`; its results."""
    r = subprocess.run([sys.executable, str(HERE / "compare.py"), libbpf, str(out),
                        *map(str, objects)], capture_output=True, text=True,
                       timeout=timeout, env=dict(os.environ, BPFLOAD_CACHE="off"))
    if r.returncode or not out.exists():
        raise AssertionError(f"compare.py failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(out.read_text())


def judge(results: dict, where: str, known: list[Known]) -> tuple[list[str], list[str]]:
    """(differences no entry explains, entries that explain nothing here)."""
    unexplained = []
    for obj, res in sorted(results.items()):
        cases = [("", res["libbpf"], res["bpfload"])]
        cases += [(p, a, b) for p, (a, b) in sorted(res["programs"].items())]
        for program, theirs, ours in cases:
            if (theirs == OK) == (ours == OK):
                continue
            loads = "bpfload" if ours == OK else "libbpf"
            refused = theirs if ours == OK else ours
            what = f"{obj}:{program}" if program else obj
            entry = next((k for k in known if k.covers(obj, program, where)), None)
            if entry is None or entry.loads != loads or entry.says not in refused:
                unexplained.append(f"{what}: only {loads} loads it; the other says: {refused}")
            else:
                entry.used = True
    stale = [f"{k.file}:{k.line}: {k.object}{':' + k.program if k.program else ''} "
             f"no longer differs here" for k in known
             if k.where in ("any", where) and not k.used and k.object in results]
    return unexplained, stale


def guest_objects(corpus) -> list[str]:
    """The objects the guest must judge: those with a program of a kind the host kernel
    refuses before verifying it (fentry, fexit, fmod_ret, lsm)."""
    from bpfload import elf_reader
    from bpfload.errors import BPFLoadError
    from bpfload.sys.constants import AttachType, ProgType

    guest_only = {AttachType.TRACE_FENTRY, AttachType.TRACE_FEXIT, AttachType.MODIFY_RETURN,
                  AttachType.LSM_MAC, AttachType.LSM_CGROUP}
    out = []
    for name in corpus.names():
        try:
            progs = elf_reader.read(corpus.objects / name).programs.values()
        except BPFLoadError:
            continue
        if any(p.prog_type in (ProgType.TRACING, ProgType.LSM) and p.attach_type in
               guest_only for p in progs):
            out.append(name)
    return out


def summary(results: dict) -> str:
    objs = len(results)
    whole = {name: sum(r[name] == OK for r in results.values()) for name in LOADERS}
    progs = [ab for r in results.values() for ab in r["programs"].values()]
    alone = [sum(ab[i] == OK for ab in progs) for i in (0, 1)]
    return (f"{objs} objects: libbpf loads {whole['libbpf']}, bpfload {whole['bpfload']}; "
            f"of the {len(progs)} programs of objects neither loads whole, loaded alone: "
            f"libbpf {alone[0]}, bpfload {alone[1]}")
