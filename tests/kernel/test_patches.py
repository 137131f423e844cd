"""The kernel patch series (kernel/patches) against a pristine Linux 6.12 tree.

The tree is Debian's linux-source-6.12 tarball, extracted once and cached under
${HEATMAP_CACHE:-~/.cache/heatmap}/pristine-<tarball hash>/ (never modified: patches
are applied to copies of the files they touch).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import kernel_scripts
import pytest

REPO = Path(__file__).resolve().parents[2]
bk = kernel_scripts.build_kernel()
PATCHES = bk.patches()
COVER = bk.PATCH_DIR / "0000-cover-letter.patch"


@pytest.fixture(scope="session")
def pristine_tree() -> Path:
    tarball = bk.DEFAULT_SOURCE
    if not tarball.exists():
        pytest.skip(f"{tarball} not installed (Debian: apt-get install linux-source-6.12)")
    if not shutil.which("patch"):
        pytest.skip("patch(1) not installed")
    return bk.pristine_tree(tarball)


def test_series_exists_and_is_numbered():
    assert PATCHES, "kernel/patches/ has no *.patch"
    numbers = [int(p.name[:4]) for p in PATCHES]
    assert numbers == list(range(1, len(PATCHES) + 1)), [p.name for p in PATCHES]
    for i, p in enumerate(PATCHES, 1):
        assert re.search(rf"^Subject: \[PATCH {i}/{len(PATCHES)}\] ", p.read_text(), re.M), p.name


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
def patched(pristine_tree, tmp_path_factory) -> Path:
    """A copy of the files the series touches, with the whole series applied."""
    work = tmp_path_factory.mktemp("series")
    for p, r in _apply_series(pristine_tree, work):
        assert r.returncode == 0, f"{p.name} does not apply:\n{r.stdout}{r.stderr}"
    return work


def test_the_tracepoint_is_bare_with_one_flags_argument_and_no_pid(patched):
    header = (patched / "include/trace/events/vmscan.h").read_text()
    m = re.search(r"DECLARE_TRACE\(lru_gen_young_tp,\s*TP_PROTO\((.*?)\),\s*TP_ARGS", header, re.S)
    assert m, "lru_gen_young_tp is not a bare tracepoint (DECLARE_TRACE)"
    params = [p.split()[-1].lstrip("*") for p in m.group(1).split(",")]
    assert params == ["mm", "nid", "addr", "nr_pages", "flags"]
    assert "TRACE_EVENT(lru_gen" not in header


def test_no_hook_decides_for_every_walker(patched):
    """No fmod_ret or fentry hook points: what to walk and whether to flush are
    parameters of the observer's own request (the kfunc)."""
    vmscan = (patched / "mm/vmscan.c").read_text()
    assert "__bpf_hook_start" not in vmscan and "register_btf_fmodret_id_set" not in vmscan
    kfuncs = re.search(r"BTF_KFUNCS_START\(lru_gen_kfunc_ids\)(.*?)BTF_KFUNCS_END", vmscan, re.S)
    assert kfuncs, "no kfunc set in mm/vmscan.c"
    assert re.findall(r"BTF_ID_FLAGS\(func, (\w+), ([^)]*)\)", kfuncs.group(1)) == [
        ("bpf_lru_gen_scan_task", "KF_TRUSTED_ARGS | KF_SLEEPABLE")]
    assert "register_btf_kfunc_id_set(BPF_PROG_TYPE_SYSCALL, &lru_gen_kfunc_set)" in vmscan
    scan = vmscan[vmscan.index("__bpf_kfunc int bpf_lru_gen_scan_task"):]
    scan = scan[:scan.index("\n}\n")]
    assert "flags & ~BPF_LRU_GEN_SCAN_FLAGS" in scan and "capable(CAP_SYS_ADMIN)" in scan


def test_what_the_walk_finds_is_reported_after_the_lock_is_dropped(patched):
    vmscan = (patched / "mm/vmscan.c").read_text()
    for func, unlock in [("walk_pte_range", "pte_unmap_unlock(pte, ptl);"),
                         ("walk_pmd_range_locked", "spin_unlock(ptl);")]:
        body = vmscan[vmscan.index(f"static {'bool' if 'pte' in func else 'void'} {func}("):]
        body = body[:body.index("\n}\n")]
        assert "trace_lru_gen_young_tp(" not in body, func
        assert body.index(unlock) < body.index("report_young_"), func
    rmap = (patched / "mm/rmap.c").read_text()
    one = rmap[rmap.index("static bool folio_referenced_one("):]
    one = one[:one.index("\n}\n")]
    loop_end = one.index("pra->mapcount--;\n\t}\n")
    assert one.index("lru_gen_report_young(&young_log", loop_end) > loop_end


def test_the_documentation_names_the_interface_and_what_it_does_not_see():
    docs = [p for p in PATCHES if _touched_files(p) == [
        "Documentation/admin-guide/mm/multigen_lru.rst"]]
    assert len(docs) == 1, "one patch documents the interface"
    text = docs[0].read_text()
    for name in ("lru_gen_young_tp", "LRU_GEN_YOUNG_ANON", "LRU_GEN_YOUNG_PMD",
                 "LRU_GEN_YOUNG_RMAP", "bpf_lru_gen_scan_task", "BPF_LRU_GEN_SCAN_FLUSH_TLB"):
        assert re.search(rf"``[^`]*\b{name}\b", text), f"{name} is not documented"
    missed = text[text.index("What the tracepoint does not see"):]
    for what in ("hugetlb", "VM_LOCKED", "charged to other memcgs", "CONFIG_LRU_GEN_WALKS_MMU",
                 "TLB"):
        assert what in missed, what


def test_the_selftest_patch_adds_prog_tests_and_progs():
    tests = [p for p in PATCHES if any(f.startswith("tools/testing/selftests/bpf/")
                                       for f in _touched_files(p))]
    assert len(tests) == 1
    files = _touched_files(tests[0])
    assert {"tools/testing/selftests/bpf/prog_tests/lru_gen_young.c",
            "tools/testing/selftests/bpf/progs/lru_gen_young.c"} <= set(files)


# --------------------------------------------------------------------------- cover letter


def test_cover_letter_says_why_what_against_what_and_on_which_base():
    text = COVER.read_text()
    assert re.search(rf"^Subject: \[PATCH 0/{len(PATCHES)}\] ", text, re.M)
    for what in ("lore.kernel.org/all/20220911083418.2818369-1-yuanchu@google.com/",
                 "DAMON", "idle page tracking", "PAGEMAP_SCAN", "working set",
                 "6.12", "Signed-off-by", "test_progs", "clang 14"):
        assert what in text, f"the cover letter does not mention {what}"
    assert re.search(r"\d\.\d+x", text), "the cover letter gives no measured ratio"
    # it lists every patch, as git format-patch --cover-letter does
    for p in PATCHES:
        subject = re.search(r"^Subject: \[PATCH \d+/\d+\] (.*(?:\n .*)*)", p.read_text(),
                            re.M).group(1).replace("\n ", " ")
        assert subject[:40] in text.replace("\n ", " "), subject


def _net_lines(pristine_tree: Path, patched: Path, rel: str) -> tuple[int, int]:
    """(lines added, lines removed) by the whole series in one file, as git counts them."""
    before = pristine_tree / rel
    r = subprocess.run(["git", "diff", "--no-index", "--numstat",
                        str(before) if before.exists() else "/dev/null", str(patched / rel)],
                       capture_output=True, text=True)
    added, removed = r.stdout.split()[:2]
    return int(added), int(removed)


def test_cover_letter_is_finished_and_its_diffstat_is_the_series(pristine_tree, patched):
    text = COVER.read_text()
    assert "@@" not in text, "the cover letter has unfilled placeholders"
    stat = text[text.rindex("\n\n", 0, text.index(" files changed")):]
    files = sorted({f for p in PATCHES for f in _touched_files(p)})
    for f in files:
        tail = f if len(f) < 44 else f.split("/", 3)[-1]  # git shortens long paths
        assert tail in stat, f"the diffstat does not name {f}"
    counts = [_net_lines(pristine_tree, patched, f) for f in files]
    added, removed = sum(a for a, _ in counts), sum(r for _, r in counts)
    assert f" {len(files)} files changed, {added} insertions(+), {removed} deletions(-)" \
        in stat
