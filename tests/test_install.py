"""A new user's machine: what tools/deps.py installs, what a missing piece says, and
`pip install .` giving working `heatmap` and `bpfload` commands.

The whole fresh-machine path (debootstrap, then `make demo` and `make check`) is too
slow for the suite; these are the parts of it that can be checked in seconds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import deps
from bpfc import REPO

HEATMAP_OBJ = REPO / "kernel" / "heatmap.bpf.o"


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    """An interpreter with the standard library only: a venv without pip, not seeing
    this interpreter's site-packages (so no pyelftools)."""
    where = tmp_path_factory.mktemp("bare")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where / "venv")],
                   check=True)
    python = str(where / "venv" / "bin" / "python")
    r = subprocess.run([python, "-c", "import elftools"], capture_output=True)
    assert r.returncode != 0, "the bare venv must not see pyelftools"
    return python


def _one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "BPFLOAD"))}
    env.update(extra)
    return env


def test_bpfload_without_pyelftools_says_what_to_install(bare_python):
    # no cache: a parsed object in it would not need pyelftools at all
    r = subprocess.run([bare_python, "-m", "bpfload", "show", str(HEATMAP_OBJ)], cwd=REPO,
                       capture_output=True, text=True, env=_env(BPFLOAD_CACHE="off"))
    line = _one_line_error(r)
    assert "needs pyelftools" in line and f"{bare_python} -m pip install pyelftools" in line


def test_replay_needs_no_pyelftools(bare_python, tmp_path):
    # a recording renders anywhere: heatmap.py imports the loader only to watch a process
    rec = tmp_path / "r.jsonl"
    rec.write_text('{"type": "heatmap-record", "version": 1, "pid": 1, "comm": "x", '
                   '"region_shift": 21, "page_size": 4096, "interval": 1.0, "started": 0}\n'
                   '{"type": "maps", "maps": [[0, 4194304, "rw-p", 0, "00:00", 0, ""]]}\n'
                   '{"type": "interval", "seq": 1, "t": 1.0, "aging": 0.01, "dropped": 0, '
                   '"rss_kb": 4096, "counts": [[0, 0, 512, 0]]}\n')
    r = subprocess.run([bare_python, "heatmap.py", "--replay", str(rec), "--json"], cwd=REPO,
                       capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stderr
    assert '"accessed":512' in r.stdout


def test_demo_without_qemu_says_so_in_one_line(tmp_path):
    # a PATH with python and nothing else: QEMU (and mount) are not found
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").symlink_to(sys.executable)
    r = subprocess.run([sys.executable, str(REPO / "demo" / "run"), "--duration", "1"],
                       cwd=REPO, capture_output=True, text=True, timeout=60,
                       env=_env(PATH=str(bindir)))
    line = _one_line_error(r)
    assert line.startswith("demo: missing qemu-system-x86 (boots the patched kernel)")
    assert "run `make demo`, which installs them" in line


def test_demo_without_pyelftools_says_so_before_building(bare_python):
    r = subprocess.run([bare_python, str(REPO / "demo" / "run"), "--duration", "1"], cwd=REPO,
                       capture_output=True, text=True, timeout=60, env=_env())
    line = _one_line_error(r)
    assert f"pyelftools>=0.29 for {bare_python}" in line, line


def test_deps_is_a_quiet_no_op_when_everything_is_there():
    # the suite runs only when conftest found every prerequisite, so nothing is missing
    r = subprocess.run([sys.executable, str(REPO / "tools" / "deps.py"), "check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stderr


def test_deps_lists_every_package_with_a_reason():
    r = subprocess.run([sys.executable, str(REPO / "tools" / "deps.py"), "--list", "check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    apt = [a for g in deps.GROUPS["check"] for a in deps.APT[g]]
    assert len(lines) == len(apt) + len(deps.requirements_for("check"))
    for a in apt:
        assert any(line.split()[1] == a.package and line.endswith(a.why) for line in lines)
    assert all(" ok " in line for line in lines if line.startswith("apt"))


def test_deps_names_what_it_cannot_install_as_non_root():
    # a probe that can never be satisfied, run as nobody: one line, exit 1. nobody may
    # not read /root (where pyenv and the checkout may live): a world-readable copy of
    # deps.py and Debian's python3 (installed by make check) run it
    where = Path(tempfile.mkdtemp(prefix="deps-"))
    try:
        where.chmod(0o755)
        shutil.copy(REPO / "tools" / "deps.py", where / "deps.py")
        (where / "deps.py").chmod(0o644)
        script = (f"import sys; sys.path.insert(0, {str(where)!r}); import deps\n"
                  "deps.APT['kernel'] = [deps.Apt('no-such-package', '/no/such/file', 't')]\n"
                  "sys.exit(deps.main(['demo']))")
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            "/usr/bin/python3", "-c", script], capture_output=True,
                           text=True, timeout=60, cwd=where)
    finally:
        shutil.rmtree(where)
    line = _one_line_error(r)
    assert line == ("deps: missing no-such-package: run this as root, or install them "
                    "with: sudo apt-get install no-such-package")


def test_requirements_parse_into_modules_and_debian_packages():
    reqs = {r.requirement.split(">=")[0]: r for r in deps.requirements_for("check")}
    assert reqs["pyelftools"].module == "elftools"
    assert reqs["pyelftools"].debian == "python3-pyelftools"
    assert reqs["ruff"].debian is None  # Debian 12 has no ruff: pip it is
    assert deps._version_tuple("0.31") == (0, 31)
    assert deps._version_tuple("6.67.1rc1") == (6, 67, 1)
    assert deps._version_tuple("0.4.dev0") == (0, 4)


def test_missing_pip_compares_versions():
    # this interpreter has pytest; no version of it is 999
    got = deps.missing_pip(sys.executable, [deps.Pip("pytest>=999", "pytest", None, ""),
                                            deps.Pip("pytest>=1", "pytest", None, ""),
                                            deps.Pip("no-such-dist>=1", "no_such_mod", None,
                                                     "")])
    assert [r.requirement for r in got] == ["pytest>=999", "no-such-dist>=1"]


def _clean_copy(dest: Path) -> Path:
    """The committed tree (what a user downloads), without build leftovers."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def test_pip_install_gives_both_commands_and_the_bpf_object(tmp_path):
    src = _clean_copy(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q",
                        "--disable-pip-version-check", str(src)],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # run from elsewhere, so nothing in a checkout can be found by accident
    r = subprocess.run([str(venv / "bin" / "heatmap"), "--version"], capture_output=True,
                       text=True, cwd=tmp_path, env=_env())
    assert r.returncode == 0, r.stderr
    installed = venv / "share" / "heatmap" / "heatmap.bpf.o"
    damon = installed.with_name("damon.bpf.o")
    assert r.stdout.strip() == f"heatmap 0.1.0 (BPF objects: {installed}, {damon})"
    assert installed.read_bytes() == HEATMAP_OBJ.read_bytes()
    assert damon.read_bytes() == (REPO / "kernel" / "damon.bpf.o").read_bytes()
    r = subprocess.run([str(venv / "bin" / "bpfload"), "show", str(installed)],
                       capture_output=True, text=True, cwd=tmp_path, env=_env())
    assert r.returncode == 0, r.stderr
    assert "prog   young " in r.stdout and "map    counts " in r.stdout
