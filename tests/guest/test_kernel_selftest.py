"""The series' BPF selftest (prog_tests/lru_gen_young.c, built on the host by
kselftest.py through the smallest test_progs driver) in the guest: every subtest passes,
none is skipped. Each subtest runs in a process of its own, so one that crashes or
hangs does not take the others with it."""

from __future__ import annotations

import os
import re
import subprocess

import kselftest
import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("HEATMAP_IN_GUEST") != "1", reason="runs inside the test guest only"
)


def subtests() -> list[str]:
    """The subtests the test runs, from its source in the series."""
    text = "".join(files[f"{kselftest.SELFTESTS}/prog_tests/{kselftest.NAME}.c"]
                   for files in map(kselftest.added_files, kselftest.selftest_patches())
                   if f"{kselftest.SELFTESTS}/prog_tests/{kselftest.NAME}.c" in files)
    return re.findall(r'test__start_subtest\("(\w+)"\)', text)


SUBTESTS = subtests()


def test_the_series_has_the_selftest():
    assert {"pte", "thp", "look_around", "rmap_thp", "scope", "flush", "busy",
            "refusals"} <= set(SUBTESTS)


@pytest.fixture(scope="module")
def selftest() -> str:
    binary = kselftest.BUILD / kselftest.NAME
    if kselftest.PROBLEM.exists() or not binary.exists():
        why = kselftest.PROBLEM.read_text() if kselftest.PROBLEM.exists() else "not built"
        pytest.fail(f"the host could not build the kernel selftest: {why}")
    return str(binary)


@pytest.mark.parametrize("subtest", SUBTESTS)
def test_subtest_passes(selftest, subtest):
    env = dict(os.environ, LRU_GEN_YOUNG_FILE=str(kselftest.BUILD / kselftest.DATA))
    r = subprocess.run([selftest, subtest], capture_output=True, text=True, timeout=600,
                       env=env)
    number = SUBTESTS.index(subtest) + 1
    verdict = re.search(rf"^#1/{number} {kselftest.NAME}/{subtest}:(\w+)$", r.stdout, re.M)
    report = "\n".join(line for line in r.stdout.splitlines()
                       if ":FAIL:" in line or line.startswith(("#", "test_")) and
                       ":PASS:" not in line)
    print(report)
    assert verdict and verdict.group(1) == "OK", \
        f"{subtest}: {verdict.group(1) if verdict else 'no verdict'} (exit {r.returncode})\n" \
        f"{report}\n{r.stderr[-3000:]}"
    assert r.returncode == 0
