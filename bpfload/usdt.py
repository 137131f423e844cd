"""USDT probes (<sys/sdt.h>'s STAP_PROBE): what libbpf's USDT manager does for programs
built with <bpf/usdt.bpf.h>.

A probe is an ELF note in `.note.stapsdt` (owner "stapsdt", type 3): the probe's
address, the link-time address of `.stapsdt.base` (prelink moves it; the difference
moves the probe), the address of its semaphore (0 if none), then provider, name and
an argument string such as "-4@%eax 8@-8(%rbp) 4@$5" (size@location, negative size
for signed). Attaching one puts a uprobe at each of the probe's sites, with the
semaphore as the uprobe's reference counter, and tells the program how to fetch the
arguments: each distinct argument string becomes a `struct __bpf_usdt_spec` in the
object's `__bpf_usdt_specs` array, and the uprobe's BPF cookie is its index there.
"""

from __future__ import annotations

import os
import re
import struct

from . import binaries
from .errors import AttachError
from .links import Link
from .sys.constants import AttachType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .collection import BPFObject
    from .programs import Program

SPECS_MAP = "__bpf_usdt_specs"
NOTE_SECTION = ".note.stapsdt"
BASE_SECTION = ".stapsdt.base"
NT_STAPSDT = 3
MAX_ARGS = 12  # BPF_USDT_MAX_ARG_CNT

# enum __bpf_usdt_arg_type
ARG_CONST, ARG_REG, ARG_REG_DEREF, ARG_SIB = 0, 1, 2, 3

# offsetof(struct pt_regs, REG) on x86_64, for each name a register goes by
_X86_64_REGS = {}
for _names, _off in ((("rip", "eip"), 128), (("rax", "eax", "ax", "al"), 80),
                     (("rbx", "ebx", "bx", "bl"), 40), (("rcx", "ecx", "cx", "cl"), 88),
                     (("rdx", "edx", "dx", "dl"), 96), (("rsi", "esi", "si", "sil"), 104),
                     (("rdi", "edi", "di", "dil"), 112), (("rbp", "ebp", "bp", "bpl"), 32),
                     (("rsp", "esp", "sp", "spl"), 152)):
    _X86_64_REGS.update(dict.fromkeys(_names, _off))
for _n, _off in ((8, 72), (9, 64), (10, 56), (11, 48), (12, 24), (13, 16), (14, 8), (15, 0)):
    _X86_64_REGS.update(dict.fromkeys((f"r{_n}", f"r{_n}d", f"r{_n}w", f"r{_n}b"), _off))

_NUM = r"(-?(?:0x[0-9a-fA-F]+|\d+))"
_ARG_FORMS = [  # (pattern, arg type), tried in libbpf's order
    (re.compile(rf"\s*{_NUM}\s*@\s*{_NUM}?\s*\(\s*%(\w+)\s*,\s*%(\w+)\s*(?:,\s*(\d+)\s*)?\)\s*"),
     ARG_SIB),
    (re.compile(rf"\s*{_NUM}\s*@\s*{_NUM}?\s*\(\s*%(\w+)\s*\)\s*"), ARG_REG_DEREF),
    (re.compile(r"\s*(-?\d+)\s*@\s*%(\w+)\s*"), ARG_REG),
    (re.compile(rf"\s*(-?\d+)\s*@\s*\${_NUM}\s*"), ARG_CONST),
]


class Note:
    """One USDT probe site: file offsets of the site and of its semaphore (0: none)."""

    def __init__(self, provider: str, name: str, offset: int, semaphore: int, args: str):
        self.provider = provider
        self.name = name
        self.offset = offset
        self.semaphore = semaphore
        self.args = args

    def __repr__(self) -> str:
        return (f"Note({self.provider}:{self.name} at {self.offset:#x}, semaphore "
                f"{self.semaphore:#x}, args {self.args!r})")


def notes(path: str) -> list[Note]:
    """Every USDT probe site of the binary at `path`."""
    elf = binaries.open_elf(path)
    try:
        sec = elf.get_section_by_name(NOTE_SECTION)
        if sec is None:
            return []
        base = elf.get_section_by_name(BASE_SECTION)
        base_addr = base["sh_addr"] if base is not None else 0
        addr = struct.Struct("<QQQ" if elf.elfclass == 64 else "<III")
        out = []
        for provider, name, loc, note_base, sema, args in _parse_notes(sec.data(), addr):
            if base_addr and note_base:  # prelinked: move by the base's displacement
                loc += base_addr - note_base
                if sema:
                    sema += base_addr - note_base
            site = binaries.address_offset(elf, loc, path, executable=True)
            sema_off = binaries.address_offset(elf, sema, path, executable=False) if sema \
                else 0
            out.append(Note(provider, name, site, sema_off, args))
        return out
    finally:
        elf.stream.close()


def _parse_notes(data: bytes, addr: struct.Struct):
    """(provider, name, loc, base, semaphore, args) of each stapsdt note."""
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
        pos += 12
        owner = data[pos:pos + namesz].rstrip(b"\0")
        pos += (namesz + 3) & ~3
        desc = data[pos:pos + descsz]
        pos += (descsz + 3) & ~3
        if owner != b"stapsdt" or ntype != NT_STAPSDT or len(desc) < addr.size:
            continue
        loc, base, sema = addr.unpack_from(desc)
        strings = desc[addr.size:].split(b"\0")
        if len(strings) < 3:
            continue
        provider, name, args = (s.decode("utf-8", "replace") for s in strings[:3])
        yield provider, name, loc, base, sema, args


def parse_args(args: str, machine: str | None = None) -> list[dict]:
    """The argument string as `struct __bpf_usdt_arg_spec` member values, one dict per
    argument (libbpf's parse_usdt_spec for x86_64)."""
    machine = machine or os.uname().machine
    out: list[dict] = []
    pos = 0
    while pos < len(args) and args[pos:].strip():
        if machine != "x86_64":
            raise AttachError(f"USDT arguments on {machine} are not parsed by bpfload "
                              f"(only x86_64): '{args}'")
        if len(out) == MAX_ARGS:
            raise AttachError(f"USDT argument string '{args}' has more than {MAX_ARGS} "
                              f"arguments")
        for pattern, kind in _ARG_FORMS:
            m = pattern.match(args, pos)
            if m:
                out.append(_arg_spec(kind, m.groups(), args))
                pos = m.end()
                break
        else:
            raise AttachError(f"unrecognized USDT argument #{len(out)} in '{args}'")
    return out


def _arg_spec(kind: int, groups: tuple, args: str) -> dict:
    size = int(groups[0])
    if abs(size) not in (1, 2, 4, 8):
        raise AttachError(f"USDT argument size {size} in '{args}' is not 1, 2, 4 or 8")
    spec = {"arg_type": kind, "arg_signed": size < 0, "arg_bitshift": 64 - abs(size) * 8,
            "val_off": 0, "reg_off": 0}
    if kind == ARG_CONST:
        spec["val_off"] = int(groups[1], 0)
    elif kind == ARG_REG:
        spec["reg_off"] = _reg(groups[1], args)
    else:
        spec["val_off"] = int(groups[1], 0) if groups[1] else 0
        spec["reg_off"] = _reg(groups[2], args)
        if kind == ARG_SIB:
            scale = int(groups[4]) if groups[4] else 1
            if scale not in (1, 2, 4, 8):
                raise AttachError(f"USDT argument scale {scale} in '{args}' is not 1, 2, "
                                  f"4 or 8")
            spec["idx_reg_off"] = _reg(groups[3], args)
            spec["scale_bitshift"] = scale.bit_length() - 1
    spec["val_off"] &= (1 << 64) - 1  # __u64: a negative displacement wraps
    return spec


def _reg(name: str, args: str) -> int:
    try:
        return _X86_64_REGS[name]
    except KeyError:
        raise AttachError(f"unrecognized register '{name}' in USDT arguments '{args}'") \
            from None


def parse_target(target: str, prog_name: str) -> tuple[str, str, str]:
    """'BINARY:PROVIDER:NAME' (libbpf's usdt/ section form)."""
    parts = target.split(":")
    if len(parts) != 3 or not all(parts):
        raise AttachError(f"program '{prog_name}': '{target}' is not BINARY:PROVIDER:NAME")
    return parts[0], parts[1], parts[2]


class Specs:
    """The spec ids of one object's `__bpf_usdt_specs` map: given out per distinct
    argument string and cookie, taken back when the link that uses them closes."""

    def __init__(self, obj: BPFObject):
        self._obj = obj
        self._free: list[int] | None = None

    def _map(self):
        if SPECS_MAP not in self._obj.maps:
            raise AttachError(f"{self._obj.path} has no {SPECS_MAP} map: usdt programs "
                              f"need <bpf/usdt.bpf.h>")
        return self._obj.maps[SPECS_MAP]

    def add(self, spec: dict) -> int:
        specs = self._map()
        if self._free is None:
            self._free = list(range(specs.max_entries - 1, -1, -1))
        if not self._free:
            raise AttachError(f"all {specs.max_entries} USDT specs of {self._obj.path} are "
                              f"in use (BPF_USDT_MAX_SPEC_CNT)")
        btf = self._obj.spec.btf
        vtype = self._obj.spec.maps[SPECS_MAP].btf_value_type
        if btf is None or not vtype:
            raise AttachError(f"{SPECS_MAP} of {self._obj.path} has no BTF value type")
        from .btf.values import encode

        try:
            raw = encode(btf, vtype, spec)
        except ValueError as e:  # an SIB argument and usdt.bpf.h older than libbpf 1.5
            raise AttachError(f"cannot describe USDT arguments to this object's "
                              f"usdt.bpf.h: {e}") from None
        spec_id = self._free.pop()
        specs.update(spec_id.to_bytes(4, "little"), raw)
        return spec_id

    def release(self, ids: list[int]) -> None:
        if self._free is not None:
            self._free.extend(ids)


def attach(obj: BPFObject, prog: Program, binary: str, provider: str, name: str, *,
           pid: int = -1, cookie: int = 0) -> Link:
    """Attach `prog` to every site of USDT probe provider:name in `binary`."""
    from . import uprobes
    from .features import bpf_cookie

    path = binaries.resolve_path(binary)
    sites = [n for n in notes(path) if n.provider == provider and n.name == name]
    where = f"{path}:{provider}:{name}"
    if not sites:
        raise AttachError(f"attaching '{prog.name}': no USDT probe {provider}:{name} in "
                          f"{path}")
    if not bpf_cookie():
        raise AttachError(f"attaching '{prog.name}' to {where}: bpfload passes USDT specs "
                          f"in the BPF cookie, which this kernel lacks (Linux 5.15+)")
    specs = obj.usdt_specs()
    by_args: dict[str, int] = {}
    parts: list[Link] = []
    try:
        for site in sites:
            if site.args not in by_args:
                args = parse_args(site.args)
                by_args[site.args] = specs.add({"args": args, "arg_cnt": len(args),
                                                "usdt_cookie": cookie})
        ids = [by_args[s.args] for s in sites]
        if prog.attach_type == AttachType.TRACE_UPROBE_MULTI:
            parts.append(uprobes.attach_uprobe_multi(
                prog, path, offsets=[s.offset for s in sites],
                ref_ctr_offsets=[s.semaphore for s in sites], cookies=ids, pid=pid))
        else:
            for site, spec_id in zip(sites, ids):
                parts.append(uprobes.attach_uprobe(prog, path, offset=site.offset, pid=pid,
                                                   cookie=spec_id,
                                                   ref_ctr_offset=site.semaphore))
    except BaseException:
        for part in parts:
            part.close()
        specs.release(list(by_args.values()))
        raise
    return Link("usdt", prog, where, None,
                holds=(*parts, _SpecIds(specs, list(by_args.values()))))


class _SpecIds:
    """The spec ids a USDT link uses, given back once its uprobes are gone."""

    def __init__(self, specs: Specs, ids: list[int]):
        self.specs = specs
        self.ids = ids

    def close(self) -> None:
        self.specs.release(self.ids)
        self.ids = []
