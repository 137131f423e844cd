"""Parts of Debian's linux-source-6.12 tarball, unpacked once and cached.

Unpacking a member means decompressing the 150 MB tarball up to it (15-30 s), so the
tests that read kernel sources (libbpf's SEC() table, the BPF selftests) share one
unpacked copy per set of members, keyed by the tarball's content hash.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import kernel_scripts


class Unavailable(Exception):
    """The kernel source is not here; the message says why."""


def tarball() -> Path:
    bk = kernel_scripts.build_kernel()
    source = bk.DEFAULT_SOURCE
    if not source.exists():
        raise Unavailable(f"{source} is not installed (apt-get install linux-source-6.12)")
    return source


def top_dir(source: Path) -> str:
    """The tarball's top directory (linux-source-6.12): the first name it lists."""
    with subprocess.Popen(["tar", "-tf", str(source)], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as tar:
        first = tar.stdout.readline().strip()
        tar.kill()
    if not first:
        raise Unavailable(f"{source} is empty or not a tarball")
    return first.split("/", 1)[0]


def tar_patterns(top: str, members: list[str]) -> list[str]:
    """tar --wildcards patterns for members: files as they are, directories whole."""
    return [f"{top}/{m}" + ("/*" if "." not in Path(m).name else "") for m in members]


def unpacked(members: list[str]) -> Path:
    """The root of a tree holding `members` (paths relative to the kernel tree)."""
    bk = kernel_scripts.build_kernel()
    source = tarball()
    key = hashlib.sha256("\0".join([bk._tarball_hash(source), *members]).encode())
    dest = bk.cache_root() / f"source-{key.hexdigest()[:16]}"
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="source-", dir=dest.parent))
    try:
        top = top_dir(source)
        r = subprocess.run(["tar", "-xf", str(source), "-C", str(work), "--wildcards",
                            *tar_patterns(top, members)], capture_output=True, text=True)
        if r.returncode:
            raise Unavailable(f"unpacking {', '.join(members)} from {source} failed: "
                              f"{r.stderr.strip()[-300:]}")
        try:
            (work / top).rename(dest)
        except OSError:  # another run unpacked it first
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest
