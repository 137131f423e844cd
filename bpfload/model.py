"""The plain object model of a BPF ELF object: what :mod:`.elf_reader` produces and
what :mod:`.linker` and :mod:`.collection` consume. No kernel, no ELF here.

Field comments give each field's type: instructions are :class:`.asm.Insn`, func and
line info are the records below (decoded by :mod:`.btf.ext`, which also makes CO-RE
records), `btf` is a :class:`.btf.spec.Spec`, map types are
:class:`.sys.constants.MapType` and `sdef` a :class:`.sections.SectionDef`.
"""

from __future__ import annotations

from .record import REQUIRED, Record
from .sys.constants import BPF_OBJ_NAME_LEN, MapFlags, MapType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .btf.spec import Spec

ARENA_SEC = ".addr_space.1"  # globals placed in the arena (__arena)

# The kinds of value a __kconfig extern can take (libbpf's enum kcfg_type).
KCFG_CHAR = "char"
KCFG_BOOL = "bool"
KCFG_INT = "int"
KCFG_TRISTATE = "tristate"
KCFG_CHAR_ARR = "char_array"

# values of a BTF map's pinning field (libbpf's enum libbpf_pin_type)
PIN_NONE = 0
PIN_BY_NAME = 1

# Relocation kinds on an instruction.
RELOC_MAP = "map"  # ld_imm64 of a map: becomes BPF_PSEUDO_MAP_FD
RELOC_DATA = "data"  # ld_imm64 of a global variable: BPF_PSEUDO_MAP_VALUE + offset
RELOC_CALL = "call"  # bpf-to-bpf call
RELOC_FUNC_ADDR = "func_addr"  # ld_imm64 of a function (callbacks): BPF_PSEUDO_FUNC
RELOC_EXTERN = "extern"  # kfunc call or __ksym/__kconfig variable

# The sections clang puts extern declarations in (libbpf's names): __ksym variables and
# functions, and __kconfig values. Nothing of them is loaded; their BTF needs fixing up.
KSYMS_SEC = ".ksyms"
KCONFIG_SEC = ".kconfig"


def object_name(path: str) -> str:
    """libbpf's name for an object: its file name up to the first '.'."""
    base = path.rsplit("/", 1)[-1]
    return (base.split(".", 1)[0] or base)[:BPF_OBJ_NAME_LEN - 1]


class Reloc(Record):
    _fields = (
        ("insn", REQUIRED),  # int instruction index inside its function
        ("kind", REQUIRED),  # str
        ("target", REQUIRED),  # str map name, data section, function key, or extern name
        ("offset", 0),  # int byte offset into a data section
    )


class FuncInfo:
    """A function's BTF type at an instruction (.BTF.ext func_info, see :mod:`.btf.ext`)."""

    __slots__ = ("insn", "type_id")

    def __init__(self, insn: int, type_id: int):
        self.insn = insn
        self.type_id = type_id

    def moved(self, delta: int) -> FuncInfo:
        return FuncInfo(self.insn + delta, self.type_id)

    def __repr__(self) -> str:
        return f"FuncInfo(insn={self.insn}, type_id={self.type_id})"


class LineInfo:
    """A source line at an instruction (.BTF.ext line_info), strings resolved."""

    __slots__ = ("insn", "file", "line_text", "line", "col")

    def __init__(self, insn: int, file: str, line_text: str, line: int, col: int):
        self.insn = insn
        self.file = file
        self.line_text = line_text
        self.line = line
        self.col = col

    def moved(self, delta: int) -> LineInfo:
        return LineInfo(self.insn + delta, self.file, self.line_text, self.line, self.col)

    def __repr__(self) -> str:
        return f"LineInfo(insn={self.insn}, {self.file}:{self.line}:{self.col})"


class Function(Record):
    """One function of an executable section (a program"s entry or a subprogram)."""

    _fields = (
        ("name", REQUIRED),  # str
        ("section", REQUIRED),  # str
        ("start", REQUIRED),  # int instruction index inside the section
        ("insns", REQUIRED),  # list[Insn]
        ("relocs", list),  # list[Reloc]
        ("is_global", True),  # bool
        ("hidden", False),  # bool: visibility hidden (__hidden), verified as if static
        ("func_info", list),  # list[FuncInfo] insn relative to start
        ("line_info", list),  # list[LineInfo]
        ("core_relos", list),  # list[CoreRelo]
    )

    @property
    def key(self) -> str:
        return function_key(self.section, self.name)


def function_key(section: str, name: str) -> str:
    return f"{section}:{name}"


class ProgramSpec(Record):
    _fields = (
        ("name", REQUIRED),  # str
        ("section", REQUIRED),  # str
        ("sdef", REQUIRED),  # SectionDef | None: None for a section no convention matches
        ("function", REQUIRED),  # Function
        ("autoload", True),  # bool
    )

    @property
    def prog_type(self):
        """ProgType (UNSPEC for an unknown section, which cannot be loaded)."""
        from .sys.constants import ProgType

        return self.sdef.prog_type if self.sdef is not None else ProgType.UNSPEC

    @property
    def attach_type(self) -> int:
        return self.sdef.attach_type if self.sdef is not None else 0

    @property
    def attach_target(self) -> str:
        """What the section name says to attach to ("" if nothing)."""
        return self.sdef.target(self.section) if self.sdef is not None else ""

    @property
    def insn_count(self) -> int:
        return len(self.function.insns)


class Variable(Record):
    """A global variable in a data section (.bss/.data/.rodata and friends)."""

    _fields = (
        ("name", REQUIRED),  # str
        ("section", REQUIRED),  # str
        ("offset", REQUIRED),  # int
        ("size", REQUIRED),  # int
        ("btf_type", 0),  # int BTF type id of the variable"s type in the object"s BTF
        ("is_global", True),  # bool
    )


class MapSpec(Record):
    _fields = (
        ("name", REQUIRED),  # str
        ("type", REQUIRED),  # MapType
        ("key_size", REQUIRED),  # int
        ("value_size", REQUIRED),  # int
        ("max_entries", REQUIRED),  # int
        ("flags", 0),  # int
        ("numa_node", 0),  # int
        ("map_extra", 0),  # int
        ("pinning", 0),  # int
        ("btf_key_type", 0),  # int
        ("btf_value_type", 0),  # int
        # str "btf" (.maps), "legacy" (maps), "data" (global data and .kconfig),
        # "struct_ops" (.struct_ops and .struct_ops.link)
        ("origin", "btf"),
        ("section", ""),  # str ELF section the definition (or the data) lives in
        # bytes | None initial contents: of a global-data map's value, of an arena
        # (.addr_space.1), of a struct_ops map's struct in the object's layout
        ("data", None),
        ("inner", None),  # MapSpec | None template of a map-in-map"s inner map
        # dict[int, str] initial values from relocations: slot -> map (map-in-map) or
        # program (prog array); for struct_ops, member index -> program
        ("init_slots", dict),
        ("autocreate", True),  # bool (False for SEC("?.struct_ops"))
        ("struct_ops_type", 0),  # int BTF id of a struct_ops map's struct type
    )

    @property
    def is_data(self) -> bool:
        return self.origin == "data"

    @property
    def readonly(self) -> bool:
        """Frozen after its initial value is written: .rodata* and .kconfig, the data
        maps created BPF_F_RDONLY_PROG."""
        return self.is_data and bool(self.flags & MapFlags.RDONLY_PROG)


class Extern(Record):
    """A symbol the object uses but does not define (kfuncs, __ksym, __kconfig)."""

    _fields = (
        ("name", REQUIRED),  # str
        ("kind", REQUIRED),  # str "kfunc", "ksym" or "kconfig"
        ("weak", REQUIRED),  # bool
        ("btf_type", 0),  # int the object"s BTF FUNC or VAR for it
        # __kconfig externs: where the value lives in the .kconfig map and what it is
        ("offset", 0),  # int
        ("size", 0),  # int
        ("align", 1),  # int
        ("kcfg_type", ""),  # str one of the KCFG_* kinds of .kconfig
        ("signed", False),  # bool
    )


class ObjectSpec(Record):
    _fields = (
        ("name", REQUIRED),  # str libbpf"s object name: file name up to the first "."
        ("path", REQUIRED),  # str
        ("license", REQUIRED),  # str
        ("kern_version", REQUIRED),  # int
        ("programs", REQUIRED),  # dict[str, ProgramSpec]
        ("functions", REQUIRED),  # dict[str, Function] by function key, entry points included
        ("maps", REQUIRED),  # dict[str, MapSpec]
        ("variables", REQUIRED),  # dict[str, Variable]
        ("externs", REQUIRED),  # dict[str, Extern]
        ("btf", REQUIRED),  # Spec | None
        # sizes of the ELF sections BTF DATASECs describe (global data, .maps, license)
        ("section_sizes", dict),  # dict[str, int]
        # ELF symbols of those sections: name -> (offset, hidden visibility)
        ("data_symbols", dict),  # dict[str, tuple[int, bool]]
        # program -> the .text function its BTF names with
        # __attribute__((btf_decl_tag("exception_callback:NAME"))) ('' if it names two)
        ("exception_callbacks", dict),  # dict[str, str]
        # btf.fixup.loadable(self)[:2] (the BTF blob and its line_info string offsets),
        # kept by objcache with the model it caches; None: not computed
        ("loadable_btf", None),  # tuple[bytes, dict[str, int]] | None
    )

    # `btf` is a property: an entry of the object cache (objcache) holds the BTF as
    # plain bytes, decoded the first time something reads `btf`. A warm load takes the
    # blob it loads from `loadable_btf`, so it neither decodes the BTF nor imports the
    # decoder (btf.spec, btf.types, array) unless it needs types (CO-RE, --set, kfuncs).
    _btf = None  # Spec | None, once decoded
    _btf_state = None  # Spec.state() from the cache, until decoded

    @property
    def btf(self) -> Spec | None:
        if self._btf_state is not None:
            from .btf.spec import Spec

            self._btf, self._btf_state = Spec.from_state(self._btf_state), None
        return self._btf

    @btf.setter
    def btf(self, spec: Spec | None) -> None:
        self._btf, self._btf_state = spec, None

    @property
    def has_btf(self) -> bool:
        """Whether the object has BTF, without decoding it."""
        return self._btf is not None or self._btf_state is not None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self._btf is not None:
            state.update(_btf=None, _btf_state=self._btf.state())
        return state

    def __setstate__(self, state: dict) -> None:
        """From the cache: a BTF state of the wrong shape is a damaged entry (objcache
        then parses the object again), not an error at first use."""
        btf = state.get("_btf_state")
        if btf is not None and not (type(btf) is tuple and len(btf) == 4
                                    and all(type(x) is bytes for x in btf)):
            raise ValueError("damaged BTF state")
        self.__dict__.update(state)

    def data_map(self, section: str) -> MapSpec | None:
        """The map holding a data section (.bss, .rodata.foo, .kconfig, ...; the arena
        map for the arena's globals in .addr_space.1)."""
        for m in self.maps.values():
            if m.is_data and m.section == section:
                return m
        if section == ARENA_SEC:
            return next((m for m in self.maps.values() if m.type == MapType.ARENA), None)
        return None
