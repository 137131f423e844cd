"""Corrupt objects: truncated or bit-flipped ELF files only ever raise the loader's own
error type (or parse, if the damage is harmless) — never a parser's internal error."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfload import asm, elf_reader, linker
from bpfload.errors import BPFLoadError

OBJECTS = ["globals", "relocs", "attach", "legacy_maps", "sections"]
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def blobs(bpf_object):
    return {name: bpf_object(name).read_bytes() for name in OBJECTS}


def _read(data: bytes) -> None:
    try:
        obj = elf_reader.read(data, name="fuzzed.o")
    except BPFLoadError:
        return
    # a damaged object that still parses must still be usable as a model: every program
    # links (or fails with the loader's error) and encodes to whole instructions
    fds = {name: 100 + i for i, name in enumerate(obj.maps)}
    for prog in obj.programs.values():
        try:
            linked = linker.link(obj, prog, map_fds=fds, externs={})
        except BPFLoadError:
            continue
        assert len(asm.encode(linked.insns)) == 8 * len(linked.insns) > 0


@SETTINGS
@given(name=st.sampled_from(OBJECTS), cut=st.floats(0, 1, exclude_max=True))
def test_truncated(blobs, name, cut):
    data = blobs[name]
    _read(data[:int(len(data) * cut)])


@SETTINGS
@given(name=st.sampled_from(OBJECTS),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
                      min_size=1, max_size=8))
def test_bit_flipped(blobs, name, flips):
    data = bytearray(blobs[name])
    for where, bit in flips:
        data[int(len(data) * where)] ^= 1 << bit
    _read(bytes(data))


@SETTINGS
@given(name=st.sampled_from(OBJECTS), start=st.floats(0, 1, exclude_max=True),
       junk=st.binary(min_size=1, max_size=64))
def test_overwritten_span(blobs, name, start, junk):
    data = bytearray(blobs[name])
    at = int(len(data) * start)
    data[at:at + len(junk)] = junk
    _read(bytes(data[:len(blobs[name])]))


def test_header_only_and_empty():
    for data in (b"", b"\x7fELF", b"\x7fELF" + b"\0" * 60):
        with pytest.raises(BPFLoadError):
            elf_reader.read(data)


def test_datasec_naming_a_missing_type_is_a_btf_error():
    """Fix-ups for BTF_LOAD follow DATASEC entries to their VARs: an id past the end
    (a damaged .BTF that still decodes) is a BTFError, not an IndexError."""
    from types import SimpleNamespace

    from bpfload.btf import fixup
    from bpfload.btf import format as btf_format
    from bpfload.btf.encode import encode
    from bpfload.btf.spec import Spec
    from bpfload.btf.types import Datasec, Func, Int, Var, VarSecinfo
    from bpfload.errors import BTFError

    i32 = Int("int", 4, btf_format.INT_SIGNED)
    spec = Spec(encode([i32, Var("x", 1, btf_format.LINKAGE_GLOBAL),
                        Datasec(".data", 4, [VarSecinfo(99, 0, 4)])]))
    obj = SimpleNamespace(btf=spec, section_sizes={".data": 4}, data_symbols={"x": (0, False)},
                          functions={})
    with pytest.raises(BTFError, match="type id 99 out of range"):
        fixup.program_types(obj)
    # .ksyms naming a FUNC without a prototype, .kconfig naming a non-variable
    for sec, bad in ((".ksyms", Func("f", 1, btf_format.LINKAGE_EXTERN)),
                     (".kconfig", Int("i", 4))):
        spec = Spec(encode([i32, bad,
                            Datasec(sec, 4, [VarSecinfo(2, 0, 4)])]))
        obj = SimpleNamespace(btf=spec, section_sizes={}, data_symbols={}, externs={},
                              functions={})
        with pytest.raises(BTFError):
            fixup.program_types(obj)


def test_non_ascii_license_reaches_the_kernel_not_a_ctypes_error(blobs, root):
    """A license with bytes outside ASCII (decoded with replacement characters) is
    passed on; it used to overflow the buffer sized in characters (ValueError)."""
    import io

    from elftools.elf.elffile import ELFFile

    import bpfload

    data = bytearray(blobs["relocs"])
    lic = ELFFile(io.BytesIO(bytes(data))).get_section_by_name("license")
    data[lic["sh_offset"]:lic["sh_offset"] + 3] = b"G\xe9L"
    obj = bpfload.BPFObject(bytes(data), name="relocs.o")
    try:
        obj.load()
    except bpfload.BPFLoadError:
        pass
    finally:
        obj.close()


def test_global_data_offset_outside_its_section_is_a_relocation_error(blobs):
    """A damaged symbol value can put a global-data reference far outside its section;
    the kernel refuses offsets past the value, and one past 2**31 did not even encode
    (struct.error)."""
    from bpfload import linker, model
    from bpfload.errors import RelocationError

    obj = elf_reader.read(blobs["relocs"], name="relocs.o")
    prog = obj.programs["run_relocs"]
    relocs = [r for f in obj.functions.values() for r in f.relocs
              if r.kind == model.RELOC_DATA]
    assert relocs
    fds = {name: 100 + i for i, name in enumerate(obj.maps)}
    for bad in (1 << 43, obj.maps["relocs.bss"].value_size):
        for r in relocs:
            r.offset = bad
        with pytest.raises(RelocationError, match=f"offset {bad} of .bss"):
            linker.link(obj, prog, map_fds=fds, externs={})


def test_static_call_to_no_function_is_a_relocation_error(blobs):
    """A damaged pc-relative call (no relocation: a static call inside one section) that
    lands inside a function, not at one's start, is the loader's error, not an
    internal one."""
    from bpfload import linker
    from bpfload.errors import RelocationError

    obj = elf_reader.read(blobs["relocs"], name="relocs.o")
    caller = obj.functions[".text:text_global"]
    call = next(i for i in caller.insns if i.is_call and i.src == 1)
    call.imm += 1  # one instruction past the callee's start
    fds = {name: 100 + i for i, name in enumerate(obj.maps)}
    with pytest.raises(RelocationError, match="which starts no function"):
        linker.link(obj, obj.programs["run_relocs"], map_fds=fds, externs={})
