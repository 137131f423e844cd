"""BPF maps: creation, and access from user space.

Keys and values are bytes unless a codec is given: an int codec (little-endian of the
map's key/value size), a ``struct.Struct``, or a ctypes type. Batch operations move
thousands of entries per system call and fall back to per-key calls on kernels that
lack them.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from .errors import NOT_SUPPORTED, SyscallError
from .sys import attrs
from .sys.constants import BPF_ANY, PERCPU_MAP_TYPES, Cmd, MapFlags, MapType, kernel_name
from .sys.syscall import FD, address, bpf, bpf_fd, map_shared, obj_info, unmap

TYPE_CHECKING = False  # (importing typing costs more than a warm load's own work)
if TYPE_CHECKING:
    import mmap
    from collections.abc import Iterator
    from typing import Any

#: How many entries one batch call asks for when the caller does not say (capped at
#: max_entries): a million-entry drain is a handful of system calls.
DEFAULT_BATCH = 65536


class Codec:
    """Converts between Python values and a map's key or value bytes."""

    def __init__(self, size: int, kind: Any = None):
        self.size = size
        self.kind = kind
        if kind is None or kind is bytes:
            self.encode, self.decode = self._enc_bytes, bytes
        elif kind is int:
            self.encode = lambda v: int(v).to_bytes(size, "little")
            self.decode = lambda b: int.from_bytes(b, "little")
        elif isinstance(kind, struct.Struct):
            if kind.size != size:
                raise ValueError(f"struct format {kind.format!r} is {kind.size} bytes, the map "
                                 f"has {size}")
            self.encode = lambda v: kind.pack(*v) if isinstance(v, tuple) else kind.pack(v)
            self.decode = lambda b: _unpack_one(kind, b)
        elif isinstance(kind, type) and issubclass(kind, (ctypes.Structure, ctypes.Union,
                                                          ctypes.Array, ctypes._SimpleCData)):
            if ctypes.sizeof(kind) != size:
                raise ValueError(f"{kind.__name__} is {ctypes.sizeof(kind)} bytes, the map has "
                                 f"{size}")
            self.encode = lambda v: bytes(v) if isinstance(v, kind) else bytes(kind(v))
            self.decode = kind.from_buffer_copy
        else:
            raise TypeError(f"unsupported codec {kind!r}")

    def _enc_bytes(self, v) -> bytes:
        if isinstance(v, int):  # bytes(4) would quietly be four zero bytes
            raise TypeError(f"expected {self.size} bytes, got the int {v} (an int codec "
                            f"takes ints: key=int or value=int)")
        b = bytes(v)
        if len(b) != self.size:
            raise ValueError(f"expected {self.size} bytes, got {len(b)}")
        return b


def _unpack_one(s: struct.Struct, b: bytes):
    vals = s.unpack(b)
    return vals[0] if len(vals) == 1 else vals


class Map:
    """A map in the kernel, owned through its file descriptor."""

    def __init__(self, fd: FD, name: str, type: MapType, key_size: int, value_size: int,
                 max_entries: int, flags: int = 0, *, map_extra: int = 0, key: Any = None,
                 value: Any = None):
        self.fd = fd
        self.name = name
        self.type = type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.flags = flags
        self.map_extra = map_extra
        self.percpu = self.type in PERCPU_MAP_TYPES
        self.ncpus = 1
        if self.percpu:
            from .procfs import possible_cpus  # (a /sys read: only for per-CPU maps)

            self.ncpus = possible_cpus()
        # per-CPU values are 8-byte aligned slots, one per possible CPU
        self._slot = (value_size + 7) & ~7 if self.percpu else value_size
        self.key_codec = Codec(key_size, key)
        self.value_codec = Codec(value_size, value)
        self._mmap: mmap.mmap | None = None
        self._arena: tuple[int, int] | None = None  # (address, size) of a mapped arena
        self._batch_ok = True

    @classmethod
    def create(cls, name: str, type: MapType, key_size: int, value_size: int,
               max_entries: int, flags: int = 0, *, btf_fd: int = 0, btf_key_type: int = 0,
               btf_value_type: int = 0, numa_node: int = 0, map_extra: int = 0,
               inner_map_fd: int = 0, btf_vmlinux_value_type: int = 0,
               value_type_btf_obj_fd: int = 0, **codecs) -> Map:
        attr = attrs.MapCreateAttr(
            map_type=type, key_size=key_size, value_size=value_size, max_entries=max_entries,
            map_flags=flags, inner_map_fd=inner_map_fd, numa_node=numa_node,
            map_name=kernel_name(name).encode(), btf_fd=btf_fd, btf_key_type_id=btf_key_type,
            btf_value_type_id=btf_value_type, map_extra=map_extra,
            btf_vmlinux_value_type_id=btf_vmlinux_value_type,
            value_type_btf_obj_fd=value_type_btf_obj_fd)
        fd = bpf_fd(Cmd.MAP_CREATE, attr, f"creating map '{name}'")
        return cls(fd, name, type, key_size, value_size, max_entries, flags,
                   map_extra=map_extra, **codecs)

    # --- identity --------------------------------------------------------------------

    def fileno(self) -> int:
        return self.fd.fileno()

    def info(self) -> attrs.MapInfo:
        return obj_info(self.fileno(), attrs.MapInfo())

    @property
    def id(self) -> int:
        return self.info().id

    def close(self) -> None:
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:  # a caller still holds a view; the mapping dies with it
                pass
            self._mmap = None
        if self._arena is not None:
            unmap(*self._arena)
            self._arena = None
        self.fd.close()

    def __enter__(self) -> Map:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Map({self.name!r}, {MapType.name_of(self.type)}, key={self.key_size}, "
                f"value={self.value_size}, max_entries={self.max_entries})")

    # --- single elements ---------------------------------------------------------------

    @property
    def _value_bytes(self) -> int:
        return self._slot * self.ncpus

    def _key_buf(self, key):
        return ctypes.create_string_buffer(self.key_codec.encode(key), self.key_size)

    def lookup(self, key, default=None):
        """The value stored under `key`, or `default` if there is none."""
        raw = self.lookup_raw(self.key_codec.encode(key))
        if raw is None:
            return default
        return self._decode_value(raw)

    def lookup_raw(self, key: bytes) -> bytes | None:
        k = ctypes.create_string_buffer(key, self.key_size)
        v = ctypes.create_string_buffer(self._value_bytes)
        attr = attrs.MapElemAttr(map_fd=self.fileno(), key=address(k), value=address(v))
        return v.raw if self._elem_op(Cmd.MAP_LOOKUP_ELEM, attr, "looking up in") else None

    def __getitem__(self, key):
        raw = self.lookup_raw(self.key_codec.encode(key))
        if raw is None:
            raise KeyError(key)
        return self._decode_value(raw)

    def update(self, key, value, flags: int = BPF_ANY) -> None:
        k = self._key_buf(key)
        v = ctypes.create_string_buffer(self._encode_value(value), self._value_bytes)
        attr = attrs.MapElemAttr(map_fd=self.fileno(), key=address(k), value=address(v),
                                 flags=flags)
        bpf(Cmd.MAP_UPDATE_ELEM, attr, f"updating map '{self.name}'")

    __setitem__ = update

    def delete(self, key) -> bool:
        """Remove `key`; False if it was not there."""
        return self.delete_raw(self.key_codec.encode(key))

    def delete_raw(self, key: bytes) -> bool:
        k = ctypes.create_string_buffer(key, self.key_size)
        attr = attrs.MapElemAttr(map_fd=self.fileno(), key=address(k))
        return self._elem_op(Cmd.MAP_DELETE_ELEM, attr, "deleting from")

    def __delitem__(self, key) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def next_key_raw(self, key: bytes | None) -> bytes | None:
        k = ctypes.create_string_buffer(key, self.key_size) if key is not None else None
        nk = ctypes.create_string_buffer(self.key_size)
        attr = attrs.MapElemAttr(map_fd=self.fileno(), key=address(k), value=address(nk))
        return nk.raw if self._elem_op(Cmd.MAP_GET_NEXT_KEY, attr, "iterating") else None

    def _elem_op(self, cmd: Cmd, attr: attrs.MapElemAttr, doing: str) -> bool:
        """One element command; False when the kernel says there is no such element."""
        try:
            bpf(cmd, attr, f"{doing} map '{self.name}'")
        except SyscallError as e:
            if e.errno == errno.ENOENT:
                return False
            raise
        return True

    def keys(self) -> Iterator:
        key = self.next_key_raw(None)
        while key is not None:
            yield self.key_codec.decode(key)
            key = self.next_key_raw(key)

    def __iter__(self) -> Iterator:
        return self.keys()

    def items(self) -> Iterator[tuple]:
        """(key, value) pairs, one lookup per key (see lookup_batch for bulk reads)."""
        key = self.next_key_raw(None)
        while key is not None:
            raw = self.lookup_raw(key)
            if raw is not None:
                yield self.key_codec.decode(key), self._decode_value(raw)
            key = self.next_key_raw(key)

    def freeze(self) -> None:
        bpf(Cmd.MAP_FREEZE, attrs.MapFdAttr(map_fd=self.fileno()), f"freezing map '{self.name}'")

    # --- batches -------------------------------------------------------------------------

    def lookup_batch(self, batch: int = DEFAULT_BATCH, delete: bool = False
                     ) -> tuple[bytes, bytes, int]:
        """Every entry as (packed keys, packed values, count), in few system calls.

        With delete=True the entries are removed as they are read (a drain). Kernels
        without batch operations get the same result from per-key calls.
        """
        if self._batch_ok:
            try:
                return self._batch(batch, delete)
            except SyscallError as e:
                if e.errno not in NOT_SUPPORTED and e.errno not in (errno.EINVAL,
                                                                    errno.ENOSYS):
                    raise
                self._batch_ok = False
        return self._per_key(delete)

    def _batch(self, batch: int, delete: bool) -> tuple[bytes, bytes, int]:
        cmd = Cmd.MAP_LOOKUP_AND_DELETE_BATCH if delete else Cmd.MAP_LOOKUP_BATCH
        batch = max(1, min(batch, self.max_entries or 1))
        ksz, vsz = self.key_size, self._value_bytes
        keys = ctypes.create_string_buffer(batch * ksz)
        values = ctypes.create_string_buffer(batch * vsz)
        token_size = max(ksz, 8)
        tokens = (ctypes.create_string_buffer(token_size), ctypes.create_string_buffer(token_size))
        out_keys: list[bytes] = []
        out_values: list[bytes] = []
        total = 0
        in_batch = 0  # the first call starts from the beginning
        turn = 0
        what = f"reading map '{self.name}' in batches"
        while True:
            out_tok = tokens[turn]
            attr = attrs.MapBatchAttr(in_batch=in_batch, out_batch=address(out_tok),
                                      keys=address(keys), values=address(values), count=batch,
                                      map_fd=self.fileno())
            done = False
            try:
                bpf(cmd, attr, what)
            except SyscallError as e:
                if e.errno == errno.ENOENT:
                    done = True  # end of map; attr.count entries were still returned
                elif e.errno == errno.ENOSPC and attr.count == 0:
                    # a hash bucket holds more entries than fit: grow and retry (up to
                    # the whole map), else go on one key at a time
                    if not total and batch < self.max_entries:
                        return self._batch(batch * 2, delete)
                    return self._finish_with_per_key(out_keys, out_values, total, delete)
                else:
                    raise
            n = attr.count
            if n:
                out_keys.append(keys.raw[:n * ksz])
                out_values.append(values.raw[:n * vsz])
                total += n
            if done:
                break
            in_batch = address(out_tok)
            turn ^= 1
            # the next call's in_batch must not be the buffer it writes its out_batch to
        return b"".join(out_keys), b"".join(out_values), total

    def _finish_with_per_key(self, out_keys, out_values, total, delete):
        k, v, n = self._per_key(delete)
        if not delete:  # a read-only pass restarted from the beginning
            return k, v, n
        return b"".join(out_keys) + k, b"".join(out_values) + v, total + n

    def _per_key(self, delete: bool) -> tuple[bytes, bytes, int]:
        keys: list[bytes] = []
        values: list[bytes] = []
        key = self.next_key_raw(None)
        while key is not None:
            nxt = self.next_key_raw(key)
            raw = self.lookup_raw(key)
            if raw is not None:
                keys.append(key)
                values.append(raw)
                if delete:
                    self.delete_raw(key)
            key = nxt
        return b"".join(keys), b"".join(values), len(keys)

    def items_batch(self, batch: int = DEFAULT_BATCH, delete: bool = False) -> list[tuple]:
        """Decoded (key, value) pairs read with batch operations."""
        keys, values, n = self.lookup_batch(batch, delete)
        ksz, vsz = self.key_size, self._value_bytes
        kdec = self.key_codec.decode
        vdec = self._decode_value
        return [(kdec(keys[i * ksz:(i + 1) * ksz]), vdec(values[i * vsz:(i + 1) * vsz]))
                for i in range(n)]

    def update_batch(self, keys: bytes, values: bytes, count: int, flags: int = BPF_ANY) -> None:
        """Store `count` packed keys/values (per-key fallback on older kernels)."""
        if self._batch_ok:
            k = ctypes.create_string_buffer(keys, len(keys))
            v = ctypes.create_string_buffer(values, len(values))
            attr = attrs.MapBatchAttr(keys=address(k), values=address(v), count=count,
                                      map_fd=self.fileno(), elem_flags=flags)
            try:
                bpf(Cmd.MAP_UPDATE_BATCH, attr, f"updating map '{self.name}' in a batch")
                return
            except SyscallError as e:
                if e.errno not in NOT_SUPPORTED and e.errno != errno.EINVAL:
                    raise
                self._batch_ok = False
        ksz, vsz = self.key_size, self._value_bytes
        for i in range(count):
            kb = ctypes.create_string_buffer(keys[i * ksz:(i + 1) * ksz], ksz)
            vb = ctypes.create_string_buffer(values[i * vsz:(i + 1) * vsz], vsz)
            bpf(Cmd.MAP_UPDATE_ELEM, attrs.MapElemAttr(map_fd=self.fileno(), key=address(kb),
                                                        value=address(vb), flags=flags),
                f"updating map '{self.name}'")

    # --- values --------------------------------------------------------------------------

    def _decode_value(self, raw: bytes):
        if not self.percpu:
            return self.value_codec.decode(raw)
        return [self.value_codec.decode(raw[i * self._slot:i * self._slot + self.value_size])
                for i in range(self.ncpus)]

    def _encode_value(self, value) -> bytes:
        if not self.percpu:
            return self.value_codec.encode(value)
        if not isinstance(value, (list, tuple)) or len(value) != self.ncpus:
            raise ValueError(f"per-CPU map '{self.name}' takes a list of {self.ncpus} values")
        pad = bytes(self._slot - self.value_size)
        return b"".join(self.value_codec.encode(v) + pad for v in value)

    # --- memory mapping (global data) ------------------------------------------------------

    def mmap(self, writable: bool = True) -> mmap.mmap:
        """Map an mmapable array's values into this process (kept until close())."""
        import mmap  # (here: most loads never map anything)

        if self._mmap is None:
            if not self.flags & MapFlags.MMAPABLE:
                raise ValueError(f"map '{self.name}' was not created BPF_F_MMAPABLE")
            size = self.value_size * self.max_entries
            size = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            try:
                self._mmap = mmap.mmap(self.fileno(), size, mmap.MAP_SHARED, prot)
            except OSError as e:
                raise SyscallError(f"mapping map '{self.name}'", e.errno or errno.EINVAL) from None
        return self._mmap

    def map_arena(self, data: bytes = b"") -> int:
        """Map an arena into this process, at the address its map_extra asks for (if
        any), and copy `data` (the object's __arena globals) to its start. Programs
        reach an arena's memory only once user space has mapped it. Returns the address."""
        if self._arena is None:
            size = os.sysconf("SC_PAGE_SIZE") * self.max_entries
            addr = map_shared(self.fileno(), size, self.map_extra,
                              f"mapping arena '{self.name}'")
            self._arena = (addr, size)
            if data:
                ctypes.memmove(addr, data, len(data))
        return self._arena[0]

