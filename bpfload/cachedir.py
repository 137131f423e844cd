"""Where bpfload keeps its on-disk caches (kernel BTF indexes, parsed objects) and how
an entry is written so that readers never see a partial one."""

from __future__ import annotations

import os


def cache_dir() -> str | None:
    """Where bpfload caches (BTF indexes, parsed objects): $BPFLOAD_CACHE, else
    $XDG_CACHE_HOME/bpfload or ~/.cache/bpfload; None when BPFLOAD_CACHE=off."""
    env = os.environ.get("BPFLOAD_CACHE")
    if env == "off":
        return None
    return env or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bpfload")


def write_cache_file(path: str, write) -> None:
    """Write a cache entry: `write(file)` fills a private temporary file that replaces
    `path` only when complete; on any failure (a full disk, Ctrl-C) nothing is left
    behind. A cache that cannot be written only costs time: OSError is swallowed."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError:
        pass
    finally:
        try:
            os.unlink(tmp)  # still there only if something failed
        except OSError:
            pass
