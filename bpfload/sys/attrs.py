"""Attribute layouts of bpf(2) and perf_event_open(2), declared once as data.

Each class mirrors one member of the kernel's ``union bpf_attr`` (or an info struct)
field for field. The kernel accepts a prefix of the union: a layout carries only the
fields its command uses, and bpf() passes ``sizeof(layout)`` so newer fields we do not
know stay zero. Tests compare every offset here with the running kernel's BTF.
"""

from __future__ import annotations

import ctypes
from ctypes import c_char, c_int32, c_uint8, c_uint32, c_uint64

NAME = c_char * 16


class _Layout(ctypes.Structure):
    """A bpf(2) attribute block: zero-initialised, fields set by keyword."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name, *_ in self._fields_
                           if not name.startswith("_"))
        return f"{type(self).__name__}({fields})"


class MapCreateAttr(_Layout):
    _fields_ = [
        ("map_type", c_uint32),
        ("key_size", c_uint32),
        ("value_size", c_uint32),
        ("max_entries", c_uint32),
        ("map_flags", c_uint32),
        ("inner_map_fd", c_uint32),
        ("numa_node", c_uint32),
        ("map_name", NAME),
        ("map_ifindex", c_uint32),
        ("btf_fd", c_uint32),
        ("btf_key_type_id", c_uint32),
        ("btf_value_type_id", c_uint32),
        ("btf_vmlinux_value_type_id", c_uint32),
        ("map_extra", c_uint64),
        ("value_type_btf_obj_fd", c_int32),  # with BPF_F_VTYPE_BTF_OBJ_FD (struct_ops)
        ("map_token_fd", c_int32),
    ]


class MapElemAttr(_Layout):
    """BPF_MAP_{LOOKUP,UPDATE,DELETE}_ELEM, MAP_GET_NEXT_KEY (value doubles as next_key)."""

    _fields_ = [
        ("map_fd", c_uint32),
        ("key", c_uint64),
        ("value", c_uint64),
        ("flags", c_uint64),
    ]


class MapBatchAttr(_Layout):
    _fields_ = [
        ("in_batch", c_uint64),
        ("out_batch", c_uint64),
        ("keys", c_uint64),
        ("values", c_uint64),
        ("count", c_uint32),
        ("map_fd", c_uint32),
        ("elem_flags", c_uint64),
        ("flags", c_uint64),
    ]


class MapFdAttr(_Layout):
    """BPF_MAP_FREEZE"""

    _fields_ = [("map_fd", c_uint32)]


class ProgLoadAttr(_Layout):
    _fields_ = [
        ("prog_type", c_uint32),
        ("insn_cnt", c_uint32),
        ("insns", c_uint64),
        ("license", c_uint64),
        ("log_level", c_uint32),
        ("log_size", c_uint32),
        ("log_buf", c_uint64),
        ("kern_version", c_uint32),
        ("prog_flags", c_uint32),
        ("prog_name", NAME),
        ("prog_ifindex", c_uint32),
        ("expected_attach_type", c_uint32),
        ("prog_btf_fd", c_uint32),
        ("func_info_rec_size", c_uint32),
        ("func_info", c_uint64),
        ("func_info_cnt", c_uint32),
        ("line_info_rec_size", c_uint32),
        ("line_info", c_uint64),
        ("line_info_cnt", c_uint32),
        ("attach_btf_id", c_uint32),
        ("attach_btf_obj_fd", c_uint32),  # union with attach_prog_fd
        ("core_relo_cnt", c_uint32),
        ("fd_array", c_uint64),
        ("core_relos", c_uint64),
        ("core_relo_rec_size", c_uint32),
        ("log_true_size", c_uint32),
    ]


class BtfLoadAttr(_Layout):
    _fields_ = [
        ("btf", c_uint64),
        ("btf_log_buf", c_uint64),
        ("btf_size", c_uint32),
        ("btf_log_size", c_uint32),
        ("btf_log_level", c_uint32),
        ("btf_log_true_size", c_uint32),
    ]


class ObjPinAttr(_Layout):
    """BPF_OBJ_PIN and BPF_OBJ_GET"""

    _fields_ = [
        ("pathname", c_uint64),
        ("bpf_fd", c_uint32),
        ("file_flags", c_uint32),
    ]


class TestRunAttr(_Layout):
    _fields_ = [
        ("prog_fd", c_uint32),
        ("retval", c_uint32),
        ("data_size_in", c_uint32),
        ("data_size_out", c_uint32),
        ("data_in", c_uint64),
        ("data_out", c_uint64),
        ("repeat", c_uint32),
        ("duration", c_uint32),
        ("ctx_size_in", c_uint32),
        ("ctx_size_out", c_uint32),
        ("ctx_in", c_uint64),
        ("ctx_out", c_uint64),
        ("flags", c_uint32),
        ("cpu", c_uint32),
        ("batch_size", c_uint32),
    ]


class GetIdAttr(_Layout):
    """BPF_*_GET_NEXT_ID and BPF_*_GET_FD_BY_ID (start_id doubles as the object id)."""

    _fields_ = [
        ("start_id", c_uint32),
        ("next_id", c_uint32),
        ("open_flags", c_uint32),
    ]


class InfoAttr(_Layout):
    _fields_ = [
        ("bpf_fd", c_uint32),
        ("info_len", c_uint32),
        ("info", c_uint64),
    ]


class RawTracepointAttr(_Layout):
    _fields_ = [
        ("name", c_uint64),
        ("prog_fd", c_uint32),
        ("_pad", c_uint32),
        ("cookie", c_uint64),
    ]


class _LinkTracing(ctypes.Structure):
    _fields_ = [("target_btf_id", c_uint32), ("_pad", c_uint32), ("cookie", c_uint64)]


class _LinkUprobeMulti(ctypes.Structure):
    _fields_ = [
        ("path", c_uint64),
        ("offsets", c_uint64),
        ("ref_ctr_offsets", c_uint64),
        ("cookies", c_uint64),
        ("cnt", c_uint32),
        ("flags", c_uint32),
        ("pid", c_uint32),
    ]


class _LinkKprobeMulti(ctypes.Structure):
    _fields_ = [
        ("flags", c_uint32),
        ("cnt", c_uint32),
        ("syms", c_uint64),
        ("addrs", c_uint64),
        ("cookies", c_uint64),
    ]


class _LinkIter(ctypes.Structure):
    _fields_ = [("iter_info", c_uint64), ("iter_info_len", c_uint32)]


class _LinkTcx(ctypes.Structure):
    _fields_ = [("relative_fd", c_uint32), ("_pad", c_uint32), ("expected_revision", c_uint64)]


class _LinkTarget(ctypes.Union):
    _fields_ = [
        ("target_btf_id", c_uint32),
        ("perf_event_cookie", c_uint64),
        ("tracing", _LinkTracing),
        ("uprobe_multi", _LinkUprobeMulti),
        ("kprobe_multi", _LinkKprobeMulti),
        ("iter", _LinkIter),
        ("tcx", _LinkTcx),
    ]


class LinkCreateAttr(_Layout):
    """BPF_LINK_CREATE (target_fd doubles as target_ifindex, prog_fd as a struct_ops
    map's fd)."""

    _anonymous_ = ("_u",)
    _fields_ = [
        ("prog_fd", c_uint32),
        ("target_fd", c_uint32),
        ("attach_type", c_uint32),
        ("flags", c_uint32),
        ("_u", _LinkTarget),
    ]


class IterCreateAttr(_Layout):
    _fields_ = [("link_fd", c_uint32), ("flags", c_uint32)]


class IterMapInfo(ctypes.Structure):
    """union bpf_iter_link_info's map member: the map a map-element iterator walks."""

    _fields_ = [("map_fd", c_uint32)]


# --- BPF_OBJ_GET_INFO_BY_FD payloads ---------------------------------------------


class ProgInfo(_Layout):
    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("tag", c_uint8 * 8),
        ("jited_prog_len", c_uint32),
        ("xlated_prog_len", c_uint32),
        ("jited_prog_insns", c_uint64),
        ("xlated_prog_insns", c_uint64),
        ("load_time", c_uint64),
        ("created_by_uid", c_uint32),
        ("nr_map_ids", c_uint32),
        ("map_ids", c_uint64),
        ("name", NAME),
        ("ifindex", c_uint32),
        ("gpl_compatible", c_uint32),  # bit 0
        ("netns_dev", c_uint64),
        ("netns_ino", c_uint64),
        ("nr_jited_ksyms", c_uint32),
        ("nr_jited_func_lens", c_uint32),
        ("jited_ksyms", c_uint64),
        ("jited_func_lens", c_uint64),
        ("btf_id", c_uint32),
        ("func_info_rec_size", c_uint32),
        ("func_info", c_uint64),
        ("nr_func_info", c_uint32),
        ("nr_line_info", c_uint32),
        ("line_info", c_uint64),
        ("jited_line_info", c_uint64),
        ("nr_jited_line_info", c_uint32),
        ("line_info_rec_size", c_uint32),
        ("jited_line_info_rec_size", c_uint32),
        ("nr_prog_tags", c_uint32),
        ("prog_tags", c_uint64),
        ("run_time_ns", c_uint64),
        ("run_cnt", c_uint64),
        ("recursion_misses", c_uint64),
        ("verified_insns", c_uint32),
        ("attach_btf_obj_id", c_uint32),
        ("attach_btf_id", c_uint32),
    ]


class MapInfo(_Layout):
    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("key_size", c_uint32),
        ("value_size", c_uint32),
        ("max_entries", c_uint32),
        ("map_flags", c_uint32),
        ("name", NAME),
        ("ifindex", c_uint32),
        ("btf_vmlinux_value_type_id", c_uint32),
        ("netns_dev", c_uint64),
        ("netns_ino", c_uint64),
        ("btf_id", c_uint32),
        ("btf_key_type_id", c_uint32),
        ("btf_value_type_id", c_uint32),
        ("btf_vmlinux_id", c_uint32),
        ("map_extra", c_uint64),
    ]


class BtfInfo(_Layout):
    _fields_ = [
        ("btf", c_uint64),
        ("btf_size", c_uint32),
        ("id", c_uint32),
        ("name", c_uint64),
        ("name_len", c_uint32),
        ("kernel_btf", c_uint32),
    ]


# --- records passed with BPF_PROG_LOAD ----------------------------------------------


class FuncInfo(ctypes.Structure):
    _fields_ = [("insn_off", c_uint32), ("type_id", c_uint32)]


class LineInfo(ctypes.Structure):
    _fields_ = [
        ("insn_off", c_uint32),
        ("file_name_off", c_uint32),
        ("line_off", c_uint32),
        ("line_col", c_uint32),
    ]


# --- perf_event_open(2) ---------------------------------------------------------------


class PerfEventAttr(ctypes.Structure):
    """struct perf_event_attr up to PERF_ATTR_SIZE_VER5 (the fields tracing needs)."""

    _fields_ = [
        ("type", c_uint32),
        ("size", c_uint32),
        ("config", c_uint64),
        ("sample_period", c_uint64),
        ("sample_type", c_uint64),
        ("read_format", c_uint64),
        ("flags", c_uint64),  # disabled:1, inherit:1, ... (bitfield word)
        ("wakeup_events", c_uint32),
        ("bp_type", c_uint32),
        ("config1", c_uint64),  # kprobe_func / uprobe_path
        ("config2", c_uint64),  # kprobe_addr / probe_offset
        ("branch_sample_type", c_uint64),
        ("sample_regs_user", c_uint64),
        ("sample_stack_user", c_uint32),
        ("clockid", c_int32),
        ("sample_regs_intr", c_uint64),
        ("aux_watermark", c_uint32),
        ("sample_max_stack", ctypes.c_uint16),
        ("_reserved_2", ctypes.c_uint16),
    ]

