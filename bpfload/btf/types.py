"""BTF types as Python objects.

A type refers to other types by id (an int index into its :class:`~.spec.Spec`), exactly
as BTF does on the wire. That keeps decoding lazy (only the types a caller touches are
ever built) and makes encoding a straight walk.
"""

from __future__ import annotations

from . import format as btf_format


class Type:
    """Base class. `name` is '' for anonymous types."""

    kind = 0
    __slots__ = ("name",)
    _fields: tuple = ()

    def __init__(self, name: str = ""):
        self.name = name

    @property
    def kind_name(self) -> str:
        return btf_format.KIND_NAMES.get(self.kind, str(self.kind))

    def refs(self) -> list[int]:
        """Ids of the types this one refers to."""
        return [getattr(self, f) for f in self._fields if f in ("type", "index_type")]

    def _key(self):
        return (type(self), self.name) + tuple(getattr(self, f) for f in self._fields)

    def __eq__(self, other) -> bool:
        return isinstance(other, Type) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self) -> str:
        parts = [repr(self.name)] if self.name else []
        parts += [f"{f}={getattr(self, f)!r}" for f in self._fields]
        return f"{type(self).__name__}({', '.join(parts)})"


class _Ref(Type):
    """A type that only names another type."""

    __slots__ = ("type",)
    _fields = ("type",)

    def __init__(self, name: str = "", type: int = 0):
        super().__init__(name)
        self.type = type


class Void(Type):
    """Type id 0."""

    __slots__ = ()


class Int(Type):
    kind = btf_format.KIND_INT
    __slots__ = ("size", "encoding", "offset", "bits")
    _fields = ("size", "encoding", "offset", "bits")

    def __init__(self, name: str = "", size: int = 4, encoding: int = 0, offset: int = 0,
                 bits: int | None = None):
        super().__init__(name)
        self.size = size
        self.encoding = encoding
        self.offset = offset
        self.bits = size * 8 if bits is None else bits

    @property
    def signed(self) -> bool:
        return bool(self.encoding & btf_format.INT_SIGNED)


class Ptr(_Ref):
    kind = btf_format.KIND_PTR
    __slots__ = ()


class Array(Type):
    kind = btf_format.KIND_ARRAY
    __slots__ = ("type", "index_type", "nelems")
    _fields = ("type", "index_type", "nelems")

    def __init__(self, name: str = "", type: int = 0, index_type: int = 0, nelems: int = 0):
        super().__init__(name)
        self.type = type
        self.index_type = index_type
        self.nelems = nelems


class Member:
    __slots__ = ("name", "type", "bit_offset", "bitfield_size")

    def __init__(self, name: str, type: int, bit_offset: int = 0, bitfield_size: int = 0):
        self.name = name
        self.type = type
        self.bit_offset = bit_offset
        self.bitfield_size = bitfield_size

    def _key(self):
        return (self.name, self.type, self.bit_offset, self.bitfield_size)

    def __eq__(self, other) -> bool:
        return isinstance(other, Member) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self) -> str:
        bf = f", bitfield_size={self.bitfield_size}" if self.bitfield_size else ""
        return f"Member({self.name!r}, type={self.type}, bit_offset={self.bit_offset}{bf})"


class Struct(Type):
    kind = btf_format.KIND_STRUCT
    __slots__ = ("size", "members")
    _fields = ("size", "members")

    def __init__(self, name: str = "", size: int = 0, members: list[Member] | None = None):
        super().__init__(name)
        self.size = size
        self.members = members if members is not None else []

    def _key(self):
        return (type(self), self.name, self.size, tuple(self.members))

    def refs(self) -> list[int]:
        return [m.type for m in self.members]

    @property
    def has_bitfields(self) -> bool:
        return any(m.bitfield_size for m in self.members)


class Union(Struct):
    kind = btf_format.KIND_UNION
    __slots__ = ()


class EnumValue:
    __slots__ = ("name", "value")

    def __init__(self, name: str, value: int):
        self.name = name
        self.value = value

    def __eq__(self, other) -> bool:
        return isinstance(other, EnumValue) and (self.name, self.value) == (other.name,
                                                                            other.value)

    def __hash__(self):
        return hash((self.name, self.value))

    def __repr__(self) -> str:
        return f"EnumValue({self.name!r}, {self.value})"


class Enum(Type):
    kind = btf_format.KIND_ENUM
    __slots__ = ("size", "values", "signed")
    _fields = ("size", "values", "signed")

    def __init__(self, name: str = "", size: int = 4, values: list[EnumValue] | None = None,
                 signed: bool = False):
        super().__init__(name)
        self.size = size
        self.values = values if values is not None else []
        self.signed = signed

    def _key(self):
        return (type(self), self.name, self.size, tuple(self.values), self.signed)


class Enum64(Enum):
    kind = btf_format.KIND_ENUM64
    __slots__ = ()


class Fwd(Type):
    kind = btf_format.KIND_FWD
    __slots__ = ("union",)
    _fields = ("union",)

    def __init__(self, name: str = "", union: bool = False):
        super().__init__(name)
        self.union = union


class Typedef(_Ref):
    kind = btf_format.KIND_TYPEDEF
    __slots__ = ()


class Volatile(_Ref):
    kind = btf_format.KIND_VOLATILE
    __slots__ = ()


class Const(_Ref):
    kind = btf_format.KIND_CONST
    __slots__ = ()


class Restrict(_Ref):
    kind = btf_format.KIND_RESTRICT
    __slots__ = ()


class TypeTag(_Ref):
    kind = btf_format.KIND_TYPE_TAG
    __slots__ = ()


class Func(Type):
    kind = btf_format.KIND_FUNC
    __slots__ = ("type", "linkage")
    _fields = ("type", "linkage")

    def __init__(self, name: str = "", type: int = 0, linkage: int = btf_format.LINKAGE_STATIC):
        super().__init__(name)
        self.type = type
        self.linkage = linkage


class Param:
    __slots__ = ("name", "type")

    def __init__(self, name: str, type: int):
        self.name = name
        self.type = type

    def __eq__(self, other) -> bool:
        return isinstance(other, Param) and (self.name, self.type) == (other.name, other.type)

    def __hash__(self):
        return hash((self.name, self.type))

    def __repr__(self) -> str:
        return f"Param({self.name!r}, {self.type})"


class FuncProto(Type):
    kind = btf_format.KIND_FUNC_PROTO
    __slots__ = ("type", "params")
    _fields = ("type", "params")

    def __init__(self, name: str = "", type: int = 0, params: list[Param] | None = None):
        super().__init__(name)
        self.type = type  # return type
        self.params = params if params is not None else []

    def _key(self):
        return (type(self), self.name, self.type, tuple(self.params))

    def refs(self) -> list[int]:
        return [self.type] + [p.type for p in self.params]


class Var(Type):
    kind = btf_format.KIND_VAR
    __slots__ = ("type", "linkage")
    _fields = ("type", "linkage")

    def __init__(self, name: str = "", type: int = 0, linkage: int = btf_format.LINKAGE_GLOBAL):
        super().__init__(name)
        self.type = type
        self.linkage = linkage


class VarSecinfo:
    __slots__ = ("type", "offset", "size")

    def __init__(self, type: int, offset: int, size: int):
        self.type = type
        self.offset = offset
        self.size = size

    def _key(self):
        return (self.type, self.offset, self.size)

    def __eq__(self, other) -> bool:
        return isinstance(other, VarSecinfo) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self) -> str:
        return f"VarSecinfo(type={self.type}, offset={self.offset}, size={self.size})"


class Datasec(Type):
    kind = btf_format.KIND_DATASEC
    __slots__ = ("size", "vars")
    _fields = ("size", "vars")

    def __init__(self, name: str = "", size: int = 0, vars: list[VarSecinfo] | None = None):
        super().__init__(name)
        self.size = size
        self.vars = vars if vars is not None else []

    def _key(self):
        return (type(self), self.name, self.size, tuple(self.vars))

    def refs(self) -> list[int]:
        return [v.type for v in self.vars]


class Float(Type):
    kind = btf_format.KIND_FLOAT
    __slots__ = ("size",)
    _fields = ("size",)

    def __init__(self, name: str = "", size: int = 8):
        super().__init__(name)
        self.size = size


class DeclTag(Type):
    kind = btf_format.KIND_DECL_TAG
    __slots__ = ("type", "component_idx")
    _fields = ("type", "component_idx")

    def __init__(self, name: str = "", type: int = 0, component_idx: int = -1):
        super().__init__(name)
        self.type = type
        self.component_idx = component_idx


#: kinds whose only job is to qualify or rename another type
MODIFIERS = (Typedef, Volatile, Const, Restrict, TypeTag)
QUALIFIERS = (Volatile, Const, Restrict, TypeTag)
