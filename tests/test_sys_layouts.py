"""The syscall layer's constants and attribute layouts against the running kernel's own
BTF: every offset and size we declare must be the kernel's."""

from __future__ import annotations

import ctypes
import os
import signal

import pytest

from bpfload.btf.kernel import KernelBTF
from bpfload.btf.types import Struct
from bpfload.sys import attrs, constants

pytestmark = pytest.mark.skipif(not os.path.exists("/sys/kernel/btf/vmlinux"),
                                reason="the running kernel has no BTF")


@pytest.fixture(scope="module")
def kbtf():
    return KernelBTF().vmlinux


def _members(spec, type_id, prefix=""):
    """Flattened {name: (byte offset, byte size)} of a struct/union, anonymous members
    inlined, and nested named structs reachable as 'outer.inner'."""
    out = {}
    t = spec[spec.skip_modifiers(type_id)]
    for m in t.members:
        off = m.bit_offset // 8
        mt = spec[spec.skip_modifiers(m.type)]
        if m.bitfield_size:
            continue
        if not m.name and isinstance(mt, Struct):
            for k, (o, s) in _members(spec, m.type).items():
                out.setdefault(prefix + k, (off + o, s))
            continue
        out[prefix + m.name] = (off, spec.size_of(m.type))
        if isinstance(mt, Struct):
            for k, (o, s) in _members(spec, m.type, m.name + ".").items():
                out[prefix + k] = (off + o, s)
    return out


def _attr_union_members(spec):
    return spec[spec.find_one("bpf_attr", 5)].members


def _variant_with(spec, fields):
    """The member struct of union bpf_attr that has all `fields` at the start."""
    for m in _attr_union_members(spec):
        flat = _members(spec, m.type)
        if all(f in flat for f in fields):
            return flat
    raise AssertionError(f"no bpf_attr member with {fields}")


# ours -> (fields that identify the kernel's union member, {our field: kernel field})
ATTR_LAYOUTS = [
    (attrs.MapCreateAttr, ["map_type", "key_size", "inner_map_fd"], {}),
    (attrs.MapElemAttr, ["map_fd", "key", "value", "flags"], {}),
    (attrs.MapBatchAttr, ["in_batch", "out_batch", "elem_flags"], {}),
    (attrs.ProgLoadAttr, ["prog_type", "insn_cnt", "license"],
     {"attach_btf_obj_fd": "attach_btf_obj_fd"}),
    (attrs.BtfLoadAttr, ["btf", "btf_log_buf", "btf_size"], {}),
    (attrs.TestRunAttr, ["prog_fd", "retval", "data_size_in", "ctx_in"], {}),
    (attrs.GetIdAttr, ["start_id", "next_id", "open_flags"], {}),
    (attrs.InfoAttr, ["bpf_fd", "info_len", "info"], {}),
    (attrs.RawTracepointAttr, ["name", "prog_fd"], {}),
    (attrs.ObjPinAttr, ["pathname", "bpf_fd", "file_flags"], {}),
    (attrs.LinkCreateAttr, ["prog_fd", "target_fd", "attach_type", "flags",
                            "target_btf_id"],
     {"perf_event_cookie": "perf_event.bpf_cookie", "tracing": "tracing",
      "uprobe_multi": "uprobe_multi", "kprobe_multi": "kprobe_multi", "iter": "iter_info",
      "tcx": "tcx"}),
]


@pytest.mark.parametrize("layout,keys,renames", ATTR_LAYOUTS,
                         ids=[c[0].__name__ for c in ATTR_LAYOUTS])
def test_attr_layout_matches_kernel(kbtf, layout, keys, renames):
    kernel = _variant_with(kbtf, keys)
    for name, ctype in layout._fields_:
        if name.startswith("_") and name != "_u":
            continue
        if name == "_u":
            for sub, _ in ctype._fields_:
                kname = renames.get(sub, sub)
                off = layout._u.offset + getattr(ctype, sub).offset
                assert kernel[kname][0] == off, f"{layout.__name__}.{sub}"
            continue
        kname = renames.get(name, name)
        assert kname in kernel, f"{layout.__name__}.{name} not in the kernel's bpf_attr"
        assert kernel[kname] == (getattr(layout, name).offset, ctypes.sizeof(ctype)), \
            f"{layout.__name__}.{name}"


def test_link_create_members_match_kernel(kbtf):
    """The members of link_create's union that bpfload fills, field by field."""
    kernel = _variant_with(kbtf, ["prog_fd", "target_fd", "attach_type", "target_btf_id"])
    base = attrs.LinkCreateAttr._u.offset
    for member in ("uprobe_multi", "kprobe_multi", "tcx"):
        ctype = dict(attrs._LinkTarget._fields_)[member]
        for name, _ in ctype._fields_:
            if name.startswith("_"):
                continue
            kname = f"{member}.{name}"
            off = base + getattr(attrs._LinkTarget, member).offset + getattr(ctype, name).offset
            assert kernel[kname][0] == off, kname
    assert kernel["iter_info_len"][0] == base + attrs._LinkIter.iter_info_len.offset


def test_iter_create_layout_matches_kernel(kbtf):
    (kernel,) = [flat for flat in (_members(kbtf, m.type) for m in _attr_union_members(kbtf))
                 if set(flat) == {"link_fd", "flags"}]
    assert kernel == {"link_fd": (0, 4), "flags": (4, 4)}
    assert (attrs.IterCreateAttr.link_fd.offset, attrs.IterCreateAttr.flags.offset) == (0, 4)


@pytest.mark.parametrize("layout,kname", [
    (attrs.ProgInfo, "bpf_prog_info"), (attrs.MapInfo, "bpf_map_info"),
    (attrs.BtfInfo, "bpf_btf_info"), (attrs.FuncInfo, "bpf_func_info"),
    (attrs.LineInfo, "bpf_line_info")])
def test_info_layouts_match_kernel(kbtf, layout, kname):
    kernel = _members(kbtf, kbtf.find_one(kname, 4))
    for name, ctype in layout._fields_:
        if name.startswith("_"):
            continue
        if name == "gpl_compatible":  # a bitfield in the kernel; we read the word
            continue
        assert kernel[name] == (getattr(layout, name).offset, ctypes.sizeof(ctype)), name


def test_perf_event_attr_prefix_matches_kernel(kbtf):
    kernel = _members(kbtf, kbtf.find_one("perf_event_attr", 4))
    for name in ("type", "size", "config", "sample_type", "wakeup_events", "bp_type",
                 "sample_regs_user", "sample_stack_user", "clockid", "aux_watermark",
                 "sample_max_stack"):
        f = getattr(attrs.PerfEventAttr, name)
        assert kernel[name][0] == f.offset, name
    # config1/config2 are unions in the kernel (kprobe_func, kprobe_addr, ...)
    assert kernel["kprobe_func"][0] == attrs.PerfEventAttr.config1.offset
    assert kernel["kprobe_addr"][0] == attrs.PerfEventAttr.config2.offset


@pytest.mark.parametrize("enum,kname,prefix", [
    (constants.Cmd, "bpf_cmd", "BPF_"), (constants.MapType, "bpf_map_type", "BPF_MAP_TYPE_"),
    (constants.ProgType, "bpf_prog_type", "BPF_PROG_TYPE_"),
    (constants.AttachType, "bpf_attach_type", "BPF_"),
    (constants.LinkType, "bpf_link_type", "BPF_LINK_TYPE_")])
def test_enum_values_match_kernel(kbtf, enum, kname, prefix):
    values = {v.name: v.value for v in kbtf[kbtf.find_one(kname, 6)].values}
    assert enum.items()
    for name, value in enum.items().items():
        assert values[prefix + name] == value, name


def _enum_with(spec, enumerator: str) -> dict[str, int]:
    """Values of the (possibly anonymous) enum that defines `enumerator`."""
    for tid in spec.ids():
        if spec.kind_of(tid) == 6:
            values = {v.name: v.value for v in spec[tid].values}
            if enumerator in values:
                return values
    raise AssertionError(f"no enum defines {enumerator}")


def test_map_flags_match_kernel(kbtf):
    flags = _enum_with(kbtf, "BPF_F_NO_PREALLOC")
    for name, value in constants.MapFlags.items().items():
        assert flags["BPF_F_" + name] == value, name


UAPI_HEADER = "/usr/include/linux/bpf.h"


def _defines(path: str) -> dict[str, int]:
    import re

    out = {}
    with open(path) as f:
        for m in re.finditer(r"^#define\s+(BPF_\w+)\s+\(?(\d+)U?\s*(?:<<\s*(\d+))?\)?",
                             f.read(), re.M):
            out[m.group(1)] = int(m.group(2)) << int(m.group(3) or 0)
    return out


@pytest.mark.skipif(not os.path.exists(UAPI_HEADER), reason="no linux/bpf.h installed")
def test_defines_match_the_uapi_header():
    # #defines leave no trace in BTF: check them against the installed UAPI header
    d = _defines(UAPI_HEADER)
    for name, value in constants.ProgFlags.items().items():
        assert d["BPF_F_" + name] == value, name
    for name in ("PSEUDO_MAP_FD", "PSEUDO_MAP_VALUE", "PSEUDO_BTF_ID", "PSEUDO_FUNC",
                 "PSEUDO_CALL", "PSEUDO_KFUNC_CALL", "PSEUDO_MAP_IDX"):
        assert d["BPF_" + name] == getattr(constants, name), name
    assert d["BPF_OBJ_NAME_LEN"] == constants.BPF_OBJ_NAME_LEN


def test_eperm_hint_depends_on_the_process_capabilities(monkeypatch):
    """EPERM means 'get root' only to a process without CAP_SYS_ADMIN; to root it
    means the kernel does not allow the thing at all."""
    import errno

    from bpfload import errors, procfs

    monkeypatch.setattr(procfs, "has_all_bpf_privileges", lambda: False)
    assert "needs root" in str(errors.SyscallError("loading program 'p'", errno.EPERM))
    monkeypatch.setattr(procfs, "has_all_bpf_privileges", lambda: True)
    msg = str(errors.SyscallError("loading program 'p'", errno.EPERM))
    assert "needs root" not in msg and "this kernel does not allow it" in msg
    assert "needs root" not in str(errors.SyscallError("x", errno.EACCES))


class _Boom(Exception):
    pass


def test_signals_are_held_while_a_new_fd_is_not_yet_owned():
    """A signal arriving between the system call and the FD owning its result runs its
    handler only afterwards, so the descriptor is owned (and closed) when it raises."""
    from bpfload.sys import syscall

    def handler(signum, frame):
        raise _Boom

    made = []

    def make_fd():
        os.kill(os.getpid(), signal.SIGUSR1)
        assert signal.SIGUSR1 in signal.sigpending()  # held, not delivered
        made.append(os.open(os.devnull, os.O_RDONLY))
        return made[-1]

    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    old_handler = signal.signal(signal.SIGUSR1, handler)
    try:
        with pytest.raises(_Boom):
            syscall._owned(make_fd)
    finally:
        signal.signal(signal.SIGUSR1, old_handler)
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
    with pytest.raises(OSError):
        os.fstat(made[0])  # the FD closed as the exception unwound
