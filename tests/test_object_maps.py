"""What an object's map definitions ask of a load (root, the running kernel): initial
values from .rel.maps, every map type, ring buffer and perf array sizing, arenas,
struct_ops maps, LIBBPF_PIN_BY_NAME pinning."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import bpfc
import bpfload
from bpfload import elf_reader, map_setup
from bpfload.btf import format as F
from bpfload.btf.kernel import KernelBTF
from bpfload.errors import BPFLoadError, ObjectError, VerifierError
from bpfload.procfs import possible_cpus
from bpfload.sys.constants import MapFlags, MapType
from bpfload.sys.syscall import obj_get

pytestmark = pytest.mark.usefixtures("no_leaks")


# --- initial values (.rel.maps) ---------------------------------------------------------


def test_reader_finds_initial_slots(bpf_object):
    maps = elf_reader.read(bpf_object("map_init")).maps
    assert maps["outer"].init_slots == {0: "first", 2: "second"}
    assert maps["jumps"].init_slots == {1: "target"}
    assert not maps["first"].init_slots


def test_initial_slots_are_filled_at_load(bpf_object):
    with bpfload.load(bpf_object("map_init")) as obj:
        outer = obj.map("outer")
        assert int.from_bytes(outer.lookup_raw(bytes(4)), "little") == obj.map("first").id
        assert int.from_bytes(outer.lookup_raw((2).to_bytes(4, "little")), "little") == \
            obj.map("second").id
        assert outer.lookup_raw((1).to_bytes(4, "little")) is None
        obj.map("second").update(bytes(4), (7).to_bytes(4, "little"))
        # dispatch tail-calls jumps[1] (target), which reads second[0] through outer[2]
        assert obj.program("dispatch").test_run(data=bytes(64)).retval == 107


def test_prog_array_slot_needs_its_program(bpf_object):
    with pytest.raises(BPFLoadError, match="map 'jumps' holds program 'target' in its "
                                           "initial values, which is not loaded"):
        bpfload.load(bpf_object("map_init"), programs=["dispatch"])


# --- every map type -----------------------------------------------------------------------


def test_every_map_type_is_created(bpf_object):
    page = os.sysconf("SC_PAGE_SIZE")
    with bpfload.load(bpf_object("map_types")) as obj:
        infos = {name: m.info() for name, m in obj.maps.items()}
        kinds = {i.type for i in infos.values()}
        assert kinds == set(MapType.items().values()) - {MapType.UNSPEC,
                                                           MapType.STRUCT_OPS}  # (own test)
        assert infos["m_perf_event_array"].max_entries == possible_cpus()
        assert infos["m_ringbuf"].max_entries == 2 * page  # 5000 bytes, rounded up
        assert infos["m_user_ringbuf"].max_entries == 8 * page  # 20000 bytes
        assert infos["m_bloom_filter"].map_extra == 3
        # BTF key/value types where the kernel takes them, and only there (as libbpf)
        assert infos["m_hash"].btf_value_type_id and infos["m_sk_storage"].btf_value_type_id
        assert not infos["m_sockmap"].btf_value_type_id
        assert not infos["m_array_of_maps"].btf_key_type_id
        arena = obj.map("m_arena")
        assert arena.map_arena() == arena.map_arena()  # mapped once, at load


def test_ring_buffer_sizes_follow_libbpf():
    page = os.sysconf("SC_PAGE_SIZE")
    assert map_setup.ringbuf_size(0) == 0
    assert map_setup.ringbuf_size(page) == page
    assert map_setup.ringbuf_size(4 * page) == 4 * page
    assert map_setup.ringbuf_size(3 * page) == 4 * page
    assert map_setup.ringbuf_size(1) == page
    assert map_setup.ringbuf_size(0xFFFFFFFF) == 0xFFFFFFFF  # no such size: left as it is


# --- struct_ops ---------------------------------------------------------------------------


def test_struct_ops_maps_and_programs_take_the_kernels_layout(bpf_object):
    kb = KernelBTF()
    vmlinux = kb.vmlinux
    ops = vmlinux.find_one("tcp_congestion_ops", F.KIND_STRUCT)
    value = vmlinux.find_one("bpf_struct_ops_tcp_congestion_ops", F.KIND_STRUCT)
    members = [m.name for m in vmlinux[ops].members]
    data_offset = next(m.bit_offset for m in vmlinux[value].members if m.type == ops) // 8
    with bpfload.load(bpf_object("struct_ops")) as obj:
        # unused_ca is SEC("?.struct_ops"): not created, and only_unused not loaded
        assert set(obj.maps) == {"bpfload_ca", "bpfload_ca_link"}
        assert set(obj.programs) == {"ca_init", "ca_ssthresh", "ca_cong_avoid",
                                     "ca_undo_cwnd"}
        for name, m in obj.maps.items():
            info = m.info()
            assert (info.type, info.value_size, info.btf_vmlinux_value_type_id) == \
                (MapType.STRUCT_OPS, vmlinux[value].size, value)
            assert bool(info.map_flags & MapFlags.LINK) == (name == "bpfload_ca_link")
        for name, p in obj.programs.items():
            info, _ = p.info()
            assert info.attach_btf_id == ops
            assert p.attach_type == members.index(name[len("ca_"):])
        lay = obj.struct_ops["bpfload_ca"]
        raw = obj.struct_ops_values["bpfload_ca"]
        init = next(m for m in vmlinux[ops].members if m.name == "init")
        off = data_offset + init.bit_offset // 8
        assert lay.func_offsets["ca_init"] == off
        assert int.from_bytes(raw[off:off + 8], "little") == obj.program("ca_init").fileno()
        name_member = next(m for m in vmlinux[ops].members if m.name == "name")
        at = data_offset + name_member.bit_offset // 8
        assert raw[at:at + 11] == b"bpfload_ca\0"


# --- pinning ------------------------------------------------------------------------------


@pytest.fixture
def pin_root(bpffs):
    path = os.path.join(bpffs, f"bpfload-test-pins-{os.getpid()}")
    os.makedirs(path, exist_ok=True)
    yield path
    for name in os.listdir(path):
        os.unlink(os.path.join(path, name))
    os.rmdir(path)


def _count(obj) -> int:
    return obj.program("count").test_run(bytes(8)).retval


def test_pinned_map_outlives_the_object_and_is_reused(bpf_object, pin_root):
    path = os.path.join(pin_root, "bpfload_test_pinned")
    with bpfload.load(bpf_object("pinned"), pin_root=pin_root) as obj:
        assert _count(obj) == 1
        pinned_id = obj.map("bpfload_test_pinned").id
    assert os.listdir(pin_root) == ["bpfload_test_pinned"]  # the other map is not pinned
    with bpfload.load(bpf_object("pinned"), pin_root=pin_root) as obj:
        assert obj.map("bpfload_test_pinned").id == pinned_id
        assert _count(obj) == 2  # the count went on in the same map
    with obj_get(path, "test") as fd:
        assert fd.fileno() > 2


def test_pinned_map_of_another_definition_is_refused(bpf_object, pin_root):
    bpfload.load(bpf_object("pinned"), pin_root=pin_root).close()
    obj = bpfload.BPFObject(bpf_object("pinned"), pin_root=pin_root)
    obj.set_max_entries("bpfload_test_pinned", 2)
    with pytest.raises(BPFLoadError, match="the map pinned at .*bpfload_test_pinned is "
                                           "another map"):
        obj.load()


def test_failed_load_unpins_what_it_pinned(bpf_object, pin_root):
    with pytest.raises(VerifierError):
        bpfload.load(bpf_object("pinned"), pin_root=pin_root, programs=["count", "rejected"])
    assert os.listdir(pin_root) == []
    bpfload.load(bpf_object("pinned"), pin_root=pin_root).close()
    with pytest.raises(VerifierError):  # a map found pinned is left pinned
        bpfload.load(bpf_object("pinned"), pin_root=pin_root, programs=["count", "rejected"])
    assert os.listdir(pin_root) == ["bpfload_test_pinned"]


def test_cli_pin_root(bpf_object, pin_root):
    r = subprocess.run([sys.executable, "-m", "bpfload", "load", str(bpf_object("pinned")),
                        "--pin-root", pin_root], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert os.listdir(pin_root) == ["bpfload_test_pinned"]


def test_only_known_pinning_values_are_taken(tmp_path):
    src = tmp_path / "pin_two.bpf.c"
    src.write_text("#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n"
                   "struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1);\n"
                   "  __type(key, int); __type(value, int); __uint(pinning, 2); }\n"
                   "odd SEC(\".maps\");\n")
    with pytest.raises(ObjectError, match="map 'odd': invalid pinning value 2"):
        elf_reader.read(bpfc.compile_bpf(src, tmp_path))
