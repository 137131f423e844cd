"""heatmap.py end to end in the QEMU guest on the patched kernel: a workload with one
known hot address range, the tool's JSON output, exit paths, leftovers and every error
a user can cause."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from heatmap_fakes import end_of_run, json_intervals

from bpfc import REPO
from kernelstate import kernel_ids, leftovers

sys.path.insert(0, str(REPO))
import heatmap  # noqa: E402

pytestmark = pytest.mark.skipif(os.environ.get("HEATMAP_IN_GUEST") != "1",
                                reason="runs inside the test guest only")

REGION = 2 << 20
PAGES = REGION // 4096
LRU_GEN_ENABLED = "/sys/kernel/mm/lru_gen/enabled"

# 32 MiB of 4 KiB pages; regions HOT_FIRST..HOT_LAST are rewritten every 50 ms, the
# rest is touched once. Exits by itself after argv[1] seconds.
WORKER = r"""
import ctypes, mmap, sys, time
libc = ctypes.CDLL(None)
n, hot = 16, range(4, 8)
m = mmap.mmap(-1, (n + 1) * (2 << 20), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
base = ctypes.addressof(ctypes.c_char.from_buffer(m))
off = (-base) % (2 << 20)
libc.madvise(ctypes.c_void_p(base + off), ctypes.c_size_t(n << 21), 15)  # NOHUGEPAGE
view = memoryview(m)
def touch(regions):
    for r in regions:
        lo = off + (r << 21)
        view[lo:lo + (2 << 20):4096] = b"\1" * 512
touch(range(n))
print(base + off, flush=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    touch(hot)
    time.sleep(0.05)
"""


ADDR_NO_RANDOMIZE = 0x0040000  # personality(2): no ASLR


def _no_aslr() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).personality(ADDR_NO_RANDOMIZE)


class Worker:
    def __init__(self, seconds: float = 120, *, aslr: bool = True):
        """aslr=False: the same layout in every such worker (same addresses)."""
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, str(seconds)],
                                     stdout=subprocess.PIPE, text=True,
                                     preexec_fn=None if aslr else _no_aslr)
        self.base = int(self.proc.stdout.readline())
        self.pid = self.proc.pid

    def region(self, i: int) -> int:
        return self.base + i * REGION

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def worker():
    w = Worker()
    yield w
    w.close()


def run_heatmap(*args, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "heatmap.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, **kw)


def by_start(interval: dict) -> dict[int, dict]:
    return {r["start"]: r for r in interval["regions"]}


def test_hot_range_is_hottest_and_the_rest_near_zero(worker):
    before = kernel_ids()
    r = run_heatmap(worker.pid, "--json", "--count", 3, "--interval", 1)
    assert r.returncode == 0, r.stderr
    intervals = json_intervals(r.stdout)
    assert len(intervals) == 3
    hot = {worker.region(i) for i in range(4, 8)}
    cold = {worker.region(i) for i in range(16)} - hot
    for iv in intervals:
        assert iv["pid"] == worker.pid and iv["region_size"] == REGION
        regions = by_start(iv)
        for start in hot:  # every page rewritten many times per interval
            assert regions[start]["accessed"] == PAGES, regions.get(start)
            assert regions[start]["anon"] == PAGES and regions[start]["file"] == 0
        for start in cold:  # touched once, before the run
            assert regions.get(start, {"accessed": 0})["accessed"] <= PAGES // 50
        hottest = sorted(iv["regions"], key=lambda x: -x["accessed"])[:len(hot)]
        assert {x["start"] for x in hottest} == hot
    assert "3 intervals" in r.stderr
    assert not leftovers(before), "heatmap left BPF objects in the kernel"


def test_region_size_option_splits_counts(worker):
    r = run_heatmap(worker.pid, "--json", "--count", 1, "--interval", 1,
                    "--region-size", "64K")
    assert r.returncode == 0, r.stderr
    regions = by_start(json.loads(r.stdout.splitlines()[0]))
    first_hot = worker.region(4)
    for i in range(REGION // (64 << 10)):  # a hot 2 MiB region is 32 hot 64 KiB ones
        assert regions[first_hot + i * (64 << 10)]["accessed"] == 16


def test_target_exiting_mid_run_ends_cleanly():
    w = Worker()
    before = kernel_ids()
    p = subprocess.Popen([sys.executable, str(REPO / "heatmap.py"), str(w.pid), "--json",
                          "--count", "100", "--interval", "1"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        first = p.stdout.readline()  # the run is under way
        w.close()  # the target exits mid-run
        rest, err = p.communicate(timeout=120)
    finally:
        w.close()
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert "Traceback" not in err
    summary = end_of_run(err)
    assert summary.startswith("heatmap: ") and "exited" in summary
    assert json.loads(first)["pid"] == w.pid
    assert len(rest.splitlines()) < 99
    assert not leftovers(before)


def test_interrupt_and_terminate_leave_nothing(worker):
    for sig in (signal.SIGINT, signal.SIGTERM):
        before = kernel_ids()
        p = subprocess.Popen([sys.executable, str(REPO / "heatmap.py"), str(worker.pid),
                              "--json", "--interval", "1"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=REPO)
        p.stdout.readline()  # one interval is out: everything is attached
        p.send_signal(sig)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "Traceback" not in err and err.strip().startswith("heatmap: ")
        assert not leftovers(before), f"left behind after {sig.name}"


def test_closed_stdout_ends_cleanly(worker):
    before = kernel_ids()
    p = subprocess.run(f"{sys.executable} heatmap.py {worker.pid} --json --interval 1 "
                       f"| head -c 10", shell=True, capture_output=True, text=True,
                       cwd=REPO, timeout=300)
    assert len(p.stdout) == 10
    assert "Traceback" not in p.stderr and "output closed" in p.stderr
    assert not leftovers(before)


# --- errors a user can cause ------------------------------------------------------------


def test_no_such_process():
    r = run_heatmap(999999, "--count", 1)
    assert r.returncode == 1
    assert r.stderr.strip() == "heatmap: no such process: 999999"


def test_not_permitted_names_the_capabilities(worker):
    # root without capabilities, as an unprivileged user would be
    r = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-all", sys.executable,
                        str(REPO / "heatmap.py"), str(worker.pid), "--count", "1",
                        "--source", "mglru"],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 1
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and "not permitted" in line
    for cap in ("CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN"):
        assert cap in line


def test_without_pyelftools_one_line_says_what_to_install(worker, tmp_path):
    # a Python with the standard library only, and no parsed-object cache to fall back on
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "v")],
                   check=True)
    python = str(tmp_path / "v" / "bin" / "python")
    env = dict(os.environ, BPFLOAD_CACHE="off")
    r = subprocess.run([python, str(REPO / "heatmap.py"), str(worker.pid), "--count", "1"],
                       capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1, r.stderr
    assert "needs pyelftools" in line and f"{python} -m pip install pyelftools" in line


@pytest.fixture
def lru_gen_caps():
    saved = Path(LRU_GEN_ENABLED).read_text().strip()
    yield
    Path(LRU_GEN_ENABLED).write_text(saved)


def test_mglru_off_says_how_to_enable_it(worker, lru_gen_caps):
    Path(LRU_GEN_ENABLED).write_text("n")
    r = run_heatmap(worker.pid, "--count", 1, "--source", "mglru")
    assert r.returncode == 1
    assert "the multi-gen LRU is disabled" in r.stderr
    assert "echo y > /sys/kernel/mm/lru_gen/enabled" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_the_scan_needs_no_aging_walk(worker, lru_gen_caps):
    """MGLRU's own page-table walk (0x0002) only decides how reclaim ages: with it off
    the scan still walks the target and the counts are exact."""
    Path(LRU_GEN_ENABLED).write_text("0x0005")
    r = run_heatmap(worker.pid, "--json", "--count", 2, "--interval", 1, "--source", "mglru")
    assert r.returncode == 0, r.stderr
    for iv in json_intervals(r.stdout):
        regions = by_start(iv)
        for i in range(4, 8):
            assert regions[worker.region(i)]["accessed"] == PAGES


def _main(monkeypatch, *argv) -> tuple[int, str]:
    err = io.StringIO()
    rc = heatmap.main([str(a) for a in argv], stdout=io.StringIO(), stderr=err)
    return rc, err.getvalue().strip()


def test_kernel_without_the_series(worker, monkeypatch, bpf_object):
    import bpfload.btf.kernel as kbtf

    # a BTF that lacks the series' interface: any object's own BTF will do
    monkeypatch.setattr(kbtf, "VMLINUX", str(bpf_object("attach")))
    rc, err = _main(monkeypatch, worker.pid, "--count", 1, "--source", "mglru")
    assert rc == 1
    assert "the lru_gen_young_tp tracepoint" in err and "kernel/patches" in err


def test_kernel_without_btf(worker, monkeypatch):
    import bpfload.btf.kernel as kbtf

    monkeypatch.setattr(kbtf, "VMLINUX", "/sys/kernel/btf/no-such-vmlinux")
    rc, err = _main(monkeypatch, worker.pid, "--count", 1, "--source", "mglru")
    assert rc == 1 and "the kernel has no BTF" in err and "CONFIG_DEBUG_INFO_BTF" in err


def test_map_resize_keeps_counting(worker):
    """A resize reloads the programs with a bigger map: counts the old map held but
    nobody drained yet come back from the next drain, and the old object is gone."""
    before = kernel_ids()
    hot = worker.region(4) >> 21
    counts = heatmap.KernelCounts(worker.pid, 21, 8)
    try:
        small = counts.capacity
        counts.age()
        counts.drain()  # the first pass reports everything ever touched
        time.sleep(0.3)
        counts.age()  # counted in the small map, not drained: the resize carries it
        counts.resize(50_000)
        assert counts.capacity > small
        carried = {r: a for r, _n, a, _f in counts.drain()}
        assert carried.get(hot) == PAGES
        time.sleep(0.3)
        counts.age()
        young = {r: a for r, _n, a, _f in counts.drain()}
        assert young.get(hot) == PAGES
        assert counts.dropped() == 0
    finally:
        counts.close()
    assert not leftovers(before), "KernelCounts.close() or the resize left BPF objects"


def test_two_heatmaps_on_different_processes_both_count():
    """Each run scans its own target only (the kfunc's argument, no global filter), so two
    at once both see exact counts, interval after interval. The two workers have the
    same addresses: a program that counted the other's young pages would double them."""
    workers = [Worker(aslr=False), Worker(aslr=False)]
    assert workers[0].base == workers[1].base, "the workers' layouts differ"
    try:
        runs = [subprocess.Popen([sys.executable, str(REPO / "heatmap.py"), str(w.pid),
                                  "--json", "--count", "4", "--interval", "1",
                                  "--source", "mglru"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 cwd=REPO) for w in workers]
        outs = [run.communicate(timeout=300) for run in runs]
    finally:
        for w in workers:
            w.close()
    for w, run, (out, err) in zip(workers, runs, outs):
        assert run.returncode == 0, err
        intervals = json_intervals(out)
        assert len(intervals) == 4
        for iv in intervals:
            assert iv["pid"] == w.pid
            regions = by_start(iv)
            for i in range(4, 8):
                assert regions[w.region(i)]["accessed"] == PAGES, (w.pid, iv["seq"])


# 4 regions of 4 KiB pages, written whole once per line on stdin ("ok" when done)
ON_COMMAND = r"""
import ctypes, mmap, sys
libc = ctypes.CDLL(None)
m = mmap.mmap(-1, 5 << 21, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
base = ctypes.addressof(ctypes.c_char.from_buffer(m))
off = (-base) % (2 << 20)
libc.madvise(ctypes.c_void_p(base + off), ctypes.c_size_t(4 << 21), 15)  # NOHUGEPAGE
view = memoryview(m)
view[off:off + (4 << 21):4096] = b"\1" * 2048
print(base + off, flush=True)
for _ in sys.stdin:
    view[off:off + (4 << 21):4096] = b"\2" * 2048
    print("ok", flush=True)
"""


def test_two_heatmaps_on_the_same_process_count_each_others_scans():
    """README: on the same process each heatmap counts what either's scans find (both
    programs match its mm on the tracepoint), so a page written before and after the
    other's scan counts twice in one interval, never more."""
    w = subprocess.Popen([sys.executable, "-c", ON_COMMAND], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    base = int(w.stdout.readline()) >> 21
    regions = range(base, base + 4)

    def write_all() -> None:
        w.stdin.write("w\n")
        w.stdin.flush()
        assert w.stdout.readline() == "ok\n"

    def young(counts) -> dict[int, int]:  # anon pages per region, summed over nodes
        found: dict[int, int] = {}
        for region, _node, anon, _file in counts.drain():
            if region in regions:
                found[region] = found.get(region, 0) + anon
        return found

    before = kernel_ids()
    a = heatmap.KernelCounts(w.pid, 21, 64)
    b = heatmap.KernelCounts(w.pid, 21, 64)
    try:
        # each program takes the target's mm from its own scan: both scan once first
        # (and the first scan finds everything ever written)
        a.age()
        b.age()
        a.drain()
        b.drain()
        write_all()
        a.age()  # a's scan: counted by both
        assert young(a) == young(b) == dict.fromkeys(regions, PAGES)
        b.age()  # nothing written since a's scan cleared the bits
        assert young(a) == young(b) == {}
        write_all()
        a.age()
        write_all()
        b.age()  # each page found young twice in the interval, once per scan
        assert young(a) == young(b) == dict.fromkeys(regions, 2 * PAGES)
        assert a.dropped() == b.dropped() == 0
    finally:
        a.close()
        b.close()
        w.kill()
        w.wait()
    assert not leftovers(before), "KernelCounts.close() left BPF objects"


# --- what heatmap says about its target ---------------------------------------------------

# names itself "before-exec", touches 4 MiB, prints its pid; on SIGUSR1 it becomes sleep(1)
EXECS = r"""
import ctypes, mmap, os, signal, time
ctypes.CDLL(None).prctl(15, b"before-exec", 0, 0, 0)  # PR_SET_NAME
m = mmap.mmap(-1, 4 << 20)
m[::4096] = b"\1" * 1024
signal.signal(signal.SIGUSR1, lambda *_: os.execv("/bin/sleep", ["sleep", "600"]))
print(os.getpid(), flush=True)
while True:
    m[::4096] = b"\2" * 1024
    time.sleep(0.05)
"""


def test_the_name_follows_an_exec(tmp_path):
    """Header, JSON comm, recording and SVG title name what the target runs now."""
    w = subprocess.Popen([sys.executable, "-c", EXECS], stdout=subprocess.PIPE, text=True)
    rec, svg = tmp_path / "run.jsonl", tmp_path / "run.svg"
    p = subprocess.Popen([sys.executable, str(REPO / "heatmap.py"), w.stdout.readline().strip(),
                          "--json", "--interval", "1", "--count", "5", "--record", rec,
                          "--svg", svg], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=REPO)
    try:
        first = json.loads(p.stdout.readline())
        os.kill(w.pid, signal.SIGUSR1)
        rest, err = p.communicate(timeout=300)
    finally:
        w.kill()
        w.wait()
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert first["comm"] == "before-exec"
    assert json_intervals(rest)[-1]["comm"] == "sleep"
    assert f"heatmap: pid {w.pid} (sleep)," in svg.read_text()
    r = run_heatmap("--replay", rec, env=dict(os.environ, COLUMNS="100", LINES="30"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip("\n").split("\n\n")[-1].startswith(f"heatmap pid {w.pid} (sleep)")
