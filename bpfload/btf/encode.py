"""Encoding BTF: a list of :mod:`.types` objects back to the bytes BTF_LOAD takes."""

from __future__ import annotations

from ..errors import BTFError
from . import format as F
from . import types as T


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


def encode(types: list[T.Type], strings: StringTable | None = None) -> bytes:
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
    header = F.HEADER.pack(F.MAGIC, F.VERSION, 0, F.HEADER_SIZE, 0, len(body), len(body),
                           len(strs))
    return header + bytes(body) + strs


def _head(t: T.Type, strings: StringTable, vlen: int, size_or_type: int,
          kflag: bool = False) -> bytes:
    if vlen > 0xFFFF:
        raise BTFError(f"BTF type {t.name!r} has too many members ({vlen})")
    return F.TYPE.pack(strings.add(t.name), F.info(t.kind, vlen, kflag), size_or_type)


def _record(t: T.Type, strings: StringTable) -> bytes:
    if isinstance(t, T.Int):
        enc = (t.encoding << 24) | (t.offset << 16) | t.bits
        return _head(t, strings, 0, t.size) + F.U32.pack(enc)
    if isinstance(t, T.Array):
        return _head(t, strings, 0, 0) + F.ARRAY.pack(t.type, t.index_type, t.nelems)
    if isinstance(t, T.Struct):  # and Union
        kflag = t.has_bitfields
        out = bytearray(_head(t, strings, len(t.members), t.size, kflag))
        for m in t.members:
            off = (m.bitfield_size << 24) | m.bit_offset if kflag else m.bit_offset
            out += F.MEMBER.pack(strings.add(m.name), m.type, off)
        return bytes(out)
    if isinstance(t, T.Enum64):
        out = bytearray(_head(t, strings, len(t.values), t.size, t.signed))
        for v in t.values:
            u = v.value & 0xFFFFFFFFFFFFFFFF
            out += F.ENUM64_VAL.pack(strings.add(v.name), u & 0xFFFFFFFF, u >> 32)
        return bytes(out)
    if isinstance(t, T.Enum):
        out = bytearray(_head(t, strings, len(t.values), t.size, t.signed))
        for v in t.values:
            val = v.value & 0xFFFFFFFF
            out += F.ENUM_VAL.pack(strings.add(v.name), val - (1 << 32) if val >> 31 else val)
        return bytes(out)
    if isinstance(t, T.Fwd):
        return _head(t, strings, 0, 0, t.union)
    if isinstance(t, T.Func):
        return _head(t, strings, t.linkage, t.type)
    if isinstance(t, T.FuncProto):
        out = bytearray(_head(t, strings, len(t.params), t.type))
        for p in t.params:
            out += F.PARAM.pack(strings.add(p.name), p.type)
        return bytes(out)
    if isinstance(t, T.Var):
        return _head(t, strings, 0, t.type) + F.U32.pack(t.linkage)
    if isinstance(t, T.Datasec):
        out = bytearray(_head(t, strings, len(t.vars), t.size))
        for v in t.vars:
            out += F.VAR_SECINFO.pack(v.type, v.offset, v.size)
        return bytes(out)
    if isinstance(t, T.Float):
        return _head(t, strings, 0, t.size)
    if isinstance(t, T.DeclTag):
        return _head(t, strings, 0, t.type) + F.S32.pack(t.component_idx)
    if isinstance(t, (T.Ptr, *T.MODIFIERS)):
        return _head(t, strings, 0, t.type)
    raise BTFError(f"cannot encode BTF {type(t).__name__}")
