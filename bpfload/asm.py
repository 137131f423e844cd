"""BPF instructions: the 8-byte `struct bpf_insn`, decoded, patched and encoded.

Only what a loader needs: field access, the instruction classes relocations care
about (calls, 64-bit immediates, memory accesses, ALU immediates), and a short
textual form for error messages.
"""

from __future__ import annotations

import struct

INSN = struct.Struct("<BBhi")
SIZE = INSN.size

# instruction classes
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = range(8)
# ld/st sizes and modes
SIZE_W, SIZE_H, SIZE_B, SIZE_DW = 0x00, 0x08, 0x10, 0x18
MODE_IMM, MODE_MEM, MODE_MEMSX, MODE_ATOMIC = 0x00, 0x60, 0x80, 0xC0
# alu/jmp source and operations
SRC_K, SRC_X = 0x00, 0x08
ALU_MOV = 0xB0
JMP_JA, JMP_CALL, JMP_EXIT = 0x00, 0x80, 0x90

OP_LD_IMM64 = LD | SIZE_DW | MODE_IMM  # 0x18
OP_CALL = JMP | JMP_CALL  # 0x85
OP_EXIT = JMP | JMP_EXIT  # 0x95
OP_JA = JMP | JMP_JA  # 0x05
OP_MOV64_IMM = ALU64 | ALU_MOV | SRC_K  # 0xb7

_SIZE_BYTES = {SIZE_B: 1, SIZE_H: 2, SIZE_W: 4, SIZE_DW: 8}
_SIZE_BY_BYTES = {v: k for k, v in _SIZE_BYTES.items()}


class Insn:
    """One instruction slot. A 64-bit immediate load occupies two slots."""

    __slots__ = ("op", "dst", "src", "off", "imm")

    def __init__(self, op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0):
        self.op = op
        self.dst = dst
        self.src = src
        self.off = off
        self.imm = imm

    @property
    def cls(self) -> int:
        return self.op & 0x07

    @property
    def is_ld_imm64(self) -> bool:
        return self.op == OP_LD_IMM64

    @property
    def is_call(self) -> bool:
        return self.op == OP_CALL

    @property
    def is_exit(self) -> bool:
        return self.op == OP_EXIT

    @property
    def is_jump(self) -> bool:
        """A jump with a pc-relative offset (not call/exit)."""
        return self.cls in (JMP, JMP32) and (self.op & 0xF0) not in (JMP_CALL, JMP_EXIT)

    @property
    def is_mem(self) -> bool:
        """A load or store with a memory offset (LDX/ST/STX in MEM or MEMSX mode)."""
        mode = self.op & 0xE0
        return self.cls in (LDX, ST, STX) and mode in (MODE_MEM, MODE_MEMSX)

    @property
    def mem_size(self) -> int:
        return _SIZE_BYTES[self.op & 0x18]

    def set_mem_size(self, nbytes: int) -> None:
        self.op = (self.op & ~0x18) | _SIZE_BY_BYTES[nbytes]

    @property
    def is_alu_imm(self) -> bool:
        return self.cls in (ALU, ALU64) and (self.op & 0x08) == SRC_K

    def copy(self) -> Insn:
        return Insn(self.op, self.dst, self.src, self.off, self.imm)

    def __eq__(self, other) -> bool:
        return isinstance(other, Insn) and (
            (self.op, self.dst, self.src, self.off, self.imm)
            == (other.op, other.dst, other.src, other.off, other.imm))

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return (f"Insn(op={self.op:#04x}, dst=r{self.dst}, src={self.src}, off={self.off}, "
                f"imm={self.imm})")


def decode(data: bytes) -> list[Insn]:
    """Split raw bytes into instruction slots."""
    if len(data) % SIZE:
        raise ValueError(f"instruction bytes not a multiple of {SIZE}: {len(data)}")
    out = []
    for op, regs, off, imm in INSN.iter_unpack(data):
        out.append(Insn(op, regs & 0x0F, regs >> 4, off, imm))
    return out


def encode(insns: list[Insn]) -> bytes:
    pack = INSN.pack
    return b"".join(pack(i.op, (i.dst & 0x0F) | ((i.src & 0x0F) << 4), i.off, i.imm)
                    for i in insns)


def ld_imm64_value(lo: Insn, hi: Insn) -> int:
    return (lo.imm & 0xFFFFFFFF) | ((hi.imm & 0xFFFFFFFF) << 32)


def set_ld_imm64(lo: Insn, hi: Insn, value: int) -> None:
    value &= 0xFFFFFFFFFFFFFFFF
    lo.imm = _s32(value & 0xFFFFFFFF)
    hi.imm = _s32(value >> 32)


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def s32(v: int) -> int:
    """Wrap an unsigned 32-bit value into the signed imm field."""
    return _s32(v & 0xFFFFFFFF)


def mov64_imm(dst: int, imm: int) -> Insn:
    return Insn(OP_MOV64_IMM, dst, 0, 0, s32(imm))


def ja(off: int) -> Insn:
    return Insn(OP_JA, 0, 0, off, 0)

