"""Reading what programs send with bpf_perf_event_output(): a perf buffer, as libbpf's
perf_buffer__new() builds one.

A BPF_MAP_TYPE_PERF_EVENT_ARRAY holds, per CPU, a perf event of the software type
PERF_COUNT_SW_BPF_OUTPUT; a program writes to the event of the CPU it runs on. Each
event has a ring of 2^n pages after a header page (struct perf_event_mmap_page:
data_head at byte 1024, written by the kernel; data_tail at 1032, written by us).
Records are struct perf_event_header {u32 type; u16 misc; u16 size} and a body:
PERF_RECORD_SAMPLE carries u32 size and the raw bytes (padded by the kernel so the
record stays 8-byte aligned: a callback gets the padded size, as with libbpf);
PERF_RECORD_LOST says how many samples did not fit. A record can wrap around the end
of the ring.
"""

from __future__ import annotations

import mmap
import struct

from .errors import BPFLoadError, SyscallError
from .procfs import online_cpus
from .readiness import Readiness
from .sys import attrs
from .sys.constants import (
    PERF_COUNT_SW_BPF_OUTPUT,
    PERF_EVENT_IOC_ENABLE,
    PERF_RECORD_LOST,
    PERF_RECORD_SAMPLE,
    PERF_SAMPLE_RAW,
    PERF_TYPE_SOFTWARE,
    MapType,
)
from .sys.syscall import ioctl, perf_event_open

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .maps import Map
    from .sys.syscall import FD

DATA_HEAD = 1024
DATA_TAIL = 1032
DEFAULT_PAGES = 8  # per CPU (libbpf's tools commonly use 8 to 64)

_U64 = struct.Struct("<Q")
_HEADER = struct.Struct("<IHH")
_LOST = struct.Struct("<QQ")


class _CpuRing:
    """One CPU's perf event and its mapped ring."""

    def __init__(self, cpu: int, fd: FD, ring: mmap.mmap, data_size: int):
        self.cpu = cpu
        self.fd = fd
        self.ring = ring
        self.data_size = data_size

    def close(self) -> None:
        try:
            self.ring.close()
        except BufferError:
            pass
        self.fd.close()


class PerfBuffer:
    """A consumer of one perf event array map: `callback(cpu, data: bytes)` for each
    sample, `lost(cpu, count)` when the kernel had to drop samples (default: counted
    in `.lost`)."""

    def __init__(self, events: Map, callback: Callable[[int, bytes], object] | None = None,
                 lost: Callable[[int, int], object] | None = None,
                 pages: int = DEFAULT_PAGES):
        if events.type != MapType.PERF_EVENT_ARRAY:
            raise BPFLoadError(f"map '{events.name}' is a "
                               f"{MapType.name_of(events.type).lower()} map, not a perf "
                               f"event array")
        if pages < 1 or pages & (pages - 1):
            raise BPFLoadError(f"perf buffer pages must be a power of two, got {pages}")
        self.map = events
        self.callback = callback
        self.lost_callback = lost
        self.lost = 0
        self._rings: list[_CpuRing] = []
        self._readiness = Readiness(self.fds)
        try:
            for cpu in online_cpus():
                if cpu < events.max_entries:  # libbpf too covers only the array's size
                    self._rings.append(self._open(cpu, pages))
        except BaseException:
            self.close()
            raise

    def _open(self, cpu: int, pages: int) -> _CpuRing:
        pattr = attrs.PerfEventAttr(type=PERF_TYPE_SOFTWARE, config=PERF_COUNT_SW_BPF_OUTPUT,
                                    sample_period=1, sample_type=PERF_SAMPLE_RAW,
                                    wakeup_events=1)
        fd = perf_event_open(pattr, pid=-1, cpu=cpu,
                             what=f"opening the perf buffer of '{self.map.name}' on CPU {cpu}")
        try:
            size = mmap.PAGESIZE * pages
            try:
                ring = mmap.mmap(fd.fileno(), mmap.PAGESIZE + size, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
            except OSError as e:
                raise SyscallError(f"mapping the perf buffer of '{self.map.name}' on CPU "
                                   f"{cpu}", e.errno or 0) from None
        except BaseException:
            fd.close()
            raise
        cpu_ring = _CpuRing(cpu, fd, ring, size)
        try:
            ioctl(fd.fileno(), PERF_EVENT_IOC_ENABLE, 0, "PERF_EVENT_IOC_ENABLE")
            self.map.update(cpu.to_bytes(4, "little"), fd.fileno().to_bytes(4, "little"))
        except BaseException:
            cpu_ring.close()
            raise
        return cpu_ring

    def fds(self) -> list[int]:
        """One descriptor per CPU, readable when samples are waiting (for epoll)."""
        return [r.fd.fileno() for r in self._rings]

    @property
    def cpus(self) -> list[int]:
        return [r.cpu for r in self._rings]

    def consume(self, callback: Callable[[int, bytes], object] | None = None) -> int:
        """Hand every waiting sample of every CPU to the callback without waiting;
        returns how many samples were handed over."""
        cb = callback or self.callback
        if cb is None:
            raise BPFLoadError(f"perf buffer '{self.map.name}': no callback to hand "
                               f"samples to")
        return sum(self._consume_ring(r, cb) for r in self._rings)

    def _consume_ring(self, r: _CpuRing, cb) -> int:
        ring, size, page = r.ring, r.data_size, mmap.PAGESIZE
        head = _U64.unpack_from(ring, DATA_HEAD)[0]
        tail = _U64.unpack_from(ring, DATA_TAIL)[0]
        count = 0
        while tail < head:
            off = tail % size
            first = ring[page + off:page + min(off + _HEADER.size, size)]
            if len(first) < _HEADER.size:
                first += ring[page:page + _HEADER.size - len(first)]
            rtype, _misc, rsize = _HEADER.unpack(first)
            if off + rsize <= size:
                rec = ring[page + off:page + off + rsize]
            else:  # wraps: the end of the ring, then its start
                rec = ring[page + off:page + size] + ring[page:page + off + rsize - size]
            if rtype == PERF_RECORD_SAMPLE:
                (raw_size,) = struct.unpack_from("<I", rec, _HEADER.size)
                start = _HEADER.size + 4
                count += 1
                cb(r.cpu, rec[start:start + raw_size])
            elif rtype == PERF_RECORD_LOST:
                _id, lost = _LOST.unpack_from(rec, _HEADER.size)
                self.lost += lost
                if self.lost_callback is not None:
                    self.lost_callback(r.cpu, lost)
            tail += rsize
            if rsize == 0:  # a corrupt ring would loop forever
                raise BPFLoadError(f"perf buffer '{self.map.name}' CPU {r.cpu}: record of "
                                   f"size 0")
        _U64.pack_into(ring, DATA_TAIL, tail)
        return count

    def read(self) -> list[tuple[int, bytes]]:
        """The waiting samples as (cpu, data), CPU by CPU (consumed)."""
        out: list[tuple[int, bytes]] = []
        self.consume(lambda cpu, data: out.append((cpu, data)))
        return out

    def poll(self, timeout: float | None = None,
             callback: Callable[[int, bytes], object] | None = None) -> int:
        """Wait up to `timeout` seconds (None: until one arrives) for samples on any
        CPU, then consume them all; returns how many were handed over."""
        self._readiness.wait(timeout)
        return self.consume(callback)

    def close(self) -> None:
        """Close every CPU's event (the map's slots then hold nothing)."""
        self._readiness.close()
        for r in self._rings:
            try:  # a slot left pointing at a closed event would only be dropped later
                self.map.delete(r.cpu.to_bytes(4, "little"))
            except (BPFLoadError, ValueError):
                pass
            r.close()
        self._rings.clear()

    def __enter__(self) -> PerfBuffer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PerfBuffer({self.map.name!r}, CPUs {self.cpus})"
