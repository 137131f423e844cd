"""python -m bpfload's argument parsing: the argparse-free fast path must agree with
argparse on every command line it accepts, and leave everything else to argparse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from interrupt import run_interrupted

from bpfload import __main__ as cli

ROOT = Path(__file__).resolve().parent.parent

ACCEPTED = [
    ["show", "x.bpf.o"],
    ["load", "x.bpf.o"],
    ["load", "x.bpf.o", "--attach"],
    ["load", "x.bpf.o", "--log", "--attach"],
    ["load", "x.bpf.o", "--set", "a=1", "--set", "b=-2", "--program", "p"],
    ["load", "x.bpf.o", "--program", "p", "--program", "q", "--btf", "/tmp/vmlinux"],
    ["load", "x.bpf.o", "--btf", "a", "--btf", "b"],
]

DEFERRED = [
    [],
    ["show"],
    ["--help"],
    ["load", "--attach", "x.bpf.o"],
    ["load", "x.bpf.o", "-h"],
    ["load", "x.bpf.o", "--set"],
    ["load", "x.bpf.o", "--set", "--attach"],
    ["load", "x.bpf.o", "--set=a=1"],
    ["load", "x.bpf.o", "--att"],
    ["load", "x.bpf.o", "y.bpf.o"],
    ["show", "x.bpf.o", "--attach"],
    ["unload", "x.bpf.o"],
]


def _public(ns) -> dict:
    return {k: v for k, v in vars(ns).items() if not k.startswith("_")}


@pytest.mark.parametrize("argv", ACCEPTED, ids=" ".join)
def test_fast_path_agrees_with_argparse(argv):
    fast = cli._quick_parse(argv)
    assert fast is not None
    assert _public(fast) == _public(cli._parser().parse_args(argv))


@pytest.mark.parametrize("argv", DEFERRED, ids=lambda a: " ".join(a) or "(empty)")
def test_unusual_command_lines_go_to_argparse(argv):
    assert cli._quick_parse(argv) is None


def test_usage_errors_still_come_from_argparse(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["load", "x.bpf.o", "--set"])
    assert e.value.code == cli.USAGE_ERROR
    assert capsys.readouterr().err == ("bpfload: error: argument --set: expected one argument "
                                       "(see python -m bpfload load --help)\n")
    with pytest.raises(SystemExit):
        cli.main(["unload", "x.bpf.o"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bpfload: error: argument command: invalid")


def test_ctrl_c_while_importing_the_loader_is_one_line(tmp_path):
    obj = tmp_path / "x.bpf.o"
    obj.write_bytes(b"\x7fELF")
    res = run_interrupted("bpfload.collection", ["-m", "bpfload", "load", str(obj)], cwd=ROOT)
    assert (res.returncode, res.stderr) == (130, "bpfload: interrupted\n")


@pytest.mark.parametrize("text, value", [
    ("12", 12), ("0x10", 16), ("-3", -3), ("1.5", 1.5), ("[1, 2, 3]", [1, 2, 3]),
    ('{"a": 1, "b": [2]}', {"a": 1, "b": [2]}), ("comm", "comm"), ("", ""),
])
def test_set_values(text, value):
    assert cli._parse_value(text) == value


def test_set_value_that_looks_like_json_but_is_not():
    with pytest.raises(ValueError, match="is not valid JSON"):
        cli._parse_value("[1, 2")


def test_closed_stdout_is_not_a_traceback(bpf_object):
    """`bpfload show OBJ | head -0`: the write fails with EPIPE; the command ends
    normally, and the interpreter's final flush says nothing either."""
    # block-buffered, as a user's stdout is (PYTHONUNBUFFERED would hide the problem)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen([sys.executable, "-m", "bpfload", "show",
                             str(bpf_object("map_kinds"))], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the interpreter has even started
    err = proc.stderr.read().decode()
    assert (proc.wait(timeout=60), err) == (0, "")
