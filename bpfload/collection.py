"""A whole BPF object in the kernel: open, configure, load, use, close.

Like a libbpf skeleton: open the object, set global variables, map sizes and which
programs load; load() creates every map (global data included), loads every program
and, on any failure, releases everything it created before raising. Global variables
stay readable and writable after load (through the map's memory mapping when the
kernel allows it). close() — or leaving a ``with`` block — releases every program,
link and map.
"""

from __future__ import annotations

import builtins
import errno
import os

from . import elf_reader, linker, model, sections
from .btf import fixup, targets
from .btf import values as btf_values
from .btf.encode import StringTable, encode
from .btf.kernel import KernelBTF
from .errors import BPFLoadError, BTFError, ObjectError, SyscallError
from .maps import Map
from .programs import LoadOptions, Program, sleepable_flag
from .sys.constants import MapFlags, MapType
from .sys.syscall import FD

TYPE_CHECKING = False  # (importing typing costs more than a warm load's own work)
if TYPE_CHECKING:
    from collections.abc import Iterable

    from .links import Link


class Variable:
    """A global variable of the object, before and after load."""

    def __init__(self, obj: BPFObject, spec: model.Variable):
        self._obj = obj
        self.spec = spec
        self.name = spec.name
        self.section = spec.section
        self.size = spec.size

    @property
    def readonly(self) -> bool:
        """Frozen once the object is loaded (.rodata and .rodata.*)."""
        return self._obj.spec.data_map(self.section).readonly

    def _typed(self) -> bool:
        return self._obj.spec.btf is not None and self.spec.btf_type != 0

    def raw(self) -> bytes:
        buf = self._obj._section_bytes(self.section)
        return bytes(buf[self.spec.offset:self.spec.offset + self.size])

    def get(self):
        raw = self.raw()
        if not self._typed():
            return raw
        return btf_values.decode(self._obj.spec.btf, self.spec.btf_type, raw)

    def set(self, value) -> None:
        if self._typed():
            raw = btf_values.encode(self._obj.spec.btf, self.spec.btf_type, value, self.size)
        elif isinstance(value, int):
            raw = value.to_bytes(self.size, "little", signed=value < 0)
        else:
            raw = bytes(value).ljust(self.size, b"\0")
        if len(raw) != self.size:
            raise ValueError(f"variable '{self.name}' is {self.size} bytes, got {len(raw)}")
        self._obj._write_section(self.section, self.spec.offset, raw, self.name)

    def __repr__(self) -> str:
        return f"Variable({self.name!r} in {self.section}, {self.size} bytes)"


class BPFObject:
    """One BPF ELF object: its spec, and once loaded its maps and programs."""

    def __init__(self, source, *, name: str | None = None, kernel_btf: KernelBTF | None = None,
                 btf_path: str | None = None):
        if isinstance(source, (str, os.PathLike)) and name is None:
            from . import objcache

            self.spec = objcache.read(source)
        else:
            self.spec = elf_reader.read(source, name)
        self.path = self.spec.path
        self.kernel_btf = kernel_btf or (KernelBTF(btf_path) if btf_path else KernelBTF())
        self._owns_kernel_btf = kernel_btf is None
        self.maps: dict[str, Map] = {}
        self.programs: dict[str, Program] = {}
        self.links: list[Link] = []
        self.variables = {n: Variable(self, v) for n, v in self.spec.variables.items()}
        self.warnings: list[str] = []
        self.btf_fd: FD | None = None
        self.loaded = False
        self._pending: dict[str, bytearray] = {
            m.section: bytearray(m.data or b"") for m in self.spec.maps.values() if m.is_data}
        self._autoload = {n: p.autoload for n, p in self.spec.programs.items()}
        self._map_sizes: dict[str, int] = {}
        self._core_cache = None  # btf.core.CoreCache, made by the first _core()

    # --- configuration before load ----------------------------------------------------

    def set(self, name: str, value) -> None:
        """Set a global variable by name (before or after load)."""
        self.variable(name).set(value)

    def get(self, name: str):
        return self.variable(name).get()

    def variable(self, name: str) -> Variable:
        try:
            return self.variables[name]
        except KeyError:
            raise BPFLoadError(f"{self.path} has no global variable '{name}'") from None

    def set_max_entries(self, map_name: str, n: int) -> None:
        self._before_load("resize maps")
        if map_name not in self.spec.maps or self.spec.maps[map_name].is_data:
            raise BPFLoadError(f"{self.path} has no map '{map_name}' to resize")
        if n < 1:
            raise BPFLoadError(f"map '{map_name}': max_entries must be at least 1")
        self._map_sizes[map_name] = n

    def set_autoload(self, prog_name: str, autoload: bool) -> None:
        self._before_load("choose programs")
        if prog_name not in self.spec.programs:
            raise BPFLoadError(f"{self.path} has no program '{prog_name}'")
        self._autoload[prog_name] = autoload

    def select_programs(self, names: Iterable[str]) -> None:
        """Load only the named programs; a name the object lacks is an error."""
        wanted = builtins.set(names)
        unknown = wanted - self.spec.programs.keys()
        if unknown:
            raise BPFLoadError(f"{self.path} has no program '{sorted(unknown)[0]}'")
        for n in self.spec.programs:
            self.set_autoload(n, n in wanted)

    def _before_load(self, what: str) -> None:
        if self.loaded:
            raise BPFLoadError(f"cannot {what} of {self.path} after it is loaded")

    # --- global data -------------------------------------------------------------------

    def _data_map(self, section: str) -> tuple[model.MapSpec, Map]:
        """The spec and the loaded map of a global data section."""
        spec = self.spec.data_map(section)
        if spec is None:
            raise BPFLoadError(f"no global data section {section}")
        return spec, self.maps[spec.name]

    def _section_bytes(self, section: str):
        if not self.loaded:
            return self._pending[section]
        spec, m = self._data_map(section)
        if m.flags & MapFlags.MMAPABLE:
            return m.mmap(writable=not spec.readonly)
        return m.lookup_raw(b"\0\0\0\0")

    def _write_section(self, section: str, offset: int, raw: bytes, var: str) -> None:
        if not self.loaded:
            self._pending[section][offset:offset + len(raw)] = raw
            return
        spec, m = self._data_map(section)
        if spec.readonly:
            raise BPFLoadError(f"variable '{var}' is in {section}, which is frozen once the "
                               f"object is loaded; set it before load()")
        if m.flags & MapFlags.MMAPABLE:
            m.mmap()[offset:offset + len(raw)] = raw
        else:
            cur = bytearray(m.lookup_raw(b"\0\0\0\0"))
            cur[offset:offset + len(raw)] = raw
            m.update(b"\0\0\0\0", bytes(cur))

    # --- loading -------------------------------------------------------------------------

    def load(self) -> BPFObject:
        self._before_load("load")
        for name, prog in self.spec.programs.items():  # before anything is created
            if prog.sdef is None and self._autoload.get(name, True):
                raise ObjectError(f"program '{name}': "
                                  f"{sections.unknown_section_message(prog.section)}")
        try:
            self._load_btf()
            self._create_maps()
            externs = targets.resolve_externs(self.spec, self.kernel_btf)
            for name, prog in self.spec.programs.items():
                if self._autoload.get(name, True):
                    self.programs[name] = self._load_program(prog, externs)
        except BaseException:
            self.close()
            raise
        self.loaded = True
        return self

    def _load_btf(self) -> None:
        self._btf_strings: StringTable | None = None
        if self.spec.btf is None:
            return
        try:
            types, _ = fixup.program_types(self.spec)
            self.btf_fd, self._btf_strings = self._try_load_btf(types)
        except BTFError as first:
            from .btf.load import probe_features

            features = probe_features()
            try:
                types, notes = fixup.program_types(self.spec, features)
                self.btf_fd, self._btf_strings = self._try_load_btf(types)
                self.warnings.extend(notes)
            except BTFError:
                if self._needs_btf():
                    raise first from None
                self.warnings.append(f"{first}; loading without the object's BTF")
                self.btf_fd = None

    def _try_load_btf(self, types) -> tuple[FD, StringTable]:
        from .btf.load import load_btf

        strings = StringTable()
        for fn in self.spec.functions.values():  # line_info strings must be in the blob
            for li in fn.line_info:
                strings.add(li.file)
                strings.add(li.line_text)
        return load_btf(encode(types, strings), f"the BTF of {self.path}"), strings

    def _needs_btf(self) -> bool:
        return any(m.btf_value_type and not m.is_data and m.origin == "btf"
                   and _needs_value_btf(self.spec.btf, m.btf_value_type)
                   for m in self.spec.maps.values())

    def _create_maps(self) -> None:
        btf_fd = self.btf_fd.fileno() if self.btf_fd is not None else 0
        for m in self.spec.maps.values():
            if m.is_data:
                self.maps[m.name] = self._create_data_map(m, btf_fd)
            else:
                self.maps[m.name] = self._create_map(m, btf_fd)

    def _create_map(self, m: model.MapSpec, btf_fd: int) -> Map:
        max_entries = self._map_sizes.get(m.name, m.max_entries)
        inner = None  # a map-in-map's template inner map, needed only to create it
        try:
            if m.inner is not None:
                inner = self._create_map(m.inner, btf_fd)
            kw = dict(numa_node=m.numa_node, map_extra=m.map_extra,
                      inner_map_fd=inner.fileno() if inner else 0)
            if m.type in (MapType.RINGBUF, MapType.USER_RINGBUF, MapType.PERF_EVENT_ARRAY):
                if m.type == MapType.PERF_EVENT_ARRAY and not max_entries:
                    from .procfs import possible_cpus
                    max_entries = possible_cpus()
                return Map.create(m.name, m.type, m.key_size, m.value_size, max_entries,
                                  m.flags, **kw)
            with_btf = btf_fd and (m.btf_key_type or m.btf_value_type)
            try:
                return Map.create(m.name, m.type, m.key_size, m.value_size, max_entries,
                                  m.flags, btf_fd=btf_fd if with_btf else 0,
                                  btf_key_type=m.btf_key_type if with_btf else 0,
                                  btf_value_type=m.btf_value_type if with_btf else 0, **kw)
            except SyscallError as e:
                if not with_btf or e.errno not in (errno.EINVAL, errno.ENOTSUP, 524):
                    raise
                # some map types refuse BTF key/value types; libbpf retries without
                return Map.create(m.name, m.type, m.key_size, m.value_size, max_entries,
                                  m.flags, **kw)
        finally:
            if inner is not None:
                inner.close()

    def _create_data_map(self, m: model.MapSpec, btf_fd: int) -> Map:
        flags = m.flags | MapFlags.MMAPABLE
        if m.readonly:
            flags |= MapFlags.RDONLY_PROG
        value_type = m.btf_value_type if btf_fd else 0
        try:
            mp = Map.create(m.name, MapType.ARRAY, 4, m.value_size, 1, flags,
                            btf_fd=btf_fd if value_type else 0, btf_value_type=value_type)
        except SyscallError as e:
            if e.errno != errno.EINVAL:
                raise
            # kernels before 5.5 cannot mmap arrays (those before 5.2, which also lack
            # RDONLY_PROG, fail again here: bpfload does not support them)
            flags &= ~MapFlags.MMAPABLE
            mp = Map.create(m.name, MapType.ARRAY, 4, m.value_size, 1, flags)
        try:
            mp.update(b"\0\0\0\0", bytes(self._pending[m.section]))
            if m.readonly:
                mp.freeze()
        except BaseException:
            mp.close()
            raise
        return mp

    def _core(self, fn: model.Function, code: list) -> dict[int, str]:
        from .btf.core import CoreCache, apply_core, resolve

        kb = self.kernel_btf
        target = kb.vmlinux
        modules = (lambda: [kb.module(m) for m in kb.module_names()]) if kb.use_modules \
            else None
        if self._core_cache is None:
            # libbpf resolves every relocation of the object once, in section order,
            # before linking; a candidate type one relocation rules out stays out for
            # the later ones of the same type, so do the same before patching any copy
            self._core_cache = CoreCache()
            for f in self.spec.functions.values():
                prog = self.spec.programs.get(f.name)
                if prog is not None and prog.function is f and \
                        not self._autoload.get(f.name, True):
                    continue
                for relo in f.core_relos:
                    resolve(self.spec.btf, target, relo, f.name, modules=modules,
                            cache=self._core_cache)
        return apply_core(self.spec.btf, target, fn.core_relos, code, fn.name,
                          modules=modules, cache=self._core_cache)

    def _load_program(self, prog: model.ProgramSpec, externs: targets.Externs) -> Program:
        map_fds = {name: m.fileno() for name, m in self.maps.items()}
        core = self._core if any(f.core_relos for f in self.spec.functions.values()) else None
        linked = linker.link(self.spec, prog, map_fds=map_fds, externs=externs, core=core)
        opts = LoadOptions(prog.prog_type, prog.attach_type, self.spec.license or "",
                           sleepable_flag(prog.sdef.sleepable), self.spec.kern_version,
                           fd_array=linked.fd_array or None)
        if self.btf_fd is not None and self._btf_strings is not None:
            opts.btf_fd = self.btf_fd.fileno()
            opts.func_info, opts.func_info_count = _func_info(linked)
            opts.line_info, opts.line_info_count = _line_info(linked, self._btf_strings)
        if prog.sdef.btf_target:
            opts.attach_btf_id, opts.attach_btf_obj_fd = targets.attach_target(
                self.kernel_btf, prog)

        def explain(log: str) -> str | None:
            return _explain_poison(log, linked.poisoned)

        return Program.load(prog.name, linked.insns, opts, explain=explain,
                            section=prog.section, attach_target=prog.attach_target,
                            attach_kind=prog.sdef.attach)

    # --- use ---------------------------------------------------------------------------

    def program(self, name: str) -> Program:
        try:
            return self.programs[name]
        except KeyError:
            raise BPFLoadError(f"no loaded program '{name}' in {self.path}") from None

    def map(self, name: str) -> Map:
        try:
            return self.maps[name]
        except KeyError:
            raise BPFLoadError(f"no map '{name}' in {self.path}") from None

    def attach(self, names: Iterable[str] | None = None) -> list[Link]:
        """Attach the named programs (default: every attachable one); returns the links."""
        if names is None:
            names = [n for n, p in self.programs.items()
                     if p.attach_kind not in (sections.ATTACH_NONE, sections.ATTACH_RUN)]
        from .links import attach

        new = []
        try:
            for n in names:
                link = attach(self.program(n))
                self.links.append(link)
                new.append(link)
        except BaseException:
            for link in new:
                link.close()
                self.links.remove(link)
            raise
        return new

    def close(self) -> None:
        """Detach and release everything this object put into the kernel."""
        for link in self.links:
            link.close()
        self.links.clear()
        for p in self.programs.values():
            p.close()
        self.programs.clear()
        for m in self.maps.values():
            m.close()
        self.maps.clear()
        if self.btf_fd is not None:
            self.btf_fd.close()
            self.btf_fd = None
        if self._owns_kernel_btf:
            self.kernel_btf.close()
        self.loaded = False

    def __enter__(self) -> BPFObject:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _func_info(linked: linker.Linked) -> tuple[bytes, int]:
    from .sys.attrs import FuncInfo

    recs = b"".join(bytes(FuncInfo(r.insn, r.type_id)) for r in linked.func_info)
    return recs, len(linked.func_info)


def _line_info(linked: linker.Linked, strings: StringTable) -> tuple[bytes, int]:
    from .sys.attrs import LineInfo

    recs = b"".join(bytes(LineInfo(r.insn, strings.add(r.file), strings.add(r.line_text),
                                   (r.line << 10) | (r.col & 0x3FF)))
                    for r in linked.line_info)
    return recs, len(linked.line_info)


def _needs_value_btf(btf, type_id: int) -> bool:
    """Whether a map value holds something only BTF can describe (locks, timers, kptrs)."""
    from .btf import types as T

    special = ("bpf_spin_lock", "bpf_timer", "bpf_wq", "bpf_list_head", "bpf_rb_root",
               "bpf_refcount")
    t = btf[btf.skip_modifiers(type_id)]
    if isinstance(t, T.Struct):
        for m in t.members:
            mt = btf[btf.skip_modifiers(m.type)]
            if isinstance(mt, T.Struct) and mt.name in special:
                return True
            if isinstance(btf[m.type], T.TypeTag):
                return True
    return False


def _explain_poison(log: str, poisoned: dict[int, str]) -> str | None:
    if not poisoned:
        return None
    import re

    for m in re.finditer(r"^(\d+): \(85\) call unknown#(\d+)", log, re.M):
        idx = int(m.group(1))
        if idx in poisoned:
            return f"instruction {idx} was poisoned because its relocation failed: " \
                   f"{poisoned[idx]}"
    from .btf.core import POISON_CALL

    reached = (int(n) for n in re.findall(r"unknown#(\d+)", log))
    if any(n == POISON_CALL or n >= linker.POISON_KFUNC_BASE for n in reached):
        return "a poisoned instruction was reached; failed relocations: " + "; ".join(
            sorted(set(poisoned.values())))
    return None


def load(source, *, set: dict | None = None, max_entries: dict | None = None,
         programs: Iterable[str] | None = None, **kw) -> BPFObject:
    """Open, configure and load an object in one call."""
    obj = BPFObject(source, **kw)
    try:
        for k, v in (set or {}).items():
            obj.set(k, v)
        for k, v in (max_entries or {}).items():
            obj.set_max_entries(k, v)
        if programs is not None:
            obj.select_programs(programs)
        obj.load()
    except BaseException:
        obj.close()
        raise
    return obj

