"""Instruction encoding and decoding."""

from __future__ import annotations

import pytest

from bpfload import asm


def test_round_trip_of_every_field():
    insns = [asm.Insn(0x18, 1, 2, 0, -5), asm.Insn(0, 0, 0, 0, 0x7FFFFFFF),
             asm.Insn(0x85, 0, 1, 0, -1), asm.Insn(0x61, 10, 15, -32768, 0),
             asm.Insn(0x95)]
    raw = asm.encode(insns)
    assert len(raw) == 8 * len(insns)
    assert asm.decode(raw) == insns


def test_register_nibbles_are_little_endian():
    # dst in the low nibble, src in the high one, as struct bpf_insn's bitfields
    raw = asm.encode([asm.Insn(0xBF, dst=3, src=7)])
    assert raw[1] == 0x73


def test_decode_rejects_partial_instruction():
    with pytest.raises(ValueError):
        asm.decode(b"\0" * 12)


def test_ld_imm64_value_and_setter():
    lo, hi = asm.Insn(asm.OP_LD_IMM64), asm.Insn(0)
    asm.set_ld_imm64(lo, hi, 0xFFFFFFFF80000001)
    assert (lo.imm, hi.imm) == (-0x7FFFFFFF, -1)
    assert asm.ld_imm64_value(lo, hi) == 0xFFFFFFFF80000001


@pytest.mark.parametrize("op,kind", [
    (0x85, "is_call"), (0x95, "is_exit"), (0x18, "is_ld_imm64"), (0x05, "is_jump"),
    (0x15, "is_jump"), (0x16, "is_jump"), (0x79, "is_mem"), (0x7B, "is_mem"),
    (0x72, "is_mem"), (0x91, "is_mem"), (0xB7, "is_alu_imm"), (0x04, "is_alu_imm")])
def test_classification(op, kind):
    insn = asm.Insn(op)
    assert getattr(insn, kind)
    others = {"is_call", "is_exit", "is_ld_imm64", "is_jump", "is_mem"} - {kind}
    if kind != "is_alu_imm":
        assert not any(getattr(insn, k) for k in others)


def test_mem_size_rewrite():
    insn = asm.Insn(0x79)  # ldxdw
    assert insn.mem_size == 8
    insn.set_mem_size(4)
    assert insn.op == 0x61 and insn.mem_size == 4
