"""Parsed objects, cached on disk by content.

Parsing an object needs pyelftools, whose import alone costs 30-100 ms — more than
the rest of a load. Loading the same object again (a tool started repeatedly, a CI
loop) reuses the model parsed the first time. The key is the object's bytes (size and
two checksums) and the size and mtime of the modules that build the model, so editing
either invalidates the entry; a corrupt or unreadable entry is parsed again.
BPFLOAD_CACHE=off disables it (and the BTF index cache).
"""

from __future__ import annotations

import os
import zlib

from . import model
from .cachedir import cache_dir, write_cache_file

#: modules whose code decides what an entry holds: the model of an object, and its
#: loadable BTF (btf.fixup.loadable)
_MODEL_SOURCES = ("elf_reader.py", "model.py", "sections.py", "asm.py", "btf/spec.py",
                  "btf/ext.py", "btf/types.py", "btf/format.py", "btf/fixup.py",
                  "btf/encode.py", "objcache.py")
_HERE = os.path.dirname(os.path.abspath(__file__))


def _code_version() -> str:
    parts = []
    for rel in _MODEL_SOURCES:
        try:
            st = os.stat(os.path.join(_HERE, rel))
        except OSError:
            return ""  # an unusual install: do not cache
        parts.append(f"{st.st_size}.{st.st_mtime_ns}")
    return f"{zlib.crc32(':'.join(parts).encode()):08x}"


def _key(data: bytes) -> str | None:
    code = _code_version()
    if not code:
        return None
    return f"{len(data)}-{zlib.crc32(data):08x}-{zlib.adler32(data):08x}-{code}"


def read(path: str) -> model.ObjectSpec:
    """The model of the object at `path`, from the cache when it holds this content."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        from . import elf_reader

        return elf_reader.read(path)  # reports the error the usual way
    where = cache_dir()
    key = _key(data) if where is not None else None
    entry = os.path.join(where, "objects", f"{key}.pickle") if key else None
    if entry is not None:
        obj = _load(entry)
        if obj is not None:
            _touch(entry)
            obj.path = path
            obj.name = model.object_name(path)
            return obj
    from . import elf_reader  # (slow to import, with pyelftools: not on a hit)

    obj = elf_reader.read(data, name=path)
    obj.path = path
    if entry is not None:
        _store(entry, obj)
    return obj


def _trusted(path: str) -> bool:
    """Unpickling runs code: only read entries that only we could have written (root
    with a user's HOME, as under `sudo -E`, must not trust that user's files)."""
    for p in (path, os.path.dirname(path)):
        st = os.stat(p)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return False
    return True


def _load(entry: str) -> model.ObjectSpec | None:
    # pickle's C half: the pickle module imports re and with it enum, which cost more
    # start-up time than a warm load's own work
    import _pickle as pickle

    try:
        with open(entry, "rb") as f:
            if not _trusted(entry):
                return None
            obj = pickle.load(f)
    except Exception:  # a missing, stale or damaged entry is just a miss
        return None
    return obj if isinstance(obj, model.ObjectSpec) else None


#: Entries kept; beyond that the least recently used go (a rebuilt object or a new
#: bpfload version makes new entries, and the old ones are never read again).
MAX_ENTRIES = 64


def _store(entry: str, obj: model.ObjectSpec) -> None:
    import _pickle as pickle

    _add_loadable_btf(obj)
    try:
        write_cache_file(entry, lambda f: pickle.dump(obj, f, protocol=5))
    except (pickle.PicklingError, TypeError, AttributeError, ValueError):
        return  # an object the cache cannot hold (split BTF, say) is parsed again next time
    _prune(os.path.dirname(entry), MAX_ENTRIES)


def _add_loadable_btf(obj: model.ObjectSpec) -> None:
    """The BTF a load puts into the kernel depends on the object alone: computed once
    here, a warm load neither fixes it up nor encodes it (nor imports the code that does)."""
    if obj.btf is None:
        return
    from .btf import fixup
    from .errors import BTFError

    try:
        raw, offsets, _ = fixup.loadable(obj)
    except BTFError:
        return  # the load reports it
    obj.loadable_btf = (raw, offsets)


def _touch(entry: str) -> None:
    try:
        os.utime(entry)  # pruning keeps what is used, not what was written last
    except OSError:
        pass


def _prune(where: str, keep: int) -> None:
    try:
        names = [n for n in os.listdir(where) if n.endswith(".pickle")]
        if len(names) <= keep:
            return
        entries = sorted((os.stat(os.path.join(where, n)).st_mtime_ns, n) for n in names)
        for _, n in entries[:len(entries) - keep]:
            os.unlink(os.path.join(where, n))
    except OSError:
        pass  # another process pruned first, or the cache is not ours to clean
