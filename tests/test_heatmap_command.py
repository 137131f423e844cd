"""heatmap.py -- CMD on this machine's kernel (the refs source, which every kernel has):
CMD's exit status, its output kept out of our frames, Ctrl-C stopping it, a command
that cannot run, and nothing left behind.  The same with mglru runs in the guest
(tests/guest/test_heatmap_scope_guest.py)."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import termios

import pytest
from heatmap_fakes import HEATMAP, end_of_run, heatmap, json_intervals
from interrupt import foreground_sigint
from test_heatmap_cli import read_until, set_winsize, terminal_env

ARGS = ("--source", "refs", "--interval", "0.2")


def heatmap_run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HEATMAP), *ARGS, *args], capture_output=True,
                          text=True, timeout=60, **kw)


def no_process_in_group(pgid: int) -> bool:
    """No live (non-zombie) process left in the process group."""
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return False
    return True


def test_exit_status_and_output_stay_the_commands():
    r = heatmap_run("--json", "--", "sh", "-c", "echo to-stdout; sleep 0.7; echo to-stderr >&2; "
                    "exit 7")
    assert r.returncode == 7, r.stderr
    intervals = json_intervals(r.stdout)  # nothing else there
    assert intervals and all(iv["comm"] == "sh" for iv in intervals)
    assert "to-stdout" in r.stderr and "to-stderr" in r.stderr
    assert end_of_run(r.stderr).startswith("heatmap: ")
    assert "sh exited with status 7" in r.stderr


def test_cmd_output_goes_to_the_file(tmp_path):
    out = tmp_path / "cmd.out"
    r = heatmap_run("--json", "--cmd-output", out, "--", "sh", "-c", "echo a; echo b >&2")
    assert r.returncode == 0, r.stderr
    assert out.read_text().split() == ["a", "b"]
    assert "a\n" not in r.stderr


def test_the_first_interval_is_the_commands_first():
    """The command is held until the counts are attached: its first interval is
    interval 1, with its own maps (not heatmap's, which it was forked from)."""
    r = heatmap_run("--json", "--", sys.executable, "-c", "import time; time.sleep(0.6)")
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout.splitlines()[0])
    assert first["seq"] == 1 and first["t"] < 0.5
    assert "python" in first["comm"]


def test_ctrl_c_stops_the_command_and_everything_it_started():
    p = subprocess.Popen([sys.executable, str(HEATMAP), *ARGS, "--json", "--", "sh", "-c",
                          "sleep 60 & sleep 60; wait"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, preexec_fn=foreground_sigint)
    try:
        first = json.loads(p.stdout.readline())
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 128 + signal.SIGINT, err
    assert "Traceback" not in err and "interrupted" in end_of_run(err)
    assert no_process_in_group(first["pid"]), "the command's process group lives on"


def test_count_reached_stops_the_command():
    r = heatmap_run("--json", "--count", "2", "--", "sleep", "60")
    assert r.returncode == 128 + signal.SIGINT, r.stderr
    assert len(json_intervals(r.stdout)) == 2
    pid = json.loads(r.stdout.splitlines()[0])["pid"]
    assert no_process_in_group(pid)


@pytest.mark.parametrize("cmd, message", [
    (["no-such-command-here"], "no-such-command-here: command not found"),
    (["/etc"], "/etc: not an executable file"),
    (["/etc/passwd"], "/etc/passwd: not an executable file"),
])
def test_a_command_that_cannot_run_is_one_line(cmd, message):
    r = heatmap_run("--", *cmd)
    assert r.returncode == 1
    assert r.stderr.strip() == f"heatmap: {message}"


def test_an_exec_that_fails_is_one_line_and_leaves_no_child(tmp_path):
    script = tmp_path / "bad"
    script.write_bytes(b"\x7fELF not really")
    script.chmod(0o755)
    r = heatmap_run("--", script)
    assert r.returncode == 1
    assert r.stderr.strip() == f"heatmap: cannot run {script}: Exec format error"


@pytest.mark.parametrize("args, message", [
    (["--"], "give the command to run after --"),
    (["42", "--", "true"], "give PIDs, -- CMD or --replay FILE, only one of them"),
    (["--replay", "x", "--", "true"], "give PIDs, -- CMD or --replay FILE, only one of them"),
    (["42", "--cmd-output", "f"], "--cmd-output applies to -- CMD"),
])
def test_argument_errors(args, message):
    with pytest.raises(heatmap.HeatmapError, match=f"^{message}$"):
        heatmap.parse_args(args)


def test_options_after_the_command_are_its_own():
    args = heatmap.parse_args(["--count", "3", "--", "ls", "--count", "-l"])
    assert args.command == ["ls", "--count", "-l"] and args.count == 3


def test_a_source_that_fails_never_runs_the_command(tmp_path):
    """The command is held before its exec until the counts are open: when they cannot
    be (no mglru on this kernel), it never runs, and the error is heatmap's one line."""
    out = tmp_path / "cmd.out"
    r = subprocess.run([sys.executable, str(HEATMAP), "--source", "mglru", "--cmd-output",
                        out, "--", "sh", "-c", "echo ran; sleep 60"], capture_output=True,
                       text=True, timeout=60)
    if r.returncode == 0:
        pytest.skip("this kernel offers the mglru source")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("heatmap: ") and "Traceback" not in r.stderr
    assert out.read_text() == "", "the command ran"


def test_live_view_keeps_the_commands_output_for_the_terminal():
    """On a terminal the live view owns the screen and the keys: CMD's output is held
    and shown once the view has left the alternate screen; Ctrl-C on the terminal ends
    the run and stops CMD (in a process group of its own, the terminal does not)."""
    master, slave = os.openpty()
    set_winsize(slave, 24, 80)
    env = terminal_env()

    def controlling_tty():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        foreground_sigint()

    proc = subprocess.Popen([sys.executable, str(HEATMAP), *ARGS, "--", "sh", "-c",
                             "echo from-the-command; read line; sleep 60"], stdin=slave,
                            stdout=slave, stderr=subprocess.PIPE, env=env,
                            preexec_fn=controlling_tty)
    try:
        before = read_until(master, b"#2 ")
        os.write(master, b"\x03")
        after = read_until(master, b"from-the-command")
        assert proc.wait(timeout=30) == 128 + signal.SIGINT
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
    assert b"from-the-command" not in before
    leave = after.index(b"\x1b[?1049l")
    assert after.index(b"from-the-command") > leave  # after the view, on the terminal
    err = proc.stderr.read().decode()
    assert "(interrupted)" in err and "Traceback" not in err
