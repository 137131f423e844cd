"""__kconfig externs: laid out like libbpf, filled from the running kernel's config and
version, checked against that config as read here (root for the load)."""

from __future__ import annotations

import gzip
import os

import pytest

import bpfload
from bpfload import elf_reader, kconfig, model


def _config() -> dict[str, str]:
    for path in (f"/boot/config-{os.uname().release}", "/proc/config.gz"):
        if os.path.exists(path):
            with open(path, "rb") as f:
                raw = f.read()
            text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()
            return dict(line.split("=", 1) for line in text.splitlines()
                        if line.startswith("CONFIG_") and "=" in line)
    pytest.skip("this kernel's config is not readable")


def test_layout_is_libbpfs(bpf_object):
    externs = elf_reader.read(bpf_object("kconfig")).externs
    kcfg = sorted((e for e in externs.values() if e.kind == "kconfig"), key=lambda e: e.offset)
    # by alignment (largest first), then size, then name; each aligned
    assert [e.name for e in kcfg] == [
        "CONFIG_NR_CPUS", "CONFIG_BPFLOAD_NOT_A_CONFIG", "CONFIG_BPF_JIT", "CONFIG_HZ",
        "LINUX_KERNEL_VERSION", "CONFIG_BPF_EVENTS", "CONFIG_BPF_SYSCALL",
        "LINUX_BPFLOAD_UNKNOWN", "LINUX_HAS_BPF_COOKIE", "LINUX_HAS_SYSCALL_WRAPPER",
        "CONFIG_DEFAULT_HOSTNAME"]
    assert all(e.offset % e.align == 0 for e in kcfg)
    assert externs["CONFIG_BPF_JIT"].kcfg_type == model.KCFG_TRISTATE
    assert externs["CONFIG_DEFAULT_HOSTNAME"].kcfg_type == model.KCFG_CHAR_ARR


def test_values_come_from_the_kernel(root, no_leaks, bpf_object):
    config = _config()
    with bpfload.load(bpf_object("kconfig")) as obj:
        assert obj.program("read_config").test_run(bytes(8)).retval == 0
        seen = obj.get("seen")
        assert obj.map("kconfig.kconfig").info().map_flags & 0x80  # read-only for programs
    assert seen["nr_cpus"] == int(config["CONFIG_NR_CPUS"])
    assert seen["hz"] == int(config["CONFIG_HZ"])
    assert seen["bpf_syscall"] == (config.get("CONFIG_BPF_SYSCALL") == "y")
    assert seen["bpf_jit"] == {"y": 1, "m": 2}.get(config.get("CONFIG_BPF_JIT"), 0)
    assert seen["bpf_events"] == ord(config.get("CONFIG_BPF_EVENTS", "\0"))
    assert seen["hostname"].rstrip(b"\0") == \
        config["CONFIG_DEFAULT_HOSTNAME"].strip('"').encode()[:7]
    assert seen["missing"] == 0 and seen["unknown"] == 0  # __weak, unknown to the kernel
    assert seen["kernel_version"] == kconfig.kernel_version()
    assert seen["cookie"] == 1  # bpf_get_attach_cookie() exists since 5.15


def test_kernel_version_quirks():
    assert kconfig.version_code("", "#1 SMP PREEMPT", "6.18.44-fc") == 0x06122C
    assert kconfig.version_code("", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-09)",
                                "6.1.0-41-amd64") == (6 << 16) + (1 << 8) + 158
    assert kconfig.version_code("Ubuntu 5.15.0-91.101-generic 5.15.131\n", "#1 SMP",
                                "5.15.0-91-generic") == (5 << 16) + (15 << 8) + 131
    assert kconfig.version_code("", "", "4.19.300") == (4 << 16) + (19 << 8) + 255
    assert kconfig.version_code("", "", "weird") == 0


def _ext(kcfg_type: str, size: int, signed: bool = False) -> model.Extern:
    return model.Extern("CONFIG_X", "kconfig", False, size=size, kcfg_type=kcfg_type,
                        signed=signed)


@pytest.mark.parametrize("kind,size,signed,text,raw", [
    (model.KCFG_BOOL, 1, False, "y", b"\1"),
    (model.KCFG_BOOL, 1, False, "n", b"\0"),
    (model.KCFG_TRISTATE, 4, False, "m", b"\2\0\0\0"),
    (model.KCFG_CHAR, 1, False, "m", b"m"),
    (model.KCFG_INT, 4, True, "-5", (-5).to_bytes(4, "little", signed=True)),
    (model.KCFG_INT, 2, False, "0x10", b"\x10\0"),
    (model.KCFG_CHAR_ARR, 4, False, '"abcdef"', b"abc\0"),
])
def test_config_values_as_libbpf_sets_them(kind, size, signed, text, raw):
    assert kconfig._from_config(_ext(kind, size, signed), text) == raw


@pytest.mark.parametrize("kind,size,signed,text,why", [
    (model.KCFG_BOOL, 1, False, "m", "declare it enum libbpf_tristate"),
    (model.KCFG_INT, 1, False, "256", "does not fit in 1 bytes"),
    (model.KCFG_INT, 1, True, "128", "does not fit"),
    (model.KCFG_INT, 4, False, "y", "needs a bool, tristate or char"),
    (model.KCFG_BOOL, 1, False, '"s"', "needs a char array"),
    (model.KCFG_INT, 4, False, "12x", "not a valid integer"),
])
def test_config_values_libbpf_refuses(kind, size, signed, text, why):
    with pytest.raises(kconfig._Unset, match=why):
        kconfig._from_config(_ext(kind, size, signed), text)
