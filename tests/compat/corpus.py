"""The BPF selftests of Linux 6.12 (tools/testing/selftests/bpf/progs in the
linux-source-6.12 tarball), compiled the way their Makefile compiles them, once: the
objects are cached by the tarball, the compiler, the kernel BTF vmlinux.h comes from
and this file.

    python3 tests/compat/corpus.py        # build (or find) them; print where they are

The flags are the Makefile's (BPF_CFLAGS, CLANG_CFLAGS, -DENABLE_ATOMICS_TESTS, -O2
--target=bpf -mcpu=v3, its per-file extras), with libbpf's headers from the reference
build and vmlinux.h dumped by its bpftool from this machine's kernel BTF, as the
selftests dump theirs from the kernel they test. One addition, -DBPF_NO_KFUNC_PROTOTYPES:
bpftool writes the kernel's kfunc prototypes into vmlinux.h, and this kernel's (6.18)
differ from the ones 6.12's selftests declare, which would stop 60 of them compiling.
Files clang 14 cannot compile are listed in the manifest, not fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kernel_scripts  # noqa: E402
import kernel_source  # noqa: E402
import reference_libbpf  # noqa: E402

SELFTESTS = "tools/testing/selftests/bpf"
MEMBERS = [SELFTESTS, "tools/include"]
VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
EXTRA_CFLAGS = ["-DBPF_NO_KFUNC_PROTOTYPES="]  # (empty, as the files that define it do)


class Unavailable(Exception):
    """The corpus cannot be built here; the message says why."""


class Corpus:
    """A built corpus: objects/NAME.bpf.o, and why the other sources did not compile."""

    def __init__(self, root: Path):
        self.root = root
        self.objects = root / "objects"
        manifest = json.loads((root / "manifest.json").read_text())
        self.failed: dict[str, str] = manifest["failed"]
        self.sources: int = manifest["sources"]
        self.seconds: float = manifest["seconds"]

    def names(self) -> list[str]:
        return sorted(p.name for p in self.objects.glob("*.bpf.o"))


#: Set for the guest by the host that built the corpus: the guest's kernel BTF is not
#: the one the corpus was compiled against, so it cannot work out the cache key.
ENV = "HEATMAP_SELFTESTS"


def find() -> Corpus | None:
    """The corpus this machine would build, if it is built (the guest only looks)."""
    given = os.environ.get(ENV)
    if given:
        return Corpus(Path(given)) if (Path(given) / "manifest.json").exists() else None
    try:
        dest = _destination(_key_inputs())
    except Unavailable:
        return None
    return Corpus(dest) if (dest / "manifest.json").exists() else None


def build(progress=None) -> Corpus:
    """Build the corpus unless it is cached; returns it."""
    say = progress or (lambda msg: None)
    inputs = _key_inputs()
    dest = _destination(inputs)
    if (dest / "manifest.json").exists():
        return Corpus(dest)
    tree = kernel_source.unpacked(MEMBERS)
    bpftool, _ = reference_libbpf.build()
    include = bpftool.parent / "include"
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="selftests-", dir=dest.parent))
    try:
        objects = work / "objects"
        objects.mkdir()
        vmlinux_h = work / "include" / "vmlinux.h"
        vmlinux_h.parent.mkdir()
        with open(vmlinux_h, "w") as out:
            r = subprocess.run([str(bpftool), "btf", "dump", "file", VMLINUX_BTF, "format",
                                "c"], stdout=out, stderr=subprocess.PIPE, text=True)
        if r.returncode:
            raise Unavailable(f"bpftool btf dump failed: {r.stderr.strip()}")
        flags = _cflags(tree, include, vmlinux_h.parent)
        per_file = _per_file_cflags(tree / SELFTESTS / "Makefile")
        sources = sorted((tree / SELFTESTS / "progs").glob("*.c"))
        say(f"compiling {len(sources)} BPF selftest programs of Linux 6.12 (cached "
            f"afterwards)")
        import time

        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            errors = dict(pool.map(lambda src: _compile(src, objects, flags, per_file),
                                   sources))
        manifest = {"sources": len(sources), "seconds": round(time.monotonic() - start, 1),
                    "failed": {name: err for name, err in sorted(errors.items()) if err},
                    "inputs": inputs}
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            work.rename(dest)
        except OSError:  # another run finished first
            if not (dest / "manifest.json").exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Corpus(dest)


def _key_inputs() -> dict[str, str]:
    bk = kernel_scripts.build_kernel()
    try:
        source = kernel_source.tarball()
    except kernel_source.Unavailable as e:
        raise Unavailable(str(e)) from None
    clang = shutil.which("clang")
    if clang is None:
        raise Unavailable("clang is not installed")
    version = subprocess.run([clang, "--version"], capture_output=True, text=True).stdout
    try:
        with open(VMLINUX_BTF, "rb") as f:
            btf = hashlib.sha256(f.read()).hexdigest()
    except OSError as e:
        raise Unavailable(f"cannot read {VMLINUX_BTF}: {e.strerror}") from None
    return {"tarball": bk._tarball_hash(source), "clang": version.splitlines()[0],
            "vmlinux_btf": btf, "corpus.py": hashlib.sha256(
                Path(__file__).read_bytes()).hexdigest(),
            "reference": hashlib.sha256(
                Path(reference_libbpf.__file__).read_bytes()).hexdigest()}


def _destination(inputs: dict[str, str]) -> Path:
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    return kernel_scripts.build_kernel().cache_root() / f"selftests-{key}"


def _cflags(tree: Path, include: Path, vmlinux_dir: Path) -> list[str]:
    """BPF_CFLAGS and CLANG_CFLAGS of the selftests' Makefile, made concrete here."""
    r = subprocess.run(["clang", "-v", "-E", "-"], input="", capture_output=True, text=True)
    search = r.stderr.split("<...> search starts here:", 1)[-1].split("End of search list.")[0]
    sys_includes = [f"-idirafter{d.strip()}" for d in search.splitlines() if d.strip()]
    return ["-g", "-Wall", "-Werror", "-D__TARGET_ARCH_x86", "-mlittle-endian",
            f"-I{vmlinux_dir}", f"-I{include}", f"-I{tree / SELFTESTS}",
            f"-I{tree / 'tools/include/uapi'}", "-Wno-compare-distinct-pointer-types",
            *sys_includes, "-DENABLE_ATOMICS_TESTS", *EXTRA_CFLAGS,
            "-O2", "--target=bpf", "-mcpu=v3"]


def _per_file_cflags(makefile: Path) -> dict[str, list[str]]:
    """`progs/NAME.c-CFLAGS := ...` and `$(OUTPUT)/NAME.o: BPF_CFLAGS += ...` lines."""
    out: dict[str, list[str]] = {}
    for line in makefile.read_text().splitlines():
        m = re.match(r"progs/([\w-]+)\.c-CFLAGS\s*:?=\s*(.*)$", line)
        if m is None:
            m = re.match(r"\$\(OUTPUT\)/([\w-]+)\.o:\s*BPF_CFLAGS\s*\+=\s*(.*)$", line)
        if m:
            out.setdefault(m.group(1), []).extend(m.group(2).split())
    return out


def _compile(src: Path, objects: Path, flags: list[str],
             per_file: dict[str, list[str]]) -> tuple[str, str]:
    name = src.name[:-2]
    out = objects / f"{name}.bpf.o"
    r = subprocess.run(["clang", *flags, *per_file.get(name, []), "-c", str(src), "-o",
                        str(out)], capture_output=True, text=True)
    if r.returncode:
        out.unlink(missing_ok=True)
        first = next((ln for ln in r.stderr.splitlines() if "error:" in ln), r.stderr[:200])
        return name, first.split("error:", 1)[-1].strip()
    return name, ""


if __name__ == "__main__":
    try:
        corpus = build(progress=lambda msg: print(msg, file=sys.stderr))
    except (Unavailable, kernel_source.Unavailable, reference_libbpf.Unavailable) as e:
        sys.exit(f"corpus: {e}")
    print(f"{corpus.objects}: {len(corpus.names())} objects of {corpus.sources} sources "
          f"({len(corpus.failed)} did not compile; built in {corpus.seconds}s)")
