"""The plain object model of a BPF ELF object: what :mod:`.elf_reader` produces and
what :mod:`.linker` and :mod:`.collection` consume. No kernel, no ELF here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .asm import Insn
from .btf.ext import CoreRelo, FuncInfo, LineInfo
from .btf.spec import Spec
from .sections import SectionDef
from .sys.constants import MapType

# Relocation kinds on an instruction.
RELOC_MAP = "map"  # ld_imm64 of a map: becomes BPF_PSEUDO_MAP_FD
RELOC_DATA = "data"  # ld_imm64 of a global variable: BPF_PSEUDO_MAP_VALUE + offset
RELOC_CALL = "call"  # bpf-to-bpf call
RELOC_FUNC_ADDR = "func_addr"  # ld_imm64 of a function (callbacks): BPF_PSEUDO_FUNC
RELOC_EXTERN = "extern"  # kfunc call or __ksym/__kconfig variable


@dataclass
class Reloc:
    insn: int  # instruction index inside its function
    kind: str
    target: str  # map name, data section, function key, or extern name
    offset: int = 0  # byte offset into a data section


@dataclass
class Function:
    """One function of an executable section (a program's entry or a subprogram)."""

    name: str
    section: str
    start: int  # instruction index inside the section
    insns: list[Insn]
    relocs: list[Reloc] = field(default_factory=list)
    is_global: bool = True
    func_info: list[FuncInfo] = field(default_factory=list)  # insn relative to start
    line_info: list[LineInfo] = field(default_factory=list)
    core_relos: list[CoreRelo] = field(default_factory=list)

    @property
    def key(self) -> str:
        return function_key(self.section, self.name)


def function_key(section: str, name: str) -> str:
    return f"{section}:{name}"


@dataclass
class ProgramSpec:
    name: str
    section: str
    sdef: SectionDef
    function: Function
    autoload: bool = True

    @property
    def prog_type(self):
        return self.sdef.prog_type

    @property
    def attach_type(self) -> int:
        return self.sdef.attach_type

    @property
    def attach_target(self) -> str:
        """What the section name says to attach to ('' if nothing)."""
        return self.sdef.target(self.section)

    @property
    def insn_count(self) -> int:
        return len(self.function.insns)


@dataclass
class Variable:
    """A global variable in a data section (.bss/.data/.rodata and friends)."""

    name: str
    section: str
    offset: int
    size: int
    btf_type: int = 0  # BTF type id of the variable's type in the object's BTF
    is_global: bool = True


@dataclass
class MapSpec:
    name: str
    type: MapType
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    numa_node: int = 0
    map_extra: int = 0
    pinning: int = 0
    btf_key_type: int = 0
    btf_value_type: int = 0
    origin: str = "btf"  # "btf" (.maps), "legacy" (maps), "data" (global data)
    section: str = ""  # ELF section the definition (or the data) lives in
    data: bytes | None = None  # initial contents of a global-data map
    inner: MapSpec | None = None  # template of a map-in-map's inner map

    @property
    def is_data(self) -> bool:
        return self.origin == "data"

    @property
    def readonly(self) -> bool:
        return self.is_data and self.section.startswith(".rodata")


@dataclass
class Extern:
    """A symbol the object uses but does not define (kfuncs, __ksym, __kconfig)."""

    name: str
    kind: str  # "kfunc", "ksym" or "kconfig"
    weak: bool
    btf_type: int = 0  # the object's BTF FUNC or VAR for it


@dataclass
class ObjectSpec:
    name: str  # libbpf's object name: file name up to the first '.'
    path: str
    license: str
    kern_version: int
    programs: dict[str, ProgramSpec]
    functions: dict[str, Function]  # by function key, entry points included
    maps: dict[str, MapSpec]
    variables: dict[str, Variable]
    externs: dict[str, Extern]
    btf: Spec | None
    #: sizes of the ELF sections BTF DATASECs describe (global data, .maps, license)
    section_sizes: dict[str, int] = field(default_factory=dict)
    #: ELF symbols of those sections: name -> (offset, hidden visibility)
    data_symbols: dict[str, tuple[int, bool]] = field(default_factory=dict)

    def program(self, name: str) -> ProgramSpec:
        try:
            return self.programs[name]
        except KeyError:
            raise KeyError(f"no program '{name}' in {self.path}") from None
