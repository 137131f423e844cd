"""The BTF codec: decode -> encode -> decode round trips on the
running kernel's vmlinux BTF and on every test object, every BTF kind (checked against
bpftool's own decoder), split BTF, and malformed data (always BTFError, never another
exception)."""

from __future__ import annotations

import os
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfc import BPF_SRC, build_object
from bpfload.btf import format as btf_format
from bpfload.btf.encode import StringTable, encode
from bpfload.btf.kernel import SYSFS_BTF, VMLINUX, open_btf
from bpfload.btf.spec import Spec
from bpfload.btf.types import (
    Array,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    EnumValue,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Member,
    Param,
    Ptr,
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarSecinfo,
    Volatile,
)
from bpfload.errors import BTFError


def decode_all(spec: Spec) -> list[Type]:
    return [spec[i] for i in spec.ids()]


def round_trip(spec: Spec) -> None:
    types = decode_all(spec)
    again = Spec(encode(types))
    assert again.count == spec.count
    assert decode_all(again) == types


@pytest.mark.skipif(not os.path.exists(VMLINUX), reason="the kernel has no BTF")
def test_vmlinux_round_trip():
    spec = open_btf(VMLINUX, cache=False)
    assert spec.count > 10000
    round_trip(spec)


@pytest.mark.parametrize("name", sorted(p.name[:-len(".bpf.c")]
                                        for p in BPF_SRC.glob("*.bpf.c")))
def test_object_round_trip(name):
    path = build_object(name)
    spec = open_btf(str(path))  # the .BTF section of the ELF object
    round_trip(spec)


# --- every kind ---------------------------------------------------------------------------

ALL_KINDS = [
    Int("int", 4, btf_format.INT_SIGNED),                         # 1
    Ptr("", 1),                                                   # 2
    Array("", 1, 1, 3),                                           # 3
    Struct("s", 16, [Member("a", 1, 0), Member("bf", 1, 32, 3),
                     Member("p", 2, 64)]),                      # 4
    Union("u", 4, [Member("x", 1, 0), Member("y", 16, 0)]),       # 5
    Enum("e", 4, [EnumValue("NEG", -2), EnumValue("POS", 7)], signed=True),  # 6
    Fwd("fwd_union", union=True),                                 # 7
    Typedef("int_t", 1),                                          # 8
    Volatile("", 1),                                              # 9
    Const("", 9),                                                 # 10
    Restrict("", 2),                                              # 11
    Func("f", 13, btf_format.LINKAGE_GLOBAL),                     # 12
    FuncProto("", 1, [Param("arg", 2), Param("", 16)]),           # 13
    Var("v", 1, btf_format.LINKAGE_GLOBAL),                       # 14
    Datasec(".data", 4, [VarSecinfo(14, 0, 4)]),                  # 15
    Float("float", 4),                                            # 16
    DeclTag("tag", 12, 0),                                        # 17
    TypeTag("user", 1),                                           # 18
    Enum64("e64", 8, [EnumValue("BIG", 1 << 40), EnumValue("U", (1 << 64) - 1)]),  # 19
    Enum64("s64", 8, [EnumValue("MIN", -(1 << 63))], signed=True),
    Int("_Bool", 1, btf_format.INT_BOOL, 0, 1),
    DeclTag("whole", 4, -1),
]


def test_every_kind_round_trips():
    spec = Spec(encode(ALL_KINDS))
    assert {spec.kind_of(i) for i in spec.ids()} == set(range(1, btf_format.KIND_MAX + 1))
    assert decode_all(spec) == ALL_KINDS
    assert spec.find("e64", btf_format.KIND_ENUM64) == [19]
    assert spec[19].values[1].value == (1 << 64) - 1
    assert spec[20].values[0].value == -(1 << 63)
    assert spec.describe(3) == "int[3]" and spec.describe(10) == "const volatile int"


def test_every_kind_as_bpftool_reads_it(tmp_path):
    """bpftool (libbpf's decoder) reads what bpfload encodes as bpfload means it."""
    path = tmp_path / "all.btf"
    path.write_bytes(encode(ALL_KINDS))
    r = subprocess.run(["bpftool", "btf", "dump", "file", str(path)], capture_output=True,
                       text=True)
    if r.returncode and "No such file" in r.stderr and not os.path.exists("/usr/sbin/bpftool"):
        pytest.skip("bpftool is not installed")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for line in [
        "[1] INT 'int' size=4 bits_offset=0 nr_bits=32 encoding=SIGNED",
        "[2] PTR '(anon)' type_id=1",
        "[3] ARRAY '(anon)' type_id=1 index_type_id=1 nr_elems=3",
        "[4] STRUCT 's' size=16 vlen=3",
        "'bf' type_id=1 bits_offset=32 bitfield_size=3",
        "[5] UNION 'u' size=4 vlen=2",
        "[6] ENUM 'e' encoding=SIGNED size=4 vlen=2",
        "'NEG' val=-2",
        "[7] FWD 'fwd_union' fwd_kind=union",
        "[8] TYPEDEF 'int_t' type_id=1",
        "[9] VOLATILE '(anon)' type_id=1",
        "[10] CONST '(anon)' type_id=9",
        "[11] RESTRICT '(anon)' type_id=2",
        "[12] FUNC 'f' type_id=13 linkage=global",
        "[13] FUNC_PROTO '(anon)' ret_type_id=1 vlen=2",
        "'arg' type_id=2",
        "[14] VAR 'v' type_id=1, linkage=global",
        "[15] DATASEC '.data' size=4 vlen=1",
        "type_id=14 offset=0 size=4 (VAR 'v')",
        "[16] FLOAT 'float' size=4",
        "[17] DECL_TAG 'tag' type_id=12 component_idx=0",
        "[18] TYPE_TAG 'user' type_id=1",
        "[19] ENUM64 'e64' encoding=UNSIGNED size=8 vlen=2",
        "'BIG' val=1099511627776ULL",
        "'U' val=18446744073709551615ULL",
        "[20] ENUM64 's64' encoding=SIGNED size=8 vlen=1",
        "'MIN' val=-9223372036854775808LL",
        "[21] INT '_Bool' size=1 bits_offset=0 nr_bits=1 encoding=BOOL",
        "[22] DECL_TAG 'whole' type_id=4 component_idx=-1",
    ]:
        assert line in out, f"{line!r} not in bpftool's dump:\n{out}"


# --- split BTF ------------------------------------------------------------------------------


def _module_names() -> list[str]:
    try:
        return sorted(n for n in os.listdir(SYSFS_BTF) if n != "vmlinux")
    except OSError:
        return []


def test_split_btf_round_trip():
    if _module_names():
        base = open_btf(VMLINUX)
        split = open_btf(os.path.join(SYSFS_BTF, _module_names()[0]), base, cache=False)
        print(f"module BTF: {_module_names()[0]}")
    else:
        print("no module BTF in /sys/kernel/btf: using a synthetic split blob")
        base = Spec(encode(ALL_KINDS[:5]))
        own = [Struct("mod_s", 8, [Member("base_int", 1, 0), Member("p", 7, 0)]),
               Typedef("s", 4),  # a name the base already has: its string is reused
               Ptr("", base.next_id)]
        split = Spec(encode(own, StringTable(base)), base)
        assert split.first_id == base.next_id
        assert split[split.first_id].members[1].type == base.next_id + 1
        assert split.find("s") == [4, base.next_id + 1]
        assert split.find("mod_s", btf_format.KIND_STRUCT) == [base.next_id]
        assert split.string_offset("s") == base.string_offset("s")
    types = decode_all(split)
    again = Spec(encode(types, StringTable(split.base)), split.base)
    assert decode_all(again) == types
    assert split[1] == split.base[1]  # base ids resolve through the split blob


def test_split_blob_whose_strings_start_without_nul():
    base = Spec(encode([Int("int", 4, btf_format.INT_SIGNED)]))
    raw = encode([Struct("first", 4, [Member("x", 1, 0)])], StringTable(base))
    split = Spec(raw, base)
    assert split._strings[:1] != b"\0"  # the kernel allows this for split BTF
    assert split.find("first") == [2] and split.find_flavors("first") == [2]


# --- malformed data ------------------------------------------------------------------------

VALID = encode(ALL_KINDS)


def _decode_everything(data: bytes) -> None:
    spec = Spec(data)
    for i in spec.ids():
        t = spec[i]
        spec.describe(i)
        for ref in t.refs():
            spec.kind_of(ref) if ref in spec else None
    spec.find("s")
    spec.find_flavors("e")


def _only_btf_errors(data: bytes) -> None:
    try:
        _decode_everything(data)
    except BTFError:
        pass


def test_unknown_kind_is_named():
    data = bytearray(VALID)
    first_type = btf_format.HEADER_SIZE
    info = btf_format.U32.unpack_from(data, first_type + 4)[0]
    btf_format.U32.pack_into(data, first_type + 4, (info & ~(0x1F << 24)) | (25 << 24))
    with pytest.raises(BTFError, match="unknown BTF kind 25"):
        Spec(bytes(data))


@pytest.mark.parametrize("data,why", [
    (b"", "too short"),
    (VALID[:10], "too short"),
    (b"\xeb\x9f" + VALID[2:], "big-endian"),
    (b"\x00\x00" + VALID[2:], "not BTF"),
    (VALID[:2] + b"\x02" + VALID[3:], "version"),
    (VALID[:btf_format.HEADER_SIZE + 20], "past the end"),
    (VALID[:-1] + b"x", "NUL-terminated"),
], ids=["empty", "short", "big-endian", "magic", "version", "offsets", "strings"])
def test_malformed_headers(data, why):
    with pytest.raises(BTFError, match=why):
        Spec(data)


def test_truncated_type_section():
    hdr = list(btf_format.HEADER.unpack_from(VALID))
    hdr[5] -= 4  # type_len: cuts the last record short
    data = btf_format.HEADER.pack(*hdr) + VALID[btf_format.HEADER_SIZE:]
    with pytest.raises(BTFError, match="truncated"):
        Spec(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(0, len(VALID)))
def test_truncation_is_a_btf_error(cut):
    _only_btf_errors(VALID[:cut])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)),
                min_size=1, max_size=8))
def test_corruption_is_a_btf_error(edits):
    data = bytearray(VALID)
    for pos, byte in edits:
        data[pos] = byte
    _only_btf_errors(bytes(data))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_garbage_after_a_valid_header_is_a_btf_error(body):
    half = len(body) // 2
    hdr = btf_format.HEADER.pack(btf_format.MAGIC, btf_format.VERSION, 0, btf_format.HEADER_SIZE,
                                 0, half, half, len(body) - half)
    _only_btf_errors(hdr + body)


def test_encode_refuses_values_out_of_range():
    with pytest.raises(BTFError, match="cannot encode"):
        encode([Int("int", 1 << 40)])
    with pytest.raises(BTFError, match="too many members"):
        encode([Struct("big", 4, [Member("m", 0, 0)] * 70000)])


def test_reading_back_struct_layout():
    """The wire layout of one struct record, byte by byte."""
    raw = encode([Int("int", 4, btf_format.INT_SIGNED), Struct("s", 8, [Member("b", 1, 36, 4)])])
    types = raw[btf_format.HEADER_SIZE:]
    name_off, info, size = struct.unpack_from("<III", types, 16)
    assert info == (1 << 31) | (btf_format.KIND_STRUCT << 24) | 1 and size == 8
    assert struct.unpack_from("<III", types, 28)[2] == (4 << 24) | 36


@pytest.mark.parametrize("types", [
    [Ptr("", 1)],  # a pointer to itself
    [Const("", 2), Array("", 1, 1, 4)],  # const array of itself
])
def test_looping_type_chains_are_btf_errors(types):
    """describe() (used by `show` and error messages) on a loop that malformed BTF can
    hold is a BTFError, not a RecursionError (found by the fuzz test on Python 3.9)."""
    spec = Spec(encode(types))
    with pytest.raises(BTFError, match="looping"):
        spec.describe(1)


def test_self_containing_types_are_loader_errors():
    """Values of a struct that contains itself, and prototypes nested without end,
    end in the loader's errors, not RecursionError or an internal exception."""
    from bpfload.btf import values
    from bpfload.btf.core import types_are_compat
    from bpfload.errors import BPFLoadError

    spec = Spec(encode([Int("int", 4, btf_format.INT_SIGNED),
                        Struct("loop", 8, [Member("a", 1), Member("self", 2, 32)])]))
    with pytest.raises(BTFError, match="contains itself"):
        values.decode(spec, 2, bytes(8))
    deep_value: dict = {}
    for _ in range(2000):
        deep_value = {"self": deep_value}
    with pytest.raises(BTFError, match="contains itself"):
        values.encode(spec, 2, deep_value)
    # int (*)(int (*)(int (*)(...))) nested 40 deep
    types = [Int("int", 4, btf_format.INT_SIGNED)]
    for i in range(40):
        proto = len(types) + 1
        types += [FuncProto("", 1, [Param("", proto + 2 if i < 39 else 1)]),
                  Ptr("", proto)]
    deep = Spec(encode(types))
    with pytest.raises(BPFLoadError, match="nest too deeply"):
        types_are_compat(deep, 2, deep, 2)
