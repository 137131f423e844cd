"""The kernel patch series (kernel/patches) against a pristine Linux 6.12 tree.

The tree is Debian's linux-source-6.12 tarball, extracted once and cached under
${HEATMAP_CACHE:-~/.cache/heatmap}/pristine-<tarball hash>/ (never modified: patches
are applied to copies of the files they touch).
"""

from __future__ import annotations

import fcntl
import re
import shutil
import subprocess
from pathlib import Path

import kernel_scripts
import pytest

REPO = Path(__file__).resolve().parents[2]
PATCHES = sorted((REPO / "kernel" / "patches").glob("*.patch"))


bk = kernel_scripts.build_kernel()


@pytest.fixture(scope="session")
def pristine_tree() -> Path:
    tarball = bk.DEFAULT_SOURCE
    if not tarball.exists():
        pytest.skip(f"{tarball} not installed (Debian: apt-get install linux-source-6.12)")
    if not shutil.which("patch"):
        pytest.skip("patch(1) not installed")
    root = bk.cache_root() / f"pristine-{bk._tarball_hash(tarball)[:16]}"
    done = root / ".complete"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            tree = bk.extract(tarball, root, progress=lambda msg: None)
            done.write_text(tree.name)
    return root / done.read_text()


def test_series_exists_and_is_numbered():
    assert PATCHES, "kernel/patches/ has no *.patch"
    numbers = [int(p.name[:4]) for p in PATCHES]
    assert numbers == list(range(1, len(PATCHES) + 1)), [p.name for p in PATCHES]


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.name[:4])
def test_patch_is_a_signed_off_format_patch(patch):
    text = patch.read_text()
    assert text.startswith("From "), "not git format-patch output"
    assert re.search(r"^Subject: \[PATCH", text, re.M)
    header, _, _ = text.partition("\n---\n")
    assert re.search(r"^Signed-off-by: .+ <[^>]+@[^>]+>$", header, re.M), "no Signed-off-by"
    body = header.split("\n\n", 1)[1]
    assert len(body.split()) > 40, "the commit message should explain why"


def _touched_files(patch: Path) -> list[str]:
    files = []
    for m in re.finditer(r"^\+\+\+ b/(\S+)", patch.read_text(), re.M):
        files.append(m.group(1))
    return files


def _apply_series(pristine_tree: Path, work: Path):
    """Copy the files the series touches out of the pristine tree into `work` and apply
    every patch in order; yields (patch, patch(1)'s result) as it goes."""
    for rel in {f for p in PATCHES for f in _touched_files(p)}:
        src = pristine_tree / rel
        if src.exists():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / rel)
    for p in PATCHES:
        yield p, subprocess.run(["patch", "-p1", "--batch", "--forward", "-d", str(work),
                                 "-i", str(p)], capture_output=True, text=True)


def test_series_applies_in_order(pristine_tree, tmp_path):
    for p, r in _apply_series(pristine_tree, tmp_path / "tree"):
        assert r.returncode == 0, f"{p.name} does not apply:\n{r.stdout}{r.stderr}"
        assert "fuzz" not in r.stdout, f"{p.name} applies only with fuzz:\n{r.stdout}"


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.name[:4])
def test_checkpatch_strict_clean(pristine_tree, patch):
    if not shutil.which("perl"):
        pytest.skip("perl not installed")
    r = subprocess.run(
        ["perl", "scripts/checkpatch.pl", "--strict", "--no-color", str(patch)],
        cwd=pristine_tree, capture_output=True, text=True,
    )
    assert "total: 0 errors, 0 warnings, 0 checks" in r.stdout, r.stdout + r.stderr
    assert r.returncode == 0, r.stdout + r.stderr



@pytest.fixture(scope="module")
def patched_vmscan(pristine_tree, tmp_path_factory) -> str:
    """mm/vmscan.c with the whole series applied."""
    work = tmp_path_factory.mktemp("series")
    for p, r in _apply_series(pristine_tree, work):
        assert r.returncode == 0, f"{p.name} does not apply:\n{r.stdout}{r.stderr}"
    return (work / "mm" / "vmscan.c").read_text()


def _hooks(vmscan: str) -> dict[str, str]:
    """BPF hook name -> return type, from the __weak noinline definitions."""
    return dict((name, ret) for ret, name in re.findall(
        r"^__weak noinline (void|int) (lru_gen_bpf_\w+)\(", vmscan, re.M))


def test_documentation_patch_is_last_and_names_every_hook_and_kfunc(patched_vmscan):
    docs = PATCHES[-1]
    assert _touched_files(docs) == ["Documentation/admin-guide/mm/multigen_lru.rst"], docs.name
    text = docs.read_text()
    hooks = _hooks(patched_vmscan)
    assert {"lru_gen_bpf_young_pte", "lru_gen_bpf_skip_mm", "lru_gen_bpf_flush_tlb"} <= set(hooks)
    for name in [*hooks, "bpf_lru_gen_age_cgroup"]:
        assert f"``{name}" in text or f"{name}(" in text, f"{name} is not documented"


def test_every_int_hook_is_registered_for_fmod_ret(patched_vmscan):
    fmodret_set = re.search(r"BTF_KFUNCS_START\(lru_gen_fmodret_ids\)(.*?)BTF_KFUNCS_END",
                            patched_vmscan, re.S)
    assert fmodret_set, "no fmod_ret id set in mm/vmscan.c"
    registered = set(re.findall(r"BTF_ID_FLAGS\(func, (\w+)\)", fmodret_set.group(1)))
    int_hooks = {name for name, ret in _hooks(patched_vmscan).items() if ret == "int"}
    assert int_hooks == {"lru_gen_bpf_skip_mm", "lru_gen_bpf_flush_tlb"}
    assert registered == int_hooks
