"""The on-disk caches (parsed objects, BTF indexes): reused when valid, and never a
partial or temporary file left behind, whatever interrupts the write."""

from __future__ import annotations

import _pickle
import os
import pickletools
import subprocess
import sys
from pathlib import Path

import pytest

from bpfload import asm, elf_reader, objcache
from bpfload.btf import fixup, kernel
from bpfload.btf import format as btf_format
from bpfload.collection import BPFObject

REPO = Path(__file__).resolve().parent.parent


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


def test_the_entry_holds_the_loadable_btf_and_a_warm_load_uses_it(cache, bpf_object, no_leaks,
                                                                 monkeypatch):
    """The BTF a load hands the kernel (fixed up, encoded, with the line_info strings)
    is kept with the model; a warm load takes it from there, and the kernel accepting the
    programs' line_info proves the kept string offsets right."""
    path = bpf_object("attach")
    objcache.read(path)
    fresh = elf_reader.read(str(path))
    assert fresh.loadable_btf is None  # only the cache computes it ahead
    again = objcache.read(path)
    assert again.loadable_btf == fixup.loadable(fresh)[:2]
    raw, offsets = again.loadable_btf
    assert offsets  # attach.bpf.c has line_info (built with -g)
    *_, hdr_len, _, _, str_off, str_len = btf_format.HEADER.unpack_from(raw)
    strings = raw[hdr_len + str_off:hdr_len + str_off + str_len]
    for text, off in offsets.items():  # each offset is where its string starts
        assert strings[off:].split(b"\0", 1)[0] == text.encode() and strings[off - 1] == 0

    def recompute(*args, **kw):
        raise AssertionError("the BTF was fixed up and encoded again on a warm load")

    monkeypatch.setattr(fixup, "loadable", recompute)
    with BPFObject(path) as obj:
        obj.load()
        assert obj.btf_fd is not None and len(obj.programs) == 3


def test_the_entry_keeps_the_btf_as_bytes_decoded_on_first_use(cache, bpf_object):
    """An entry holds the object's BTF as plain bytes (no Spec, no array: unpickling
    imports neither btf.spec nor array); reading `btf` decodes the same types."""
    path = bpf_object("globals")
    objcache.read(path)
    (entry,) = (cache / "objects").iterdir()
    names = [a for op, a, _ in pickletools.genops(entry.read_bytes())
             if op.name in ("SHORT_BINUNICODE", "BINUNICODE")]
    assert "bpfload.btf.spec" not in names and "array" not in names
    fresh = elf_reader.read(str(path))
    again = objcache.read(path)
    assert again.has_btf and again._btf is None  # not decoded yet
    btf = again.btf
    assert btf.raw == fresh.btf.raw and btf.index() == fresh.btf.index()
    assert [btf.describe(i) for i in btf.ids()] == [fresh.btf.describe(i) for i in fresh.btf.ids()]
    assert again.variables == fresh.variables and again.maps == fresh.maps


@pytest.mark.parametrize("damage", [("x", b"", b"", b""), (b"", b""), b"raw",
                                    (b"", b"", b"", 1)])
def test_an_entry_with_a_damaged_btf_state_is_parsed_again(cache, bpf_object, damage):
    """A BTF state of the wrong shape is a miss when the entry is read (the object is
    parsed again, the entry replaced), not an error at the load's first use of BTF."""
    path = bpf_object("attach")
    objcache.read(path)
    (entry,) = (cache / "objects").iterdir()
    blob = entry.read_bytes()
    obj = _pickle.loads(blob)
    obj.__dict__["_btf_state"] = damage
    entry.write_bytes(_pickle.dumps(_Damaged(obj), protocol=5))
    again = objcache.read(path)
    assert again.btf.raw == elf_reader.read(str(path)).btf.raw
    assert entry.read_bytes() == blob  # rebuilt as it was


class _Damaged:
    """Pickles as an ObjectSpec whose state is the given object's, unchecked."""

    def __init__(self, obj):
        self.obj = obj

    def __reduce__(self):
        return type(self.obj).__new__, (type(self.obj),), dict(self.obj.__dict__)


def test_an_object_whose_btf_cannot_be_kept_is_not_cached(cache, bpf_object, monkeypatch):
    """Spec.state() refuses split BTF: such an object loads as parsed, with no entry
    (nor a temporary file) left behind."""
    from bpfload.btf.spec import Spec

    def refuse(self):
        raise ValueError("split BTF is not kept by itself")

    monkeypatch.setattr(Spec, "state", refuse)
    obj = objcache.read(bpf_object("attach"))
    assert obj.btf is not None and not list((cache / "objects").iterdir())


def test_a_warm_load_decodes_no_btf_and_imports_no_decoder(cache, bpf_object, root):
    """`python -m bpfload load` of a cached tp_btf object: the decoder of BTF (btf.spec,
    btf.types), .BTF.ext's parser and array stay unimported — the load takes its blob
    from the entry and its attach target from the kernel BTF memo."""
    path = str(bpf_object("attach"))
    probe = ("import os, runpy, sys\n"
             "real_exit = os._exit\n"  # (how python -m bpfload ends: see __main__)
             "def leave(status):\n"
             "    print(' '.join(sys.modules), flush=True)\n"
             "    real_exit(status)\n"
             "os._exit = leave\n"
             "sys.argv = ['bpfload', 'load', sys.argv[1]]\n"
             "runpy.run_module('bpfload', run_name='__main__')\n")
    run = [sys.executable, "-c", probe, path]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run(run, check=True, env=env, capture_output=True)  # fills the cache
    out = subprocess.run(run, check=True, env=env, capture_output=True, text=True).stdout
    imported = out.splitlines()[-1].split()
    assert "bpfload.collection" in imported
    for cold in ("bpfload.btf.spec", "bpfload.btf.types", "bpfload.btf.ext", "array",
                 "bpfload.elf_reader"):
        assert cold not in imported


@pytest.mark.parametrize("source", ["btf/fixup.py", "btf/encode.py", "elf_reader.py"])
def test_editing_code_an_entry_depends_on_invalidates_it(source, bpf_object, tmp_path,
                                                         monkeypatch):
    """The key covers the code that builds what an entry holds: the model, and the
    loadable BTF (fixup and encode), so an edited bpfload never reads a stale entry."""
    import os
    import shutil

    for rel in objcache._MODEL_SOURCES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(objcache._HERE, rel), tmp_path / rel)
    monkeypatch.setattr(objcache, "_HERE", str(tmp_path))
    data = bpf_object("attach").read_bytes()
    before = objcache._key(data)
    st = (tmp_path / source).stat()
    os.utime(tmp_path / source, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert objcache._key(data) != before


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
