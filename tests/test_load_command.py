"""`python -m bpfload load A.o B.o ...` as CI uses it: one process, a line (or a JSON
line) per object, an exit status saying whether all loaded; and `load --attach`,
which prints what programs send through ring and perf buffers, attaches cgroup and
interface programs where it is told, and leaves nothing behind however it ends:
Ctrl-C, SIGTERM, or SIGKILL (links, struct_ops registrations, XDP and tcx
attachments all end with the process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from interrupt import foreground_sigint

from kernelstate import kernel_ids, leftovers

pytestmark = pytest.mark.usefixtures("no_leaks")
ROOT = Path(__file__).resolve().parent.parent


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "bpfload", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_many_objects_one_line_each_and_the_exit_status(bpf_object, tmp_path):
    good = [bpf_object("attach"), bpf_object("map_types"), bpf_object("relocs")]
    r = _cli("load", *good)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:3]] == [["ok", f"{p}:"] for p in good]
    assert lines[3] == "loaded 3 of 3 objects"
    missing = tmp_path / "missing.bpf.o"
    r = _cli("load", good[0], bpf_object("globals"), missing, good[2])
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0].startswith("ok ") and lines[3].startswith("ok ")
    assert lines[1].startswith(f"FAIL  {bpf_object('globals')}: loading program "
                               f"'write_rodata': EACCES")
    assert lines[2].startswith(f"FAIL  {missing}: ") and len(lines) == 5
    assert lines[4] == "loaded 2 of 4 objects"
    assert "Traceback" not in r.stderr


def test_json_lines(bpf_object):
    r = _cli("load", bpf_object("attach"), bpf_object("globals"), "--json")
    assert r.returncode == 1
    first, second, summary = (json.loads(line) for line in r.stdout.splitlines())
    assert first["object"] == str(bpf_object("attach")) and first["loaded"] is True
    assert {p["name"] for p in first["programs"]} == {"count_raw_tp", "count_tp_btf",
                                                      "count_tracepoint"}
    assert all(p["id"] > 0 for p in first["programs"])
    assert {m["name"]: m["type"] for m in first["maps"]}["attach.bss"] == "array"
    assert second["loaded"] is False and "write_rodata" in second["error"]
    assert summary == {"objects": 2, "loaded": 1, "failed": 1}


def test_one_object_keeps_the_full_listing(bpf_object):
    r = _cli("load", bpf_object("attach"))
    assert r.returncode == 0
    assert r.stdout.startswith("map ") and "prog  count_raw_tp" in r.stdout
    assert "loaded 1 of 1" not in r.stdout


class _Running:
    """`python -m bpfload load ARGS` in the background, its output lines read by a
    thread so that waiting for one can time out."""

    def __init__(self, *args):
        import queue
        import threading

        self.proc = subprocess.Popen([sys.executable, "-m", "bpfload", "load",
                                      *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     preexec_fn=foreground_sigint)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, done, timeout: float = 60) -> list[str]:
        """Lines up to the first for which done(line) is true."""
        import queue

        got: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.proc.kill()
                raise AssertionError(f"bpfload said {got}, then nothing more; stderr: "
                                     f"{self.proc.stderr.read()}")
            got.append(line)
            if done(line):
                return got

    def __enter__(self) -> _Running:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:  # a failed test must not leave it running
            self.proc.kill()
            self.proc.wait()

    def stop(self, how=signal.SIGINT) -> tuple[list[str], str]:
        """Send `how`; the remaining lines and stderr once it has exited."""
        self.proc.send_signal(how)
        self.proc.wait(timeout=30)
        rest = []
        while True:
            line = self.lines.get(timeout=10)
            if line is None:
                return rest, self.proc.stderr.read()
            rest.append(line)


def test_attach_prints_what_programs_send(bpf_object):
    seen = 0

    def ten_events(line: str) -> bool:
        nonlocal seen
        seen += line.startswith("event ")
        return seen == 10
    with _Running(bpf_object("events"), "--attach", "--set", f"target_tgid={os.getpid()}",
                  "--program", "ring_on_getppid", "--program", "perf_on_getppid") as run:
        run.until(lambda line: line.startswith("attached 2 program(s)"))
        for cpu in (0, 1, 0, 1, 0):  # samples on every CPU, printed as they come
            os.sched_setaffinity(0, {cpu % os.cpu_count()})
            os.getppid()
        os.sched_setaffinity(0, range(os.cpu_count()))
        lines = run.until(ten_events)
        rest, err = run.stop(signal.SIGINT)
    assert run.proc.returncode == 0, err
    ring = [line for line in lines if line.startswith("event records: ")]
    perf = [line for line in lines if line.startswith("event samples cpu ")]
    # each getppid() sends one record to each: they share seq, 0..9 between them
    seqs = sorted(int.from_bytes(bytes.fromhex(line.split()[-1])[:8], "little")
                  for line in ring + perf)
    assert seqs == list(range(10)) and len(ring) == len(perf) == 5
    assert rest == ["detached"]


def test_attach_json_lines(bpf_object):
    with _Running(bpf_object("events"), "--attach", "--json", "--set",
                  f"target_tgid={os.getpid()}", "--program", "ring_on_getppid") as run:
        lines = run.until(lambda line: '"attached"' in line)
        os.getppid()
        lines += run.until(lambda line: '"event"' in line)
        rest, err = run.stop(signal.SIGTERM)
    assert run.proc.returncode == 0, err
    records = [json.loads(line) for line in lines + rest]
    assert records[0]["loaded"] is True
    assert {"link": {"program": "ring_on_getppid", "kind": "raw_tp", "target": "sys_enter"}} \
        in records
    event = next(r for r in records if "event" in r)
    assert event["event"] == "records" and len(bytes.fromhex(event["data"])) == 16
    assert records[-1] == {"detached": True}


def _congestion_controls() -> list[str]:
    with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as f:
        return f.read().split()


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_every_exit_leaves_nothing_behind(bpf_object, how):
    """Tracing links, struct_ops registrations (links, because `load --attach` makes
    every struct_ops map one), and the perf events of a perf buffer."""
    before = kernel_ids()
    with _Running(bpf_object("struct_ops"), bpf_object("events"), "--attach", "--set",
                  "target_tgid=1") as run:
        run.until(lambda line: line.startswith("attached "))
        assert "bpfload_ca" in _congestion_controls()
        _rest, err = run.stop(how)
    assert run.proc.returncode == (-signal.SIGKILL if how == signal.SIGKILL else 0), err
    assert not leftovers(before)
    assert "bpfload_ca" not in _congestion_controls()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_interface_and_cgroup_attachments_end_with_the_process(bpf_object, veth, cgroup, how):
    """--ifname and --cgroup attach through links (XDP, tcx, cgroup), none of which
    outlives the process: a netlink filter or a BPF_PROG_ATTACH attachment left behind
    would keep its program in the kernel."""
    before = kernel_ids()
    with _Running(bpf_object("net_attach"), "--attach", "--ifname", veth.host,
                  "--cgroup", cgroup) as run:
        lines = run.until(lambda line: line.startswith("attached "))
        kinds = sorted(line.split()[2] for line in lines if line.startswith("link "))
        assert kinds == ["cgroup", "cgroup", "tcx", "tcx", "tcx", "xdp"], lines
        assert veth.xdp_attached()
        _rest, err = run.stop(how)
    assert run.proc.returncode == (-how if how == signal.SIGKILL else 0), err
    assert not veth.xdp_attached()
    assert not leftovers(before)


def test_attach_errors_are_one_line(bpf_object):
    r = _cli("load", bpf_object("net_attach"), "--attach", "--program", "count_xdp",
             "--ifname", "nope0")
    assert (r.returncode, r.stderr) == (1, "bpfload: error: no network interface 'nope0'\n")
    r = _cli("load", bpf_object("net_attach"), "--attach", "--program", "count_sock_create")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "need --cgroup or --ifname" in r.stderr
