"""Python values <-> bytes, following a BTF type (for global variables and map values).

ints (signed per the type), bool, float, enums as ints, pointers as ints, char arrays
as bytes, other arrays as lists, structs and unions as dicts of their members.
"""

from __future__ import annotations

import struct

from ..errors import BTFError
from . import types as btf_types
from .spec import Spec

_FLOAT = {4: struct.Struct("<f"), 8: struct.Struct("<d")}


#: Deepest nesting of arrays and structs followed (malformed BTF can loop)
_MAX_NESTING = 64


def _nested(spec: Spec, type_id: int, depth: int):
    if depth > _MAX_NESTING:
        raise BTFError(f"BTF type {type_id} nests too deeply or contains itself")
    return spec[spec.skip_modifiers(type_id)]


def decode(spec: Spec, type_id: int, data: bytes, _depth: int = 0):
    t = _nested(spec, type_id, _depth)
    if isinstance(t, btf_types.Int):
        if t.encoding & 4:  # BTF_INT_BOOL
            return data[0] != 0
        return int.from_bytes(data[:t.size], "little", signed=t.signed)
    if isinstance(t, btf_types.Enum):
        return int.from_bytes(data[:t.size], "little", signed=t.signed)
    if isinstance(t, btf_types.Ptr):
        return int.from_bytes(data[:8], "little")
    if isinstance(t, btf_types.Float):
        return _FLOAT[t.size].unpack_from(data)[0] if t.size in _FLOAT else bytes(data[:t.size])
    if isinstance(t, btf_types.Array):
        esize = spec.size_of(t.type)
        if _is_char(spec, t.type):
            return bytes(data[:esize * t.nelems])
        return [decode(spec, t.type, data[i * esize:(i + 1) * esize], _depth + 1)
                for i in range(t.nelems)]
    if isinstance(t, btf_types.Struct):
        out = {}
        for m in t.members:
            if m.bitfield_size:
                word = int.from_bytes(data[:t.size], "little")
                v = (word >> m.bit_offset) & ((1 << m.bitfield_size) - 1)
                out[m.name] = v
                continue
            off = m.bit_offset // 8
            size = spec.size_of(m.type)
            v = decode(spec, m.type, data[off:off + size], _depth + 1)
            if m.name:
                out[m.name] = v
            elif isinstance(v, dict):
                out.update(v)  # anonymous struct/union members
        return out
    return bytes(data)


def encode(spec: Spec, type_id: int, value, size: int | None = None, _depth: int = 0) -> bytes:
    """Bytes for `value` as the type; bytes-like values are taken as they are."""
    size = spec.size_of(type_id) if size is None else size
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) > size:
            raise ValueError(f"{len(raw)} bytes do not fit in {size}")
        return raw + bytes(size - len(raw))
    t = _nested(spec, type_id, _depth)
    if isinstance(t, (btf_types.Int, btf_types.Enum, btf_types.Ptr)):
        n = 8 if isinstance(t, btf_types.Ptr) else t.size
        signed = getattr(t, "signed", False)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):  # int() would truncate 1.5 and parse "12"
            raise ValueError(f"{value!r} is not an integer, as {spec.describe(type_id)} "
                             f"needs")
        try:
            return value.to_bytes(n, "little", signed=signed and value < 0)
        except OverflowError:
            raise ValueError(f"{value} does not fit in {spec.describe(type_id)}") from None
    if isinstance(t, btf_types.Float) and t.size in _FLOAT:
        return _FLOAT[t.size].pack(float(value))
    if isinstance(t, btf_types.Array):
        esize = spec.size_of(t.type)
        if isinstance(value, str) and _is_char(spec, t.type):
            return encode(spec, type_id, value.encode(), size)
        if isinstance(value, (str, dict)) or not hasattr(value, "__iter__"):
            raise ValueError(f"{spec.describe(type_id)} takes a list of up to {t.nelems} "
                             f"items, not {value!r}")
        items = list(value)
        if len(items) > t.nelems:
            raise ValueError(f"{len(items)} items do not fit in {spec.describe(type_id)}")
        out = b"".join(encode(spec, t.type, v, esize, _depth + 1) for v in items)
        return out + bytes(size - len(out))
    if isinstance(t, btf_types.Struct):
        if not isinstance(value, dict):
            raise ValueError(f"{spec.describe(type_id)} takes a dict or bytes")
        buf = bytearray(size)
        names = {m.name for m in t.members}
        unknown = set(value) - names
        if unknown:
            raise ValueError(f"{spec.describe(type_id)} has no member {sorted(unknown)[0]!r}")
        for m in t.members:
            if m.name not in value:
                continue
            if m.bitfield_size:
                word = int.from_bytes(buf, "little")
                mask = ((1 << m.bitfield_size) - 1) << m.bit_offset
                word = (word & ~mask) | ((int(value[m.name]) << m.bit_offset) & mask)
                buf[:] = word.to_bytes(size, "little")
                continue
            off = m.bit_offset // 8
            msize = spec.size_of(m.type)
            buf[off:off + msize] = encode(spec, m.type, value[m.name], msize, _depth + 1)
        return bytes(buf)
    raise BTFError(f"cannot convert a Python value to {spec.describe(type_id)}")


def _is_char(spec: Spec, type_id: int) -> bool:
    t = spec[spec.skip_modifiers(type_id)]
    return isinstance(t, btf_types.Int) and t.size == 1 and (t.name in ("char", "unsigned char",
                                                                "signed char")
                                                     or bool(t.encoding & 2))
