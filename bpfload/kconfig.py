"""The values of __kconfig externs, filled in as libbpf fills them.

`extern bool CONFIG_X __kconfig` reads the running kernel's config
(/boot/config-$(uname -r), else /proc/config.gz); LINUX_KERNEL_VERSION is the kernel's
version code (from /proc/version_signature on Ubuntu and from the version string on
Debian, whose release names lie about the patch level); LINUX_HAS_BPF_COOKIE and
LINUX_HAS_SYSCALL_WRAPPER are probed. A __weak extern the kernel does not set is 0; a
strong one is reported, and fails the programs that use it.
"""

from __future__ import annotations

import os

from .model import KCFG_BOOL, KCFG_CHAR, KCFG_CHAR_ARR, KCFG_INT, KCFG_TRISTATE

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from . import model

# enum libbpf_tristate
TRI_NO, TRI_YES, TRI_MODULE = 0, 1, 2


class _Unset(Exception):
    """A value cannot be given; the message says why."""


def kernel_version() -> int:
    """LINUX_VERSION_CODE of the running kernel, by libbpf's get_kernel_version()."""
    try:
        with open("/proc/version_signature") as f:
            signature = f.read()
    except OSError:
        signature = ""
    uts = os.uname()
    return version_code(signature, uts.version, uts.release)


def version_code(signature: str, version: str, release: str) -> int:
    """The version code from Ubuntu's /proc/version_signature ("Ubuntu 5.15.0-1-generic
    5.15.7"), else Debian's uname version ("#1 SMP Debian 6.1.55-1 (...)": its release
    says 6.1.0), else the release; 0 if none parses."""
    words = signature.split()
    found = _three_numbers(words[2]) if len(words) > 2 else None
    if found is None:
        _, debian, rest = version.partition("Debian ")
        found = (_three_numbers(rest) if debian else None) or _three_numbers(release)
    if found is None:
        return 0
    major, minor, patch = found
    return (major << 16) + (minor << 8) + min(patch, 255)


def _three_numbers(text: str) -> tuple[int, int, int] | None:
    """MAJOR.MINOR.PATCH at the start of `text` (sscanf "%u.%u.%u"), or None."""
    parts = text.split(".", 2)
    if len(parts) < 3:
        return None
    patch = ""
    for c in parts[2]:
        if not c.isdigit():
            break
        patch += c
    if not (parts[0].isdigit() and parts[1].isdigit() and patch):
        return None
    return int(parts[0]), int(parts[1]), int(patch)


def config_paths() -> tuple[str, ...]:
    return (f"/boot/config-{os.uname().release}", "/proc/config.gz")


def read_config() -> dict[str, str]:
    """CONFIG_NAME -> its value text ('y', 'm', '"text"', '42') from the first config
    file there is; raises _Unset when there is none."""
    for path in config_paths():
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError:
            continue
        if raw[:2] == b"\x1f\x8b":
            import gzip

            raw = gzip.decompress(raw)
        out = {}
        for line in raw.decode("utf-8", "replace").splitlines():
            name, sep, value = line.partition("=")
            if sep and name.startswith("CONFIG_") and value:
                out.setdefault(name, value)
        return out
    raise _Unset(f"the kernel's config is not readable (neither {' nor '.join(config_paths())})")


def values(obj: model.ObjectSpec, size: int) -> tuple[bytes, dict[str, str]]:
    """The .kconfig map's contents, and why each strong extern left unset is unset."""
    from . import features

    data = bytearray(size)
    unresolved: dict[str, str] = {}
    config: dict[str, str] | None = None
    config_error = ""
    for ext in obj.externs.values():
        if ext.kind != "kconfig":
            continue
        try:
            if ext.name.startswith("CONFIG_"):
                if config is None and not config_error:
                    try:
                        config = read_config()
                    except _Unset as e:
                        config_error = str(e)
                if config_error:
                    raise _Unset(config_error)
                text = config.get(ext.name)
                if text is None:
                    if ext.weak:
                        continue
                    raise _Unset(f"__kconfig extern '{ext.name}' is not set in the kernel's "
                                 f"config; declare it __weak to default to 0")
                raw = _from_config(ext, text)
            elif ext.name == "LINUX_KERNEL_VERSION":
                raw = _number(ext, kernel_version())
            elif ext.name == "LINUX_HAS_BPF_COOKIE":
                raw = _number(ext, int(features.bpf_cookie()))
            elif ext.name == "LINUX_HAS_SYSCALL_WRAPPER":
                raw = _number(ext, int(features.syscall_wrapper()))
            elif ext.name.startswith("LINUX_") and ext.weak:
                continue  # an unknown virtual extern: 0, as libbpf does for weak ones
            else:
                raise _Unset(f"__kconfig extern '{ext.name}' is neither CONFIG_* nor one of "
                             f"libbpf's LINUX_* values")
        except _Unset as e:
            unresolved[ext.name] = str(e)
            continue
        data[ext.offset:ext.offset + len(raw)] = raw
    return bytes(data), unresolved


def _from_config(ext: model.Extern, text: str) -> bytes:
    """set_kcfg_value_tri/str/num: a config line's value as the extern's type holds it."""
    if text in ("y", "n", "m"):
        if ext.kcfg_type == KCFG_BOOL:
            if text == "m":
                raise _Unset(f"__kconfig extern '{ext.name}' is bool but the kernel has "
                             f"'{ext.name}=m' (declare it enum libbpf_tristate)")
            return bytes([text == "y"])
        if ext.kcfg_type == KCFG_TRISTATE:
            value = {"y": TRI_YES, "m": TRI_MODULE, "n": TRI_NO}[text]
            return value.to_bytes(ext.size, "little")
        if ext.kcfg_type == KCFG_CHAR:
            return text.encode()
        raise _Unset(f"__kconfig extern '{ext.name}': '{text}' needs a bool, tristate or "
                     f"char extern")
    if text.startswith('"'):
        if ext.kcfg_type != KCFG_CHAR_ARR:
            raise _Unset(f"__kconfig extern '{ext.name}': a string value needs a char array")
        if len(text) < 2 or not text.endswith('"'):
            raise _Unset(f"__kconfig extern '{ext.name}': bad string value {text}")
        return text[1:-1].encode()[:ext.size - 1] + b"\0"
    try:
        value = int(text, 0)
    except ValueError:
        raise _Unset(f"__kconfig extern '{ext.name}': '{text}' is not a valid integer") from None
    if ext.kcfg_type not in (KCFG_INT, KCFG_CHAR):
        raise _Unset(f"__kconfig extern '{ext.name}': '{text}' needs an integer extern")
    return _number(ext, value)


def _number(ext: model.Extern, value: int) -> bytes:
    """set_kcfg_value_num: an integer in the extern's size, if it fits."""
    if ext.kcfg_type not in (KCFG_INT, KCFG_CHAR, KCFG_BOOL):
        raise _Unset(f"__kconfig extern '{ext.name}': {value} needs an integer, char or bool "
                     f"extern")
    if ext.kcfg_type == KCFG_BOOL and value > 1:
        raise _Unset(f"__kconfig extern '{ext.name}': {value} is not a boolean")
    value &= (1 << 64) - 1  # strtoull
    bits = 8 * ext.size
    if ext.size == 8:
        fits = True
    elif ext.signed:  # is_kcfg_value_in_range(), in its unsigned 64-bit arithmetic
        fits = (value + (1 << (bits - 1))) & ((1 << 64) - 1) < (1 << bits)
    else:
        fits = value >> bits == 0
    if not fits:
        raise _Unset(f"__kconfig extern '{ext.name}': {value} does not fit in {ext.size} "
                     f"bytes")
    return (value & ((1 << bits) - 1)).to_bytes(ext.size, "little")
