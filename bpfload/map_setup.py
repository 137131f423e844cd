"""Creating an object's maps the way libbpf does (bpf_object__create_maps).

- BTF key/value types go with every map type that takes them; for the types the kernel
  refuses them on, and on any failure with them, the map is made without (as libbpf).
- Sizes: an unsized perf event array gets one slot per possible CPU, a ring buffer is
  rounded up to a power-of-two number of pages.
- Global data (.data, .rodata, .bss, .kconfig) is written in and .rodata/.kconfig
  frozen; an arena is mapped into this process (at map_extra if given) and its
  __arena globals copied in, since programs can only use a mapped arena.
- LIBBPF_PIN_BY_NAME maps are pinned at PIN_ROOT/NAME, or the map already pinned there
  is reused if its definition is the same.
"""

from __future__ import annotations

import errno
import os

from . import model
from .errors import BPFLoadError, SyscallError
from .maps import Map
from .sys.constants import MapFlags, MapType
from .sys.syscall import obj_get, obj_info, obj_pin

#: Where LIBBPF_PIN_BY_NAME maps are pinned unless told otherwise (libbpf's default).
DEFAULT_PIN_ROOT = "/sys/fs/bpf"

#: Map types libbpf creates without BTF key/value types (the kernel refuses them there).
BTF_LESS_TYPES = frozenset({
    MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY, MapType.STACK_TRACE,
    MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS, MapType.DEVMAP, MapType.DEVMAP_HASH,
    MapType.CPUMAP, MapType.XSKMAP, MapType.SOCKMAP, MapType.SOCKHASH, MapType.QUEUE,
    MapType.STACK, MapType.ARENA})


def max_entries(m: model.MapSpec, requested: int | None = None) -> int:
    """The size a map is created with: `requested` (set_max_entries) or its definition,
    adjusted like libbpf (perf event arrays by CPUs, ring buffers to pages)."""
    n = m.max_entries if requested is None else requested
    if m.type == MapType.PERF_EVENT_ARRAY and not n:
        from .procfs import possible_cpus

        return possible_cpus()
    if m.type in (MapType.RINGBUF, MapType.USER_RINGBUF):
        return ringbuf_size(n)
    return n


def ringbuf_size(size: int) -> int:
    """libbpf's adjust_ringbuf_sz(): the smallest power-of-two number of pages that
    holds `size` bytes (0 stays 0, for the kernel to refuse)."""
    page = os.sysconf("SC_PAGE_SIZE")
    if not size or (size % page == 0 and (size // page) & (size // page - 1) == 0):
        return size
    mul = 1
    while mul <= 0xFFFFFFFF // page:
        if mul * page > size:
            return mul * page
        mul <<= 1
    return size  # no such size: the kernel says so


class StructOpsValue:
    """What a struct_ops map is created with: the kernel's value type and size."""

    def __init__(self, vtype_id: int, size: int, module_fd: int = 0, as_link: bool = False):
        self.vtype_id = vtype_id
        self.size = size
        self.module_fd = module_fd
        self.as_link = as_link  # created BPF_F_LINK: registered through a link


def create(m: model.MapSpec, btf_fd: int, entries: int, data: bytes | None = None,
           struct_ops: StructOpsValue | None = None) -> Map:
    """Create one map (its inner template first, for a map of maps) and give it its
    initial contents: global data, an arena's globals."""
    inner = None  # a map-in-map's template inner map, needed only to create it
    try:
        if m.inner is not None:
            inner = create(m.inner, btf_fd, max_entries(m.inner))
        mp = _create(m, btf_fd, entries, inner.fileno() if inner else 0, struct_ops)
    finally:
        if inner is not None:
            inner.close()
    try:
        if m.is_data:
            mp.update(b"\0\0\0\0", data if data is not None else bytes(m.value_size))
            if m.readonly:
                mp.freeze()
        elif m.type == MapType.ARENA:
            mp.map_arena(m.data or b"")
    except BaseException:
        mp.close()
        raise
    return mp


def _create(m: model.MapSpec, btf_fd: int, entries: int, inner_fd: int,
            struct_ops: StructOpsValue | None) -> Map:
    flags = m.flags
    value_size = m.value_size
    kw = dict(numa_node=m.numa_node, map_extra=m.map_extra, inner_map_fd=inner_fd)
    key_type, value_type = m.btf_key_type, m.btf_value_type
    if struct_ops is not None:
        value_size = struct_ops.size
        key_type = value_type = 0  # the kernel's value type says it all
        kw["btf_vmlinux_value_type"] = struct_ops.vtype_id
        if struct_ops.module_fd:
            kw["value_type_btf_obj_fd"] = struct_ops.module_fd
            flags |= MapFlags.VTYPE_BTF_OBJ_FD
        if struct_ops.as_link:
            flags |= MapFlags.LINK
    if m.type in BTF_LESS_TYPES or not btf_fd:
        key_type = value_type = 0
    with_btf = btf_fd if (key_type or value_type or struct_ops is not None) else 0
    try:
        return Map.create(m.name, m.type, m.key_size, value_size, entries, flags,
                          btf_fd=with_btf, btf_key_type=key_type, btf_value_type=value_type,
                          **kw)
    except SyscallError as e:
        if m.is_data and flags & MapFlags.MMAPABLE and e.errno == errno.EINVAL:
            # kernels before 5.5 cannot mmap arrays (those before 5.2, which also lack
            # RDONLY_PROG, fail again here: bpfload does not support them)
            return Map.create(m.name, m.type, m.key_size, value_size, entries,
                              flags & ~MapFlags.MMAPABLE, **kw)
        if not (key_type or value_type):
            raise
    # libbpf retries any failure with BTF types without them
    return Map.create(m.name, m.type, m.key_size, value_size, entries, flags, **kw)


# --- pinning --------------------------------------------------------------------------------


def pin_path(m: model.MapSpec, root: str) -> str:
    return os.path.join(root, m.name)


def reuse_pinned(m: model.MapSpec, path: str, entries: int) -> Map | None:
    """The map pinned at `path` if its definition is this map's (libbpf's
    map_is_reuse_compat), None if nothing is pinned there; an error otherwise."""
    from .sys.attrs import MapInfo

    try:
        fd = obj_get(path, f"opening pinned map {path}")
    except SyscallError as e:
        if e.errno == errno.ENOENT:
            return None
        raise
    info = obj_info(fd.fileno(), MapInfo())
    flags = info.map_flags
    if m.type in (MapType.DEVMAP, MapType.DEVMAP_HASH):
        flags &= ~MapFlags.RDONLY_PROG  # the kernel reports it set on every devmap
    ours = (m.type, m.key_size, m.value_size, entries, m.flags, m.map_extra)
    theirs = (info.type, info.key_size, info.value_size, info.max_entries, flags,
              info.map_extra)
    if ours != theirs:
        fd.close()
        raise BPFLoadError(f"map '{m.name}': the map pinned at {path} is another map "
                           f"(type, key, value, max_entries, flags, map_extra "
                           f"{theirs}, this object's {ours}); unpin it or use --pin-root")
    return Map(fd, m.name, m.type, m.key_size, m.value_size, entries, m.flags,
               map_extra=m.map_extra)


def pin(mp: Map, path: str) -> None:
    obj_pin(mp.fileno(), path, f"pinning map '{mp.name}' at {path}")
