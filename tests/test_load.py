"""Loading whole objects into the running kernel (root): global data, subprograms,
maps, .rodata, verifier errors, and that nothing is left behind."""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest

import bpfload
from bpfload.errors import BPFLoadError, VerifierError
from bpfload.sys.constants import MapFlags

pytestmark = pytest.mark.usefixtures("no_leaks")
ARGS = struct.Struct("<QQ")


def test_syscall_program_with_globals_subprograms_and_maps(bpf_object):
    with bpfload.BPFObject(bpf_object("globals")) as obj:
        obj.set("multiplier", 5)
        obj.set_autoload("write_rodata", False)
        obj.load()
        assert set(obj.programs) == {"run_globals"}
        r = obj.program("run_globals").test_run(ARGS.pack(10, 0))
        # square(7) * 5 + rodata_array[2] = 248; + global_add(10, 1) with bss_calls = 1
        assert r.retval == 0 and ARGS.unpack(r.ctx) == (10, 248 + 12)
        assert obj.get("bss_out") == 248 and obj.get("bss_calls") == 1
        assert obj.get("data_in") == 8  # the program incremented .data
        assert obj.get("custom_value") == 47 and obj.get("hidden_counter") == 1
        results = obj.map("results")
        assert results.lookup_raw((1).to_bytes(4, "little")) == (260).to_bytes(8, "little")
        # writes from Python after load are seen by the next run
        obj.set("data_in", 2)
        obj.set("bss_calls", 100)
        r = obj.program("run_globals").test_run(ARGS.pack(0, 0))
        assert obj.get("bss_out") == 4 * 5 + 3 and ARGS.unpack(r.ctx)[1] == 23 + 1 + 101


def test_global_data_maps_are_mmapable_and_rodata_frozen(bpf_object):
    with bpfload.load(bpf_object("globals"), programs=["run_globals"]) as obj:
        rodata, bss = obj.map("globals.rodata"), obj.map("globals.bss")
        assert rodata.flags & MapFlags.RDONLY_PROG and rodata.flags & MapFlags.MMAPABLE
        assert bss.flags & MapFlags.MMAPABLE and not bss.flags & MapFlags.RDONLY_PROG
        with pytest.raises(BPFLoadError, match="frozen"):
            obj.set("multiplier", 9)
        with pytest.raises(bpfload.SyscallError, match="EPERM"):
            rodata.update(b"\0\0\0\0", bytes(24))  # frozen for user space too


def test_rodata_set_before_load_is_seen_and_not_writable_by_programs(bpf_object):
    with bpfload.BPFObject(bpf_object("globals")) as obj:
        obj.set("multiplier", 11)
        obj.set("rodata_array", [9, 9, 9, 9])
        obj.set_autoload("write_rodata", False)
        obj.load()
        obj.program("run_globals").test_run(ARGS.pack(0, 0))
        assert obj.get("bss_out") == 49 * 11 + 9
        assert obj.get("multiplier") == 11
    with bpfload.BPFObject(bpf_object("globals")) as obj, \
            pytest.raises(VerifierError) as err:
        obj.load()
    e = err.value
    assert e.program == "write_rodata" and e.errname == "EACCES"
    assert "write into map forbidden" in str(e)
    assert "globals.bpf.c" in e.log  # line info made it into the log
    assert len(e.log.splitlines()) >= len(e.tail)


def test_verifier_error_message_shape(bpf_object):
    with bpfload.BPFObject(bpf_object("globals")) as obj, pytest.raises(VerifierError) as err:
        obj.load()
    first = str(err.value).splitlines()[0]
    assert first == "loading program 'write_rodata': EACCES (Permission denied)"
    assert all(line.startswith("  verifier: ") for line in str(err.value).splitlines()[1:])


def test_relocations_run_correctly(bpf_object):
    with bpfload.load(bpf_object("relocs")) as obj:
        obj.program("run_relocs").test_run(bytes(8))
        out = obj.map("out")
        assert out.lookup_raw(bytes(4)) == (8 + 101).to_bytes(8, "little")
        assert out.lookup_raw((1).to_bytes(4, "little")) == (3).to_bytes(8, "little")
        assert obj.get("total") == 0 + 1 + 2 + 3


def test_legacy_maps_load_and_work(bpf_object):
    with bpfload.load(bpf_object("legacy_maps")) as obj:
        obj.program("use_legacy").test_run(bytes(8))
        assert obj.map("legacy_hash").lookup_raw((7).to_bytes(4, "little")) == \
            (77).to_bytes(8, "little")


def test_max_entries_override(bpf_object):
    with bpfload.load(bpf_object("globals"), max_entries={"results": 1000},
                      programs=["run_globals"]) as obj:
        assert obj.map("results").info().max_entries == 1000
    obj = bpfload.BPFObject(bpf_object("globals"))
    with pytest.raises(BPFLoadError, match="no map 'nope'"):
        obj.set_max_entries("nope", 3)
    obj.close()


def test_failed_load_releases_everything(bpf_object):
    # write_rodata is rejected after maps and run_globals were created: all must go
    obj = bpfload.BPFObject(bpf_object("globals"))
    with pytest.raises(VerifierError):
        obj.load()
    assert not obj.maps and not obj.programs


def test_unknown_variable_is_a_clear_error(bpf_object):
    obj = bpfload.BPFObject(bpf_object("globals"))
    with pytest.raises(BPFLoadError, match="no global variable 'nope'"):
        obj.set("nope", 1)
    with pytest.raises(ValueError):
        obj.set("rodata_array", [1, 2, 3, 4, 5])
    # an integer variable takes integers: 1.5 is not quietly 1, "12" not parsed
    for bad in (1.5, "12", None):
        with pytest.raises(ValueError, match="is not an integer"):
            obj.set("multiplier", bad)
    obj.set("multiplier", 7.0)
    assert obj.get("multiplier") == 7
    obj.close()


def test_program_array_and_map_in_map(bpf_object):
    with bpfload.load(bpf_object("map_kinds")) as obj:
        jumps = obj.map("jumps")
        assert (jumps.value_size, obj.map("outer").value_size) == (4, 4)
        jumps.update(bytes(4), obj.program("jump_from").fileno().to_bytes(4, "little"))
        assert obj.program("read_outer").test_run(b"\0" * 8).retval == 0


def test_unknown_program_names_are_loader_errors(bpf_object):
    """set_autoload() and load(programs=...) name a missing program like map() and
    variable() do (a KeyError, or silently loading nothing, before)."""
    obj = bpfload.BPFObject(bpf_object("relocs"))
    with pytest.raises(BPFLoadError, match="has no program 'nope'"):
        obj.set_autoload("nope", False)
    obj.close()
    with pytest.raises(BPFLoadError, match="has no program 'nope'"):
        bpfload.load(bpf_object("relocs"), programs=["run_relocs", "nope"])


def test_optional_programs_load_when_asked(bpf_object):
    with bpfload.load(bpf_object("optional")) as obj:
        assert set(obj.programs) == {"always"}
    with bpfload.load(bpf_object("optional"), programs=["always", "on_request"]) as obj:
        assert obj.program("on_request").test_run(b"\0" * 8).retval == 2


def test_kernel_objects_never_get_fds_0_to_2(bpf_object):
    """With stdin closed the kernel hands out fd 0 next: the object's BTF would land
    there, and btf_fd 0 means "no BTF" to BPF_MAP_CREATE (the maps were silently made
    without it). Every fd bpfload gets is moved above 2, as libbpf does."""
    script = (
        "import os, sys\n"
        "os.close(0)\n"
        "import bpfload\n"
        "with bpfload.load(sys.argv[1], programs=['run_globals']) as obj:\n"
        "    fds = [obj.btf_fd.fileno()] + [m.fileno() for m in obj.maps.values()]\n"
        "    fds += [p.fileno() for p in obj.programs.values()]\n"
        "    assert min(fds) > 2, fds\n"
        "    typed = [n for n, m in obj.spec.maps.items() if m.btf_value_type]\n"
        "    assert typed and all(obj.map(n).info().btf_id for n in typed), 'no BTF'\n"
        "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", script, str(bpf_object("globals"))],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr
