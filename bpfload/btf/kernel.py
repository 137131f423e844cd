"""The running kernel's BTF: vmlinux, modules, and fast lookups by name.

vmlinux BTF is ~5 MB with 100k+ types. Opening it scans the type section once into
two compact arrays (see :mod:`.spec`); that scan is cached on disk keyed by the BTF's
identity (path, size, mtime, inode and the boot id), so a warm lookup reads the blob
and the cached index and searches both in C, building Python objects only for the
types it returns. The lookup path imports nothing but the BTF modules and :mod:`..cachedir` (the
bpf(2) layer is only needed for module BTF file descriptors); a lookup the on-disk memo
of find_id answers does not even import the decoder (:mod:`.spec`).
"""

from __future__ import annotations

import os
import sys
import zlib

from ..cachedir import cache_dir, write_cache_file
from ..errors import BTFError
from . import format as btf_format

TYPE_CHECKING = False  # (importing typing costs more than a warm lookup)
if TYPE_CHECKING:  # pragma: no cover
    from array import array

    from ..sys.syscall import FD
    from .spec import Spec

SYSFS_BTF = "/sys/kernel/btf"
VMLINUX = os.path.join(SYSFS_BTF, "vmlinux")
_INDEX_MAGIC = b"BPFLOAD-BTFIDX2\n"


def _identity_key(path: str, st: os.stat_result) -> str:
    """What identifies a BTF file's contents. The index cache file is named by a
    checksum of it and holds it in full (checked on load, so a checksum collision only
    costs a rescan); zlib, not hashlib, because loading OpenSSL costs more than the
    lookups."""
    boot = ""
    if path.startswith("/sys/"):
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                boot = f.read().strip()
        except OSError:
            pass
    return f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{boot}"


def _load_index(path: str, key: str = "") -> tuple[array, array] | None:
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    head = _INDEX_MAGIC + key.encode() + b"\n"
    if not blob.startswith(head) or (len(blob) - len(head)) % 8:
        return None
    n = (len(blob) - len(head)) // 8
    from array import array

    offsets, names = array("I"), array("I")
    body = memoryview(blob)[len(head):]
    offsets.frombytes(body[:4 * n])
    names.frombytes(body[4 * n:])
    if sys.byteorder != "little":  # pragma: no cover
        offsets.byteswap()
        names.byteswap()
    return offsets, names


def _save_index(path: str, index: tuple[array, array], key: str = "") -> None:
    offsets, names = index

    def write(f) -> None:
        f.write(_INDEX_MAGIC + key.encode() + b"\n")
        f.write(offsets.tobytes())
        f.write(names.tobytes())

    write_cache_file(path, write)


def open_btf(path: str, base: Spec | None = None, *, cache: bool = True) -> Spec:
    """Open a BTF file (vmlinux, a module's split BTF, or any raw BTF blob)."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read()
    except FileNotFoundError:
        raise BTFError(f"no BTF at {path}") from None
    except OSError as e:
        raise BTFError(f"cannot read {path}: {e.strerror}") from None
    if data[:4] == b"\x7fELF":
        return _btf_from_elf(path, data, base)
    from .spec import Spec

    index = None
    key = _identity_key(path, st) if cache else ""
    idx_path = None
    where = cache_dir() if cache else None
    if where is not None:
        name = f"{zlib.crc32(key.encode()):08x}{zlib.adler32(key.encode()):08x}"
        idx_path = os.path.join(where, f"btf-{name}.idx")
        index = _load_index(idx_path, key)
    try:
        spec = Spec(data, base, name=path, index=index)
    except BTFError:
        if index is None:
            raise
        spec = Spec(data, base, name=path)  # a stale or corrupt cache: rescan
        index = None
    if idx_path is not None and index is None and spec.count > 1000:
        _save_index(idx_path, spec.index(), key)
    return spec


def _btf_from_elf(path: str, data: bytes, base: Spec | None) -> Spec:
    """The .BTF section of an ELF file (a vmlinux image or an object)."""
    import io

    from ..elf_reader import elf_file_class
    from .spec import Spec

    elffile = elf_file_class()
    try:
        sec = elffile(io.BytesIO(data)).get_section_by_name(".BTF")
    except Exception as e:
        raise BTFError(f"{path}: not a readable ELF file ({e})") from None
    if sec is None:
        raise BTFError(f"{path} has no .BTF section")
    return Spec(sec.data(), base, name=path)


class KernelBTF:
    """Lookups in the kernel's BTF: vmlinux first, then modules.

    `path` replaces /sys/kernel/btf/vmlinux (for tests and for other kernels).
    """

    def __init__(self, path: str | None = None, *, modules: bool | None = None):
        self.path = path or VMLINUX
        self.use_modules = (path is None) if modules is None else modules
        self._vmlinux: Spec | None = None
        self._modules: dict[str, Spec] = {}
        self._module_fds: dict[str, FD] = {}
        self._memo: dict | None = None  # find_id()'s remembered answers
        self._memo_path: str | None = None

    @property
    def vmlinux(self) -> Spec:
        if self._vmlinux is None:
            if self.path == VMLINUX and not os.path.exists(VMLINUX):
                raise BTFError("the kernel has no BTF (/sys/kernel/btf/vmlinux is missing; "
                               "it needs CONFIG_DEBUG_INFO_BTF=y)")
            self._vmlinux = open_btf(self.path)
        return self._vmlinux

    def module_names(self) -> list[str]:
        if not self.use_modules:
            return []
        try:
            return sorted(n for n in os.listdir(SYSFS_BTF) if n != "vmlinux")
        except OSError:
            return []

    def module(self, name: str) -> Spec:
        spec = self._modules.get(name)
        if spec is None:
            spec = open_btf(os.path.join(SYSFS_BTF, name), self.vmlinux, cache=False)
            self._modules[name] = spec
        return spec

    def find(self, name: str, kind: int) -> tuple[Spec, int, str] | None:
        """(spec, type id, module name or '') of the first type called `name` of `kind`."""
        tid = self.vmlinux.find_one(name, kind)
        if tid is not None:
            return self.vmlinux, tid, ""
        for mod in self.module_names():
            spec = self.module(mod)
            own = [i for i in spec.find(name, kind) if i >= spec.first_id]
            if own:
                return spec, own[0], mod
        return None

    def find_id(self, name: str, kind: int) -> tuple[int, str] | None:
        """(type id, module name or '') of find(), for callers that need no types.

        vmlinux answers are remembered on disk per BTF identity (path, size, mtime,
        inode, boot id), so a warm load that only resolves attach targets never reads
        the 5 MB vmlinux BTF. Misses are not remembered: a module may add the name."""
        memo = self._id_memo()
        key = f"{kind}:{name}"
        if key in memo:
            return memo[key], ""
        found = self.find(name, kind)
        if found is None:
            return None
        _, tid, module = found
        if not module and self._memo_path:
            memo[key] = tid
            import marshal

            write_cache_file(self._memo_path, lambda f: f.write(marshal.dumps(memo)))
        return tid, module

    def _id_memo(self) -> dict[str, int]:
        if self._memo is None:
            self._memo, self._memo_path = {}, None
            where = cache_dir()
            try:
                st = os.stat(self.path)
            except OSError:
                return self._memo
            if where is None:
                return self._memo
            key = _identity_key(self.path, st).encode()
            self._memo_path = os.path.join(
                where, f"btf-{zlib.crc32(key):08x}{zlib.adler32(key):08x}.ids")
            try:
                import marshal

                with open(self._memo_path, "rb") as f:
                    memo = marshal.loads(f.read())
                if isinstance(memo, dict) and memo.get("") == key.decode():
                    self._memo = memo
            except (OSError, EOFError, ValueError, TypeError):
                pass
            self._memo[""] = key.decode()  # whose answers these are (checked on load)
        return self._memo

    def func(self, name: str) -> tuple[Spec, int, str] | None:
        return self.find(name, btf_format.KIND_FUNC)

    def module_fd(self, module: str) -> FD:
        """A file descriptor of a module's BTF object (for attach_btf_obj_fd, fd_array)."""
        from ..errors import SyscallError
        from ..sys.constants import Cmd
        from ..sys.syscall import fd_by_id, ids

        fd = self._module_fds.get(module)
        if fd is not None:
            return fd
        for btf_id in ids(Cmd.BTF_GET_NEXT_ID):
            try:
                cand = fd_by_id(Cmd.BTF_GET_FD_BY_ID, btf_id)
            except SyscallError:
                continue
            if _btf_name(cand) == module:
                self._module_fds[module] = cand
                return cand
            cand.close()
        raise BTFError(f"no BTF object for kernel module '{module}'")

    def close(self) -> None:
        for fd in self._module_fds.values():
            fd.close()
        self._module_fds.clear()


def _btf_name(fd: FD) -> str:
    import ctypes

    from ..sys import attrs
    from ..sys.syscall import address, obj_info

    name = ctypes.create_string_buffer(64)
    info = attrs.BtfInfo(name=address(name), name_len=len(name))
    obj_info(fd.fileno(), info)
    return name.value.decode(errors="replace")
