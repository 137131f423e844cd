"""BTF on the wire: header, kind numbers and record layouts (include/uapi/linux/btf.h).

Only byte-level definitions live here; :mod:`.types` holds the objects users touch and
:mod:`.spec` / :mod:`.encode` translate between the two.
"""

from __future__ import annotations

import struct

MAGIC = 0xEB9F
VERSION = 1

# struct btf_header
HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type_off/len, str_off/len
HEADER_SIZE = HEADER.size  # 24

# struct btf_type: name_off, info, size_or_type
TYPE = struct.Struct("<III")
TYPE_SIZE = TYPE.size

KIND_INT = 1
KIND_PTR = 2
KIND_ARRAY = 3
KIND_STRUCT = 4
KIND_UNION = 5
KIND_ENUM = 6
KIND_FWD = 7
KIND_TYPEDEF = 8
KIND_VOLATILE = 9
KIND_CONST = 10
KIND_RESTRICT = 11
KIND_FUNC = 12
KIND_FUNC_PROTO = 13
KIND_VAR = 14
KIND_DATASEC = 15
KIND_FLOAT = 16
KIND_DECL_TAG = 17
KIND_TYPE_TAG = 18
KIND_ENUM64 = 19
KIND_MAX = KIND_ENUM64

KIND_NAMES = {
    KIND_INT: "INT", KIND_PTR: "PTR", KIND_ARRAY: "ARRAY", KIND_STRUCT: "STRUCT",
    KIND_UNION: "UNION", KIND_ENUM: "ENUM", KIND_FWD: "FWD", KIND_TYPEDEF: "TYPEDEF",
    KIND_VOLATILE: "VOLATILE", KIND_CONST: "CONST", KIND_RESTRICT: "RESTRICT",
    KIND_FUNC: "FUNC", KIND_FUNC_PROTO: "FUNC_PROTO", KIND_VAR: "VAR",
    KIND_DATASEC: "DATASEC", KIND_FLOAT: "FLOAT", KIND_DECL_TAG: "DECL_TAG",
    KIND_TYPE_TAG: "TYPE_TAG", KIND_ENUM64: "ENUM64",
}

# Bytes that follow struct btf_type: (fixed extra, per-vlen-entry size).
TRAILER = {
    KIND_INT: (4, 0),
    KIND_PTR: (0, 0),
    KIND_ARRAY: (12, 0),
    KIND_STRUCT: (0, 12),
    KIND_UNION: (0, 12),
    KIND_ENUM: (0, 8),
    KIND_FWD: (0, 0),
    KIND_TYPEDEF: (0, 0),
    KIND_VOLATILE: (0, 0),
    KIND_CONST: (0, 0),
    KIND_RESTRICT: (0, 0),
    KIND_FUNC: (0, 0),
    KIND_FUNC_PROTO: (0, 8),
    KIND_VAR: (4, 0),
    KIND_DATASEC: (0, 12),
    KIND_FLOAT: (0, 0),
    KIND_DECL_TAG: (4, 0),
    KIND_TYPE_TAG: (0, 0),
    KIND_ENUM64: (0, 12),
}

# Trailing record layouts.
U32 = struct.Struct("<I")
S32 = struct.Struct("<i")
ARRAY = struct.Struct("<III")  # type, index_type, nelems
MEMBER = struct.Struct("<III")  # name_off, type, offset
ENUM_VAL = struct.Struct("<Ii")  # name_off, val
ENUM64_VAL = struct.Struct("<III")  # name_off, val_lo32, val_hi32
PARAM = struct.Struct("<II")  # name_off, type
VAR_SECINFO = struct.Struct("<III")  # type, offset, size

# INT encoding bits
INT_SIGNED = 1 << 0
INT_CHAR = 1 << 1
INT_BOOL = 1 << 2

# FUNC linkage (in vlen), VAR linkage
LINKAGE_STATIC = 0
LINKAGE_GLOBAL = 1
LINKAGE_EXTERN = 2


def info(kind: int, vlen: int = 0, kind_flag: bool = False) -> int:
    return (int(kind_flag) << 31) | ((kind & 0x1F) << 24) | (vlen & 0xFFFF)


def info_kind(value: int) -> int:
    return (value >> 24) & 0x1F


def info_vlen(value: int) -> int:
    return value & 0xFFFF


def info_kflag(value: int) -> bool:
    return bool(value >> 31)


# --- .BTF.ext ---------------------------------------------------------------------

# struct btf_ext_header: magic, version, flags, hdr_len, func_info_off/len,
# line_info_off/len, then (optional) core_relo_off/len
EXT_HEADER = struct.Struct("<HBBIIIII")
EXT_HEADER_CORE = struct.Struct("<II")
EXT_SEC = struct.Struct("<II")  # sec_name_off, num_info
FUNC_INFO = struct.Struct("<II")  # insn_off (bytes in .BTF.ext), type_id
LINE_INFO = struct.Struct("<IIII")  # insn_off, file_name_off, line_off, line_col
CORE_RELO = struct.Struct("<IIII")  # insn_off, type_id, access_str_off, kind
