"""Encoding BTF: a list of :mod:`.types` objects back to the bytes BTF_LOAD takes."""

from __future__ import annotations

from ..errors import BTFError
from . import format as btf_format
from . import types as btf_types


class StringTable:
    """A deduplicated BTF string section that starts with the empty string.

    With a `base` (a :class:`~.spec.Spec`), it is the string section of split BTF: the
    base's strings are reused and new ones get offsets after the base's section.
    """

    def __init__(self, base=None):
        self._base = base
        self._start = base.str_end if base is not None else 0
        self._data = bytearray(b"" if base is not None else b"\0")
        self._offsets: dict[str, int] = {"": 0}

    def add(self, s: str) -> int:
        off = self._offsets.get(s)
        if off is None:
            if self._base is not None:
                off = self._base.string_offset(s)
            if off is None:
                off = self._start + len(self._data)
                self._data += s.encode() + b"\0"
            self._offsets[s] = off
        return off

    def bytes(self) -> bytes:
        return bytes(self._data)


def encode(types: list[btf_types.Type], strings: StringTable | None = None) -> bytes:
    """BTF bytes for `types`, which get ids 1..len(types) in order.

    `strings` may already hold strings the caller needs offsets for (line_info file
    names and source lines); their offsets stay valid in the result. For split BTF,
    pass ``StringTable(base)``: the types then get ids from ``base.next_id`` on (and
    must refer to each other that way).
    """
    strings = strings if strings is not None else StringTable()
    body = bytearray()
    for type_id, t in enumerate(types, 1):
        try:
            body += _record(t, strings)
        except BTFError:
            raise
        except Exception as e:  # a field out of range for its wire width
            raise BTFError(f"cannot encode BTF type {type_id} ({t!r}): {e}") from None
    strs = strings.bytes()
    header = btf_format.HEADER.pack(btf_format.MAGIC, btf_format.VERSION, 0,
                                    btf_format.HEADER_SIZE, 0, len(body), len(body), len(strs))
    return header + bytes(body) + strs


def _head(t: btf_types.Type, strings: StringTable, vlen: int, size_or_type: int,
          kflag: bool = False) -> bytes:
    if vlen > 0xFFFF:
        raise BTFError(f"BTF type {t.name!r} has too many members ({vlen})")
    return btf_format.TYPE.pack(strings.add(t.name), btf_format.info(t.kind, vlen, kflag),
                                size_or_type)


def _record(t: btf_types.Type, strings: StringTable) -> bytes:
    if isinstance(t, btf_types.Int):
        enc = (t.encoding << 24) | (t.offset << 16) | t.bits
        return _head(t, strings, 0, t.size) + btf_format.U32.pack(enc)
    if isinstance(t, btf_types.Array):
        return _head(t, strings, 0, 0) + btf_format.ARRAY.pack(t.type, t.index_type, t.nelems)
    if isinstance(t, btf_types.Struct):  # and Union
        kflag = t.has_bitfields
        out = bytearray(_head(t, strings, len(t.members), t.size, kflag))
        for m in t.members:
            off = (m.bitfield_size << 24) | m.bit_offset if kflag else m.bit_offset
            out += btf_format.MEMBER.pack(strings.add(m.name), m.type, off)
        return bytes(out)
    if isinstance(t, btf_types.Enum64):
        out = bytearray(_head(t, strings, len(t.values), t.size, t.signed))
        for v in t.values:
            u = v.value & 0xFFFFFFFFFFFFFFFF
            out += btf_format.ENUM64_VAL.pack(strings.add(v.name), u & 0xFFFFFFFF, u >> 32)
        return bytes(out)
    if isinstance(t, btf_types.Enum):
        out = bytearray(_head(t, strings, len(t.values), t.size, t.signed))
        for v in t.values:
            val = v.value & 0xFFFFFFFF
            out += btf_format.ENUM_VAL.pack(strings.add(v.name),
                                            val - (1 << 32) if val >> 31 else val)
        return bytes(out)
    if isinstance(t, btf_types.Fwd):
        return _head(t, strings, 0, 0, t.union)
    if isinstance(t, btf_types.Func):
        return _head(t, strings, t.linkage, t.type)
    if isinstance(t, btf_types.FuncProto):
        out = bytearray(_head(t, strings, len(t.params), t.type))
        for p in t.params:
            out += btf_format.PARAM.pack(strings.add(p.name), p.type)
        return bytes(out)
    if isinstance(t, btf_types.Var):
        return _head(t, strings, 0, t.type) + btf_format.U32.pack(t.linkage)
    if isinstance(t, btf_types.Datasec):
        out = bytearray(_head(t, strings, len(t.vars), t.size))
        for v in t.vars:
            out += btf_format.VAR_SECINFO.pack(v.type, v.offset, v.size)
        return bytes(out)
    if isinstance(t, btf_types.Float):
        return _head(t, strings, 0, t.size)
    if isinstance(t, btf_types.DeclTag):
        return _head(t, strings, 0, t.type) + btf_format.S32.pack(t.component_idx)
    if isinstance(t, (btf_types.Ptr, *btf_types.MODIFIERS)):
        return _head(t, strings, 0, t.type)
    raise BTFError(f"cannot encode BTF {type(t).__name__}")
