"""The runtime on a minimal system: Debian 12's /usr/bin/python3 with only
python3-pyelftools from apt (no pip, no virtualenv), and the oldest Python we support."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from required import cannot_run

from bpfc import REPO
from kernelstate import bpf_unavailable

DEBIAN_PYTHON = "/usr/bin/python3"
DEBIAN_ELFTOOLS = "/usr/lib/python3/dist-packages"


def _clean_env() -> dict[str, str]:
    # nothing from the test's own interpreter (pyenv, PYTHONPATH) may leak in
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}


def _run(python: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([python, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=env or _clean_env())


@pytest.fixture(scope="module")
def debian_python():
    if not os.path.exists(DEBIAN_PYTHON):
        pytest.skip(f"{DEBIAN_PYTHON} is not installed")
    r = _run(DEBIAN_PYTHON, "-c", "import elftools, sys; print(elftools.__file__, "
                                  "elftools.__version__, sys.version_info[:2])")
    if r.returncode:
        pytest.fail(f"Debian's python3 cannot import pyelftools (apt install "
                    f"python3-pyelftools): {r.stderr.strip()}")
    where, version, _ = r.stdout.split(" ", 2)
    assert where.startswith(DEBIAN_ELFTOOLS), where  # apt's, not pip's
    return version


def test_show_with_debian_python(debian_python, bpf_object):
    r = _run(DEBIAN_PYTHON, "-m", "bpfload", "show", str(bpf_object("globals")))
    assert r.returncode == 0, r.stderr
    assert "prog  run_globals" in r.stdout and "map   results" in r.stdout


def test_load_with_debian_python(debian_python, bpf_object, no_leaks):
    why = bpf_unavailable()
    if why:
        pytest.skip(why)
    r = _run(DEBIAN_PYTHON, "-m", "bpfload", "load", str(bpf_object("relocs")))
    assert r.returncode == 0, r.stderr
    assert "prog  run_relocs" in r.stdout


def oldest_python() -> str | None:
    """A Python 3.9 interpreter (the oldest supported): pyenv's newest 3.9.x, else one
    on PATH under its own name; None if this machine has none."""
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = sorted(pyenv.glob("versions/3.9.*/bin/python3"),
                   key=lambda p: [int(x) for x in p.parts[-3].split(".") if x.isdigit()])
    if found:
        return str(found[-1])
    for directory in ("/usr/local/bin", "/usr/bin"):  # not pyenv's shims: real binaries
        if os.access(f"{directory}/python3.9", os.X_OK):
            return f"{directory}/python3.9"
    return None


def test_python39_compiles_and_runs_show(bpf_object, tmp_path):
    py39 = oldest_python()
    if py39 is None:
        cannot_run("no Python 3.9 on this machine to run the loader on the oldest supported "
                   "version", "HEATMAP_REQUIRE_OLDEST_PYTHON")
    r = _run(py39, "-c", "import sys; print(sys.version_info[:2])")
    assert r.stdout.strip() == "(3, 9)", (py39, r.stdout, r.stderr)
    sources = [str(p) for p in (REPO / "bpfload").rglob("*.py")] + [str(REPO / "heatmap.py")]
    r = _run(py39, "-m", "py_compile", *sources)
    assert r.returncode == 0, r.stderr
    # run it with the same pure-Python pyelftools Debian ships
    env = dict(_clean_env(), PYTHONPATH=str(_elftools_only(tmp_path)))
    r = _run(py39, "-m", "bpfload", "show", str(bpf_object("relocs")), env=env)
    assert r.returncode == 0, r.stderr
    assert "prog  run_relocs" in r.stdout


def _elftools_only(tmp_path: Path) -> Path:
    """A directory holding just Debian's elftools package (pure Python)."""
    src = Path(DEBIAN_ELFTOOLS) / "elftools"
    if not src.is_dir():
        pytest.skip("python3-pyelftools is not installed")
    (tmp_path / "elftools").symlink_to(src)
    return tmp_path
