"""python -m bpfload: its argument parsing (the argparse-free fast path must agree with
argparse on every command line it accepts, and leave everything else to argparse), and
its commands run for real (root): what they print, every failure as one line, a
closed or full stdout, --attach held until Ctrl-C."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from interrupt import foreground_sigint, run_interrupted

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
    ["load", "x.bpf.o", "y.bpf.o", "z.bpf.o", "--json"],
    ["load", "x.bpf.o", "--attach", "--cgroup", "/sys/fs/cgroup/x", "--ifname", "veth0"],
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
    ["load", "x.bpf.o", "--json", "y.bpf.o"],
    ["load", "x.bpf.o", "--ifname"],
    ["probe"],
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


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "bpfload", *map(str, args)],
                          capture_output=True, text=True, timeout=60, **kw)


@pytest.mark.usefixtures("no_leaks")
def test_cli_load_prints_maps_and_programs(bpf_object):
    r = _cli("load", bpf_object("relocs"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [ln.split()[:2] for ln in lines] == [["map", "out"], ["map", "relocs.bss"],
                                                ["prog", "run_relocs"]]
    assert "insns" in lines[-1] and " id " in lines[-1]


@pytest.mark.usefixtures("no_leaks")
def test_cli_load_failure_is_one_clear_message(bpf_object):
    r = _cli("load", bpf_object("globals"))
    assert r.returncode == 1
    assert r.stderr.startswith("bpfload: error: loading program 'write_rodata': EACCES")
    assert "Traceback" not in r.stderr
    r = _cli("load", bpf_object("globals"), "--set", "nope=1")
    assert r.returncode == 1 and "no global variable 'nope'" in r.stderr


@pytest.mark.usefixtures("no_leaks")
def test_cli_output_to_a_full_disk_is_one_line(bpf_object):
    for cmd in ("show", "load"):
        with open("/dev/full", "w") as full:
            r = subprocess.run([sys.executable, "-m", "bpfload", cmd, str(bpf_object("attach"))],
                               stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
        assert (r.returncode, r.stderr) == (
            1, "bpfload: error: cannot write the output: No space left on device\n")


@pytest.mark.usefixtures("no_leaks")
def test_cli_attach_with_nothing_to_attach_says_so(bpf_object):
    r = _cli("load", bpf_object("optional"), "--attach")
    assert r.returncode == 1
    assert r.stderr.startswith("bpfload: error: nothing to attach: ") and "syscall" in r.stderr
    assert r.stderr.count("\n") == 1


@pytest.mark.usefixtures("no_leaks")
def test_cli_btf_file_is_checked_for_every_object(bpf_object, tmp_path):
    (tmp_path / "text").write_text("not btf")
    for btf, why in (("/nonexistent/vmlinux", "No such file or directory"),
                     (tmp_path / "text", "neither raw BTF nor an ELF file with .BTF")):
        r = _cli("load", bpf_object("relocs"), "--btf", btf)  # needs no kernel types
        assert (r.returncode, r.stderr) == (1, f"bpfload: error: --btf {btf}: {why}\n")
    assert _cli("load", bpf_object("relocs"), "--btf", "/sys/kernel/btf/vmlinux").returncode == 0


@pytest.mark.usefixtures("no_leaks")
def test_cli_sets_arrays_from_json(bpf_object):
    base = ("load", bpf_object("globals"), "--program", "run_globals", "--set")
    assert _cli(*base, "rodata_array=[5, 6, 7, 8]").returncode == 0
    r = _cli(*base, "rodata_array=5")
    assert r.returncode == 1 and r.stderr == (
        "bpfload: error: --set rodata_array: const volatile __u32[4] takes a list of up to 4 "
        "items, not 5\n")


@pytest.mark.usefixtures("no_leaks")
def test_cli_attach_holds_until_interrupted(bpf_object):
    import os
    import signal
    import time

    p = subprocess.Popen([sys.executable, "-m", "bpfload", "load", str(bpf_object("attach")),
                          "--attach", "--set", f"target_tgid={os.getpid()}", "--program",
                          "count_raw_tp"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, preexec_fn=foreground_sigint)
    deadline = time.monotonic() + 30
    out = ""
    while "attached" not in out and time.monotonic() < deadline:
        out += p.stdout.readline()
    assert "attached 1 program(s)" in out
    p.send_signal(signal.SIGINT)
    rest, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "detached" in rest and "Traceback" not in err


# `python -m bpfload` as runpy runs it, with gc.callbacks recording every collection
# from when the command turns collection off, os._exit reporting them when the command leaves, and
# load_command._watch (the watch loop of --attach) replaced by one that reports
# whether collection is on
_GC_PROBE = """
import gc, os, runpy, sys
from bpfload import load_command
collections = []
gc.callbacks.append(lambda phase, info: phase == "stop" and collections.append(
    info["generation"]) and None)
real_disable = gc.disable
def disable():  # (from here: what came before is the interpreter importing the package)
    collections.clear()
    real_disable()
gc.disable = disable
load_command._watch = lambda readers, ep, stop: print("watching, gc on:", gc.isenabled())
real_exit = os._exit
def leave(status):
    sys.stderr.write(f"collections: {collections}, os._exit({status})\\n")
    sys.stderr.flush()
    real_exit(status)
os._exit = leave
sys.argv = ["bpfload", *sys.argv[1:]]
runpy.run_module("bpfload", run_name="__main__", alter_sys=True)
"""


@pytest.mark.usefixtures("no_leaks")
def test_a_command_runs_without_garbage_collection_and_skips_finalization(bpf_object):
    """Its objects live until it exits: no collection while it imports and loads, and
    no interpreter finalization (module teardown, the exit's full collection) after
    it, with its output complete all the same."""
    args = [sys.executable, "-c", _GC_PROBE, "load", str(bpf_object("attach"))]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].startswith("prog  count_tracepoint")
    assert r.stderr.splitlines()[-1] == "collections: [], os._exit(0)"
    r = subprocess.run([*args[:3], "load", "/nonexistent.bpf.o"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.splitlines() == [
        "bpfload: error: cannot read /nonexistent.bpf.o: No such file or directory",
        "collections: [], os._exit(1)"]


@pytest.mark.usefixtures("no_leaks")
def test_load_attach_collects_garbage_while_it_watches(bpf_object):
    args = [sys.executable, "-c", _GC_PROBE, "load", str(bpf_object("attach")), "--attach",
            "--program", "count_raw_tp"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "watching, gc on: True" in r.stdout and "detached" in r.stdout
