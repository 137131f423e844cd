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

from . import linker, map_setup, model, sections
from .btf.kernel import KernelBTF
from .errors import BPFLoadError, BTFError, ObjectError, SyscallError
from .maps import Map
from .programs import LoadOptions, Program
from .sys.constants import AttachType, MapFlags, MapType, ProgFlags, ProgType
from .sys.syscall import FD

TYPE_CHECKING = False  # (importing typing costs more than a warm load's own work)
if TYPE_CHECKING:
    from collections.abc import Iterable

    from .btf.targets import Externs
    from .links import Link
    from .struct_ops import Layout


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
        return self._obj.spec.has_btf and self.spec.btf_type != 0

    def raw(self) -> bytes:
        buf = self._obj._section_bytes(self.section)
        return bytes(buf[self.spec.offset:self.spec.offset + self.size])

    def get(self):
        raw = self.raw()
        if not self._typed():
            return raw
        from .btf import values

        return values.decode(self._obj.spec.btf, self.spec.btf_type, raw)

    def set(self, value) -> None:
        if self._typed():
            from .btf import values

            raw = values.encode(self._obj.spec.btf, self.spec.btf_type, value, self.size)
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
                 btf_path: str | None = None, pin_root: str = map_setup.DEFAULT_PIN_ROOT,
                 struct_ops_links: bool = False):
        if isinstance(source, (str, os.PathLike)) and name is None:
            from . import objcache

            self.spec = objcache.read(source)
        else:
            from . import elf_reader

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
        self._autoload_chosen = False  # set_autoload/select_programs was called
        self._map_sizes: dict[str, int] = {}
        self._core_cache = None  # btf.core.CoreCache, made by the first _core()
        self.pin_root = pin_root
        self._pinned: list[str] = []  # paths this object pinned (unpinned if load fails)
        self._reused: set[str] = set()  # maps that were pinned already: left as found
        # struct_ops maps in the kernel's terms, and their values once programs load
        self.struct_ops: dict[str, Layout] = {}
        self.struct_ops_values: dict[str, bytes] = {}
        # every struct_ops map created BPF_F_LINK (where the kernel has struct_ops
        # links), so that no registration outlives the process: not libbpf's way
        # for .struct_ops maps, which `load --attach` asks for
        self.struct_ops_links = struct_ops_links
        self._usdt_specs = None  # usdt.Specs, made by the first USDT attach

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
        self._autoload_chosen = True

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
            from .btf import targets

            externs = targets.resolve_externs(self.spec, self.kernel_btf)
            self._fill_kconfig(externs)
            self._lay_out_struct_ops()
            self._load_btf()
            self._create_maps()
            for name, prog in self.spec.programs.items():
                if self._autoload.get(name, True):
                    self.programs[name] = self._load_program(prog, externs)
            self._fill_prog_arrays()
            self._fill_struct_ops_values()
        except BaseException:
            for path in self._pinned:  # what this load pinned goes with it
                _unpin(path)
            self.close()
            raise
        self.loaded = True
        return self

    def _fill_kconfig(self, externs: Externs) -> None:
        """The .kconfig map's contents; strong externs left unset fail their users."""
        m = self.spec.data_map(model.KCONFIG_SEC)
        if m is None:
            return
        from . import kconfig

        data, unresolved = kconfig.values(self.spec, m.value_size)
        self._pending[m.section][:] = data
        externs.unresolved.update(unresolved)

    def _fill_struct_ops_values(self) -> None:
        """Each struct_ops map's value with its programs' fds, for attaching."""
        if self.struct_ops:
            from .struct_ops import value_with_programs

            for name, lay in self.struct_ops.items():
                fds = {p: self.programs[p].fileno() for p in lay.func_offsets
                       if p in self.programs}
                self.struct_ops_values[name] = value_with_programs(lay, fds)

    def _lay_out_struct_ops(self) -> None:
        """Kernel layouts of the struct_ops maps, and which of their programs load:
        libbpf loads a program some created struct_ops map uses, and not one only
        maps that are not created (or members the kernel lacks) use."""
        used: dict[str, bool] = {}
        for m in self.spec.maps.values():
            if m.origin != "struct_ops":
                continue
            from . import struct_ops

            if m.autocreate:
                lay = struct_ops.layout(self.spec.btf, m, self.kernel_btf)
                self.struct_ops[m.name] = lay
                for prog in lay.dropped:
                    used.setdefault(prog, False)
                for prog in lay.members:
                    used[prog] = True
            else:
                for prog in m.init_slots.values():
                    used.setdefault(prog, False)
        if not self._autoload_chosen:
            for prog, load in used.items():
                if prog in self._autoload:
                    self._autoload[prog] = load

    def _load_btf(self) -> None:
        self._line_strings: dict[str, int] | None = None  # see fixup.loadable
        if not self.spec.has_btf:
            return
        from .btf.load import load_btf

        what = f"the BTF of {self.path}"
        try:
            if self.spec.loadable_btf is not None:  # from the cache
                raw, offsets = self.spec.loadable_btf
            else:
                from .btf import fixup

                raw, offsets, _ = fixup.loadable(self.spec)
            self.btf_fd, self._line_strings = load_btf(raw, what), offsets
        except BTFError as first:
            from .btf import fixup
            from .btf.load import probe_features

            try:
                raw, offsets, notes = fixup.loadable(self.spec, probe_features())
                self.btf_fd, self._line_strings = load_btf(raw, what), offsets
                self.warnings.extend(notes)
            except BTFError:
                if self._needs_btf():
                    raise first from None
                self.warnings.append(f"{first}; loading without the object's BTF")
                self.btf_fd = None

    def _needs_btf(self) -> bool:
        return any(m.btf_value_type and not m.is_data and m.origin == "btf"
                   and _needs_value_btf(self.spec.btf, m.btf_value_type)
                   for m in self.spec.maps.values())

    def _create_maps(self) -> None:
        btf_fd = self.btf_fd.fileno() if self.btf_fd is not None else 0
        for m in self.spec.maps.values():
            if m.autocreate:
                self.maps[m.name] = self._create_map(m, btf_fd)
        for m in self.spec.maps.values():  # once every map a slot can name exists
            if m.init_slots and m.type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS) \
                    and m.name in self.maps and m.name not in self._reused:
                self._fill_slots(m, {i: self.maps[n] for i, n in m.init_slots.items()
                                     if n in self.maps})

    def _create_map(self, m: model.MapSpec, btf_fd: int) -> Map:
        entries = map_setup.max_entries(m, self._map_sizes.get(m.name))
        path = None
        if m.pinning == model.PIN_BY_NAME:
            path = map_setup.pin_path(m, self.pin_root)
            found = map_setup.reuse_pinned(m, path, entries)
            if found is not None:
                self._reused.add(m.name)
                return found
        lay = self.struct_ops.get(m.name)
        value = (map_setup.StructOpsValue(lay.vtype_id, len(lay.value), self._module_fd(
            lay.module), as_link=self._struct_ops_link(m)) if lay is not None else None)
        data = bytes(self._pending[m.section]) if m.is_data else None
        mp = map_setup.create(m, btf_fd, entries, data, value)
        if path is not None:
            try:
                map_setup.pin(mp, path)
            except SyscallError as e:
                mp.close()
                if e.errno != errno.EEXIST:
                    raise
                found = map_setup.reuse_pinned(m, path, entries)  # pinned meanwhile
                if found is None:
                    raise
                self._reused.add(m.name)
                return found
            self._pinned.append(path)
        return mp

    def _struct_ops_link(self, m: model.MapSpec) -> bool:
        if m.flags & MapFlags.LINK:
            return True
        if not self.struct_ops_links:
            return False
        from .features import struct_ops_link

        return struct_ops_link()

    def _module_fd(self, module: str) -> int:
        return self.kernel_btf.module_fd(module).fileno() if module else 0

    def _fill_slots(self, m: model.MapSpec, slots: dict) -> None:
        """A map-in-map's or prog array's initial values (the object's .rel.maps)."""
        outer = self.maps[m.name]
        for index, target in sorted(slots.items()):
            outer.update(index.to_bytes(4, "little"), target.fileno().to_bytes(4, "little"))

    def _fill_prog_arrays(self) -> None:
        for m in self.spec.maps.values():
            if m.type != MapType.PROG_ARRAY or not m.init_slots or m.name not in self.maps:
                continue
            if m.name in self._reused:
                continue
            missing = [p for p in m.init_slots.values() if p not in self.programs]
            if missing:
                raise BPFLoadError(f"map '{m.name}' holds program '{missing[0]}' in its "
                                   f"initial values, which is not loaded")
            self._fill_slots(m, {i: self.programs[p] for i, p in m.init_slots.items()})

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

    def _load_program(self, prog: model.ProgramSpec, externs: Externs) -> Program:
        map_fds = {name: m.fileno() for name, m in self.maps.items()}
        core = self._core if any(f.core_relos for f in self.spec.functions.values()) else None
        linked = linker.link(self.spec, prog, map_fds=map_fds, externs=externs, core=core)
        opts = LoadOptions(prog.prog_type, prog.attach_type, self.spec.license or "",
                           _load_flags(prog), self.spec.kern_version,
                           fd_array=linked.fd_array or None)
        if prog.sdef.flags & sections.SEC_USDT:
            from .features import uprobe_multi_link

            if uprobe_multi_link():  # libbpf then attaches usdt probes as uprobe-multi
                opts.expected_attach_type = AttachType.TRACE_UPROBE_MULTI
        if self.btf_fd is not None and self._line_strings is not None:
            opts.btf_fd = self.btf_fd.fileno()
            opts.func_info, opts.func_info_count = _func_info(linked)
            opts.line_info, opts.line_info_count = _line_info(linked, self._line_strings)
        if prog.sdef.btf_target:
            from .btf.targets import attach_target

            opts.attach_btf_id, opts.attach_btf_obj_fd = attach_target(self.kernel_btf, prog)
        elif prog.prog_type == ProgType.STRUCT_OPS:
            lay = next((lay for lay in self.struct_ops.values() if prog.name in lay.members),
                       None)
            if lay is None:
                raise BPFLoadError(f"program '{prog.name}': no struct_ops map uses this "
                                   f"SEC(\"{prog.section}\") program, so it has nothing to "
                                   f"implement")
            opts.attach_btf_id = lay.type_id
            opts.attach_btf_obj_fd = self._module_fd(lay.module)
            opts.expected_attach_type = lay.members[prog.name]

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

    def attach(self, names: Iterable[str] | None = None, *, cgroup: str | int | None = None,
               ifname: str | int | None = None, struct_ops: bool | None = None
               ) -> list[Link]:
        """Attach the named programs, or by default every program that attaches by its
        section alone (libbpf's skeleton attach) and every struct_ops map; cgroup
        programs go to `cgroup` and XDP/tc programs to interface `ifname` (both
        attached by default when given). Returns the new links; on a failure none of
        them stays attached."""
        from . import links

        if names is None:
            names = [n for n, p in self.programs.items() if links.attaches_by_itself(p)
                     or (links.needs(p) == links.NEEDS_CGROUP and cgroup is not None)
                     or (links.needs(p) == links.NEEDS_INTERFACE and ifname is not None)]
            struct_ops = True if struct_ops is None else struct_ops
        new: list[Link] = []
        try:
            for n in names:
                new.append(self._attach_program(self.program(n), cgroup, ifname))
            for n in (self.struct_ops if struct_ops else ()):
                new.append(self.attach_struct_ops(n))
        except BaseException:
            for link in new:
                link.close()
                self.links.remove(link)
            raise
        return new

    def _attach_program(self, prog: Program, cgroup, ifname) -> Link:
        from . import links

        if prog.attach_kind == sections.ATTACH_USDT and links.needs(prog) is None:
            from .usdt import parse_target

            if not prog.attach_target:
                raise BPFLoadError(f"program '{prog.name}': section '{prog.section}' does "
                                   f"not name a probe (usdt/BINARY:PROVIDER:NAME); use "
                                   f"attach_usdt()")
            return self.attach_usdt(prog.name, *parse_target(prog.attach_target, prog.name))
        return self._keep(links.attach(prog, cgroup=cgroup, ifname=ifname))

    def _keep(self, link: Link) -> Link:
        self.links.append(link)
        return link

    def attach_uprobe(self, name: str, binary: str, function: str = "", offset: int = 0, *,
                      ret: bool | None = None, pid: int = -1, cookie: int = 0) -> Link:
        """Attach program `name` to `function` (+offset) of `binary` (or to file offset
        `offset`); a return probe if ret, or if the program's section is uretprobe."""
        from . import uprobes

        prog = self.program(name)
        if ret is None:
            ret = prog.attach_kind == sections.ATTACH_URETPROBE
        return self._keep(uprobes.attach_uprobe(prog, binary, function, offset, ret=ret,
                                                pid=pid, cookie=cookie))

    def attach_usdt(self, name: str, binary: str, provider: str, probe: str, *,
                    pid: int = -1, cookie: int = 0) -> Link:
        """Attach usdt program `name` to every site of USDT probe provider:probe in
        `binary` (bpf_usdt_cookie() returns `cookie` there)."""
        from . import usdt

        return self._keep(usdt.attach(self, self.program(name), binary, provider, probe,
                                      pid=pid, cookie=cookie))

    def usdt_specs(self):
        """The USDT spec ids of this object (usdt.Specs)."""
        if self._usdt_specs is None:
            from .usdt import Specs

            self._usdt_specs = Specs(self)
        return self._usdt_specs

    def attach_struct_ops(self, map_name: str) -> Link:
        """Register struct_ops map `map_name` with the kernel (the Link unregisters)."""
        from .struct_ops import register

        if map_name not in self.struct_ops_values:
            raise BPFLoadError(f"{self.path} has no created struct_ops map '{map_name}'")
        return self._keep(register(map_name, self.map(map_name),
                                   self.struct_ops_values[map_name]))

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


def _load_flags(prog: model.ProgramSpec) -> int:
    flags = int(ProgFlags.SLEEPABLE) if prog.sdef.sleepable else 0
    if prog.sdef.flags & sections.SEC_XDP_FRAGS:
        flags |= ProgFlags.XDP_HAS_FRAGS
    return flags


def _unpin(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _func_info(linked: linker.Linked) -> tuple[bytes, int]:
    from .sys.attrs import FuncInfo

    recs = b"".join(bytes(FuncInfo(r.insn, r.type_id)) for r in linked.func_info)
    return recs, len(linked.func_info)


def _line_info(linked: linker.Linked, strings: dict[str, int]) -> tuple[bytes, int]:
    from .sys.attrs import LineInfo

    recs = b"".join(bytes(LineInfo(r.insn, strings[r.file], strings[r.line_text],
                                   (r.line << 10) | (r.col & 0x3FF)))
                    for r in linked.line_info)
    return recs, len(linked.line_info)


def _needs_value_btf(btf, type_id: int) -> bool:
    """Whether a map value holds something only BTF can describe (locks, timers, kptrs)."""
    from .btf import types as btf_types

    special = ("bpf_spin_lock", "bpf_timer", "bpf_wq", "bpf_list_head", "bpf_rb_root",
               "bpf_refcount")
    t = btf[btf.skip_modifiers(type_id)]
    if isinstance(t, btf_types.Struct):
        for m in t.members:
            mt = btf[btf.skip_modifiers(m.type)]
            if isinstance(mt, btf_types.Struct) and mt.name in special:
                return True
            if isinstance(btf[m.type], btf_types.TypeTag):
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

