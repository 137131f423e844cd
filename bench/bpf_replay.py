"""The floor under any BPF loader in Python: the bpf(2) calls of one load, replayed.

`capture(obj, plan)` loads the object with bpfload in this process, reads back every
map and program id (what `bpfload load` prints), and records each bpf(2) call made: its
attribute bytes, the buffers those point to, and where they hold an fd an earlier call
returned. `python -m bpf_replay PLAN` imports ctypes alone, makes the same calls with the
fds it gets, and prints one line per id: a loader with no logic, no modules, no cache
format. bench/load_time.py times it against bpftool in the same runs; what bpfload
costs above it is bpfload.
"""

from __future__ import annotations

import ctypes
import marshal
import sys

SYS_BPF = 321  # x86_64
_LD_IMM64 = 0x18
_PSEUDO_MAP_FD, _PSEUDO_MAP_VALUE = 1, 2


def capture(obj_path: str, plan_path: str) -> None:
    """Record the bpf(2) calls of loading `obj_path` (root) into `plan_path`."""
    from bpfload.collection import BPFObject
    from bpfload.sys import syscall
    from bpfload.sys.constants import Cmd

    real = syscall.bpf
    calls: list[dict] = []
    sizes: dict[int, tuple[int, int]] = {}  # map fd -> key and value size

    def pointer(rec: dict, attr, field: str, size: int, output: bool = False) -> None:
        address = getattr(attr, field)
        if address:
            rec["ptrs"].append((getattr(type(attr), field).offset,
                                ctypes.string_at(address, size), output))

    def record(cmd, attr, what=None):
        rec = {"cmd": int(cmd), "attr": bytes(attr), "ptrs": [], "fd": 0,
               "fds": [getattr(type(attr), f).offset for f, *_ in attr._fields_
                       if f.endswith("fd") and getattr(attr, f)]}
        if cmd == Cmd.BTF_LOAD:
            pointer(rec, attr, "btf", attr.btf_size)
        elif cmd == Cmd.MAP_UPDATE_ELEM:
            key_size, value_size = sizes[attr.map_fd]
            pointer(rec, attr, "key", key_size)
            pointer(rec, attr, "value", value_size)
        elif cmd == Cmd.PROG_LOAD:
            pointer(rec, attr, "insns", attr.insn_cnt * 8)
            pointer(rec, attr, "license", len(ctypes.string_at(attr.license)) + 1)
            pointer(rec, attr, "func_info", attr.func_info_rec_size * attr.func_info_cnt)
            pointer(rec, attr, "line_info", attr.line_info_rec_size * attr.line_info_cnt)
            rec["insns"] = type(attr).insns.offset
        elif cmd == Cmd.OBJ_GET_INFO_BY_FD:
            pointer(rec, attr, "info", attr.info_len, output=True)
        elif cmd not in (Cmd.MAP_CREATE, Cmd.MAP_FREEZE):
            raise SystemExit(f"bpf_replay: cannot replay bpf({Cmd.name_of(cmd)})")
        ret = real(cmd, attr, what)
        if cmd in (Cmd.BTF_LOAD, Cmd.MAP_CREATE, Cmd.PROG_LOAD):
            rec["fd"] = ret
        if cmd == Cmd.MAP_CREATE:
            sizes[ret] = (attr.key_size, attr.value_size)
        calls.append(rec)
        return ret

    # every module that imported bpf() by name calls it through its own reference
    patched = [m for name, m in list(sys.modules.items())
               if name.startswith("bpfload") and getattr(m, "bpf", None) is real]
    for m in patched:
        m.bpf = record
    try:
        with BPFObject(obj_path) as obj:
            obj.load()
            for m in obj.maps.values():
                m.id  # noqa: B018 (the info call `bpfload load` makes to print it)
            for p in obj.programs.values():
                p.id  # noqa: B018
    finally:
        for m in patched:
            m.bpf = real
    with open(plan_path, "wb") as f:
        marshal.dump(calls, f)


def _patch_map_fds(insns: bytes, fds: dict[int, int]) -> bytes:
    code = bytearray(insns)
    for i in range(0, len(code), 8):
        if code[i] == _LD_IMM64 and code[i + 1] >> 4 in (_PSEUDO_MAP_FD, _PSEUDO_MAP_VALUE):
            old = int.from_bytes(code[i + 4:i + 8], "little")
            code[i + 4:i + 8] = fds[old].to_bytes(4, "little")
    return bytes(code)


def replay(plan_path: str) -> None:
    with open(plan_path, "rb") as f:
        calls = marshal.load(f)
    syscall = ctypes.CDLL(None, use_errno=True).syscall
    fds: dict[int, int] = {}  # fd at capture -> fd now
    held = []  # buffers the kernel reads: alive until the end
    for call in calls:
        raw = call["attr"]
        attr = ctypes.create_string_buffer(raw, len(raw))
        base = ctypes.addressof(attr)
        for off in call["fds"]:
            old = int.from_bytes(raw[off:off + 4], "little")
            ctypes.memmove(base + off, fds[old].to_bytes(4, "little"), 4)
        outputs = []
        for off, data, output in call["ptrs"]:
            if off == call.get("insns"):
                data = _patch_map_fds(data, fds)
            buf = ctypes.create_string_buffer(data, len(data))
            held.append(buf)
            ctypes.memmove(base + off, ctypes.addressof(buf).to_bytes(8, "little"), 8)
            if output:
                outputs.append(buf)
        ret = syscall(SYS_BPF, call["cmd"], attr, len(raw))
        if ret < 0:
            raise SystemExit(f"bpf_replay: bpf({call['cmd']}) failed: errno {ctypes.get_errno()}")
        if call["fd"]:
            fds[call["fd"]] = ret
        for buf in outputs:  # bpf_map_info and bpf_prog_info: type, then id
            print(f"id {int.from_bytes(buf.raw[4:8], 'little')}")


if __name__ == "__main__":
    replay(sys.argv[1])
