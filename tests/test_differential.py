"""Differential check against libbpf: bpfload and `bpftool prog loadall` (bpftool 7.5 and
libbpf 1.5, built from Linux 6.12's tools/ by tests/reference_libbpf.py: the libbpf
bpfload follows) load the same objects into the running kernel; the translated
instructions of every program (BPF_OBJ_GET_INFO_BY_FD xlated, map ids normalised to
map names) and every map's definition must be identical.

Objects: the lead's globals/relocs/attach objects, the CO-RE + kfunc + global
subprogram object core_kernel (relocated against the running kernel's BTF) and
core_lines (func_info/line_info of a global subprogram), core_weak (a __weak kfunc
the kernel has with another prototype, and one it lacks), map_kinds (a program array
and a map-in-map declared with __array(values, ...)), map_init (their initial values),
kconfig (__kconfig externs laid out in the .kconfig map), struct_ops (struct_ops maps
and their programs' attach types), map_types (one map of every type). Not
legacy_maps (libbpf 1.x refuses the legacy maps section), not sections (it targets
hooks the host lacks), not the core_* objects that are built to fail or need another
target BTF.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

import pytest
import reference_libbpf
from libbpf_ctypes import LibBPF
from required import cannot_run

from bpfload import asm
from bpfload.collection import load
from bpfload.sys import attrs
from bpfload.sys.constants import (
    PSEUDO_KFUNC_CALL,
    PSEUDO_MAP_FD,
    PSEUDO_MAP_VALUE,
    Cmd,
    MapFlags,
)
from bpfload.sys.syscall import FD, address, bpf_fd, fd_by_id, obj_info

#: Programs not to load: those the objects contain on purpose to be refused by the
#: verifier, and those libbpf itself does not load (a struct_ops program only an
#: uncreated map uses). bpftool cannot leave a program out (nor pin one it did not
#: load), so such objects go through the reference libbpf itself with autoload off.
NOT_LOADED = {"globals": {"write_rodata"}, "core_lines": {"bad_lines"},
              "core_weak": {"unguarded_call", "unguarded_field"},
              "struct_ops": {"only_unused"}}

#: Objects bpfload loads and libbpf refuses on purpose, with libbpf's words for it:
#: the test checks that both still behave so.
DIVERGENT = {
    # libbpf only links calls into .text; bpfload also links subprograms that clang
    # put in other code sections (__attribute__((section(".text.extra"))))
    "relocs": "bad call relo against 'extra_global' in section '.text.extra'",
}

OBJECTS = ["attach", "core_kernel", "core_lines", "core_weak", "globals", "map_kinds",
           "map_init", "kconfig", "struct_ops", "map_types"]

_RDONLY_PROG = int(MapFlags.RDONLY_PROG)


# --- kernel objects by fd -----------------------------------------------------------------


class _ObjGetAttr(ctypes.Structure):
    _fields_ = [("pathname", ctypes.c_uint64), ("bpf_fd", ctypes.c_uint32),
                ("file_flags", ctypes.c_uint32), ("path_fd", ctypes.c_int32)]


def obj_get(path: str) -> FD:
    """BPF_OBJ_GET: a file descriptor of a pinned program or map."""
    name = ctypes.create_string_buffer(path.encode())
    return bpf_fd(Cmd.OBJ_GET, _ObjGetAttr(pathname=address(name)), f"BPF_OBJ_GET {path}")


def prog_dump(fd: int) -> tuple[attrs.ProgInfo, bytes, list[int]]:
    info = obj_info(fd, attrs.ProgInfo())
    xlated = ctypes.create_string_buffer(info.xlated_prog_len)
    map_ids = (ctypes.c_uint32 * max(1, info.nr_map_ids))()
    again = obj_info(fd, attrs.ProgInfo(xlated_prog_len=info.xlated_prog_len,
                                        xlated_prog_insns=address(xlated),
                                        nr_map_ids=info.nr_map_ids,
                                        map_ids=address(map_ids)))
    return again, xlated.raw[:again.xlated_prog_len], list(map_ids)[:again.nr_map_ids]


def map_info_by_id(map_id: int) -> attrs.MapInfo:
    with fd_by_id(Cmd.MAP_GET_FD_BY_ID, map_id) as fd:
        return obj_info(fd.fileno(), attrs.MapInfo())


def map_def(info: attrs.MapInfo) -> tuple:
    return (info.type, info.key_size, info.value_size, info.max_entries, info.map_flags)


def normalised(fd: int) -> dict:
    """A program as the kernel holds it, with map ids replaced by map names."""
    info, xlated, map_ids = prog_dump(fd)
    names = {i: map_info_by_id(i).name.decode() for i in map_ids}
    insns = []
    code = asm.decode(xlated)
    for insn in code:
        row = (insn.op, insn.dst, insn.src, insn.off, insn.imm)
        if insn.is_ld_imm64 and insn.src in (PSEUDO_MAP_FD, PSEUDO_MAP_VALUE):
            row = (insn.op, insn.dst, insn.src, insn.off, names[insn.imm])
        insns.append(row)
    used = {row[4] for row in insns if isinstance(row[4], str)}
    maps = {}
    for i in map_ids:
        minfo = map_info_by_id(i)
        # libbpf binds every .rodata map to every program (BPF_PROG_BIND_MAP, for
        # bpftool's metadata display) whether or not the program uses it; bpfload does
        # not, so a .rodata map no instruction refers to is left out on both sides
        if names[i] not in used and minfo.map_flags & _RDONLY_PROG:
            continue
        maps[names[i]] = map_def(minfo)
    return {
        "type": info.type, "attach_btf_id": info.attach_btf_id,
        "gpl": info.gpl_compatible & 1, "nr_func_info": info.nr_func_info,
        "nr_line_info": info.nr_line_info, "insns": insns, "maps": maps,
    }


# --- the oracles ----------------------------------------------------------------------------


def bpftool_loadall(bpftool: str, obj_path: str, pin_dir: str) -> tuple[dict, dict]:
    """Programs and maps of `bpftool prog loadall OBJ DIR pinmaps DIR/maps`."""
    maps_dir = os.path.join(pin_dir, "maps")
    r = subprocess.run([bpftool, "prog", "loadall", obj_path, pin_dir, "pinmaps",
                        maps_dir], capture_output=True, text=True)
    assert r.returncode == 0, f"bpftool prog loadall {obj_path} failed:\n{r.stderr}"
    progs, maps = {}, {}
    for name in sorted(os.listdir(pin_dir)):
        path = os.path.join(pin_dir, name)
        if name == "maps":
            continue
        with obj_get(path) as fd:
            progs[name] = normalised(fd.fileno())
    for name in sorted(os.listdir(maps_dir)):
        with obj_get(os.path.join(maps_dir, name)) as fd:
            info = obj_info(fd.fileno(), attrs.MapInfo())
            maps[info.name.decode()] = map_def(info)
    return progs, maps


def libbpf_load(libbpf: str, obj_path: str, skip: set[str]) -> tuple[dict, dict]:
    """The same through libbpf directly, with the `skip` programs not loaded."""
    lib = LibBPF(libbpf)
    obj = lib.open(obj_path)
    try:
        progs_c = []
        for name, p in lib.programs(obj):
            if name in skip:
                lib.lib.bpf_program__set_autoload(p, False)
            else:
                progs_c.append((name, p))
        lib.load(obj)
        progs = {name: normalised(lib.lib.bpf_program__fd(p)) for name, p in progs_c}
        maps = {}
        for m in lib.maps(obj):
            if lib.lib.bpf_map__autocreate(m):  # (one it did not create has a placeholder fd)
                info = obj_info(lib.lib.bpf_map__fd(m), attrs.MapInfo())
                maps[info.name.decode()] = map_def(info)
        return progs, maps
    finally:
        lib.close(obj)


def bpfload_load(obj_path: str, skip: set[str]) -> tuple[dict, dict]:
    with load(obj_path, programs=None if not skip else
              [n for n in _program_names(obj_path) if n not in skip]) as obj:
        progs = {name: normalised(p.fileno()) for name, p in obj.programs.items()}
        maps = {m.info().name.decode(): map_def(m.info()) for m in obj.maps.values()}
    return progs, maps


def _program_names(obj_path: str) -> list[str]:
    from bpfload.elf_reader import read

    return list(read(obj_path).programs)


# --- the check ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference() -> tuple[str, str]:
    """(bpftool, libbpf.so) of the reference build; in CI not having it is a failure."""
    try:
        return tuple(map(str, reference_libbpf.build()))
    except reference_libbpf.Unavailable as e:
        cannot_run(f"no reference libbpf: {e}", "HEATMAP_REQUIRE_REFERENCE")


@pytest.mark.parametrize("name", OBJECTS)
def test_same_as_libbpf(root, no_leaks, bpffs, reference, bpf_object, name):
    bpftool, libbpf = reference
    path = str(bpf_object(name))
    skip = NOT_LOADED.get(name, set())
    ours_progs, ours_maps = bpfload_load(path, skip)
    if skip:
        theirs_progs, theirs_maps = libbpf_load(libbpf, path, skip)
    else:
        pin_dir = os.path.join(bpffs, f"bpfload-differential-{os.getpid()}-{name}")
        shutil.rmtree(pin_dir, ignore_errors=True)
        os.mkdir(pin_dir)
        try:
            theirs_progs, theirs_maps = bpftool_loadall(bpftool, path, pin_dir)
        finally:
            shutil.rmtree(pin_dir, ignore_errors=True)  # unpinning frees them
    assert sorted(ours_progs) == sorted(theirs_progs) and ours_progs
    if name == "core_kernel":  # the object really has kfunc calls to compare
        calls = [r for r in ours_progs["task_by_pid"]["insns"] if r[0] == asm.OP_CALL]
        assert any(r[2] == PSEUDO_KFUNC_CALL for r in calls)
    for prog in ours_progs:
        ours, theirs = ours_progs[prog], theirs_progs[prog]
        for i, (a, b) in enumerate(zip(ours["insns"], theirs["insns"])):
            assert a == b, f"{name}:{prog} instruction {i}: bpfload {a} libbpf {b}"
        assert ours == theirs, f"{name}:{prog}"
    assert ours_maps == theirs_maps


@pytest.mark.parametrize("name", sorted(DIVERGENT))
def test_loads_what_libbpf_refuses(root, no_leaks, bpffs, reference, bpf_object, name):
    bpftool, _ = reference
    path = str(bpf_object(name))
    ours_progs, _ = bpfload_load(path, set())
    assert ours_progs
    pin_dir = os.path.join(bpffs, f"bpfload-differential-{os.getpid()}-{name}")
    os.makedirs(pin_dir, exist_ok=True)
    try:
        r = subprocess.run([bpftool, "prog", "loadall", path, pin_dir], capture_output=True,
                           text=True)
    finally:
        shutil.rmtree(pin_dir, ignore_errors=True)
    assert r.returncode != 0 and DIVERGENT[name] in r.stderr, r.stderr
