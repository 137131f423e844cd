"""The patched kernel, seen from inside the guest (tests/guest/conftest.py boots it):
the series' interface in vmlinux BTF, the MGLRU settings and NUMA nodes the other guest
tests rely on, and the debugfs aging. What the tracepoint reports and what the kfunc
does is tested by the series' own selftest (test_kernel_selftest.py).
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("HEATMAP_IN_GUEST") != "1", reason="runs inside the test guest only"
)

BTF_PATH = "/sys/kernel/btf/vmlinux"
LRU_GEN_DEBUGFS = "/sys/kernel/debug/lru_gen"


# --------------------------------------------------------------------------- BTF


def read_btf(path: str = BTF_PATH) -> tuple[dict[str, tuple[int, list[str]]],
                                              dict[str, int]]:
    """From a raw BTF blob: FUNC name -> (linkage, parameter names), and every ENUM
    value name -> value."""
    data = Path(path).read_bytes()
    magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
        "<HBBIIIII", data)
    assert magic == 0xEB9F, "not a BTF blob"
    types = data[hdr_len + type_off: hdr_len + type_off + type_len]
    strs = data[hdr_len + str_off: hdr_len + str_off + str_len]

    def name(off: int) -> str:
        return strs[off: strs.index(b"\0", off)].decode()

    extra = {1: lambda v: 4, 3: lambda v: 12, 4: lambda v: 12 * v, 5: lambda v: 12 * v,
             6: lambda v: 8 * v, 13: lambda v: 8 * v, 14: lambda v: 4, 15: lambda v: 12 * v,
             17: lambda v: 4, 19: lambda v: 12 * v}
    entries = [None]  # type id 0 is void
    pos = 0
    while pos < len(types):
        name_off, info, size_type = struct.unpack_from("<III", types, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        start = pos + 12
        pos = start + extra.get(kind, lambda v: 0)(vlen)
        entries.append((kind, name_off, vlen, size_type, start))
    funcs, enums = {}, {}
    for entry in entries[1:]:
        kind, name_off, vlen, size_type, start = entry
        if kind == 6:  # BTF_KIND_ENUM: (name, value) pairs
            for i in range(vlen):
                v_name, value = struct.unpack_from("<Ii", types, start + 8 * i)
                enums[name(v_name)] = value
        if kind != 12:  # BTF_KIND_FUNC; vlen is the linkage
            continue
        proto = entries[size_type]
        params = []
        if proto and proto[0] == 13:
            for i in range(proto[2]):
                p_name, _p_type = struct.unpack_from("<II", types, proto[4] + 8 * i)
                params.append(name(p_name))
        funcs[name(name_off)] = (vlen, params)
    return funcs, enums


@pytest.fixture(scope="module")
def btf():
    if not os.path.exists(BTF_PATH):
        pytest.fail(f"{BTF_PATH} missing: kernel built without CONFIG_DEBUG_INFO_BTF")
    return read_btf()


@pytest.fixture(scope="module")
def btf_funcs(btf):
    return btf[0]


@pytest.mark.parametrize("func, params", [
    # the tracepoint's BPF entry: what raw_tp and tp_btf programs get, after __data
    ("__bpf_trace_lru_gen_young_tp", ["__data", "mm", "nid", "addr", "nr_pages", "flags"]),
    ("bpf_lru_gen_scan_task", ["task", "flags"]),
])
def test_series_interface_in_vmlinux_btf(btf_funcs, func, params):
    assert func in btf_funcs, f"{func} is not in {BTF_PATH}"
    assert btf_funcs[func][1] == params


@pytest.mark.parametrize("func", ["lru_gen_bpf_young_pte", "lru_gen_bpf_skip_mm",
                                  "lru_gen_bpf_flush_tlb", "bpf_lru_gen_age_cgroup"])
def test_the_old_hooks_are_gone(btf_funcs, func):
    assert func not in btf_funcs


def test_the_flags_heatmap_bpf_c_spells_out_are_the_kernels(btf):
    """kernel/heatmap.bpf.c defines the values of the series' enums itself (it is built
    without vmlinux.h): they must be what this kernel's BTF says."""
    source = (Path(__file__).resolve().parents[2] / "kernel" / "heatmap.bpf.c").read_text()
    defined = dict(re.findall(r"^#define ((?:LRU_GEN_YOUNG|BPF_LRU_GEN_SCAN)_\w+)\s+(\d+)$",
                              source, re.M))
    assert set(defined) == {"LRU_GEN_YOUNG_ANON", "BPF_LRU_GEN_SCAN_FLUSH_TLB"}
    for name, value in defined.items():
        assert btf[1].get(name) == int(value), name


# --------------------------------------------------------------------------- sysfs, NUMA


def test_page_table_walk_enabled():
    value = int(Path("/sys/kernel/mm/lru_gen/enabled").read_text(), 16)
    assert value & 0x0001, "MGLRU is off"
    assert value & 0x0002, f"the page table walk bit 0x0002 is off ({value:#06x})"


def test_two_numa_nodes_with_memory():
    assert Path("/sys/devices/system/node/online").read_text().strip() == "0-1"
    assert Path("/sys/devices/system/node/has_memory").read_text().strip() == "0-1"


# --------------------------------------------------------------------------- helpers


def lru_gen_state() -> dict[tuple[str, int], dict]:
    """(memcg path, node) -> {"memcg_id": id, "max_seq": n} from debugfs lru_gen."""
    state: dict[tuple[str, int], dict] = {}
    memcg_id, path, node = None, None, None
    for line in Path(LRU_GEN_DEBUGFS).read_text().splitlines():
        m = re.match(r"memcg\s+(\d+)\s+(.*)$", line)
        if m:
            memcg_id, path = int(m.group(1)), m.group(2).strip()
            continue
        m = re.match(r"\s+node\s+(\d+)", line)
        if m:
            node = int(m.group(1))
            state[(path, node)] = {"memcg_id": memcg_id, "max_seq": None}
            continue
        m = re.match(r"\s+(\d+)\s+\d+", line)
        if m and node is not None:
            state[(path, node)]["max_seq"] = int(m.group(1))
    return state


def age_debugfs(memcg_path: str = "/") -> dict[int, int]:
    """Age every node of a memcg through debugfs; return node -> max_seq before."""
    before = {}
    cmds = []
    for (path, node), st in lru_gen_state().items():
        if path == memcg_path:
            before[node] = st["max_seq"]
            cmds.append(f"+ {st['memcg_id']} {node} {st['max_seq']} 1 1")
    assert cmds, f"memcg {memcg_path!r} not in {LRU_GEN_DEBUGFS}"
    with open(LRU_GEN_DEBUGFS, "w") as f:
        f.write(";".join(cmds))
    return before


def max_seqs(memcg_path: str = "/") -> dict[int, int]:
    return {node: st["max_seq"] for (path, node), st in lru_gen_state().items()
            if path == memcg_path}


def test_debugfs_aging_advances_max_seq():
    before = age_debugfs("/")
    after = max_seqs("/")
    assert set(before) == {0, 1}
    for node, seq in before.items():
        assert after[node] == seq + 1, f"node {node}: max_seq {seq} -> {after[node]}"


