"""kernel/build-kernel's inputs and errors: what fails must fail at once, in one line,
before anything is built; the cache key must follow every edit of a source tree."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import kernel_scripts
import pytest

REPO = Path(__file__).resolve().parents[2]
bk = kernel_scripts.build_kernel()


def _fake_tree(path: Path) -> Path:
    (path / "mm").mkdir(parents=True)
    (path / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 0\n"
                                   "EXTRAVERSION =\n")
    (path / "mm" / "other.c").write_text("int x;\n")
    return path


def _run(*args, env_cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "kernel" / "build-kernel"), *map(str, args)],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, HEATMAP_CACHE=str(env_cache)))


@pytest.mark.parametrize("make_source, message", [
    (lambda t: t / "missing", "kernel source {src} does not exist"),
    (lambda t: (t / "x.tar.xz").write_text("x") and t / "x.tar.xz",
     "{src} is neither a kernel source directory nor a tarball"),
    (lambda t: (t / "empty").mkdir() or t / "empty", "{src} is not a kernel source tree"),
])
def test_bad_sources_fail_at_once_in_one_line(tmp_path, make_source, message):
    src = make_source(tmp_path)
    for extra in ((), ("--cached-only",)):
        r = _run(*extra, src, env_cache=tmp_path / "cache")
        assert r.returncode == 1 and r.stdout == ""
        assert r.stderr.startswith("build-kernel: error: " + message.format(src=src))
        assert r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "cache").exists() or not any(
        p.name.endswith((".build.log", ".work")) for p in (tmp_path / "cache").iterdir())


def test_jobs_must_be_positive(tmp_path):
    r = _run("-j", "0", env_cache=tmp_path)
    assert r.returncode == 2 and "'0' is not a positive number of jobs" in r.stderr


def test_a_patch_that_does_not_apply_is_one_line(tmp_path):
    tree = _fake_tree(tmp_path / "linux")
    with pytest.raises(bk.BuildError) as e:
        bk.apply_patches(tree, lambda msg: None, source=tree)
    first = bk.patches()[0]
    touched = re.search(r"^\+\+\+ b/(\S+)", first.read_text(), re.M).group(1)
    assert str(e.value) == (f"patch {first.name} does not apply to {tree}: it patches "
                            f"{touched}, which the tree does not have (the series is made "
                            "against Linux 6.12; see kernel/patches/)")


def test_the_cache_key_follows_edits_of_a_source_tree(tmp_path, monkeypatch):
    monkeypatch.setenv("HEATMAP_CACHE", str(tmp_path / "cache"))
    tree = _fake_tree(tmp_path / "linux")
    key = bk.build_key(tree)
    assert bk.build_key(tree) == key
    f = tree / "mm" / "other.c"
    f.write_text("int y;\n")
    os.utime(f, ns=(1, 1))
    assert bk.build_key(tree) != key
    key = bk.build_key(tree)
    (tree / "mm" / "new.c").write_text("")  # an untracked file counts too
    assert bk.build_key(tree) != key
    key = bk.build_key(tree)
    (tree / ".git").mkdir()
    (tree / ".git" / "index").write_text("x")  # git's own files do not
    assert bk.build_key(tree) == key


def test_the_cache_key_follows_the_series_and_the_config(tmp_path, monkeypatch):
    """A kernel built from other patches or another config is another kernel."""
    import shutil

    monkeypatch.setenv("HEATMAP_CACHE", str(tmp_path / "cache"))
    tree = _fake_tree(tmp_path / "linux")
    fragment = tmp_path / "config.fragment"
    fragment.write_bytes(bk.FRAGMENT.read_bytes())
    series = tmp_path / "patches"
    shutil.copytree(bk.PATCH_DIR, series)
    monkeypatch.setattr(bk, "FRAGMENT", fragment)
    monkeypatch.setattr(bk, "PATCH_DIR", series)
    key = bk.build_key(tree)
    fragment.write_text(fragment.read_text() + "CONFIG_SLUB_DEBUG=y\n")
    assert bk.build_key(tree) != key
    key = bk.build_key(tree)
    first = bk.patches()[0]
    first.write_text(first.read_text() + "\n")
    assert bk.build_key(tree) != key
    key = bk.build_key(tree)
    first.unlink()
    assert bk.build_key(tree) != key


def test_the_cache_key_ignores_what_the_image_does_not_contain(tmp_path, monkeypatch):
    """A patch's message, documentation and selftest are not in the kernel image: editing
    them must not cost a kernel build; editing its code must."""
    import shutil

    tree = _fake_tree(tmp_path / "linux")
    series = tmp_path / "patches"
    shutil.copytree(bk.PATCH_DIR, series)
    monkeypatch.setattr(bk, "PATCH_DIR", series)
    key = bk.build_key(tree)
    for patch in bk.patches():
        text = patch.read_text()
        text = text.replace("\nSigned-off-by: ", "\nAnother line of the message.\n"
                            "Signed-off-by: ", 1)
        for prefix in bk.NOT_IN_IMAGE:  # a line added to every such file's diff
            text = re.sub(rf"^(diff --git a/{re.escape(prefix)}.*?\n@@ [^\n]*\n)",
                          r"\1+an edit\n", text, flags=re.M | re.S)
        patch.write_text(text)
    assert bk.build_key(tree) == key
    code = next(p for p in bk.patches() if "\n+++ b/mm/" in p.read_text())
    code.write_text(code.read_text().replace("\n+", "\n+\n+", 1))
    assert bk.build_key(tree) != key
