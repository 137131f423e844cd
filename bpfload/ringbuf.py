"""Reading what programs send through a BPF ring buffer (BPF_MAP_TYPE_RINGBUF), as
libbpf's ring_buffer__consume() does, from a memory mapping of the map.

The kernel's layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position, which
user space advances; from page 1 on, a read-only mapping holds the producer position
and then the data area, mapped twice in a row so that a record crossing the end is
contiguous. Each record starts with an 8-byte header (u32 length with a busy and a
discard bit, u32 page offset) and is padded to 8 bytes. A busy record is still being
written: reading stops there until the producer commits it.

The map's file descriptor is readable (epoll) when the producer asks to wake readers
(every commit by default, or as the program's BPF_RB_* flags say).
"""

from __future__ import annotations

import mmap
import struct

from .errors import BPFLoadError, SyscallError
from .readiness import Readiness
from .sys.constants import MapType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .maps import Map

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER_SIZE = 8

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class RingBuffer:
    """A consumer of one ring buffer map. `callback(record: bytes)` is called for each
    record in order; a callback that returns a true value stops the drain after it."""

    def __init__(self, ring: Map, callback: Callable[[bytes], object] | None = None):
        if ring.type != MapType.RINGBUF:
            raise BPFLoadError(f"map '{ring.name}' is a {MapType.name_of(ring.type).lower()} "
                               f"map, not a ring buffer")
        self.map = ring
        self.callback = callback
        page = mmap.PAGESIZE
        self._size = ring.max_entries
        self._mask = self._size - 1
        self._page = page
        try:
            self._consumer = mmap.mmap(ring.fileno(), page, mmap.MAP_SHARED,
                                       mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
            try:
                self._data = mmap.mmap(ring.fileno(), page + 2 * self._size,
                                       mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
            except BaseException:
                self._consumer.close()
                raise
        except OSError as e:
            raise SyscallError(f"mapping ring buffer '{ring.name}'", e.errno or 0) from None
        self._readiness = Readiness(self.fds)

    def fileno(self) -> int:
        """The map's descriptor: readable when records are waiting (for epoll)."""
        return self.map.fileno()

    def fds(self) -> list[int]:
        return [self.fileno()]

    @property
    def pending(self) -> int:
        """Bytes written by the producer and not consumed yet (headers included)."""
        return _U64.unpack_from(self._data, 0)[0] - _U64.unpack_from(self._consumer, 0)[0]

    def consume(self, callback: Callable[[bytes], object] | None = None,
                limit: int | None = None) -> int:
        """Hand every committed record to the callback, oldest first, without waiting;
        returns how many were handed over."""
        cb = callback or self.callback
        if cb is None:
            raise BPFLoadError(f"ring buffer '{self.map.name}': no callback to hand "
                               f"records to")
        data, consumer = self._data, self._consumer
        mask, base = self._mask, self._page
        u32, u64 = _U32.unpack_from, _U64.unpack_from
        cons = u64(consumer, 0)[0]
        count = 0
        left = -1 if limit is None else limit
        while left:
            prod = u64(data, 0)[0]
            if cons >= prod:
                break
            while cons < prod and left:
                off = base + (cons & mask)
                length = u32(data, off)[0]
                if length & BUSY_BIT:  # not committed yet: the rest waits for it
                    _U64.pack_into(consumer, 0, cons)
                    return count
                cons += ((length & ~DISCARD_BIT) + HEADER_SIZE + 7) & ~7
                if not length & DISCARD_BIT:
                    count += 1
                    left -= 1
                    start = off + HEADER_SIZE
                    if cb(data[start:start + length]):
                        left = 0
            # free the space read so far before looking for more (libbpf frees it
            # record by record; per batch costs the producer little and us less)
            _U64.pack_into(consumer, 0, cons)
        return count

    def read(self, limit: int | None = None) -> list[bytes]:
        """The committed records, oldest first (consumed)."""
        out: list[bytes] = []
        self.consume(out.append, limit)
        return out

    def poll(self, timeout: float | None = None,
             callback: Callable[[bytes], object] | None = None) -> int:
        """Wait up to `timeout` seconds (None: until one arrives) for records, then
        consume them; returns how many were handed over."""
        if not self.pending:
            self._readiness.wait(timeout)
        return self.consume(callback)

    def close(self) -> None:
        """Unmap the buffer (the map itself belongs to its object)."""
        self._readiness.close()
        for m in (self._consumer, self._data):
            try:
                m.close()
            except BufferError:  # a caller still holds a view; it goes with the view
                pass

    def __enter__(self) -> RingBuffer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RingBuffer({self.map.name!r}, {self._size} bytes)"
