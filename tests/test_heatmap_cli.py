"""heatmap.py main(): argument errors, error messages, every way a run ends (count,
target exit, Ctrl-C, SIGTERM, closed stdout, q), KernelCounts always closed, the map
resized with the mappings, the live view in a pseudo-terminal."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest
from heatmap_fakes import (
    HEATMAP,
    SMALL_MAPS,
    FakeClock,
    end_of_run,
    exit_target,
    heatmap,
    json_intervals,
    make_factory,
    make_proc,
    maps_line,
    set_maps,
    small_script,
)
from interrupt import foreground_sigint, run_interrupted

ENV = {"COLUMNS": "60", "LINES": "16"}


def run(tmp_path, *args, script=None, on_age=None, fail_at=None, caps=None, maps=SMALL_MAPS,
        make=True):
    if make:
        kw = {"caps": caps} if caps is not None else {}
        make_proc(tmp_path, 4242, maps, **kw)
    clock = FakeClock()
    factory = make_factory(small_script() if script is None else script, clock=clock,
                           on_age=on_age, fail_at=fail_at)
    out, err = io.StringIO(), io.StringIO()
    rc = heatmap.main(list(args), counts_factory=factory, proc_root=str(tmp_path),
                      clock=clock, sleep=clock.sleep, stdout=out, stderr=err, environ=ENV)
    return rc, out.getvalue(), err.getvalue(), factory


@pytest.mark.parametrize("args,message", [
    ([], "give a PID to watch, -- CMD, --cgroup PATH or --replay FILE (see --help)"),
    (["abc"], "PID must be a positive integer, not 'abc'"),
    (["0"], "PID must be a positive integer, not 0"),
    (["1", "--region-size", "3M"],
     "argument -r/--region-size: 3M is not a power of two (try 2M or 4M)"),
    (["1", "--region-size", "2K"], "argument -r/--region-size: 2K is smaller than a page (4K)"),
    (["1", "--region-size", "2G"], "argument -r/--region-size: 2G is outside 4K..1G"),
    (["1", "--region-size", "lots"],
     "argument -r/--region-size: 'lots' is not a size (try 4K, 2M or 1G)"),
    (["1", "--interval", "0"], "argument -i/--interval: '0' must be from 0.1 to 86400 "
                               "seconds"),
    (["1", "--interval", "1e300"], "argument -i/--interval: '1e300' must be from 0.1 to "
                                   "86400 seconds"),
    (["--replay", "x", "--speed", "1e-300"], "argument --speed: '1e-300' must be 0 (at once) "
                                             "or a factor from 0.001 to 1e+06"),
    (["1", "--interval", "x"], "argument -i/--interval: 'x' is not a number"),
    (["1", "--count", "0"], "argument -c/--count: '0' must be at least 1"),
    (["1", "--view", "hot"], "argument --view: invalid choice: 'hot' (choose from "),
    (["1", "--speed", "2"], "--speed only applies to --replay"),
    (["1", "--replay", "x"], "give either a PID or --replay FILE, not both"),
    (["--replay", "x", "--interval", "1"], "--interval applies to live runs; a recording "
                                           "keeps its own"),
    (["--replay", "x", "--region-size", "4K"], "--region-size applies to live runs"),
    (["1", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_argument_errors_are_one_line(args, message):
    out, err = io.StringIO(), io.StringIO()
    rc = heatmap.main(args, stdout=out, stderr=err)
    assert rc == 2
    assert err.getvalue().startswith("heatmap: " + message)
    assert err.getvalue().count("\n") == 1 and out.getvalue() == ""


def test_region_sizes_accepted():
    for text, n in (("4K", 4096), ("4k", 4096), ("2M", 2 << 20), ("2MiB", 2 << 20),
                    ("1G", 1 << 30), ("65536", 65536), ("64KB", 65536)):
        assert heatmap.parse_size(text) == n


def test_help_and_version():
    out = io.StringIO()
    assert heatmap.main(["--help"], stdout=out) == 0
    text = out.getvalue()
    for word in ("--interval", "--region-size", "--replay", "--svg", "CAP_BPF", "young",
                 "q quit", "examples", "--source", "CONFIG_IDLE_PAGE_TRACKING",
                 "CONFIG_DAMON_VADDR", "clear_refs"):
        assert word in text
    out = io.StringIO()
    assert heatmap.main(["--version"], stdout=out) == 0
    assert out.getvalue().startswith("heatmap ")


def test_no_such_process(tmp_path):
    (tmp_path / "self").mkdir()
    rc, out, err, factory = run(tmp_path, "4242", make=False)
    assert (rc, err) == (1, "heatmap: no such process: 4242\n")
    assert factory.instances == []


def test_not_permitted_names_capabilities(tmp_path):
    rc, _, err, factory = run(tmp_path, "4242", caps="CapEff:\t0000000000000000\n")
    assert rc == 1 and err.count("\n") == 1
    for cap in ("CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN"):
        assert cap in err
    assert err.startswith("heatmap: not permitted")
    assert factory.instances == []
    # CAP_SYS_ADMIN alone is not enough on a 6.x kernel with CAP_BPF split out
    rc, _, err, factory = run(tmp_path, "4242", caps="CapEff:\t0000000000200000\n")
    assert rc == 1 and err.endswith("; missing CAP_BPF, CAP_PERFMON\n")
    assert factory.instances == []
    rc, _, err, factory = run(tmp_path, "4242", "--count", "1",
                              caps="CapEff:\t000000c000200000\n")
    assert rc == 0 and len(factory.instances) == 1


def test_maps_not_readable(tmp_path, monkeypatch):
    def denied(proc, pid):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(heatmap, "read_maps", denied)
    rc, _, err, _ = run(tmp_path, "4242", caps="CapEff:\t0000000000000000\n")
    assert rc == 1
    assert err.startswith("heatmap: not permitted to read /proc/4242/maps:")
    assert "CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN" in err
    # with every capability, "run it as root" would be wrong: the kernel says no to
    # this process (PID 1 of a container, a non-dumpable daemon)
    rc, _, err, _ = run(tmp_path / "root", "4242")
    assert rc == 1 and err.count("\n") == 1
    assert err.startswith("heatmap: not permitted to read /proc/4242/maps, although heatmap "
                          "has the capabilities it needs")
    assert "run it as root" not in err


@pytest.mark.parametrize("state,what", [
    ("S", "a kernel thread: it has no user memory to watch"),
    ("Z", "a zombie: it has exited and waits for its parent to reap it"),
    ("X", "exiting: it has no user memory left to watch"),
])
def test_kernel_thread_zombie_or_exiting(tmp_path, state, what):
    make_proc(tmp_path, 4242, "", state=state)
    rc, _, err, _ = run(tmp_path, "4242", make=False)
    assert (rc, err) == (1, f"heatmap: process 4242 (hotspot) is {what}\n")


def test_the_key_legend_names_every_key():
    import string

    screen = heatmap.LiveScreen(io.StringIO(), None, "heat", None, time.monotonic)
    named = heatmap.KEYS_HINT.replace("/", " ").split()
    for ch in string.printable:
        if screen._key(ch) is not None:
            assert ("space" if ch == " " else ch.lower()) in named, repr(ch)


def test_kernel_side_errors_pass_through_and_close(tmp_path):
    rc, out, err, factory = run(tmp_path, "4242", fail_at="init")
    assert (rc, err) == (1, "heatmap: kernel lacks the lru_gen_young_tp tracepoint: see kernel/\n")
    rc, out, err, factory = run(tmp_path, "4242", "--count", "5", fail_at="age")
    assert (rc, err) == (1, "heatmap: aging failed: MGLRU is disabled\n")
    assert factory.instances[0].closed == 1


def test_warmup_discarded_and_map_sized_from_maps(tmp_path):
    rc, _, _, factory = run(tmp_path, "4242", "--count", "2")
    counts = factory.instances[0]
    assert counts.region_shift == 21 and counts.pid == 4242
    assert counts.max_regions == heatmap.map_capacity(11)
    assert counts.ages == 3 and counts.drains == 3  # warm-up + 2 intervals
    assert counts.closed == 1


def test_region_size_reaches_the_bpf_side(tmp_path):
    rc, out, _, factory = run(tmp_path, "4242", "--count", "1", "--region-size", "64K",
                              "--json")
    assert factory.instances[0].region_shift == 16
    assert factory.instances[0].max_regions == heatmap.map_capacity(
        heatmap.spanned_regions(heatmap.parse_maps(SMALL_MAPS), 16))
    assert json_intervals(out)[0]["region_size"] == 65536


def test_map_resized_when_mappings_grow(tmp_path):
    big = SMALL_MAPS + maps_line(0x7e0000000000, 0x7e0000000000 + (1 << 30), "rw-p") + "\n"

    def grow(n):
        if n == 3:
            set_maps(tmp_path, 4242, big)

    rc, _, _, factory = run(tmp_path, "4242", "--count", "3", on_age=grow)
    assert rc == 0
    need = heatmap.spanned_regions(heatmap.parse_maps(big), 21)
    assert need == 11 + 512
    assert factory.instances[0].resizes == [heatmap.map_capacity(need)]


def test_target_exit_ends_cleanly(tmp_path):
    def leave(n):
        if n == 3:
            exit_target(tmp_path, 4242)

    rc, out, err, factory = run(tmp_path, "4242", on_age=leave)
    assert rc == 0
    assert err.startswith("heatmap: 1 interval in 2.0 s (target exited)")
    assert out.count("heatmap pid") == 1
    assert factory.instances[0].closed == 1


def test_zombie_target_ends_cleanly(tmp_path):
    def zombie(n):
        if n == 4:
            make_proc(tmp_path, 4242, SMALL_MAPS, state="Z")

    rc, _, err, _ = run(tmp_path, "4242", on_age=zombie)
    assert rc == 0 and "2 intervals" in err and "target exited" in err


def test_ctrl_c_ends_cleanly(tmp_path):
    def interrupt(n):
        if n == 3:
            raise KeyboardInterrupt

    rc, _, err, factory = run(tmp_path, "4242", on_age=interrupt)
    assert rc == 0 and "(interrupted)" in err and "Traceback" not in err
    assert factory.instances[0].closed == 1


def test_sigterm_ends_cleanly_and_handler_restored(tmp_path):
    before = signal.getsignal(signal.SIGTERM)

    def term(n):
        if n == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    rc, _, err, factory = run(tmp_path, "4242", on_age=term)
    assert rc == 0 and "(terminated)" in err
    assert factory.instances[0].closed == 1
    assert signal.getsignal(signal.SIGTERM) is before


def test_real_maps_file_of_this_process(tmp_path):
    """A real /proc/PID/maps (this interpreter's) through the whole pipeline."""
    with open("/proc/self/maps") as f:
        real = f.read()
    heap = [m for m in heatmap.parse_maps(real) if heatmap.is_shown(m)]
    r = heap[len(heap) // 2].start >> 21
    rc, out, err, _ = run(tmp_path, "4242", "--count", "2", "--json", maps=real,
                          script=[[(r, 0, 3, 0)], []])
    assert rc == 0, err
    first, second = json_intervals(out)
    assert [x["start"] >> 21 for x in first["regions"]] == [r] and second["regions"] == []
    rc, out, err, _ = run(tmp_path, "4242", "--count", "2", maps=real)
    assert rc == 0 and "[stack]" in out


def write_recording(path, intervals, step=2.0):
    header = {"type": "heatmap-record", "version": 1, "pid": 77, "comm": "synthetic",
              "region_shift": 21, "page_size": 4096, "interval": step, "started": 0}
    maps = [[0x10000000 + i * (64 << 20), 0x10000000 + i * (64 << 20) + (32 << 20), "rw-p", 0,
             "00:00", 0, "[heap]" if i == 0 else ""] for i in range(6)]
    with open(path, "w") as f:
        f.write(json.dumps(header) + "\n")
        f.write(json.dumps({"type": "maps", "maps": maps}) + "\n")
        for i in range(intervals):
            r = (0x10000000 >> 21) + (i % 16)
            f.write(json.dumps({"type": "interval", "seq": i + 1, "t": step * (i + 1),
                                "aging": 0.01, "dropped": 0, "rss_kb": 1000,
                                "counts": [[r, 0, 400, 12]]}) + "\n")


def test_closed_stdout_no_traceback(tmp_path):
    rec = tmp_path / "long.jsonl"
    write_recording(rec, 3000)  # far more output than a pipe buffers
    # stdout block-buffered, as a user's is: with PYTHONUNBUFFERED nothing is left in
    # the buffer for the exit-time flush to fail on, and the test could not fail
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen([sys.executable, str(HEATMAP), "--replay", str(rec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(env, COLUMNS="100", LINES="30"))
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    rc = proc.wait(timeout=60)
    assert first.startswith(b"heatmap pid 77 (synthetic)")
    assert rc == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert err.startswith("heatmap: ") and "(output closed)" in end_of_run(err)


@pytest.mark.parametrize("module", ["argparse", "json"])
def test_ctrl_c_during_start_up_no_traceback(tmp_path, module):
    """Ctrl-C while heatmap.py is still importing (before anything needs releasing)
    ends it like the default SIGINT action: no traceback."""
    rec = tmp_path / "rec.jsonl"
    write_recording(rec, 3)
    res = run_interrupted(module, [str(HEATMAP), "--replay", str(rec)])
    assert res.returncode == -signal.SIGINT, res.stderr
    assert res.stderr == ""


def test_pipe_to_head(tmp_path):
    rec = tmp_path / "long.jsonl"
    write_recording(rec, 2000)
    cmd = f"set -o pipefail; {sys.executable} {HEATMAP} --replay {rec} --json | head -1"
    res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["seq"] == 1
    assert "Traceback" not in res.stderr


def test_cli_error_in_subprocess_is_one_line():
    res = subprocess.run([sys.executable, str(HEATMAP), "1", "--region-size", "3M"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == ("heatmap: argument -r/--region-size: 3M is not a power of two "
                          "(try 2M or 4M)\n")
    res = subprocess.run([sys.executable, str(HEATMAP), "999999999"], capture_output=True,
                         text=True, timeout=30)
    assert (res.returncode, res.stderr) == (1, "heatmap: no such process: 999999999\n")


def test_unpatched_running_kernel_names_what_is_missing():
    """On this machine's own kernel (no series; here no MGLRU either) --source mglru names
    the tracepoint and where the patched kernel comes from, whatever else is missing, and the
    sources that work instead."""
    if os.geteuid() != 0:
        pytest.skip("needs root to get as far as the kernel checks")
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("the running kernel has no BTF")
    from bpfload.btf.kernel import KernelBTF

    tracepoint, what = next(iter(heatmap.INTERFACE.items()))
    if KernelBTF().func(tracepoint) is not None:
        pytest.skip("the running kernel has the series")
    with subprocess.Popen(["sleep", "30"]) as target:
        try:
            res = subprocess.run([sys.executable, str(HEATMAP), str(target.pid), "--count", "1",
                                  "--source", "mglru"],
                                 capture_output=True, text=True, timeout=60)
        finally:
            target.kill()
    assert res.returncode == 1
    assert res.stderr.startswith(f"heatmap: the kernel lacks {what}: ")
    assert "kernel/patches" in res.stderr and res.stderr.count("\n") == 1
    assert res.stderr.rstrip().endswith("sources available here: refs")


def read_until(fd, needle: bytes, timeout=20.0) -> bytes:
    buf = b""
    end = time.monotonic() + timeout
    while needle not in buf:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not seen in {buf[-2000:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def terminal_env() -> dict:
    """The environment of a heatmap on a colour terminal of the pty's own size."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env["TERM"] = "xterm-256color"
    return env


def set_winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@pytest.fixture
def pty_replay(tmp_path):
    rec = tmp_path / "slow.jsonl"
    write_recording(rec, 100, step=0.2)
    master, slave = os.openpty()
    set_winsize(slave, 24, 80)
    before = termios.tcgetattr(slave)
    env = terminal_env()
    def controlling_tty():  # a session of its own with the pty as its terminal (^C)
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        foreground_sigint()

    proc = subprocess.Popen([sys.executable, str(HEATMAP), "--replay", str(rec)],
                            stdin=slave, stdout=slave, stderr=subprocess.PIPE, env=env,
                            preexec_fn=controlling_tty)
    yield proc, master, slave, before
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    os.close(master)
    os.close(slave)


def test_live_view_keys_and_terminal_restored(pty_replay):
    proc, master, slave, before = pty_replay
    out = read_until(master, b"#2 ")  # alternate screen, then frames at recorded pace
    assert out.startswith(b"\x1b[?1049h\x1b[?25l")
    assert b"view heat" in out and heatmap.KEYS_HINT.encode() in out
    assert b"\x1b[48;5;" in out  # colour on a terminal
    os.write(master, b"n")
    read_until(master, b"view node")
    os.write(master, b"p")
    read_until(master, b"paused")
    os.write(master, b"a")
    read_until(master, b"view anon")
    # a resize re-lays the frame out for the new size
    set_winsize(slave, 30, 120)
    proc.send_signal(signal.SIGWINCH)
    out = read_until(master, b"now")
    os.write(master, b"p")
    os.write(master, b"q")
    rest = read_until(master, b"\x1b[?1049l")
    assert proc.wait(timeout=20) == 0
    err = proc.stderr.read().decode()
    assert "(quit)" in err and "Traceback" not in err
    assert rest.endswith(b"\x1b[?25h\x1b[?1049l")
    assert termios.tcgetattr(slave) == before


def test_live_view_sigterm_restores_terminal(pty_replay):
    proc, master, slave, before = pty_replay
    read_until(master, b"#1 ")
    proc.send_signal(signal.SIGTERM)
    rest = read_until(master, b"\x1b[?1049l")
    assert proc.wait(timeout=20) == 0
    assert rest.endswith(b"\x1b[?25h\x1b[?1049l")
    assert "(terminated)" in proc.stderr.read().decode()
    assert termios.tcgetattr(slave) == before


def test_live_view_ctrl_c_restores_terminal(pty_replay):
    proc, master, slave, before = pty_replay
    read_until(master, b"#1 ")
    os.write(master, b"\x03")  # the terminal turns it into SIGINT
    read_until(master, b"\x1b[?1049l")
    assert proc.wait(timeout=20) == 0
    assert "(interrupted)" in proc.stderr.read().decode()
    assert termios.tcgetattr(slave) == before


def test_warmup_failure_still_closes(tmp_path):
    def boom(n):
        raise heatmap.HeatmapError("debugfs is not mounted: mount -t debugfs none "
                                   "/sys/kernel/debug")

    rc, _, err, factory = run(tmp_path, "4242", on_age=boom)
    assert rc == 1 and err == ("heatmap: debugfs is not mounted: mount -t debugfs none "
                               "/sys/kernel/debug\n")
    assert factory.instances[0].closed == 1


def test_output_errors_are_one_line(tmp_path, monkeypatch):
    def full(self, sample, model=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(heatmap.Recorder, "write", full)
    rc, _, err, factory = run(tmp_path, "4242", "--count", "2", "--record",
                              str(tmp_path / "r.jsonl"))
    assert (rc, err) == (1, "heatmap: No space left on device\n")
    assert factory.instances[0].closed == 1


def test_record_cannot_overwrite_replay(tmp_path):
    rec = tmp_path / "r.jsonl"
    write_recording(rec, 2)
    err = io.StringIO()
    rc = heatmap.main(["--replay", str(rec), "--record", str(rec)], stdout=io.StringIO(),
                      stderr=err)
    assert (rc, err.getvalue()) == (2, "heatmap: --record would overwrite the --replay file\n")
    assert len(rec.read_text().splitlines()) == 4


def test_names_from_the_target_cannot_drive_the_terminal(tmp_path):
    """comm and mapping paths are the target's to choose: the one-line messages print
    them without escape sequences, like the frames do."""
    evil = "/tmp/\x1b]0;pwned\x07\x1b[2J.so"
    maps = maps_line(0x400000, 0x600000, "r-xp", 0, "08:01", 1, evil) + "\n"
    rc, _, err, _ = run(tmp_path, "4242", "--count", "1", "--json", maps=maps,
                        script=[[(2, 0, 5, 0)]])
    assert rc == 0 and "hottest region" in err and "\x1b" not in err and "\x07" not in err
    make_proc(tmp_path, 4243, "", comm="\x1b[31mred", state="Z")
    rc, _, err, _ = run(tmp_path, "4243", make=False)
    assert rc == 1 and "is a zombie" in err and "\x1b" not in err


def test_started_with_stdout_closed(tmp_path):
    """`heatmap.py ... >&-` (Python makes sys.stdout None): the run still ends with its
    summary, like output to /dev/null, not an AttributeError."""
    rec = tmp_path / "short.jsonl"
    write_recording(rec, 3)
    svg = tmp_path / "run.svg"
    res = subprocess.run([sys.executable, str(HEATMAP), "--replay", str(rec), "--svg",
                          str(svg)], stderr=subprocess.PIPE, text=True, timeout=60,
                         preexec_fn=lambda: os.close(1))
    assert res.returncode == 0, res.stderr
    assert end_of_run(res.stderr).startswith("heatmap: 3 intervals")
    assert res.stderr.startswith("heatmap: 3 intervals")
    assert svg.read_text().startswith("<?xml")


def test_verifier_rejection_keeps_its_reason_on_the_one_line():
    import errno

    from bpfload.errors import VerifierError

    log = "0: (b7) r0 = 0\n1: (85) call bpf_nope#999\ninvalid func unknown#999\n" \
          "processed 2 insns (limit 1000000)\n"
    msg = str(heatmap._bpf_error(VerifierError("young", errno.EINVAL, log)))
    assert "\n" not in msg
    assert msg == ("BPF: loading program 'young': EINVAL (Invalid argument) "
                   "(verifier: invalid func unknown#999)")


def test_svg_cannot_overwrite_the_recording(tmp_path):
    """--svg onto the --replay or --record file would replace the run with its picture."""
    rec = tmp_path / "r.jsonl"
    write_recording(rec, 2)
    err = io.StringIO()
    rc = heatmap.main(["--replay", str(rec), "--svg", str(rec)], stdout=io.StringIO(),
                      stderr=err)
    assert (rc, err.getvalue()) == (2, "heatmap: --svg would overwrite the --replay file\n")
    assert len(rec.read_text().splitlines()) == 4
    new = tmp_path / "new.jsonl"
    rc, _, err, _ = run(tmp_path, "4242", "--record", str(new), "--svg",
                        str(tmp_path / "." / "new.jsonl"))
    assert (rc, err) == (2, "heatmap: --svg would overwrite the --record file\n")


@contextlib.contextmanager
def replay_on_pty(rec, rows: int, cols: int):
    """heatmap.py --replay REC --speed 0 on a pseudo-terminal of rows x cols; yields
    (process, master fd) and kills and closes whatever is left."""
    master, slave = os.openpty()
    set_winsize(slave, rows, cols)
    env = terminal_env()
    proc = subprocess.Popen([sys.executable, str(HEATMAP), "--replay", str(rec), "--speed", "0"],
                            stdin=slave, stdout=slave, stderr=subprocess.PIPE, env=env)
    try:
        yield proc, master
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)


def screen_and_after(master, proc) -> tuple[bytes, str]:
    """What a replay on the pty drew on the alternate screen, and what it left on the
    terminal's own screen once it ended by itself."""
    out = read_until(master, b"\x1b[?1049l")
    assert proc.wait(timeout=20) == 0
    while select.select([master], [], [], 0.5)[0]:
        out += os.read(master, 65536)
    screen, _, after = out.partition(b"\x1b[?1049l")
    return screen, after.decode(errors="replace").lstrip("\r\n")


def test_replay_on_a_terminal_ends_by_itself_and_leaves_its_last_frame(tmp_path):
    """A script that replays on a terminal is not left waiting for q: the replay ends
    with its data, and its last frame stays on the terminal's own screen."""
    rec = tmp_path / "short.jsonl"
    write_recording(rec, 3)
    with replay_on_pty(rec, 24, 80) as (proc, master):
        screen, after = screen_and_after(master, proc)
        assert screen.startswith(b"\x1b[?1049h") and b"#3 " in screen
        assert after.startswith("heatmap pid 77 (synthetic)") and "#3 " in after
        assert "keys:" not in after  # no keys to press any more
        err = proc.stderr.read().decode()
        assert "3 intervals" in err and "(end of recording)" in err and "Traceback" not in err


def test_unsized_terminal_gets_classic_size_frames(tmp_path):
    rec = tmp_path / "short.jsonl"
    write_recording(rec, 2)
    with replay_on_pty(rec, 0, 0) as (proc, master):
        screen, after = screen_and_after(master, proc)
        assert b"heatmap pid 77 (synthetic)" in screen and b"[heap]" in screen
        assert "[heap]" in after
