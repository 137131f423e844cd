"""The on-disk caches (parsed objects, BTF indexes): reused when valid, and never a
partial or temporary file left behind, whatever interrupts the write."""

from __future__ import annotations

import _pickle

import pytest

from bpfload import asm, elf_reader, objcache
from bpfload.btf import kernel


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BPFLOAD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _forbid_parsing(monkeypatch):
    def parse(*args, **kw):
        raise AssertionError("the object was parsed again instead of read from the cache")

    monkeypatch.setattr(elf_reader, "read", parse)


def test_parsed_object_is_cached_and_reused(cache, bpf_object, monkeypatch):
    first = objcache.read(bpf_object("relocs"))
    (entry,) = (cache / "objects").iterdir()
    assert entry.suffix == ".pickle" and entry.stat().st_mode & 0o777 == 0o600
    _forbid_parsing(monkeypatch)
    again = objcache.read(bpf_object("relocs"))
    assert again is not first and again.path == first.path
    def code(obj):
        return {n: asm.encode(p.function.insns) for n, p in obj.programs.items()}

    assert code(again) == code(first) and again.maps.keys() == first.maps.keys()


def test_an_entry_others_could_have_written_is_not_unpickled(cache, bpf_object):
    """Unpickling runs code: an entry writable by group or others is parsed afresh."""
    objcache.read(bpf_object("relocs"))
    (entry,) = (cache / "objects").iterdir()
    entry.chmod(0o666)
    reads = []
    real = elf_reader.read

    def parse(*args, **kw):
        reads.append(args)
        return real(*args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(elf_reader, "read", parse)
        objcache.read(bpf_object("relocs"))
    assert len(reads) == 1


def test_cache_keeps_the_most_recently_used_entries(cache, bpf_object, monkeypatch):
    monkeypatch.setattr(objcache, "MAX_ENTRIES", 2)
    data = bpf_object("relocs").read_bytes()
    paths = []
    for i in range(4):  # four different objects: the same code, other trailing bytes
        p = cache.parent / f"obj{i}.o"
        p.write_bytes(data + bytes(i + 1))
        paths.append(p)
    objcache.read(paths[0])
    objcache.read(paths[1])
    first = {e.name for e in (cache / "objects").iterdir()}
    import time

    time.sleep(0.01)  # mtime granularity
    objcache.read(paths[0])  # used again: it stays
    objcache.read(paths[2])
    names = {e.name for e in (cache / "objects").iterdir()}
    assert len(names) == 2
    assert objcache._key(paths[0].read_bytes()) + ".pickle" in names
    assert objcache._key(paths[1].read_bytes()) + ".pickle" not in names
    assert first - names == {objcache._key(paths[1].read_bytes()) + ".pickle"}


def test_interrupted_store_leaves_nothing(cache, bpf_object, monkeypatch):
    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(_pickle, "dump", interrupted)
    with pytest.raises(KeyboardInterrupt):
        objcache.read(bpf_object("relocs"))
    assert not list((cache / "objects").iterdir())


def test_failed_index_write_leaves_nothing(cache):
    class Full:
        def tobytes(self):
            raise OSError(28, "No space left on device")

    path = str(cache / "btf-x.idx")
    kernel._save_index(path, (Full(), Full()), "key")  # a cache it cannot write: no error
    assert not list(cache.iterdir())
