"""The reference loader of the differential tests: libbpf and bpftool built from the
tools/ directory of Debian's linux-source-6.12 tarball (libbpf 1.5, bpftool 7.5).

bpfload follows the libbpf of the kernel it targets; Debian 12's own libbpf1 is 1.1,
which refuses things 1.5 does (calls into .text.* sections, __weak kfuncs whose
prototype differs from the kernel's), so comparing against it would leave objects
untested. Building both takes under a minute and is cached by the tarball's content
hash and this file, like the test kernel.

    python3 tests/reference_libbpf.py      # build (or find) them and print the paths

The build keeps libbpf's installed headers (include/bpf/, bpf_helper_defs.h among them)
beside the two binaries: the selftest objects of tests/compat are compiled with them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import kernel_scripts
import kernel_source

REPO = Path(__file__).resolve().parent.parent

#: What of the tarball the two builds read (the rest of the tree is not needed).
MEMBERS = ["tools/lib", "tools/bpf", "tools/build", "tools/include", "tools/scripts",
           "tools/arch", "kernel/bpf/disasm.c", "kernel/bpf/disasm.h", "scripts/bpf_doc.py"]


class Unavailable(Exception):
    """The reference cannot be built here; the message says why."""


def _run(cmd: list[str], log: Path, cwd: Path | None = None) -> None:
    with open(log, "ab") as out:
        r = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if r.returncode:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise Unavailable(f"{' '.join(cmd)} failed (exit {r.returncode}):\n" + "\n".join(tail))


def build(source: Path | None = None) -> tuple[Path, Path]:
    """(bpftool, libbpf.so) for `source` (default Debian's linux-source-6.12 tarball);
    the directory holding them also has libbpf's headers in include/."""
    bk = kernel_scripts.build_kernel()
    source = source or bk.DEFAULT_SOURCE
    if not source.exists():
        raise Unavailable(f"{source} is not installed (apt-get install linux-source-6.12)")
    for tool in ("make", "cc", "clang", "tar"):
        if shutil.which(tool) is None:
            raise Unavailable(f"building the reference libbpf needs {tool}")
    key = hashlib.sha256((bk._tarball_hash(source) + "\0").encode()
                         + Path(__file__).read_bytes()).hexdigest()[:16]
    dest = bk.cache_root() / f"libbpf-{key}"
    bpftool, lib = dest / "bpftool", dest / "libbpf.so.1"
    if bpftool.exists() and lib.exists() and (dest / "include").is_dir():
        return bpftool, lib
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="libbpf-", dir=dest.parent))
    try:
        log = work / "build.log"
        top = kernel_source.top_dir(source)
        _run(["tar", "-xf", str(source), "-C", str(work), "--wildcards",
              *kernel_source.tar_patterns(top, MEMBERS)], log)
        tree = work / top
        jobs = f"-j{os.cpu_count() or 1}"
        out_tool, out_lib = work / "bpftool-build", work / "libbpf-build"
        out_tool.mkdir()
        out_lib.mkdir()
        _run(["make", "-C", "tools/bpf/bpftool", jobs, f"OUTPUT={out_tool}/"], log, tree)
        _run(["make", "-C", "tools/lib/bpf", jobs, f"OUTPUT={out_lib}/"], log, tree)
        final = work / "final"
        final.mkdir()
        _run(["make", "-C", "tools/lib/bpf", f"OUTPUT={out_lib}/", f"DESTDIR={final}",
              "prefix=", "install_headers"], log, tree)
        shutil.copy2(out_tool / "bpftool", final / "bpftool")
        shutil.copy2(out_lib / "libbpf.so.1", final / "libbpf.so.1", follow_symlinks=True)
        try:
            final.rename(dest)
        except OSError:  # another run finished first: use its build
            if not (bpftool.exists() and lib.exists() and (dest / "include").is_dir()):
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return bpftool, lib


if __name__ == "__main__":
    try:
        tool, lib = build()
    except Unavailable as e:
        sys.exit(f"reference_libbpf: {e}")
    print(tool)
    print(lib)
