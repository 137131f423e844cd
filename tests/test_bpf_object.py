"""The BPF object we ship is what its source builds to with the documented toolchain
(Debian 12's clang 14 and libbpf-dev 1.1 headers, `make bpf`), and it has the shape
heatmap.py relies on."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from bpfc import REPO
from bpfload import elf_reader
from bpfload.sys.constants import MapType

SHIPPED = REPO / "kernel" / "heatmap.bpf.o"
DAMON = REPO / "kernel" / "damon.bpf.o"


def _clang_version() -> str:
    r = subprocess.run(["clang", "--version"], capture_output=True, text=True)
    return r.stdout.splitlines()[0] if r.returncode == 0 else ""


@pytest.mark.parametrize("var,shipped", [("HEATMAP_BPF_O", SHIPPED), ("DAMON_BPF_O", DAMON)])
def test_committed_object_is_what_the_source_builds_to(tmp_path, var, shipped):
    if not shutil.which("clang") or not shutil.which("make"):
        pytest.fail("clang and make are needed (apt install clang llvm libbpf-dev make)")
    version = _clang_version()
    if "clang version 14." not in version:
        pytest.skip(f"the shipped object is built with Debian's clang 14, not {version!r}")
    out = tmp_path / "rebuilt.bpf.o"
    other = tmp_path / "other.bpf.o"  # the rule builds both; only ours is compared
    paths = {v: out if v == var else other for v in ("HEATMAP_BPF_O", "DAMON_BPF_O")}
    r = subprocess.run(["make", "-s", "-B", *(f"{v}={p}" for v, p in paths.items()), "bpf"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == shipped.read_bytes(), \
        f"kernel/{shipped.name} is stale: run 'make bpf' and commit the result"


def heatmap_max_targets() -> int:
    sys.path.insert(0, str(REPO))
    import heatmap

    return heatmap.MAX_TARGETS


def test_shipped_object_shape():
    obj = elf_reader.read(SHIPPED)
    assert obj.license == "GPL"
    progs = {n: (p.section, p.attach_target) for n, p in obj.programs.items()}
    assert progs == {
        "young": ("tp_btf/lru_gen_young_tp", "lru_gen_young_tp"),
        "scan": ("syscall", ""),
    }
    counts = obj.maps["counts"]
    assert (counts.type, counts.key_size, counts.value_size) == (MapType.HASH, 16, 16)
    assert {v for v in obj.variables} >= {"target_tgid", "region_shift", "page_shift",
                                          "dropped_pages"}
    # the set of targets: mm -> slot for the tracepoint, slot -> mm for the scans
    assert (obj.maps["target_slots"].type, obj.maps["target_slots"].key_size,
            obj.maps["target_slots"].value_size) == (MapType.HASH, 8, 4)
    assert (obj.maps["slot_mms"].type, obj.maps["slot_mms"].max_entries) == \
        (MapType.ARRAY, heatmap_max_targets())
    for rodata in ("target_tgid", "region_shift", "page_shift"):
        assert obj.variables[rodata].section == ".rodata"
    # the series' kfunc is required: without it the object is for no kernel
    assert not obj.externs["bpf_lru_gen_scan_task"].weak


def test_damon_object_shape():
    obj = elf_reader.read(DAMON)
    assert obj.license == "GPL"
    progs = {n: (p.section, p.attach_target) for n, p in obj.programs.items()}
    assert progs == {"aggregated": ("tracepoint/damon/damon_aggregated",
                                    "damon/damon_aggregated")}
    regions = obj.maps["regions"]
    # key: aggregation, target index (and pad), start
    assert (regions.type, regions.key_size, regions.value_size) == (MapType.HASH, 24, 16)
    assert {v for v in obj.variables} >= {"kdamond_pid", "aggregations", "dropped_regions",
                                          "last_target", "last_start"}
