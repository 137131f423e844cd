"""Where in a user-space binary a uprobe goes: the binary's path (a bare name is looked
up as libbpf does), a function symbol's file offset, the offsets of every function a
glob pattern matches, and a virtual address as a file offset (pyelftools).

The uprobe PMU and uprobe-multi links take a file and an offset in it, not an address:
for a symbol that is st_value - sh_addr + sh_offset of the section holding it
(libbpf's elf_sym_offset).
"""

from __future__ import annotations

import fnmatch
import os

from .errors import AttachError

SHN_UNDEF = 0
PF_X = 1

# libbpf's arch_specific_lib_paths() for x86_64 and the other Debian multiarch names
_MULTIARCH = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu",
              "ppc64le": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu",
              "riscv64": "riscv64-linux-gnu", "loongarch64": "loongarch64-linux-gnu"}


def resolve_path(binary: str) -> str:
    """`binary` as a path: names with a '/' as they are; a library name (.so) searched
    in LD_LIBRARY_PATH and the usual library directories, a program name in PATH."""
    if "/" in binary:
        if not os.path.exists(binary):
            raise AttachError(f"no such binary: {binary}")
        return binary
    if binary.endswith(".so") or ".so." in binary:
        arch = _MULTIARCH.get(os.uname().machine, "")
        dirs = [os.environ.get("LD_LIBRARY_PATH", ""), "/usr/lib64:/usr/lib",
                f"/lib/{arch}:/usr/lib/{arch}" if arch else "", "/lib64:/lib"]
        perm = os.R_OK
    else:
        dirs = [os.environ.get("PATH", ""), "/usr/bin:/usr/sbin"]
        perm = os.R_OK | os.X_OK
    for d in ":".join(dirs).split(":"):
        if d and os.access(os.path.join(d, binary), perm, effective_ids=True):
            return os.path.join(d, binary)
    raise AttachError(f"cannot find '{binary}' (searched "
                      f"{'the library directories' if perm == os.R_OK else 'PATH'})")


def open_elf(path: str):
    """An ELFFile of `path` (close with .stream.close()); AttachError if it is not one."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        f = open(path, "rb")  # noqa: SIM115 - ELFFile reads it lazily; callers close it
    except OSError as e:
        raise AttachError(f"cannot open {path}: {e.strerror}") from None
    try:
        return ELFFile(f)
    except ELFError as e:
        f.close()
        raise AttachError(f"{path} is not an ELF binary: {e}") from None


def _functions(elf, section_type: str):
    """(name, file offset, binding) of each defined function symbol of one table."""
    for symtab in elf.iter_sections():
        if symtab["sh_type"] != section_type:
            continue
        for sym in symtab.iter_symbols():
            st_type = sym["st_info"]["type"]
            shndx = sym["st_shndx"]
            if st_type not in ("STT_FUNC", "STT_GNU_IFUNC") or not isinstance(shndx, int) \
                    or shndx == SHN_UNDEF:
                continue
            sec = elf.get_section(shndx)
            yield (sym.name, sym["st_value"] - sec["sh_addr"] + sec["sh_offset"],
                   sym["st_info"]["bind"])


def function_offset(path: str, name: str) -> int:
    """The file offset of function `name` (or `name@VERSION` as .symtab spells it),
    from .dynsym first, then .symtab, as libbpf looks: one strong definition, or
    several at the same offset; a weak one yields to a strong one."""
    base = name.split("@", 1)[0]
    elf = open_elf(path)
    try:
        for table in ("SHT_DYNSYM", "SHT_SYMTAB"):
            found, found_bind = None, None
            for sym, offset, bind in _functions(elf, table):
                if "@" in name:
                    if sym != name:
                        continue
                elif sym != base and not sym.startswith(base + "@"):
                    continue
                if found is None or offset == found:
                    found, found_bind = offset, bind
                elif bind == "STB_WEAK":
                    continue
                elif found_bind == "STB_WEAK":
                    found, found_bind = offset, bind
                else:
                    raise AttachError(f"'{name}' is ambiguous in {path}: two functions "
                                      f"of that name")
            if found:
                return found
    finally:
        elf.stream.close()
    raise AttachError(f"no function '{name}' in {path}")


def pattern_offsets(path: str, pattern: str) -> list[tuple[str, int]]:
    """(name, file offset) of every function whose name matches the glob `pattern`,
    from .symtab, else .dynsym (libbpf's elf_resolve_pattern_offsets)."""
    elf = open_elf(path)
    try:
        for table in ("SHT_SYMTAB", "SHT_DYNSYM"):
            found = [(sym, off) for sym, off, _ in _functions(elf, table)
                     if fnmatch.fnmatchcase(sym, pattern)]
            if found:
                return found
    finally:
        elf.stream.close()
    raise AttachError(f"no function in {path} matches '{pattern}'")


def address_offset(elf, vaddr: int, path: str, executable: bool | None = None) -> int:
    """The file offset of virtual address `vaddr`, through the PT_LOAD segment that
    holds it (which must be executable, or must not be, if `executable` says so)."""
    for seg in elf.iter_segments():
        if seg["p_type"] != "PT_LOAD" or not \
                seg["p_vaddr"] <= vaddr < seg["p_vaddr"] + seg["p_memsz"]:
            continue
        if executable is not None and bool(seg["p_flags"] & PF_X) != executable:
            raise AttachError(f"{path}: address {vaddr:#x} is in a segment that is "
                              f"{'not ' if executable else ''}executable")
        return vaddr - seg["p_vaddr"] + seg["p_offset"]
    raise AttachError(f"{path}: address {vaddr:#x} is in no loaded segment")
