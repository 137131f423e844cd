"""The kernel series' own BPF selftest, built on the host and run in the guest.

kernel/patches adds prog_tests/lru_gen_young.c and progs/lru_gen_young.c to the kernel's
tools/testing/selftests/bpf. Their home is test_progs, which does not build here:
Debian 12's clang 14 cannot compile all of the 6.12 selftests' BPF programs. So the test
is built the way test_progs builds it (vmlinux.h from the test kernel's BTF, the BPF
program with clang, its skeleton with bpftool, the test against the tree's
test_progs.h) and linked with selftest/test_progs_lite.c, the smallest driver providing
what test_progs.h declares. test_kernel_selftest.py runs the result in the guest.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import kernel_scripts

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NAME = "lru_gen_young"
SELFTESTS = "tools/testing/selftests/bpf"
#: What the test's includes need from the kernel tree besides tools/include.
HEADERS = ("test_progs.h", "bpf_util.h", "trace_helpers.h", "testing_helpers.h",
           "test_iptunnel_common.h")
DRIVER = HERE / "selftest" / "test_progs_lite.c"
#: Where the host builds it for the guest (which sees the checkout read-only).
BUILD = REPO / "build" / "guest-selftest"
#: Why it could not be built, for the guest test to report (absent when it was).
PROBLEM = BUILD / "problem.txt"
#: A file for the look-around subtest to map: its pages must be page cache on a
#: filesystem whose folios can be evicted (the guest's /tmp is tmpfs, i.e. swap-backed).
DATA = "lru_gen_young.data"
DATA_SIZE = 8 << 20
BPF_CFLAGS = ["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86",
              "-I/usr/include/x86_64-linux-gnu", "-Wall", "-Werror"]


class BuildError(Exception):
    """The selftest cannot be built; the message says why."""


def selftest_patches() -> list[Path]:
    """The patches of the series that add files to the selftests."""
    bk = kernel_scripts.build_kernel()
    return [p for p in bk.patches() if f"+++ b/{SELFTESTS}/" in p.read_text()]


def _run(cmd: list[str], cwd: Path, what: str, stdout=None) -> None:
    r = subprocess.run(cmd, cwd=cwd, stdout=stdout or subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode:
        tail = "\n".join((r.stderr or "").strip().splitlines()[-20:])
        raise BuildError(f"{what} failed (exit {r.returncode}):\n{tail}")


def _key(btf: Path, patches: list[Path]) -> str:
    h = hashlib.sha256()
    for p in (*patches, DRIVER, Path(__file__)):
        h.update(p.read_bytes() + b"\0")
    st = btf.stat()
    h.update(f"{btf.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def build(kernel_dir: Path, dest: Path) -> Path:
    """The selftest binary for the kernel built in kernel_dir, in dest (reused when its
    inputs did not change); dest also gets the look-around subtest's data file."""
    btf = kernel_dir / "vmlinux.btf"
    if not btf.exists():
        raise BuildError(f"{btf} is missing: the kernel was built by an older build-kernel")
    for tool in ("clang", "bpftool", "cc"):
        if shutil.which(tool) is None:
            raise BuildError(f"building the kernel selftest needs {tool}")
    patches = selftest_patches()
    if not patches:
        raise BuildError(f"no patch in kernel/patches adds {SELFTESTS}/")
    binary, stamp = dest / NAME, dest / f"{NAME}.key"
    key = _key(btf, patches)
    if binary.exists() and stamp.exists() and stamp.read_text() == key:
        return binary
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kselftest-", dir=dest) as tmp:
        work = Path(tmp)
        _build(kernel_dir, patches, work)
        shutil.copy2(work / NAME, binary)
    _write_data(dest / DATA)
    stamp.write_text(key)
    return binary


def added_files(patch: Path) -> dict[str, str]:
    """path -> content of the files a format-patch adds (a new file's diff is its text)."""
    files: dict[str, str] = {}
    for diff in patch.read_text().split("\ndiff --git ")[1:]:
        head, _, body = diff.partition("\n@@ ")
        m = re.search(r"^\+\+\+ b/(\S+)$", head, re.M)
        if "\nnew file mode " not in head or not m:
            continue
        lines = body.split("\n")[1:]  # past the hunk header
        files[m.group(1)] = "".join(line[1:] + "\n" for line in lines
                                    if line.startswith("+"))
    return files


def _build(kernel_dir: Path, patches: list[Path], work: Path) -> None:
    tree = kernel_scripts.build_kernel().pristine_tree()
    series = work / "series"
    for p in patches:
        for rel, text in added_files(p).items():
            (series / rel).parent.mkdir(parents=True, exist_ok=True)
            (series / rel).write_text(text)
    tests = series / SELFTESTS
    with open(work / "vmlinux.h", "w") as out:
        _run(["bpftool", "btf", "dump", "file", str(kernel_dir / "vmlinux.btf"), "format",
              "c"], work, "bpftool btf dump", stdout=out)
    _run(["clang", *BPF_CFLAGS, f"-I{work}", "-c", str(tests / "progs" / f"{NAME}.c"),
          "-o", str(work / f"{NAME}.bpf.o")], work, f"clang progs/{NAME}.c")
    with open(work / f"{NAME}.skel.h", "w") as out:
        _run(["bpftool", "gen", "skeleton", str(work / f"{NAME}.bpf.o"), "name", NAME],
             work, "bpftool gen skeleton", stdout=out)
    headers = work / "selftests"
    headers.mkdir()
    for h in HEADERS:
        shutil.copy2(tree / SELFTESTS / h, headers / h)
    _run(["cc", "-O2", "-Wall", "-Werror", f"-DTEST={NAME}", f"-I{work}", f"-I{headers}",
          f"-I{tree / 'tools/include'}", f"-I{tree / 'tools/include/uapi'}",
          "-o", str(work / NAME), str(tests / "prog_tests" / f"{NAME}.c"), str(DRIVER),
          "-lbpf", "-lelf", "-lz", "-lpthread"], work, f"building prog_tests/{NAME}.c")


def _write_data(path: Path) -> None:
    if path.exists() and path.stat().st_size == DATA_SIZE:
        return
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(bytes(range(256)) * (DATA_SIZE // 256))
    tmp.replace(path)
