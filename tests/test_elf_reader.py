"""The object model built from the tests' own compiled programs (no root, no kernel)."""

from __future__ import annotations

import pytest

from bpfload import elf_reader, model, sections
from bpfload.errors import ObjectError
from bpfload.sys.constants import AttachType, MapFlags, MapType, ProgType


@pytest.fixture(scope="module")
def globals_obj(bpf_object):
    return elf_reader.read(bpf_object("globals"))


@pytest.fixture(scope="module")
def relocs_obj(bpf_object):
    return elf_reader.read(bpf_object("relocs"))


EXPECTED_KINDS = {
    "p_fentry": (ProgType.TRACING, AttachType.TRACE_FENTRY, "do_nanosleep", False),
    "p_fexit": (ProgType.TRACING, AttachType.TRACE_FEXIT, "do_nanosleep", False),
    "p_fmod_ret": (ProgType.TRACING, AttachType.MODIFY_RETURN, "security_file_open", False),
    "p_fentry_s": (ProgType.TRACING, AttachType.TRACE_FENTRY, "do_nanosleep", True),
    "p_kprobe": (ProgType.KPROBE, 0, "do_nanosleep", False),
    "p_kretprobe": (ProgType.KPROBE, 0, "do_nanosleep", False),
    "p_tracepoint": (ProgType.TRACEPOINT, 0, "syscalls/sys_enter_getpid", False),
    "p_tp": (ProgType.TRACEPOINT, 0, "sched/sched_switch", False),
    "p_raw_tracepoint": (ProgType.RAW_TRACEPOINT, 0, "sys_enter", False),
    "p_raw_tp": (ProgType.RAW_TRACEPOINT, 0, "sys_exit", False),
    "p_tp_btf": (ProgType.TRACING, AttachType.TRACE_RAW_TP, "sched_switch", False),
    "p_lsm": (ProgType.LSM, AttachType.LSM_MAC, "file_open", False),
    "p_syscall": (ProgType.SYSCALL, 0, "", True),
    "p_socket": (ProgType.SOCKET_FILTER, 0, "", False),
    "p_xdp": (ProgType.XDP, AttachType.XDP, "", False),
    "p_tc": (ProgType.SCHED_CLS, 0, "", False),
    "p_classifier": (ProgType.SCHED_CLS, 0, "", False),
    "p_perf_event": (ProgType.PERF_EVENT, 0, "", False),
}


def test_section_kinds(bpf_object):
    obj = elf_reader.read(bpf_object("sections"))
    assert set(obj.programs) == set(EXPECTED_KINDS)
    for name, (ptype, atype, target, sleepable) in EXPECTED_KINDS.items():
        p = obj.programs[name]
        assert (p.prog_type, p.attach_type, p.attach_target, p.sdef.sleepable) == \
            (ptype, atype, target, sleepable), name


@pytest.mark.parametrize("name", ["kprobe_foo", "uprobex/x", "fentry_x", "weird", "tp_btfx/y"])
def test_unknown_section_is_a_clear_error(name):
    with pytest.raises(ObjectError, match=f"unknown program section '{name}'"):
        sections.lookup(name)


def test_license_and_name(globals_obj):
    assert globals_obj.license == "GPL"
    assert globals_obj.name == "globals"


def test_btf_defined_maps(globals_obj):
    results = globals_obj.maps["results"]
    assert (results.type, results.key_size, results.value_size, results.max_entries,
            results.origin) == (MapType.HASH, 4, 8, 16, "btf")
    btf = globals_obj.btf
    assert btf.describe(results.btf_key_type) == "__u32"
    assert btf.describe(results.btf_value_type) == "__u64"
    counters = globals_obj.maps["counters"]  # sizes given with __uint(key_size, ...)
    assert (counters.type, counters.key_size, counters.value_size, counters.max_entries) == \
        (MapType.ARRAY, 4, 8, 4)
    assert counters.btf_key_type == 0


def test_legacy_maps(bpf_object):
    obj = elf_reader.read(bpf_object("legacy_maps"))
    h, a = obj.maps["legacy_hash"], obj.maps["legacy_array"]
    assert (h.type, h.key_size, h.value_size, h.max_entries, h.flags, h.origin) == \
        (MapType.HASH, 4, 8, 32, MapFlags.NO_PREALLOC, "legacy")
    assert (a.type, a.key_size, a.value_size, a.max_entries) == (MapType.ARRAY, 4, 16, 2)
    relocs = obj.programs["use_legacy"].function.relocs
    assert [(r.kind, r.target) for r in relocs] == [(model.RELOC_MAP, "legacy_hash"),
                                                    (model.RELOC_MAP, "legacy_array")]


def test_global_data_maps_and_layout(globals_obj):
    data = {m.section: m for m in globals_obj.maps.values() if m.is_data}
    assert set(data) == {".rodata", ".data", ".bss", ".data.custom", ".rodata.config"}
    # libbpf's names: object prefix for the classic three, section name for custom ones
    assert {m.name for m in data.values()} == {"globals.rodata", "globals.data", "globals.bss",
                                              ".data.custom", ".rodata.config"}
    assert data[".rodata"].readonly and not data[".data"].readonly
    assert data[".bss"].data == bytes(data[".bss"].value_size)
    assert data[".data"].data[:8] == (7).to_bytes(8, "little")
    v = globals_obj.variables
    assert (v["multiplier"].section, v["multiplier"].offset, v["multiplier"].size) == \
        (".rodata", 0, 8)
    assert (v["rodata_array"].offset, v["rodata_array"].size) == (8, 16)
    assert (v["data_small"].section, v["data_small"].offset) == (".data", 8)
    assert (v["custom_value"].section, v["config_flag"].section) == (".data.custom",
                                                                      ".rodata.config")
    assert not v["hidden_counter"].is_global and v["bss_out"].is_global
    assert globals_obj.btf.describe(v["rodata_array"].btf_type) == "const volatile __u32[4]"


def test_internal_map_names_follow_libbpf():
    assert elf_reader.internal_map_name("my_object_name", ".rodata") == "my_objec.rodata"
    assert elf_reader.internal_map_name("my_object_name", ".bss") == "my_objec.bss"
    assert elf_reader.internal_map_name("my_object_name", ".kconfig") == "my_obje.kconfig"
    assert elf_reader.internal_map_name("x", ".rodata.abracadabra") == ".rodata.abracad"
    assert model.object_name("/a/b/heatmap.bpf.o") == "heatmap"


def _relocs(fn):
    return [(r.kind, r.target, r.offset) for r in fn.relocs]


def test_data_relocations_carry_variable_offsets(globals_obj):
    relocs = _relocs(globals_obj.programs["run_globals"].function)
    data = [(t, off) for k, t, off in relocs if k == model.RELOC_DATA]
    # bss_calls (0), data_in (0), multiplier (0), rodata_array[2] (8 + 8), config_flag,
    # custom_value, bss_out (8), hidden_counter via the static subprogram not here
    assert (".bss", 0) in data and (".bss", 8) in data and (".data", 0) in data
    assert (".rodata", 0) in data and (".rodata", 8) in data
    assert (".rodata.config", 0) in data and (".data.custom", 0) in data
    square = globals_obj.functions[model.function_key(".text", "square")]
    assert _relocs(square) == [(model.RELOC_DATA, ".bss", 16)]  # static hidden_counter


def test_map_relocations(globals_obj):
    relocs = _relocs(globals_obj.programs["run_globals"].function)
    assert [t for k, t, _ in relocs if k == model.RELOC_MAP] == ["results", "results"]


def test_call_relocations_static_global_and_other_section(relocs_obj):
    prog = relocs_obj.programs["run_relocs"].function
    calls = [t for k, t, _ in _relocs(prog) if k == model.RELOC_CALL]
    assert calls == [".text:text_global", ".text.extra:extra_global"]
    # a static call inside one section has no relocation: its pc-relative imm is final
    text_global = relocs_obj.functions[".text:text_global"]
    text_static = relocs_obj.functions[".text:text_static"]
    assert _relocs(text_global) == []
    (idx, call), = [(i, x) for i, x in enumerate(text_global.insns) if x.is_call and x.src == 1]
    assert text_global.start + idx + call.imm + 1 == text_static.start
    assert not relocs_obj.functions[".text:text_static"].is_global
    assert relocs_obj.functions[".text.extra:extra_global"].is_global
    assert "extra_global" not in relocs_obj.programs  # .text.* holds subprograms


def test_callback_address_relocation(relocs_obj):
    prog = relocs_obj.programs["run_relocs"].function
    assert (model.RELOC_FUNC_ADDR, ".text:loop_body", 0) in _relocs(prog)


def test_btf_ext_records_are_per_function(globals_obj):
    fn = globals_obj.programs["run_globals"].function
    assert [f.insn for f in fn.func_info] == [0]
    assert globals_obj.btf[fn.func_info[0].type_id].name == "run_globals"
    assert fn.line_info and all(0 <= li.insn < len(fn.insns) for li in fn.line_info)
    assert fn.line_info[0].file.endswith("globals.bpf.c")
    square = globals_obj.functions[".text:square"]
    assert globals_obj.btf[square.func_info[0].type_id].name == "square"


def test_reads_from_bytes(bpf_object):
    data = bpf_object("globals").read_bytes()
    obj = elf_reader.read(data, name="from_memory.o")
    assert obj.name == "from_memory" and set(obj.programs) == {"run_globals", "write_rodata"}


def test_not_elf_and_not_bpf(tmp_path):
    p = tmp_path / "x.o"
    p.write_bytes(b"hello")
    with pytest.raises(ObjectError, match="not an ELF file"):
        elf_reader.read(p)
    import sys
    with pytest.raises(ObjectError, match="not a BPF object"):
        elf_reader.read(sys.executable)
    with pytest.raises(ObjectError, match="cannot read"):
        elf_reader.read(tmp_path / "missing.o")


def test_missing_pyelftools_is_named_not_a_malformed_object(bpf_object, monkeypatch):
    """Without pyelftools the error says what to install, not that the object is bad."""
    import sys

    from bpfload.btf.kernel import open_btf
    from bpfload.errors import BPFLoadError

    monkeypatch.setitem(sys.modules, "elftools.elf.elffile", None)  # import fails
    for read in (elf_reader.read, lambda p: open_btf(p, cache=False)):
        with pytest.raises(BPFLoadError) as err:
            read(bpf_object("relocs"))
        assert not isinstance(err.value, ObjectError)
        assert "needs pyelftools" in str(err.value) and "malformed" not in str(err.value)


def test_values_arrays_imply_a_four_byte_value(bpf_object):
    """__array(values, ...) makes value_size 4 for program arrays as for map-in-map
    (libbpf's parse_btf_map_def); without it the kernel refuses the map."""
    obj = elf_reader.read(bpf_object("map_kinds"))
    jumps, outer = obj.maps["jumps"], obj.maps["outer"]
    assert (jumps.type, jumps.key_size, jumps.value_size) == (MapType.PROG_ARRAY, 4, 4)
    assert jumps.inner is None
    assert (outer.type, outer.value_size, outer.inner.type) == (MapType.ARRAY_OF_MAPS, 4,
                                                                MapType.ARRAY)
    assert (outer.inner.key_size, outer.inner.value_size) == (4, 8)


def test_question_mark_sections_are_not_autoloaded(bpf_object):
    """SEC("?name") is SEC("name") with autoload off (libbpf): the name without '?'
    decides the kind and the attach target."""
    obj = elf_reader.read(bpf_object("optional"))
    progs = obj.programs
    assert [(n, p.section, p.autoload) for n, p in sorted(progs.items())] == [
        ("always", "syscall", True), ("on_request", "syscall", False),
        ("on_request_tp", "raw_tp/sys_enter", False)]
    assert progs["on_request_tp"].attach_target == "sys_enter"
    assert progs["on_request_tp"].prog_type == ProgType.RAW_TRACEPOINT


def test_btf_errors_name_the_object(bpf_object):
    import io

    from elftools.elf.elffile import ELFFile

    from bpfload.errors import BTFError

    path = bpf_object("attach")
    data = bytearray(path.read_bytes())
    btf = ELFFile(io.BytesIO(bytes(data))).get_section_by_name(".BTF")
    data[btf["sh_offset"] + 4] = 22  # the header length field
    with pytest.raises(BTFError, match=r"^<corrupt>: bad BTF header length 22$"):
        elf_reader.read(bytes(data), name="<corrupt>")
