"""Maps from user space against the running kernel (root)."""

from __future__ import annotations

import ctypes
import struct

import pytest

from bpfload.errors import SyscallError
from bpfload.maps import Map
from bpfload.procfs import possible_cpus
from bpfload.sys.constants import BPF_NOEXIST, MapFlags, MapType

pytestmark = pytest.mark.usefixtures("no_leaks")

N = 100_000
KV = struct.Struct("<IQ")


def _fill(m: Map, n: int) -> None:
    keys = b"".join(i.to_bytes(4, "little") for i in range(n))
    values = b"".join((i * 3).to_bytes(8, "little") for i in range(n))
    m.update_batch(keys, values, n)


def test_hash_drain_with_batch_ops():
    with Map.create("drain", MapType.HASH, 4, 8, N, key=int, value=int) as m:
        _fill(m, N)
        keys, values, n = m.lookup_batch()
        assert n == N
        got = dict(zip((k for (k,) in struct.iter_unpack("<I", keys)),
                       (v for (v,) in struct.iter_unpack("<Q", values))))
        assert got == {i: i * 3 for i in range(N)}
        assert m.lookup(5) == 15  # a read-only batch leaves the entries
        keys, values, n = m.lookup_batch(delete=True)
        assert n == N
        assert sorted(k for (k,) in struct.iter_unpack("<I", keys)) == list(range(N))
        assert m.lookup(5) is None and list(m.keys()) == []


def test_per_key_fallback_gives_the_same_drain():
    with Map.create("fallback", MapType.HASH, 4, 8, 1000, key=int, value=int) as m:
        _fill(m, 1000)
        m._batch_ok = False  # as on a kernel without batch operations
        keys, values, n = m.lookup_batch(delete=True)
        assert n == 1000 and len(keys) == 4000 and len(values) == 8000
        assert dict(zip((k for (k,) in struct.iter_unpack("<I", keys)),
                        (v for (v,) in struct.iter_unpack("<Q", values)))) == \
            {i: i * 3 for i in range(1000)}
        assert list(m.keys()) == []


def test_small_batches_cover_everything():
    with Map.create("small", MapType.HASH, 4, 8, 5000, key=int, value=int) as m:
        _fill(m, 5000)
        assert len(m.items_batch(batch=7)) == 5000


def test_element_operations_and_iteration():
    with Map.create("elems", MapType.HASH, 4, 8, 16, key=int, value=int) as m:
        m[1] = 10
        m.update(2, 20)
        assert m[1] == 10 and m.lookup(3, "none") == "none"
        with pytest.raises(SyscallError, match="EEXIST"):
            m.update(1, 11, BPF_NOEXIST)
        assert sorted(m.keys()) == [1, 2]
        assert sorted(m.items()) == [(1, 10), (2, 20)]
        assert m.delete(1) and not m.delete(1)
        with pytest.raises(KeyError):
            m[1]
        with pytest.raises(KeyError):
            del m[1]
        info = m.info()
        assert (info.type, info.key_size, info.value_size, info.max_entries) == \
            (MapType.HASH, 4, 8, 16)
        assert info.name == b"elems"


class Pair(ctypes.Structure):
    _fields_ = [("a", ctypes.c_uint32), ("b", ctypes.c_uint32)]


def test_typed_codecs():
    with Map.create("typed", MapType.HASH, 8, 8, 4, key=struct.Struct("<II"), value=Pair) as m:
        m[(1, 2)] = Pair(3, 4)
        v = m[(1, 2)]
        assert (v.a, v.b) == (3, 4)
        assert list(m.keys()) == [(1, 2)]
    with pytest.raises(ValueError):
        Map(None, "bad", MapType.HASH, 4, 8, 1, key=struct.Struct("<Q"))


def test_percpu_values_are_per_cpu():
    ncpu = possible_cpus()
    with Map.create("pcpu", MapType.PERCPU_ARRAY, 4, 4, 2, key=int, value=int) as m:
        m[0] = list(range(ncpu))
        assert m[0] == list(range(ncpu))
        with pytest.raises(ValueError):
            m[1] = 5


def test_mmap_of_an_mmapable_array():
    with Map.create("mm", MapType.ARRAY, 4, 16, 1, MapFlags.MMAPABLE, key=int) as m:
        mem = m.mmap()
        mem[0:4] = b"abcd"
        assert m[0][:4] == b"abcd"
        m[0] = b"z" * 16
        assert mem[0:16] == b"z" * 16
    with Map.create("nomm", MapType.ARRAY, 4, 16, 1) as m, pytest.raises(ValueError):
        m.mmap()


def test_create_errors_name_the_map():
    with pytest.raises(SyscallError, match="creating map 'zero'.*EINVAL"):
        Map.create("zero", MapType.HASH, 0, 8, 1)


def test_signal_during_a_creating_call_leaks_no_fd(monkeypatch):
    """A signal whose handler raises (Ctrl-C) arriving while bpf(2) creates an object
    must not lose the new descriptor: the map would stay until the process exits."""
    import os
    import signal

    from bpfload.sys import syscall

    class Interrupted(Exception):
        pass

    def raise_interrupted(signum, frame):
        raise Interrupted()

    real = syscall._syscall

    def signalled_meanwhile(*args):
        ret = real(*args)
        os.kill(os.getpid(), signal.SIGUSR1)  # as if it came during the call
        return ret

    def bpf_fds():
        out = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                if "bpf-map" in os.readlink(f"/proc/self/fd/{fd}"):
                    out.add(fd)
            except OSError:
                pass
        return out

    before = bpf_fds()
    old = signal.signal(signal.SIGUSR1, raise_interrupted)
    try:
        monkeypatch.setattr(syscall, "_syscall", signalled_meanwhile)
        with pytest.raises(Interrupted):
            Map.create("sigtest", MapType.ARRAY, 4, 8, 1)
    finally:
        monkeypatch.undo()
        signal.signal(signal.SIGUSR1, old)
    assert bpf_fds() == before


def test_bytes_codec_refuses_ints():
    """bytes(4) is four zero bytes: m[4] on a map without an int codec must not be key 0."""
    with Map.create("bytescodec", MapType.HASH, 4, 8, 4) as m:
        m.update(b"\x04\0\0\0", bytes(8))
        with pytest.raises(TypeError, match="got the int 4"):
            m.update(4, bytes(8))
        with pytest.raises(TypeError, match="got the int 0"):
            m.lookup(0)
        assert m.items_batch() == [(b"\x04\0\0\0", bytes(8))]


def test_names_outside_ascii_become_underscores():
    """The kernel takes [A-Za-z0-9_.] only: 'é' is alphanumeric to Python but must
    become '_' like any other character (it used to become '?', and EINVAL)."""
    from bpfload.sys.constants import kernel_name

    assert kernel_name("cpt_été-x.y") == "cpt__t__x.y"
    assert kernel_name("a" * 20) == "a" * 15
    with Map.create("résumé", MapType.ARRAY, 4, 4, 1) as m:
        assert m.info().name == b"r_sum_"


def _batches_stop_fitting(monkeypatch, after: int) -> list:
    """Batch calls after the first `after` fail with ENOSPC and nothing returned (as the
    kernel says a hash bucket holds more than the batch); returns the batch calls made."""
    from bpfload import maps
    from bpfload.sys.constants import Cmd

    real = maps.bpf
    calls = []

    def bpf(cmd, attr, what=None):
        if cmd in (Cmd.MAP_LOOKUP_BATCH, Cmd.MAP_LOOKUP_AND_DELETE_BATCH):
            calls.append(cmd)
            if len(calls) > after:
                attr.count = 0
                raise SyscallError(what or "batch", 28)
        return real(cmd, attr, what)

    monkeypatch.setattr(maps, "bpf", bpf)
    return calls


def test_batch_that_never_fits_falls_back_to_per_key(monkeypatch):
    """ENOSPC from a batch already as large as the map: finish per key instead of
    doubling a batch that cannot grow (that recursed until RecursionError)."""
    with Map.create("nofit", MapType.HASH, 4, 8, 4, key=int, value=int) as m:
        for k in range(3):
            m[k] = k * 10
        _batches_stop_fitting(monkeypatch, after=0)
        assert sorted(m.items_batch()) == [(0, 0), (1, 10), (2, 20)]


def test_drain_that_stops_fitting_midway_keeps_what_it_drained(monkeypatch):
    """A delete-drain whose later batch hits a bucket too big (ENOSPC, nothing
    returned) finishes per key: what the earlier batches already removed from the map
    must still be in the result, or those counts are lost."""
    with Map.create("midway", MapType.HASH, 4, 8, 64, key=int, value=int) as m:
        for k in range(6):
            m[k] = k * 10
        batches = _batches_stop_fitting(monkeypatch, after=1)
        keys, values, n = m.lookup_batch(batch=2, delete=True)
        assert len(batches) == 2 and n == 6
        got = dict(zip((k for (k,) in struct.iter_unpack("<I", keys)),
                       (v for (v,) in struct.iter_unpack("<Q", values))))
        assert got == {k: k * 10 for k in range(6)} and list(m.keys()) == []
