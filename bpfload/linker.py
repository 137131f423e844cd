"""Turning one program of the object model into the instructions the kernel loads.

Subprograms are appended after the entry point in the order libbpf uses (depth first,
in the order calls appear), calls and function addresses get pc-relative immediates,
map and global-data loads get map fds, externs get kernel BTF ids, CO-RE relocations
are applied, and func_info/line_info follow their functions to the new positions.
"""

from __future__ import annotations

from . import asm, model
from .errors import RelocationError
from .model import KCONFIG_SEC
from .record import REQUIRED, Record
from .sys.constants import (
    PSEUDO_BTF_ID,
    PSEUDO_CALL,
    PSEUDO_FUNC,
    PSEUDO_KFUNC_CALL,
    PSEUDO_MAP_FD,
    PSEUDO_MAP_VALUE,
)

#: Helper id libbpf writes over calls to missing __weak kfuncs.
POISON_KFUNC_BASE = 2002000000


class Linked(Record):
    """A linked program: instructions and the records that go with them."""

    _fields = (
        ("insns", REQUIRED),  # list[asm.Insn]
        ("func_info", REQUIRED),  # list[FuncInfo]
        ("line_info", REQUIRED),  # list[LineInfo]
        # instruction index -> what went wrong there (poisoned CO-RE relocations)
        ("poisoned", dict),
        # module BTF fds referenced by kfunc calls (insn.off indexes this array)
        ("fd_array", list),
    )


TYPE_CHECKING = False  # (importing typing costs more than a warm load's own work)
if TYPE_CHECKING:
    from typing import Callable

    from .btf.targets import Externs

    # (function, copy of its instructions) -> messages for poisoned instructions
    CoreApplier = Callable[[model.Function, list], dict]


def link(obj: model.ObjectSpec, prog: model.ProgramSpec, *, map_fds: dict[str, int],
         externs: Externs, core: CoreApplier | None = None) -> Linked:
    """Link `prog` of `obj` against already-created maps and resolved externs."""
    linker = _Linker(obj, prog.name, map_fds, externs, core)
    linker.place(prog.function)
    callback = obj.exception_callbacks.get(prog.name)
    if callback:  # the verifier finds it by name, so it must be there even if uncalled
        fn = obj.functions.get(model.function_key(".text", callback))
        if fn is None:
            raise RelocationError(f"program '{prog.name}': no function '{callback}' in .text "
                                  f"for its exception_callback tag")
        linker._ensure(fn)
    return linker.finish()


class _Linker:
    def __init__(self, obj, prog_name, map_fds, externs, core):
        self.obj = obj
        self.prog_name = prog_name
        self.map_fds = map_fds
        self.externs = externs
        self.core = core
        self.insns: list[asm.Insn] = []
        self.starts: dict[str, int] = {}
        self.func_info: list[model.FuncInfo] = []
        self.line_info: list[model.LineInfo] = []
        self.poisoned: dict[int, str] = {}
        self.fd_array: list[int] = []
        self.by_section: dict[str, list[model.Function]] = {}
        for fn in obj.functions.values():
            self.by_section.setdefault(fn.section, []).append(fn)

    def place(self, fn: model.Function) -> None:
        """Append `fn`, then (depth first, in call order) every function it reaches."""
        base = len(self.insns)
        self.starts[fn.key] = base
        code = [i.copy() for i in fn.insns]
        if self.core is not None and fn.core_relos:
            for idx, why in self.core(fn, code).items():
                self.poisoned[base + idx] = why
        self.insns.extend(code)
        self.func_info.extend(r.moved(base) for r in fn.func_info)
        self.line_info.extend(r.moved(base) for r in fn.line_info)

        relocs = {r.insn: r for r in fn.relocs}
        for idx, insn in enumerate(code):
            r = relocs.get(idx)
            if r is not None:
                self._apply(fn, base, idx, r)
            elif insn.is_call and insn.src == PSEUDO_CALL:
                # a static call inside one section carries no relocation
                callee = self._function_at(fn.section, fn.start + idx + insn.imm + 1)
                self._call(base + idx, callee)

    def _apply(self, fn: model.Function, base: int, idx: int, r: model.Reloc) -> None:
        at = base + idx
        insn = self.insns[at]
        if r.kind == model.RELOC_CALL:
            self._call(at, self.obj.functions[r.target])
        elif r.kind == model.RELOC_FUNC_ADDR:
            callee = self.obj.functions[r.target]
            start = self._ensure(callee)
            insn.src = PSEUDO_FUNC
            insn.imm = start - at - 1
            self.insns[at + 1].imm = 0
        elif r.kind == model.RELOC_MAP:
            insn.src = PSEUDO_MAP_FD
            insn.imm = self._map_fd(r.target, fn)
            self.insns[at + 1].imm = 0
        elif r.kind == model.RELOC_DATA:
            spec = self._data_map(r.target)
            if spec.is_data and not 0 <= r.offset < spec.value_size:
                raise RelocationError(f"function '{fn.name}' refers to offset {r.offset} of "
                                      f"{r.target}, which has {spec.value_size} bytes")
            insn.src = PSEUDO_MAP_VALUE
            insn.imm = self._map_fd(spec.name, fn)
            self.insns[at + 1].imm = r.offset
        elif r.kind == model.RELOC_EXTERN:
            self._extern(at, insn, r.target, fn)
        else:  # pragma: no cover - the reader produces no other kinds
            raise RelocationError(f"unknown relocation kind {r.kind}")

    def _call(self, at: int, callee: model.Function) -> None:
        start = self._ensure(callee)
        insn = self.insns[at]
        insn.src = PSEUDO_CALL
        insn.imm = start - at - 1

    def _ensure(self, callee: model.Function) -> int:
        if callee.key not in self.starts:
            self.place(callee)
        return self.starts[callee.key]

    def _function_at(self, section: str, index: int) -> model.Function:
        for fn in self.by_section.get(section, ()):
            if fn.start == index:
                return fn
        raise RelocationError(f"call to instruction {index} of {section}, which starts no "
                              f"function")

    def _map_fd(self, name: str, fn: model.Function) -> int:
        fd = self.map_fds.get(name)
        if fd is None:
            raise RelocationError(f"function '{fn.name}' uses map '{name}', which was not "
                                  f"created")
        return fd

    def _data_map(self, section: str) -> model.MapSpec:
        m = self.obj.data_map(section)
        if m is None:
            raise RelocationError(f"no global-data map for section {section}")
        return m

    def _extern(self, at: int, insn: asm.Insn, name: str, fn: model.Function) -> None:
        ext = self.obj.externs[name]
        if ext.kind == "kconfig" and name in self.externs.unresolved:
            self._unresolved(name, fn)
        if ext.kind == "kconfig":  # a value in the .kconfig map
            if not insn.is_ld_imm64:
                raise RelocationError(f"function '{fn.name}' uses __kconfig extern '{name}' "
                                      f"in an instruction that is not a 64-bit load")
            insn.src = PSEUDO_MAP_VALUE
            insn.imm = self._map_fd(self._data_map(KCONFIG_SEC).name, fn)
            self.insns[at + 1].imm = ext.offset
            return
        target = self.externs.targets.get(name)
        if target is None and not ext.weak:
            self._unresolved(name, fn)
        if insn.is_call:
            if target is None:  # libbpf: a call the verifier must prove unreachable
                insn.src = 0
                insn.off = 0
                insn.imm = POISON_KFUNC_BASE + self._libbpf_extern_index(name)
                self.poisoned[at] = (f"call to kfunc '{name}', which is __weak and not in "
                                     f"the kernel (guard the call with bpf_ksym_exists())")
            else:
                insn.src = PSEUDO_KFUNC_CALL
                insn.imm = target.btf_id
                insn.off = self._btf_fd_index(target.btf_fd)
            return
        hi = self.insns[at + 1]
        if target is not None and target.btf_id:  # kfunc address or typed ksym
            insn.src = PSEUDO_BTF_ID
            insn.imm = target.btf_id
            hi.imm = target.btf_fd
        else:  # a typeless ksym's address; a missing weak symbol is NULL
            addr = target.addr if target is not None else 0
            insn.src = 0
            asm.set_ld_imm64(insn, hi, addr)

    def _unresolved(self, name: str, fn: model.Function) -> None:
        """Fail the program being linked for an extern the kernel cannot give it."""
        why = self.externs.unresolved.get(name) or f"extern '{name}' is not resolved"
        inside = f" (in its function '{fn.name}')" if fn.name != self.prog_name else ""
        raise RelocationError(f"program '{self.prog_name}'{inside}: {why}")

    def _libbpf_extern_index(self, name: str) -> int:
        """The extern's index in libbpf's sorted extern table (kconfig first, then by
        name), which libbpf folds into the poisoned call's helper id."""
        def libbpf_order(e: model.Extern) -> tuple:  # cmp_externs()
            if e.kind == "kconfig":
                return (0, -e.align, e.size, e.name)
            return (1, 0, 0, e.name)

        order = sorted(self.obj.externs.values(), key=libbpf_order)
        return [e.name for e in order].index(name)

    def _btf_fd_index(self, btf_fd: int) -> int:
        if not btf_fd:
            return 0
        if not self.fd_array:
            self.fd_array.append(0)  # index 0 means vmlinux
        if btf_fd not in self.fd_array:
            self.fd_array.append(btf_fd)
        return self.fd_array.index(btf_fd)

    def finish(self) -> Linked:
        return Linked(self.insns, self.func_info, self.line_info, self.poisoned, self.fd_array)

