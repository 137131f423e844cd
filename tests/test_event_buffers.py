"""Ring buffer and perf buffer consumers on the running kernel: a raw_tp program sends
one 16-byte record per getppid() of this process, and every record arrives, in order,
exactly once; discarded records are skipped, a full perf buffer reports what it lost,
and a record that wraps around the end of the ring arrives whole."""

from __future__ import annotations

import os
import struct
import time

import pytest

import bpfload
from bpfload.perfbuf import PerfBuffer
from bpfload.ringbuf import RingBuffer

pytestmark = pytest.mark.usefixtures("no_leaks")
RECORD = struct.Struct("<QQ")  # struct record {seq, value = 3 * seq}


def _getppid(n: int) -> None:
    for _ in range(n):
        os.getppid()


def _load(bpf_object, prog: str, **kw):
    return bpfload.load(bpf_object("events"), set={"target_tgid": os.getpid()},
                        programs=[prog], **kw)


def test_ring_buffer_delivers_every_record_in_order(bpf_object):
    with _load(bpf_object, "ring_on_getppid") as obj, RingBuffer(obj.map("records")) as rb:
        obj.attach()
        _getppid(1000)
        records = [RECORD.unpack(r) for r in rb.read()]
        assert records == [(i, 3 * i) for i in range(1000)]
        assert obj.get("dropped") == 0
        assert rb.read() == [] and rb.pending == 0


def test_ring_buffer_poll_waits_for_records_and_times_out(bpf_object):
    with _load(bpf_object, "ring_on_getppid") as obj, RingBuffer(obj.map("records")) as rb:
        obj.attach()
        got = []
        t0 = time.monotonic()
        assert rb.poll(0.2, got.append) == 0 and time.monotonic() - t0 >= 0.15
        _getppid(3)
        assert rb.poll(5, got.append) == 3
        assert [RECORD.unpack(r)[0] for r in got] == [0, 1, 2]


def test_discarded_records_are_skipped(bpf_object):
    with _load(bpf_object, "ring_discard") as obj, RingBuffer(obj.map("records")) as rb:
        obj.attach()
        _getppid(300)
        seqs = [RECORD.unpack(r)[0] for r in rb.read()]
        assert seqs == [i for i in range(300) if i % 3 != 2]


def test_records_wrapping_around_the_ring_arrive_whole(bpf_object):
    """A 4 KiB ring holds 170 records of 24 bytes: reading 100 at a time, records
    cross the end of the data area again and again."""
    with _load(bpf_object, "ring_on_getppid", max_entries={"records": 4096}) as obj, \
            RingBuffer(obj.map("records")) as rb:
        obj.attach()
        seen = []
        for _ in range(20):
            _getppid(100)
            seen += [RECORD.unpack(r) for r in rb.read()]
        assert seen == [(i, 3 * i) for i in range(2000)]
        assert obj.get("dropped") == 0


def test_consume_limit_and_a_callback_that_stops(bpf_object):
    with _load(bpf_object, "ring_on_getppid") as obj, RingBuffer(obj.map("records")) as rb:
        obj.attach()
        _getppid(10)
        assert len(rb.read(limit=4)) == 4
        got = []
        assert rb.consume(lambda r: got.append(r) or len(got) == 2) == 2
        assert [RECORD.unpack(r)[0] for r in rb.read()] == [6, 7, 8, 9]


def test_a_full_ring_buffer_drops_at_the_producer(bpf_object):
    with _load(bpf_object, "ring_on_getppid", max_entries={"records": 4096}) as obj, \
            RingBuffer(obj.map("records")) as rb:
        obj.attach()
        _getppid(500)
        got = len(rb.read())
        assert got == 4096 // 24 and got + obj.get("dropped") == 500


def test_perf_buffer_delivers_every_sample(bpf_object):
    with _load(bpf_object, "perf_on_getppid") as obj, \
            PerfBuffer(obj.map("samples")) as pb:
        obj.attach()
        _getppid(1000)
        samples = pb.read()
        # the kernel pads raw samples to keep records 8-byte aligned: 16 + 4 bytes
        assert {len(data) for _, data in samples} == {20}
        records = sorted(RECORD.unpack(data[:16]) for _, data in samples)
        assert records == [(i, 3 * i) for i in range(1000)]
        assert {cpu for cpu, _ in samples} <= set(pb.cpus) and pb.lost == 0


def test_perf_buffer_poll_and_lost_samples(bpf_object):
    """One page per CPU holds 4096 / 32 samples; the rest are counted as lost."""
    lost = []
    with _load(bpf_object, "perf_on_getppid") as obj, \
            PerfBuffer(obj.map("samples"), pages=1,
                       lost=lambda cpu, n: lost.append(n)) as pb:
        obj.attach()
        os.sched_setaffinity(0, {pb.cpus[0]})
        try:
            _getppid(1000)
        finally:
            os.sched_setaffinity(0, set(pb.cpus))
        got = []
        assert pb.poll(5, lambda cpu, data: got.append(data)) > 0
        assert 0 < len(got) < 1000
        # the kernel writes its PERF_RECORD_LOST once there is room again: before the
        # next sample that fits
        os.sched_setaffinity(0, {pb.cpus[0]})
        try:
            _getppid(1)
        finally:
            os.sched_setaffinity(0, set(pb.cpus))
        pb.consume(lambda cpu, data: got.append(data))
        assert pb.lost == sum(lost) > 0
        assert len(got) + pb.lost == 1001


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_perf_buffer_close_releases_its_events(bpf_object):
    with _load(bpf_object, "perf_on_getppid") as obj:
        before = _open_fds()
        pb = PerfBuffer(obj.map("samples"))
        assert len(_open_fds() - before) >= len(pb.cpus)
        pb.close()
        assert _open_fds() <= before


def test_consumers_take_only_their_map_type(bpf_object):
    with _load(bpf_object, "ring_on_getppid") as obj:
        with pytest.raises(bpfload.BPFLoadError, match="'samples' is a perf_event_array map, "
                                                       "not a ring buffer"):
            RingBuffer(obj.map("samples"))
        with pytest.raises(bpfload.BPFLoadError, match="not a perf event array"):
            PerfBuffer(obj.map("records"))
        with pytest.raises(bpfload.BPFLoadError, match="power of two"):
            PerfBuffer(obj.map("samples"), pages=3)
