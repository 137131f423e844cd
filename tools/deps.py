#!/usr/bin/env python3
"""What `make demo` and `make check` need, installed when it is missing.

    python3 tools/deps.py demo     the kernel build, QEMU, pyelftools for this Python
    python3 tools/deps.py check    all of demo's, plus the compilers, bpftool and the
                                   test packages (tests/requirements.txt)
    python3 tools/deps.py --list check      what would be checked, and why

Python packages go to the interpreter that runs this script (the one `make` passes as
PYTHON), with pip, or with apt when that interpreter is Debian's own (it refuses pip:
PEP 668). Debian packages come from apt-get, which needs root. Every install is one line
saying what and why; when everything is there this is a quick no-op. Anything it cannot
install is one line saying what to install, and a non-zero exit.

The lists here are the one place that says what the project needs; kernel/build_kernel.py
asks for its "kernel" group through ensure().
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, NamedTuple

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "tests" / "requirements.txt"


class Apt(NamedTuple):
    package: str
    probe: str  # a command on PATH, or an absolute path that the package installs
    why: str


# Debian packages by group. A probe is what tells the package is there without asking
# dpkg, so a machine that has the tool from elsewhere is not made to install it.
APT = {
    "kernel": [  # kernel/build-kernel: tinyconfig + patches, with BTF
        Apt("make", "make", "runs the kernel build"),
        Apt("gcc", "gcc", "compiles the kernel"),
        Apt("libc6-dev", "/usr/include/stdio.h", "the kernel's host tools need libc headers"),
        Apt("flex", "flex", "the kernel's config parser"),
        Apt("bison", "bison", "the kernel's config parser"),
        Apt("bc", "bc", "the kernel build computes constants with it"),
        Apt("perl", "perl", "the kernel build's scripts"),
        Apt("dwarves", "pahole", "makes the kernel's BTF (CONFIG_DEBUG_INFO_BTF)"),
        Apt("patch", "patch", "applies kernel/patches"),
        Apt("tar", "tar", "unpacks the kernel source"),
        Apt("xz-utils", "xz", "unpacks the kernel source"),
        Apt("libelf-dev", "/usr/include/gelf.h", "the kernel's objtool and resolve_btfids"),
        Apt("libssl-dev", "/usr/include/openssl/opensslv.h", "the kernel's sign-file tool"),
        Apt("linux-source-6.12", "/usr/src/linux-source-6.12.tar.xz",
            "the Linux 6.12 source the series applies to"),
    ],
    "guest": [  # kernel/run-guest: QEMU with this machine's / as the guest's root
        Apt("qemu-system-x86", "qemu-system-x86_64", "boots the patched kernel"),
        Apt("busybox-static", "/bin/busybox", "powers the guest off when its command ends"),
        Apt("util-linux", "mount", "the guest mounts its pseudo filesystems"),
    ],
    "test": [  # make check
        Apt("clang", "clang", "compiles the tests' BPF programs"),
        Apt("llvm", "llvm-strip", "the BPF toolchain beside clang (llvm-strip, llvm-objdump)"),
        Apt("libbpf-dev", "/usr/include/bpf/bpf_helpers.h",
            "the BPF programs' headers; the kernel selftest links with libbpf"),
        Apt("linux-libc-dev", "/usr/include/linux/bpf.h", "the BPF UAPI headers"),
        Apt("bpftool", "bpftool", "the reference loader the tests and benchmarks compare with; "
            "vmlinux.h and the skeleton of the kernel selftest"),
        Apt("zlib1g-dev", "/usr/include/zlib.h", "builds the reference libbpf 1.5 and the "
            "kernel selftest"),
        Apt("pkg-config", "pkg-config", "builds the reference libbpf 1.5"),
        Apt("python3-pyelftools", "/usr/lib/python3/dist-packages/elftools",
            "the tests run Debian's python3 with only apt's pyelftools"),
        Apt("systemtap-sdt-dev", "/usr/include/x86_64-linux-gnu/sys/sdt.h",
            "<sys/sdt.h>: the USDT probes of the attach tests' target program"),
        Apt("iproute2", "ip", "the XDP and tc tests make a veth pair in a network namespace"),
        Apt("librsvg2-bin", "rsvg-convert", "the SVG layout tests render heatmap's SVGs to PNG"),
    ],
}
# where a package that a bare apt sources list lacks comes from
SOURCES = {
    "linux-source-6.12": "Debian 12's security updates (add 'deb http://deb.debian.org/"
                         "debian-security bookworm-security main' to the apt sources)",
}
GROUPS = {"demo": ["kernel", "guest"], "check": ["kernel", "guest", "test"]}


class Pip(NamedTuple):
    requirement: str  # name>=version, as pip takes it
    module: str  # what it is imported as
    debian: str | None  # the apt package for Debian's own python3, if Debian has one
    why: str


PIP = {
    "demo": [Pip("pyelftools>=0.29", "elftools", "python3-pyelftools",
                 "heatmap.py's loader reads the BPF object with it")],
}


def _requirements() -> list[Pip]:
    """tests/requirements.txt, with the import name and Debian package of each."""
    known = {
        "pyelftools": ("elftools", "python3-pyelftools", "the loader reads ELF with it"),
        "pytest": ("pytest", "python3-pytest", "runs the tests"),
        "hypothesis": ("hypothesis", "python3-hypothesis", "the fuzzing tests"),
        "ruff": ("ruff", None, "the linter make check runs"),
    }
    out = []
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name = line.split(">=")[0].split("==")[0].strip()
        module, debian, why = known.get(name, (name.replace("-", "_"), None, "the tests"))
        out.append(Pip(line, module, debian, why))
    return out


class DepsError(Exception):
    """Something is missing and cannot be installed from here: the message says what."""


Say = Callable[[str], None]


def _say(msg: str) -> None:
    print(f"deps: {msg}", file=sys.stderr, flush=True)


def _present(probe: str) -> bool:
    return os.path.exists(probe) if probe.startswith("/") else shutil.which(probe) is not None


def missing_apt(groups: list[str]) -> list[Apt]:
    seen, out = set(), []
    for group in groups:
        for apt in APT[group]:
            if apt.package not in seen and not _present(apt.probe):
                seen.add(apt.package)
                out.append(apt)
    return out


def apt_install(pkgs: list[Apt], say: Say = _say) -> None:
    """apt-get install, one line per package saying why; updates the lists if needed."""
    if not pkgs:
        return
    names = [p.package for p in pkgs]
    if not shutil.which("apt-get"):
        raise DepsError(f"missing {', '.join(names)} and there is no apt-get here: "
                        f"install them with this system's package manager")
    if os.geteuid() != 0:
        raise DepsError(f"missing {', '.join(names)}: run this as root, or install them "
                        f"with: sudo apt-get install {' '.join(names)}")
    for p in pkgs:
        say(f"installing {p.package} with apt-get: {p.why}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *names]
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode == 0:
        return
    say("apt-get install failed: updating the package lists and retrying")
    subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        tail = " / ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
        unknown = [p for p in pkgs if p.package in r.stderr and p.package in SOURCES
                   and "Unable to locate package" in r.stderr]
        hint = "".join(f"; {p.package} comes from {SOURCES[p.package]}" for p in unknown)
        raise DepsError(f"apt-get install {' '.join(names)} failed: {tail}{hint}")


def ensure(groups: list[str], say: Say = _say) -> None:
    """Install the Debian packages of these groups (see APT) that are missing."""
    apt_install(missing_apt(groups), say)


# ---- Python packages for one interpreter ----------------------------------------------


def _version_tuple(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split("."):
        m = re.match(r"\d+", part)
        if not m:
            break
        out.append(int(m.group()))
    return tuple(out)


_PROBE = """
import importlib.util, sys
try:
    from importlib.metadata import version, PackageNotFoundError
except ImportError:
    version = None
for arg in sys.argv[1:]:
    dist, module = arg.split(':')
    if importlib.util.find_spec(module) is None:
        print(arg, '-')
        continue
    try:
        print(arg, version(dist) if version else '0')
    except Exception:
        print(arg, '0')
"""


def missing_pip(python: str, reqs: list[Pip]) -> list[Pip]:
    """The requirements that `python` cannot import, or has in a version too old."""
    args = [f"{r.requirement.split('>=')[0]}:{r.module}" for r in reqs]
    out = subprocess.run([python, "-c", _PROBE, *args], capture_output=True, text=True)
    if out.returncode:
        raise DepsError(f"cannot run {python}: {out.stderr.strip().splitlines()[-1:]}")
    have = dict(line.rsplit(" ", 1) for line in out.stdout.splitlines())
    missing = []
    for r, arg in zip(reqs, args):
        got = have.get(arg, "-")
        need = r.requirement.split(">=")[1] if ">=" in r.requirement else ""
        if got == "-" or (need and got != "0"
                          and _version_tuple(got) < _version_tuple(need)):
            missing.append(r)
    return missing


def _externally_managed(python: str) -> bool:
    """True for an interpreter that refuses pip installs (Debian's own python3)."""
    out = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
                         capture_output=True, text=True)
    stdlib = out.stdout.strip()
    in_venv = subprocess.run([python, "-c", "import sys; print(sys.prefix != sys.base_prefix)"],
                             capture_output=True, text=True).stdout.strip() == "True"
    return bool(stdlib) and not in_venv and os.path.exists(os.path.join(stdlib,
                                                                       "EXTERNALLY-MANAGED"))


def _has_pip(python: str) -> bool:
    return subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode == 0


def pip_install(python: str, reqs: list[Pip], say: Say = _say) -> None:
    """Install reqs for `python`: with apt for Debian's own interpreter where Debian has
    the package, with pip otherwise."""
    if not reqs:
        return
    if _externally_managed(python):
        apt = [Apt(r.debian, "", r.why) for r in reqs if r.debian]
        rest = [r for r in reqs if not r.debian]
        apt_install(apt, say)
        if not rest:
            return
        if not _has_pip(python):
            apt_install([Apt("python3-pip", "", f"installs {rest[0].requirement} "
                             f"(Debian has no package of it)")], say)
        # Debian's pip puts these under /usr/local, apart from apt's own files
        extra = ["--break-system-packages"]
        reqs = rest
    else:
        if not _has_pip(python):
            wanted = ", ".join(r.requirement for r in reqs)
            raise DepsError(f"{python} has no pip: install {wanted} for it, or run make "
                            f"with PYTHON=/usr/bin/python3")
        extra = []
    for r in reqs:
        say(f"installing {r.requirement} with pip for {python}: {r.why}")
    cmd = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *extra,
           *[r.requirement for r in reqs]]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = " / ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
        raise DepsError(f"pip install {' '.join(x.requirement for x in reqs)} failed: {tail}")
    still = missing_pip(python, reqs)
    if still:
        raise DepsError(f"{python} still cannot import "
                        f"{', '.join(x.module for x in still)} after pip install")


def requirements_for(target: str) -> list[Pip]:
    return _requirements() if target == "check" else PIP[target]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    listing = "--list" in argv
    args = [a for a in argv if a != "--list"]
    if len(args) != 1 or args[0] not in GROUPS:
        print("usage: tools/deps.py [--list] demo|check", file=sys.stderr)
        return 2
    target = args[0]
    python = sys.executable
    if listing:
        for group in GROUPS[target]:
            for a in APT[group]:
                state = "ok" if _present(a.probe) else "missing"
                print(f"apt  {a.package:20} {state:8} {a.why}")
        for r in requirements_for(target):
            print(f"pip  {r.requirement:20} {'':8} {r.why}")
        return 0
    try:
        ensure(GROUPS[target])
        pip_install(python, missing_pip(python, requirements_for(target)))
    except DepsError as e:
        _say(str(e))
        return 1
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
