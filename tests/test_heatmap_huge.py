"""heatmap.HugePages on the running kernel: the regions of this process that
transparent huge pages back are found (pagemap + kpageflags), those of 4 KiB pages not.
The guest tests check the same end to end, for every source."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

import pytest
from heatmap_fakes import heatmap
from required import cannot_run

REGION = 2 << 20
MADV_HUGEPAGE, MADV_NOHUGEPAGE = 14, 15
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def madvise(addr: int, length: int, advice: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    if libc.madvise(addr, length, advice):
        raise OSError(ctypes.get_errno(), "madvise")


@pytest.fixture
def two_bands():
    """4 MiB asking for THPs, then 4 MiB of 4 KiB pages, both touched: region indexes."""
    if os.geteuid() != 0 or "[never]" in (THP.read_text() if THP.exists() else "[never]"):
        cannot_run("needs root and transparent huge pages", "HEATMAP_REQUIRE_GUEST")
    m = mmap.mmap(-1, 10 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf = ctypes.c_char.from_buffer(m)
    base = ctypes.addressof(buf)
    lo = base + (-base) % REGION
    madvise(lo, 4 << 20, MADV_HUGEPAGE)
    madvise(lo + (4 << 20), 4 << 20, MADV_NOHUGEPAGE)
    off = lo - base
    m[off:off + (8 << 20):4096] = b"\1" * 2048
    yield lo // REGION
    del buf
    m.close()


def huge_pages_found(shift: int) -> dict[int, int]:
    maps = heatmap.read_maps("/proc", os.getpid())
    finder = heatmap.HugePages("/proc", os.getpid(), shift, 4096)
    try:
        return dict(finder.find(maps))
    finally:
        finder.close()


def test_regions_huge_pages_back_are_found(two_bands):
    first = two_bands
    found = huge_pages_found(21)
    assert [found.get(first + i, 0) for i in range(4)] == [512, 512, 0, 0], found


def test_smaller_regions_are_wholly_huge(two_bands):
    """With 1 MiB regions a huge page backs two regions, each all of its 256 pages."""
    first = two_bands * 2
    found = huge_pages_found(20)
    assert [found.get(first + i, 0) for i in range(8)] == [256] * 4 + [0] * 4, found


def test_unknown_without_kpageflags(tmp_path):
    """No pagemap to read (a fake /proc here, an unprivileged run): unknown, not 0."""
    finder = heatmap.HugePages(str(tmp_path), 1, 21, 4096)
    assert finder.find([]) is None
    finder.close()
