"""The .BTF.ext section: func_info, line_info and CO-RE relocation records per section.

Instruction offsets on the wire are bytes into the ELF section; here they are
instruction indexes. Strings are resolved against the object's .BTF so that records
survive re-encoding the BTF.
"""

from __future__ import annotations

import struct

from ..errors import BTFError
from ..model import FuncInfo, LineInfo
from . import format as btf_format
from .spec import Spec

# enum bpf_core_relo_kind
CORE_FIELD_BYTE_OFFSET = 0
CORE_FIELD_BYTE_SIZE = 1
CORE_FIELD_EXISTS = 2
CORE_FIELD_SIGNED = 3
CORE_FIELD_LSHIFT_U64 = 4
CORE_FIELD_RSHIFT_U64 = 5
CORE_TYPE_ID_LOCAL = 6
CORE_TYPE_ID_TARGET = 7
CORE_TYPE_EXISTS = 8
CORE_TYPE_SIZE = 9
CORE_ENUMVAL_EXISTS = 10
CORE_ENUMVAL_VALUE = 11
CORE_TYPE_MATCHES = 12

CORE_KIND_NAMES = {
    CORE_FIELD_BYTE_OFFSET: "byte_off", CORE_FIELD_BYTE_SIZE: "byte_sz",
    CORE_FIELD_EXISTS: "field_exists", CORE_FIELD_SIGNED: "signed",
    CORE_FIELD_LSHIFT_U64: "lshift_u64", CORE_FIELD_RSHIFT_U64: "rshift_u64",
    CORE_TYPE_ID_LOCAL: "local_type_id", CORE_TYPE_ID_TARGET: "target_type_id",
    CORE_TYPE_EXISTS: "type_exists", CORE_TYPE_SIZE: "type_size",
    CORE_ENUMVAL_EXISTS: "enumval_exists", CORE_ENUMVAL_VALUE: "enumval_value",
    CORE_TYPE_MATCHES: "type_matches",
}


class CoreRelo:
    __slots__ = ("insn", "type_id", "access", "kind")

    def __init__(self, insn: int, type_id: int, access: str, kind: int):
        self.insn = insn
        self.type_id = type_id
        self.access = access
        self.kind = kind

    @property
    def kind_name(self) -> str:
        return CORE_KIND_NAMES.get(self.kind, f"kind {self.kind}")

    def moved(self, delta: int) -> CoreRelo:
        return CoreRelo(self.insn + delta, self.type_id, self.access, self.kind)

    def __repr__(self) -> str:
        return (f"CoreRelo(insn={self.insn}, type_id={self.type_id}, access={self.access!r}, "
                f"kind={self.kind_name})")


class ExtInfo:
    """Records of one object, keyed by ELF section name."""

    def __init__(self):
        self.func_info: dict[str, list[FuncInfo]] = {}
        self.line_info: dict[str, list[LineInfo]] = {}
        self.core_relos: dict[str, list[CoreRelo]] = {}


def parse(data: bytes, btf: Spec) -> ExtInfo:
    """Decode .BTF.ext against the object's BTF."""
    try:
        return _parse(data, btf)
    except struct.error as e:
        raise BTFError(f"truncated .BTF.ext: {e}") from None


def _parse(data: bytes, btf: Spec) -> ExtInfo:
    if len(data) < btf_format.EXT_HEADER.size:
        raise BTFError(".BTF.ext too short for its header")
    magic, version, _flags, hdr_len, fi_off, fi_len, li_off, li_len = \
        btf_format.EXT_HEADER.unpack_from(data)
    if magic != btf_format.MAGIC or version != btf_format.VERSION:
        raise BTFError(f"bad .BTF.ext header (magic {magic:#x}, version {version})")
    cr_off = cr_len = 0
    if hdr_len >= btf_format.EXT_HEADER.size + btf_format.EXT_HEADER_CORE.size:
        cr_off, cr_len = btf_format.EXT_HEADER_CORE.unpack_from(data, btf_format.EXT_HEADER.size)
    ext = ExtInfo()
    for sec, recs in _blocks(data, hdr_len + fi_off, fi_len, btf, btf_format.FUNC_INFO.size):
        ext.func_info[sec] = [
            FuncInfo(off // 8, tid) for off, tid in
            (btf_format.FUNC_INFO.unpack_from(data, p) for p in recs)]
    for sec, recs in _blocks(data, hdr_len + li_off, li_len, btf, btf_format.LINE_INFO.size):
        out = []
        for p in recs:
            off, file_off, line_off, line_col = btf_format.LINE_INFO.unpack_from(data, p)
            out.append(LineInfo(off // 8, btf.string(file_off), btf.string(line_off),
                                line_col >> 10, line_col & 0x3FF))
        ext.line_info[sec] = out
    if cr_len:
        for sec, recs in _blocks(data, hdr_len + cr_off, cr_len, btf,
                                           btf_format.CORE_RELO.size):
            out = []
            for p in recs:
                off, type_id, access_off, kind = btf_format.CORE_RELO.unpack_from(data, p)
                out.append(CoreRelo(off // 8, type_id, btf.string(access_off), kind))
            ext.core_relos[sec] = out
    return ext


def _blocks(data: bytes, start: int, length: int, btf: Spec, min_rec: int):
    """Yield (section name, [record offsets]) for one info kind."""
    if not length:
        return
    end = start + length
    if end > len(data):
        raise BTFError(".BTF.ext info block points past the end of the section")
    (rec_size,) = btf_format.U32.unpack_from(data, start)
    if rec_size < min_rec:
        raise BTFError(f".BTF.ext record size {rec_size} smaller than {min_rec}")
    pos = start + 4
    while pos < end:
        name_off, count = btf_format.EXT_SEC.unpack_from(data, pos)
        pos += btf_format.EXT_SEC.size
        if pos + count * rec_size > end:
            raise BTFError(".BTF.ext section block overruns its info block")
        yield btf.string(name_off), [pos + i * rec_size for i in range(count)]
        pos += count * rec_size
