"""Reading a clang-built BPF ELF object into the plain object model (:mod:`.model`).

pyelftools does the ELF parsing; this module decides what the sections, symbols and
relocations mean the way libbpf does. It needs no root and no kernel.
"""

from __future__ import annotations

import io
import os
import struct
import sys

from . import asm, model, sections
from .btf import ext as btf_ext
from .btf import format as btf_format
from .btf import types as btf_types
from .btf.spec import Spec
from .errors import BPFLoadError, BTFError, ObjectError
from .model import KCONFIG_SEC, KSYMS_SEC
from .sys.constants import BPF_OBJ_NAME_LEN, MapFlags, MapType, ProgType, kernel_name

EM_BPF = 247
SHF_EXECINSTR = 0x4
SHN_UNDEF = 0
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2

MAPS_SEC = ".maps"
LEGACY_MAPS_SEC = "maps"
STRUCT_OPS_LINK_SEC = ".struct_ops.link"
STRUCT_OPS_SECS = (".struct_ops", STRUCT_OPS_LINK_SEC, "?.struct_ops", "?" + STRUCT_OPS_LINK_SEC)
TEXT_SEC = ".text"

# struct bpf_map_def of the legacy "maps" section: type, key_size, value_size,
# max_entries, map_flags (further fields, if any, are ignored as libbpf did).
_LEGACY_MAP_DEF = struct.Struct("<IIIII")

# BTF-defined map fields encoded as `int (*name)[value]` (__uint) ...
_UINT_FIELDS = {"type", "max_entries", "map_flags", "numa_node", "key_size", "value_size",
                "pinning", "map_extra"}
# ... and as `T *name` (__type)
_TYPE_FIELDS = {"key", "value"}


def read(source, name: str | None = None) -> model.ObjectSpec:
    """Parse a BPF object from a path or from bytes.

    Every problem with the file is raised as ObjectError (or BTFError for its BTF),
    never as an exception from the ELF parser.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, path = bytes(source), name or "<memory>"
    else:
        path = os.fspath(source)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ObjectError(f"cannot read {path}: {e.strerror}") from None
    elffile = elf_file_class()
    try:
        return _Reader(data, path, name, elffile).read()
    except BTFError as e:  # the BTF decoder does not know which file it reads
        if path in str(e):
            raise
        raise BTFError(f"{path}: {e}") from None
    except BPFLoadError:
        raise
    except Exception as e:  # pyelftools reports corrupt input with many exception types
        raise ObjectError(f"{path}: malformed ELF object ({type(e).__name__}: {e})") from None


def elf_file_class():
    """pyelftools' ELFFile, imported on first use (it is slow to import)."""
    try:
        from elftools.elf.elffile import ELFFile
    except ImportError:
        py = sys.executable or "python3"
        how = ("apt-get install python3-pyelftools" if py.startswith("/usr/bin/")
               else f"{py} -m pip install pyelftools")
        raise BPFLoadError(f"reading ELF files needs pyelftools, which {py} cannot import: "
                           f"install it ({how})") from None
    return ELFFile


def internal_map_name(obj_name: str, section: str) -> str:
    """libbpf's kernel-visible name of a global-data map (see internal_map_name())."""
    sfx_len = min(max(7, len(section)), BPF_OBJ_NAME_LEN - 1)
    # custom .data.foo / .rodata.foo maps are named by their section alone
    custom = "." in section[1:]
    pfx_len = 0 if custom else min(BPF_OBJ_NAME_LEN - sfx_len - 1, len(obj_name))
    return kernel_name(obj_name[:pfx_len] + section[:sfx_len])


def is_subprogram_section(name: str) -> bool:
    return name == TEXT_SEC or name.startswith(TEXT_SEC + ".")


def data_section_kind(name: str) -> str | None:
    for kind in (".data", ".rodata", ".bss"):
        if name == kind or name.startswith(kind + "."):
            return kind
    return None


class _Sym:
    __slots__ = ("index", "name", "value", "size", "type", "bind", "visibility", "shndx")

    def __init__(self, index, name, value, size, type_, bind, visibility, shndx):
        self.index = index
        self.name = name
        self.value = value
        self.size = size
        self.type = type_
        self.bind = bind
        self.visibility = visibility
        self.shndx = shndx


class _Section:
    __slots__ = ("index", "name", "type", "flags", "size", "_elf_section", "_data")

    def __init__(self, index, sec):
        self.index = index
        self.name = sec.name
        self.type = sec["sh_type"]
        self.flags = sec["sh_flags"]
        self.size = sec["sh_size"]
        self._elf_section = sec
        self._data = None

    @property
    def data(self) -> bytes:
        if self._data is None:
            if self.type == "SHT_NOBITS":
                self._data = bytes(self.size)
            else:
                self._data = self._elf_section.data()
                if len(self._data) != self.size:
                    raise ObjectError(f"section {self.name} is truncated "
                                      f"({len(self._data)} of {self.size} bytes)")
        return self._data

    @property
    def is_exec(self) -> bool:
        return self.type == "SHT_PROGBITS" and bool(self.flags & SHF_EXECINSTR)


class _Reader:
    def __init__(self, data: bytes, path: str, name: str | None, elffile):
        self.path = path
        self.name = model.object_name(name or path)
        if data[:4] != b"\x7fELF":
            raise ObjectError(f"{path}: not an ELF file")
        self.elf = elffile(io.BytesIO(data))
        if self.elf["e_machine"] not in ("EM_BPF", EM_BPF):
            raise ObjectError(f"{path}: not a BPF object (machine {self.elf['e_machine']})")
        if self.elf.elfclass != 64 or not self.elf.little_endian:
            raise ObjectError(f"{path}: only 64-bit little-endian BPF objects are supported")
        self.sections = [_Section(i, s) for i, s in enumerate(self.elf.iter_sections())]
        self.by_name = {s.name: s for s in self.sections}
        self.symbols = self._symbols()
        self.btf: Spec | None = None
        self.ext: btf_ext.ExtInfo | None = None
        self.map_extents: dict[str, tuple[int, int, int]] = {}  # offset, size, BTF type
        self.struct_ops_at: list[tuple[str, int, int, str]] = []  # section, offset, size, map

    # --- top level ---------------------------------------------------------------------

    def read(self) -> model.ObjectSpec:
        self._read_btf()
        license_ = self._license()
        kern_version = self._kern_version()
        functions = self._functions()
        externs = self._externs()
        maps, map_at = self._maps(externs)
        variables = self._variables()
        self._relocations(functions, map_at, externs, maps)
        self._attach_ext_info(functions)
        programs = {}
        for fn in functions.values():
            # .text and .text.* hold subprograms; elsewhere global functions are programs
            # and static ones are subprograms private to their section.
            if is_subprogram_section(fn.section) or not fn.is_global:
                continue
            # libbpf: SEC("?name") is SEC("name") with autoload off
            optional = fn.section.startswith("?")
            name = fn.section[1:] if optional else fn.section
            programs[fn.name] = model.ProgramSpec(fn.name, name, sections.find(name), fn,
                                                  autoload=not optional)
        return model.ObjectSpec(
            name=self.name, path=self.path, license=license_, kern_version=kern_version,
            programs=programs, functions=functions, maps=maps, variables=variables,
            externs=externs, btf=self.btf, section_sizes=self._section_sizes(),
            data_symbols=self._data_symbols(), exception_callbacks=self._exception_callbacks())

    def _exception_callbacks(self) -> dict[str, str]:
        """bpf_prog_assign_exc_cb(): which programs name an exception callback."""
        out: dict[str, str] = {}
        if self.btf is None:
            return out
        prefix = "exception_callback:"
        for tid in self.btf.ids():
            if self.btf.kind_of(tid) != btf_format.KIND_DECL_TAG:
                continue
            tag = self.btf[tid]
            if tag.component_idx != -1 or not tag.name.startswith(prefix):
                continue
            func = self.btf[tag.type]
            if not isinstance(func, btf_types.Func) or func.linkage != btf_format.LINKAGE_GLOBAL:
                raise ObjectError(f"{self.path}: the {tag.name} tag is not on a program")
            if not tag.name[len(prefix):]:
                raise ObjectError(f"{self.path}: program '{func.name}': empty "
                                  f"exception_callback tag")
            # two callbacks for one program: none is appended, the verifier refuses it
            out[func.name] = "" if func.name in out else tag.name[len(prefix):]
        return out

    def _section_sizes(self) -> dict[str, int]:
        return {s.name: s.size for s in self.sections
                if not s.is_exec and s.type in ("SHT_PROGBITS", "SHT_NOBITS")}

    def _data_symbols(self) -> dict[str, tuple[int, bool]]:
        out = {}
        for sym in self.symbols:
            if sym.type == "STT_OBJECT" and sym.name and 0 < sym.shndx < len(self.sections):
                hidden = sym.visibility in ("STV_HIDDEN", "STV_INTERNAL")
                out.setdefault(sym.name, (sym.value, hidden))
        return out

    # --- symbols, license, BTF ---------------------------------------------------------

    def _symbols(self) -> list[_Sym]:
        symtab = self.elf.get_section_by_name(".symtab")
        if symtab is None:
            raise ObjectError(f"{self.path}: no symbol table (.symtab); was it stripped?")
        out = []
        for i, s in enumerate(symtab.iter_symbols()):
            shndx = s["st_shndx"]
            if isinstance(shndx, str):
                shndx = {"SHN_UNDEF": SHN_UNDEF, "SHN_ABS": SHN_ABS,
                         "SHN_COMMON": SHN_COMMON}.get(shndx, 0xFFFF)
            info = s["st_info"]
            out.append(_Sym(i, s.name, s["st_value"], s["st_size"], info["type"], info["bind"],
                            s["st_other"]["visibility"], shndx))
        return out

    def _license(self) -> str:
        sec = self.by_name.get("license")
        if sec is None:
            return ""
        return sec.data.split(b"\0", 1)[0].decode("ascii", "replace")

    def _kern_version(self) -> int:
        sec = self.by_name.get("version")
        if sec is None or len(sec.data) < 4:
            return 0
        return struct.unpack_from("<I", sec.data)[0]

    def _read_btf(self) -> None:
        sec = self.by_name.get(".BTF")
        if sec is None:
            return
        self.btf = Spec(sec.data, name=f"{self.path} .BTF")
        ext = self.by_name.get(".BTF.ext")
        if ext is not None:
            self.ext = btf_ext.parse(ext.data, self.btf)

    # --- functions -------------------------------------------------------------------

    def _functions(self) -> dict[str, model.Function]:
        functions: dict[str, model.Function] = {}
        for sec in self.sections:
            if not sec.is_exec or not sec.size:
                continue
            if sec.size % asm.SIZE:
                raise ObjectError(f"{self.path}: section {sec.name} size {sec.size} is not a "
                                  f"multiple of the instruction size")
            insns = asm.decode(sec.data)
            syms = sorted((s for s in self.symbols
                           if s.shndx == sec.index and s.type == "STT_FUNC"),
                          key=lambda s: s.value)
            if not syms:
                raise ObjectError(f"{self.path}: section {sec.name} has code but no function "
                                  f"symbols")
            for i, sym in enumerate(syms):
                if sym.value % asm.SIZE:
                    raise ObjectError(f"{self.path}: function {sym.name} is misaligned")
                start = sym.value // asm.SIZE
                end = (start + sym.size // asm.SIZE if sym.size
                       else (syms[i + 1].value // asm.SIZE if i + 1 < len(syms) else len(insns)))
                if not start < end <= len(insns):
                    raise ObjectError(f"{self.path}: function {sym.name} has a bad size")
                fn = model.Function(sym.name, sec.name, start, insns[start:end],
                                    is_global=sym.bind in ("STB_GLOBAL", "STB_WEAK"),
                                    hidden=sym.visibility in ("STV_HIDDEN", "STV_INTERNAL"))
                functions[fn.key] = fn
        return functions

    def _function_at(self, functions, section: str, index: int) -> model.Function:
        for fn in functions.values():
            if fn.section == section and fn.start <= index < fn.start + len(fn.insns):
                return fn
        raise ObjectError(f"{self.path}: instruction {index} of {section} is in no function")

    # --- maps --------------------------------------------------------------------------

    def _maps(self, externs: dict[str, model.Extern]):
        """All maps in libbpf's order (.maps, global data, .kconfig, struct_ops), and an
        index (section, offset) -> map name for relocations."""
        maps: dict[str, model.MapSpec] = {}
        map_at: dict[tuple[str, int], str] = {}
        if MAPS_SEC in self.by_name:
            for m, offset in self._btf_maps(self.by_name[MAPS_SEC]):
                maps[m.name] = m
                map_at[(MAPS_SEC, offset)] = m.name
        if LEGACY_MAPS_SEC in self.by_name:
            for m, offset in self._legacy_maps(self.by_name[LEGACY_MAPS_SEC]):
                if m.name in maps:
                    raise ObjectError(f"{self.path}: map '{m.name}' defined twice")
                maps[m.name] = m
                map_at[(LEGACY_MAPS_SEC, offset)] = m.name
        for sec in self.sections:
            kind = data_section_kind(sec.name)
            if kind is None or sec.is_exec or not sec.size:
                continue
            if sec.type not in ("SHT_PROGBITS", "SHT_NOBITS"):
                continue
            m = self._data_map(sec.name, sec.data, kind == ".rodata")
            maps[m.name] = m
            map_at[(sec.name, -1)] = m.name
        kconfig = [e for e in externs.values() if e.kind == "kconfig"]
        if kconfig:
            size = max(e.offset + e.size for e in kconfig)
            m = self._data_map(KCONFIG_SEC, bytes(size), True)
            maps[m.name] = m
            map_at[(KCONFIG_SEC, -1)] = m.name
        arena = self.by_name.get(model.ARENA_SEC)
        if arena is not None and arena.size:
            self._arena_data(maps, arena)
            map_at[(model.ARENA_SEC, -1)] = ""
        for m in self._struct_ops_maps():
            if m.name in maps:
                raise ObjectError(f"{self.path}: map '{m.name}' defined twice")
            maps[m.name] = m
        return maps, map_at

    def _data_map(self, section: str, data: bytes, readonly: bool) -> model.MapSpec:
        """libbpf's internal map for a data section: created mmapable when its BTF
        shows a variable user space can reach, read-only for programs if `readonly`."""
        datasec = (self.btf.find_one(section, btf_format.KIND_DATASEC)
                   if self.btf is not None else None)
        flags = MapFlags.RDONLY_PROG if readonly else 0
        if datasec is not None and any(
                isinstance(self.btf[v.type], btf_types.Var) and self.btf[v.type].linkage !=
                btf_format.LINKAGE_STATIC for v in self.btf[datasec].vars):
            flags |= MapFlags.MMAPABLE
        return model.MapSpec(internal_map_name(self.name, section), MapType.ARRAY, 4,
                             len(data), 1, int(flags), origin="data", section=section,
                             data=data, btf_value_type=datasec or 0)

    def _arena_data(self, maps: dict[str, model.MapSpec], sec: _Section) -> None:
        """Globals declared __arena start out in the object's one arena map."""
        arenas = [m for m in maps.values() if m.type == MapType.ARENA]
        if not arenas:
            raise ObjectError(f"{self.path}: section {sec.name} holds __arena globals but "
                              f"no ARENA map is declared in .maps")
        if len(arenas) > 1:
            raise ObjectError(f"{self.path}: more than one ARENA map ("
                              f"{', '.join(m.name for m in arenas)}); libbpf allows one")
        page = os.sysconf("SC_PAGE_SIZE")
        if -(-sec.size // page) > arenas[0].max_entries:
            raise ObjectError(f"{self.path}: ARENA map '{arenas[0].name}' ("
                              f"{arenas[0].max_entries} pages) is too small for the "
                              f"{sec.size} bytes of __arena globals")
        arenas[0].data = sec.data

    def _section_symbols(self, sec: _Section) -> list[_Sym]:
        return sorted((s for s in self.symbols if s.shndx == sec.index and s.name
                       and s.type in ("STT_OBJECT", "STT_NOTYPE")), key=lambda s: s.value)

    def _legacy_maps(self, sec: _Section):
        for sym in self._section_symbols(sec):
            if sym.value + _LEGACY_MAP_DEF.size > len(sec.data):
                raise ObjectError(f"{self.path}: legacy map '{sym.name}' definition is "
                                  f"truncated")
            mtype, ksize, vsize, max_entries, flags = _LEGACY_MAP_DEF.unpack_from(
                sec.data, sym.value)
            yield model.MapSpec(sym.name, _map_type(mtype, sym.name, self.path), ksize, vsize,
                                max_entries, flags, origin="legacy",
                                section=LEGACY_MAPS_SEC), sym.value

    def _btf_maps(self, sec: _Section):
        if self.btf is None:
            raise ObjectError(f"{self.path}: section .maps needs BTF, but the object has "
                              f"no .BTF (compile with -g)")
        datasec_id = self.btf.find_one(MAPS_SEC, btf_format.KIND_DATASEC)
        if datasec_id is None:
            raise ObjectError(f"{self.path}: no DATASEC '.maps' in the object's BTF")
        offsets = {s.name: s.value for s in self._section_symbols(sec)}
        for vsi in self.btf[datasec_id].vars:
            var = self.btf[vsi.type]
            if not isinstance(var, btf_types.Var):
                raise ObjectError(f"{self.path}: .maps entry {vsi.type} is not a variable")
            if var.name not in offsets:
                raise ObjectError(f"{self.path}: map '{var.name}' has no ELF symbol")
            # where its definition lies in .maps, for initial values (.rel.maps)
            self.map_extents[var.name] = (offsets[var.name], vsi.size, var.type)
            yield self._btf_map_def(var.name, var.type), offsets[var.name]

    def _btf_map_def(self, name: str, type_id: int, inner: bool = False) -> model.MapSpec:
        btf = self.btf
        struct_t = btf[btf.skip_modifiers(type_id)]
        if not isinstance(struct_t, btf_types.Struct):
            raise ObjectError(f"{self.path}: map '{name}' is not defined by a struct")
        vals: dict[str, int] = {}
        m = model.MapSpec(name, MapType.UNSPEC, 0, 0, 0, origin="btf", section=MAPS_SEC)
        for i, mem in enumerate(struct_t.members):
            if mem.name in _UINT_FIELDS:
                vals[mem.name] = self._btf_uint(name, mem)
            elif mem.name in _TYPE_FIELDS:
                ptr = btf[btf.skip_modifiers(mem.type)]
                if not isinstance(ptr, btf_types.Ptr):
                    raise ObjectError(f"{self.path}: map '{name}' field '{mem.name}' is not "
                                      f"declared with __type()")
                if mem.name == "key":
                    m.btf_key_type = ptr.type
                else:
                    m.btf_value_type = ptr.type
                vals[mem.name + "_size_from_type"] = btf.size_of(ptr.type)
            elif mem.name == "values":
                if inner:
                    raise ObjectError(f"{self.path}: map '{name}': inner maps of inner maps "
                                      f"are not supported (libbpf neither)")
                if i != len(struct_t.members) - 1:
                    raise ObjectError(f"{self.path}: map '{name}': 'values' must be the last "
                                      f"field")
                m.inner = self._btf_inner_map(name, mem)
                vals["value_size_from_type"] = 4  # an fd: libbpf implies value_size 4
            else:
                raise ObjectError(f"{self.path}: map '{name}' has unknown field '{mem.name}'")
        if "type" not in vals:
            raise ObjectError(f"{self.path}: map '{name}' has no type")
        m.type = _map_type(vals["type"], name, self.path)
        for what in ("key", "value"):
            explicit = vals.get(what + "_size")
            from_type = vals.get(what + "_size_from_type")
            if explicit is not None and from_type is not None and explicit != from_type:
                raise ObjectError(f"{self.path}: map '{name}': {what}_size {explicit} "
                                  f"disagrees with the size of its {what} type ({from_type})")
            setattr(m, what + "_size", explicit if explicit is not None else from_type or 0)
        m.max_entries = vals.get("max_entries", 0)
        m.flags = vals.get("map_flags", 0)
        m.numa_node = vals.get("numa_node", 0)
        m.pinning = vals.get("pinning", model.PIN_NONE)
        if m.pinning not in (model.PIN_NONE, model.PIN_BY_NAME):
            raise ObjectError(f"{self.path}: map '{name}': invalid pinning value "
                              f"{m.pinning} (LIBBPF_PIN_NONE or LIBBPF_PIN_BY_NAME)")
        if inner and "pinning" in vals:
            raise ObjectError(f"{self.path}: map '{name}': an inner map cannot be pinned")
        m.map_extra = vals.get("map_extra", 0)
        return m

    def _btf_uint(self, map_name: str, mem: btf_types.Member) -> int:
        """A field's value: `int (*name)[value]` (__uint), or for map_extra also a
        one-value enum (__ulong, for 64-bit values)."""
        t = self.btf[self.btf.skip_modifiers(mem.type)]
        if mem.name == "map_extra" and isinstance(t, btf_types.Enum) and len(t.values) == 1:
            value = t.values[0].value
            if not isinstance(t, btf_types.Enum64):  # libbpf reads a 32-bit enum value as signed
                value = (value & 0xFFFFFFFF) - ((value & 0x80000000) << 1)
            return value & (1 << 64) - 1
        arr = self.btf[self.btf.skip_modifiers(t.type)] if isinstance(t, btf_types.Ptr) else None
        if not isinstance(arr, btf_types.Array):
            raise ObjectError(f"{self.path}: map '{map_name}' field '{mem.name}' is not "
                              f"declared with __uint()")
        return arr.nelems

    def _btf_inner_map(self, map_name: str, mem: btf_types.Member) -> model.MapSpec | None:
        arr = self.btf[self.btf.skip_modifiers(mem.type)]
        ptr = (self.btf[self.btf.skip_modifiers(arr.type)]
               if isinstance(arr, btf_types.Array) else None)
        if not isinstance(ptr, btf_types.Ptr):
            raise ObjectError(f"{self.path}: map '{map_name}' field 'values' is not declared "
                              f"with __array()")
        target = self.btf[self.btf.skip_modifiers(ptr.type)]
        if isinstance(target, btf_types.FuncProto):  # prog array: __array(values, int (void *))
            return None
        return self._btf_map_def(map_name + ".inner", ptr.type, inner=True)

    # --- global data -------------------------------------------------------------------

    def _variables(self) -> dict[str, model.Variable]:
        types: dict[str, int] = {}
        if self.btf is not None:
            for tid in self.btf.ids():
                if self.btf.kind_of(tid) == btf_format.KIND_VAR:
                    v = self.btf[tid]
                    types.setdefault(v.name, v.type)
        out: dict[str, model.Variable] = {}
        for sym in self.symbols:
            if sym.type != "STT_OBJECT" or not sym.name or sym.shndx in (SHN_UNDEF, SHN_ABS,
                                                                           SHN_COMMON):
                continue
            if sym.shndx >= len(self.sections):
                raise ObjectError(f"{self.path}: symbol {sym.name} in bad section {sym.shndx}")
            sec = self.sections[sym.shndx]
            if data_section_kind(sec.name) is None:
                continue
            is_global = sym.bind in ("STB_GLOBAL", "STB_WEAK") and sym.visibility not in (
                "STV_HIDDEN", "STV_INTERNAL")
            if sym.name in out and out[sym.name].is_global:
                continue
            if sym.value + sym.size > sec.size:
                raise ObjectError(f"{self.path}: variable {sym.name} lies outside {sec.name}")
            out[sym.name] = model.Variable(sym.name, sec.name, sym.value, sym.size,
                                           types.get(sym.name, 0), is_global)
        return out

    # --- externs -----------------------------------------------------------------------

    def _externs(self) -> dict[str, model.Extern]:
        kinds: dict[str, tuple[str, int]] = {}
        if self.btf is not None:
            for sec_name, kind in ((KSYMS_SEC, "ksym"), (KCONFIG_SEC, "kconfig")):
                ds = self.btf.find_one(sec_name, btf_format.KIND_DATASEC)
                if ds is None:
                    continue
                for vsi in self.btf[ds].vars:
                    t = self.btf[vsi.type]
                    if isinstance(t, btf_types.Func) and kind == "kconfig":
                        raise ObjectError(f"{self.path}: function '{t.name}' declared "
                                          f"__kconfig; only variables can be")
                    k = "kfunc" if isinstance(t, btf_types.Func) else kind
                    kinds[t.name] = (k, vsi.type)
        out = {}
        for sym in self.symbols:
            if sym.shndx != SHN_UNDEF or not sym.name or sym.bind not in ("STB_GLOBAL",
                                                                           "STB_WEAK"):
                continue
            kind, type_id = kinds.get(sym.name, ("", 0))
            if not kind and self.btf is not None:
                raise ObjectError(f"{self.path}: '{sym.name}' is defined elsewhere but "
                                  f"declared neither __ksym nor __kconfig: this object is "
                                  f"meant to be linked with the one that defines it "
                                  f"(bpftool gen object), which bpfload does not do")
            if not kind:  # no BTF to say: guess from the symbol
                kind = "kfunc" if sym.type == "STT_FUNC" else "ksym"
            out[sym.name] = model.Extern(sym.name, kind, sym.bind == "STB_WEAK", type_id)
        self._lay_out_kconfig([e for e in out.values() if e.kind == "kconfig"])
        return out

    def _lay_out_kconfig(self, externs: list[model.Extern]) -> None:
        """Each __kconfig extern's type and place in the .kconfig map, as libbpf lays
        them out: by alignment (largest first), then size, then name."""
        for ext in externs:
            var = self.btf[ext.btf_type]
            ext.size = self.btf.size_of(var.type)
            ext.align = self.btf.align_of(var.type)
            ext.kcfg_type, ext.signed = self._kcfg_type(var.type)
            if not ext.kcfg_type:
                raise ObjectError(f"{self.path}: __kconfig extern '{ext.name}' has a type "
                                  f"libbpf cannot fill ({self.btf.describe(var.type)}): use "
                                  f"bool, char, an integer, enum libbpf_tristate or char[N]")
        offset = 0
        for ext in sorted(externs, key=lambda e: (-e.align, e.size, e.name)):
            ext.offset = -(-offset // ext.align) * ext.align
            offset = ext.offset + ext.size

    def _kcfg_type(self, type_id: int) -> tuple[str, bool]:
        """libbpf's find_kcfg_type(): (kind, signed); kind '' when unsupported."""
        t = self.btf[self.btf.skip_modifiers(type_id)]
        if isinstance(t, btf_types.Int):
            if t.encoding & btf_format.INT_BOOL:
                return (model.KCFG_BOOL if t.size == 1 else ""), False
            if t.size == 1:
                return model.KCFG_CHAR, t.signed
            return (model.KCFG_INT if t.size in (2, 4, 8) else ""), t.signed
        if isinstance(t, btf_types.Enum):
            ok = t.name == "libbpf_tristate" and (t.size == 4 or isinstance(t, btf_types.Enum64))
            return (model.KCFG_TRISTATE if ok else ""), False
        if isinstance(t, btf_types.Array) and t.nelems:
            chars = self._kcfg_type(t.type)[0] == model.KCFG_CHAR
            return (model.KCFG_CHAR_ARR if chars else ""), False
        return "", False

    # --- struct_ops -------------------------------------------------------------------

    def _struct_ops_maps(self) -> list[model.MapSpec]:
        """One STRUCT_OPS map per variable of .struct_ops[.link] (SEC("?...") ones are
        not created unless asked for), sized by the object's struct until load gives
        it the kernel's."""
        out = []
        for sec in self.sections:
            if sec.name not in STRUCT_OPS_SECS or not sec.size:
                continue
            if self.btf is None:
                raise ObjectError(f"{self.path}: section {sec.name} needs BTF")
            datasec = self.btf.find_one(sec.name, btf_format.KIND_DATASEC)
            if datasec is None:
                raise ObjectError(f"{self.path}: no DATASEC '{sec.name}' in the object's BTF")
            link = sec.name.lstrip("?") == STRUCT_OPS_LINK_SEC
            offsets = {s.name: s.value for s in self._section_symbols(sec)}
            for vsi in self.btf[datasec].vars:
                var = self.btf[vsi.type]
                if var.name not in offsets:
                    raise ObjectError(f"{self.path}: struct_ops variable '{var.name}' has no "
                                      f"ELF symbol")
                offset = offsets[var.name]  # (clang leaves the DATASEC's offsets 0)
                tid = self.btf.skip_modifiers(var.type)
                st = self.btf[tid]
                if (not isinstance(st, btf_types.Struct) or isinstance(st, btf_types.Union)
                        or not st.name):
                    raise ObjectError(f"{self.path}: struct_ops variable '{var.name}' is not "
                                      f"of a named struct type")
                if offset + st.size > sec.size:
                    raise ObjectError(f"{self.path}: struct_ops variable '{var.name}' lies "
                                      f"outside {sec.name}")
                out.append(model.MapSpec(
                    var.name, MapType.STRUCT_OPS, 4, st.size, 1,
                    int(MapFlags.LINK) if link else 0, origin="struct_ops",
                    section=sec.name, data=sec.data[offset:offset + st.size],
                    autocreate=not sec.name.startswith("?"), struct_ops_type=tid,
                    btf_value_type=tid))
                self.struct_ops_at.append((sec.name, offset, st.size, var.name))
        return out

    # --- relocations -------------------------------------------------------------------

    def _relocations(self, functions, map_at, externs, maps) -> None:
        for rel in self.sections:
            if rel.type != "SHT_REL":
                continue
            target = self.sections[rel._elf_section["sh_info"]]
            if not target.is_exec:
                if target.name == MAPS_SEC:
                    for r in rel._elf_section.iter_relocations():
                        self._map_slot(r["r_offset"], r["r_info_sym"], functions, maps)
                elif target.name in STRUCT_OPS_SECS:
                    for r in rel._elf_section.iter_relocations():
                        self._struct_ops_slot(target.name, r["r_offset"], r["r_info_sym"],
                                              functions, maps)
                continue
            for r in rel._elf_section.iter_relocations():
                self._relocation(target, r["r_offset"], r["r_info_sym"], functions, map_at,
                                 externs)

    def _relocation(self, sec, offset, sym_index, functions, map_at, externs) -> None:
        if offset % asm.SIZE:
            raise ObjectError(f"{self.path}: misaligned relocation in {sec.name}")
        if sym_index >= len(self.symbols):
            raise ObjectError(f"{self.path}: relocation refers to bad symbol {sym_index}")
        index = offset // asm.SIZE
        fn = self._function_at(functions, sec.name, index)
        rel_index = index - fn.start
        insn = fn.insns[rel_index]
        sym = self.symbols[sym_index]
        where = f"{sec.name}+{index} ({fn.name})"

        if sym.shndx == SHN_UNDEF:
            if sym.name not in externs:
                raise ObjectError(f"{self.path}: {where} refers to unknown symbol {sym.name!r}")
            if not (insn.is_call or insn.is_ld_imm64):
                raise ObjectError(f"{self.path}: {where}: extern {sym.name} used by an "
                                  f"unsupported instruction")
            # (a 64-bit load of a kfunc is bpf_ksym_exists(kfunc): the linker makes
            # it a BPF_PSEUDO_BTF_ID load of the kfunc, or NULL for a missing __weak one)
            fn.relocs.append(model.Reloc(rel_index, model.RELOC_EXTERN, sym.name))
            return
        if sym.shndx >= len(self.sections):
            raise ObjectError(f"{self.path}: {where} refers to a symbol in no section")
        tsec = self.sections[sym.shndx]

        if insn.is_call:
            if insn.src != 1:
                raise ObjectError(f"{self.path}: {where}: relocated call is not a bpf-to-bpf "
                                  f"call")
            if not tsec.is_exec:
                raise ObjectError(f"{self.path}: {where}: call into non-code section "
                                  f"{tsec.name}")
            target_index = sym.value // asm.SIZE + insn.imm + 1
            callee = self._function_at(functions, tsec.name, target_index)
            if target_index != callee.start:
                raise ObjectError(f"{self.path}: {where}: call into the middle of "
                                  f"{callee.name}")
            fn.relocs.append(model.Reloc(rel_index, model.RELOC_CALL, callee.key))
            return
        if not insn.is_ld_imm64:
            raise ObjectError(f"{self.path}: {where}: relocation on an instruction that is "
                              f"neither a call nor a 64-bit load (op {insn.op:#x})")
        if rel_index + 1 >= len(fn.insns):
            raise ObjectError(f"{self.path}: {where}: truncated 64-bit load")
        if tsec.is_exec:
            byte_off = sym.value + insn.imm
            callee = self._function_at(functions, tsec.name, byte_off // asm.SIZE)
            if byte_off % asm.SIZE or byte_off // asm.SIZE != callee.start:
                raise ObjectError(f"{self.path}: {where}: address of the middle of a function")
            fn.relocs.append(model.Reloc(rel_index, model.RELOC_FUNC_ADDR, callee.key))
        elif tsec.name in (MAPS_SEC, LEGACY_MAPS_SEC):
            name = map_at.get((tsec.name, sym.value))
            if name is None:
                raise ObjectError(f"{self.path}: {where}: no map at {tsec.name}+{sym.value}")
            fn.relocs.append(model.Reloc(rel_index, model.RELOC_MAP, name))
        elif (tsec.name, -1) in map_at:
            fn.relocs.append(model.Reloc(rel_index, model.RELOC_DATA, tsec.name,
                                         sym.value + insn.imm))
        else:
            raise ObjectError(f"{self.path}: {where}: relocation against section "
                              f"'{tsec.name}', which is neither code, maps nor global data")

    def _map_slot(self, offset: int, sym_index: int, functions, maps) -> None:
        """A .rel.maps entry: `.values = { [i] = &map_or_prog }` of a map-in-map or a
        program array, which load puts into slot i."""
        sym = self._symbol(sym_index, ".rel.maps")
        found = next(((name, start, type_id) for name, (start, size, type_id)
                      in self.map_extents.items() if start <= offset <= start + size - 8),
                     None)
        if found is None:
            raise ObjectError(f"{self.path}: .rel.maps: no map at .maps+{offset}")
        name, start, type_id = found
        m = maps[name]
        members = self.btf[self.btf.skip_modifiers(type_id)].members
        if not members or members[-1].name != "values":
            raise ObjectError(f"{self.path}: map '{name}' has initial values but no "
                              f"'values' field")
        rel = offset - start - members[-1].bit_offset // 8
        if rel < 0 or rel % 8:
            raise ObjectError(f"{self.path}: map '{name}': initial value at a bad offset")
        if m.type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
            if sym.shndx != self.by_name[MAPS_SEC].index or sym.name not in maps:
                raise ObjectError(f"{self.path}: map '{name}': '{sym.name}' in its initial "
                                  f"values is not a BTF-defined map")
            if m.type == MapType.HASH_OF_MAPS and m.key_size != 4:
                raise ObjectError(f"{self.path}: hash of maps '{name}' with initial values "
                                  f"must have 4-byte keys")
        elif m.type == MapType.PROG_ARRAY:
            fn = self._entry_point(sym, functions)
            if fn is None:
                raise ObjectError(f"{self.path}: map '{name}': '{sym.name}' in its initial "
                                  f"values is not an entry-point program")
        else:
            kind = MapType.name_of(m.type).lower()
            raise ObjectError(f"{self.path}: map '{name}' ({kind}) cannot have initial values")
        m.init_slots[rel // 8] = sym.name

    def _struct_ops_slot(self, section: str, offset: int, sym_index: int, functions,
                         maps) -> None:
        """A .rel.struct_ops entry: a function pointer member set to a program."""
        sym = self._symbol(sym_index, section)
        found = next(((start, name) for sec, start, size, name in self.struct_ops_at
                      if sec == section and start <= offset < start + size), None)
        if found is None:
            raise ObjectError(f"{self.path}: {section}: no struct_ops variable at {offset}")
        start, name = found
        m = maps[name]
        st = self.btf[m.struct_ops_type]
        moff = (offset - start) * 8
        idx = next((i for i, mem in enumerate(st.members) if mem.bit_offset == moff), None)
        if idx is None:
            raise ObjectError(f"{self.path}: struct_ops '{name}': no member at offset "
                              f"{offset - start}")
        mem = st.members[idx]
        ptr = self.btf[self.btf.skip_modifiers(mem.type)]
        if not (isinstance(ptr, btf_types.Ptr) and isinstance(
                self.btf[self.btf.skip_modifiers(ptr.type)], btf_types.FuncProto)):
            raise ObjectError(f"{self.path}: struct_ops '{name}': member '{mem.name}' is "
                              f"not a function pointer")
        fn = self._entry_point(sym, functions)
        sdef = sections.find(fn.section.lstrip("?")) if fn is not None else None
        if sdef is None or sdef.prog_type != ProgType.STRUCT_OPS:
            raise ObjectError(f"{self.path}: struct_ops '{name}': member '{mem.name}' is set "
                              f"to '{sym.name}', which is not a SEC(\"struct_ops/...\") "
                              f"program")
        m.init_slots[idx] = fn.name

    def _symbol(self, index: int, where: str) -> _Sym:
        if index >= len(self.symbols):
            raise ObjectError(f"{self.path}: {where}: relocation refers to bad symbol {index}")
        return self.symbols[index]

    def _entry_point(self, sym: _Sym, functions) -> model.Function | None:
        """The program (not subprogram) whose code starts at `sym`, if any."""
        if not 0 < sym.shndx < len(self.sections) or sym.value % asm.SIZE:
            return None
        sec = self.sections[sym.shndx]
        for fn in functions.values():
            if fn.section == sec.name and fn.start == sym.value // asm.SIZE:
                if is_subprogram_section(fn.section) or not fn.is_global:
                    return None
                return fn
        return None

    # --- .BTF.ext ------------------------------------------------------------------------

    def _attach_ext_info(self, functions) -> None:
        if self.ext is None:
            return
        by_section: dict[str, list[model.Function]] = {}
        for fn in functions.values():
            by_section.setdefault(fn.section, []).append(fn)
        for table, attr in ((self.ext.func_info, "func_info"), (self.ext.line_info, "line_info"),
                            (self.ext.core_relos, "core_relos")):
            for sec_name, records in table.items():
                fns = by_section.get(sec_name, [])
                for rec in records:
                    for fn in fns:
                        if fn.start <= rec.insn < fn.start + len(fn.insns):
                            getattr(fn, attr).append(rec.moved(-fn.start))
                            break
                    else:
                        raise ObjectError(f"{self.path}: .BTF.ext {attr} record for "
                                          f"{sec_name} insn {rec.insn} is in no function")


def _map_type(value: int, name: str, path: str) -> int:
    if value not in MapType.items().values():
        raise ObjectError(f"{path}: map '{name}' has unknown map type {value}")
    return value
