"""heatmap.py's four sources in the QEMU guest, against one workload with known bands
(bench/bands.py: hot, warm, cool and cold mappings of 4 KiB pages and of THPs):
mglru and idle count every band exactly and agree region by region (run one after the
other on the same process: both clear accessed bits), DAMON orders the bands it can
see, refs gives each mapping's share; every source's recording replays with its
legend; every source marks the regions huge pages back, takes a thread id for its
process and keeps the partial interval of a run stopped by a signal; DAMON's kdamond is
gone after every way a run ends, a kdamond a killed run left is stopped by the next run,
and someone else's kdamond is never touched."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bandsload import Bands
from heatmap_fakes import end_of_run, json_intervals

from bpfc import REPO
from kernelstate import kernel_ids, leftovers

pytestmark = pytest.mark.skipif(os.environ.get("HEATMAP_IN_GUEST") != "1",
                                reason="runs inside the test guest only")

HEATMAP = REPO / "heatmap.py"
PAGES = 512  # per 2 MiB region
KDAMONDS = Path("/sys/kernel/mm/damon/admin/kdamonds")
RECORD = Path("/run/heatmap-damon/damon.json")
SOURCES = ("mglru", "idle", "damon", "refs")
INTERVALS = 4


def heatmap(*args, timeout=300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HEATMAP), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, **kw)


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HEATMAP), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO)


@pytest.fixture(scope="module")
def bands():
    with Bands(regions=16) as w:
        yield w


@pytest.fixture(scope="module")
def runs(bands, tmp_path_factory):
    """Each source's run on the bands, one after the other: {source: (intervals, rec)}."""
    d = tmp_path_factory.mktemp("runs")
    out = {}
    for source in SOURCES:
        rec = d / f"{source}.jsonl"
        r = heatmap(bands.pid, "--source", source, "--json", "--count", INTERVALS,
                    "--interval", 1, "--record", rec)
        assert r.returncode == 0, f"{source}: {r.stderr}"
        out[source] = (json_intervals(r.stdout), rec)
    return out


def accessed(interval: dict) -> dict[int, int]:
    return {reg["start"]: reg["accessed"] for reg in interval["regions"]}


def band_mean(bands, runs, source: str, band: str) -> float:
    """The band's measured share over the run's intervals after the first."""
    ivs = runs[source][0][1:]
    regions = bands.bands[band]["regions"]
    return sum(accessed(iv).get(a, 0) for iv in ivs for a, _ in regions) / (
        PAGES * len(regions) * len(ivs))


def test_the_thp_bands_are_huge_pages(bands):
    assert bands.thp_backed()


@pytest.mark.parametrize("source", ["mglru", "idle"])
def test_mglru_and_idle_count_every_band_exactly(bands, runs, source):
    for iv in runs[source][0]:
        assert iv["source"] == source
        got = accessed(iv)
        for band in bands.bands.values():
            for addr, share in band["regions"]:
                assert got.get(addr, 0) == round(share * PAGES), (band["name"], addr)


def test_idle_and_mglru_agree_per_region_and_node(bands, runs):
    mine = set(bands.truth())
    for mg, idle in zip(runs["mglru"][0], runs["idle"][0]):
        a = {r["start"]: (r["accessed"], r["anon"], r["file"], r["node"], r["nodes"])
             for r in mg["regions"] if r["start"] in mine}
        b = {r["start"]: (r["accessed"], r["anon"], r["file"], r["node"], r["nodes"])
             for r in idle["regions"] if r["start"] in mine}
        assert a == b


def test_damon_orders_the_bands_it_can_see(bands, runs):
    """On THPs DAMON orders all four bands.  On 4 KiB pages it only tells cold from the
    rest here: DAMON clears accessed bits without flushing the TLB, and QEMU's software
    TLB keeps a hot page's entry (with its accessed bit set) while a CPU idles, so most
    of DAMON's samples of hot and warm 4 KiB pages find them unaccessed."""
    thp = [band_mean(bands, runs, "damon", f"thp-{b}") for b in ("hot", "warm", "cool", "cold")]
    assert thp[0] > thp[1] > thp[2] > thp[3] == 0, thp
    small = [band_mean(bands, runs, "damon", f"4k-{b}") for b in ("hot", "warm", "cool")]
    assert min(small) > band_mean(bands, runs, "damon", "4k-cold"), small
    for iv in runs["damon"][0]:
        assert iv["source"] == "damon"
        assert all(r["node"] is None and r["anon"] is None for r in iv["regions"])


def test_refs_gives_each_mappings_share(bands, runs):
    for band in bands.bands.values():
        got = band_mean(bands, runs, "refs", band["name"])
        assert abs(got - band["share"]) <= 0.05, (band["name"], got, band["share"])


@pytest.mark.parametrize("source,heading", [
    ("mglru", "% of the row's pages found young"),
    ("idle", "% of the row's pages found accessed"),
    ("damon", "% of DAMON's samples that found the row accessed"),
    ("refs", "% of the mapping's resident pages referenced"),
])
def test_each_sources_recording_replays_with_its_legend(runs, source, heading):
    rec = runs[source][1]
    header = json.loads(rec.read_text().splitlines()[0])
    assert (header["source"], header["auto"]) == (source, False)
    r = heatmap("--replay", rec, env=dict(os.environ, COLUMNS="100", LINES="30"))
    assert r.returncode == 0, r.stderr
    last = r.stdout.rstrip("\n").split("\n\n")[-1]
    assert f"via {source}" in last and heading in last
    assert f"{INTERVALS} intervals" in r.stderr


def band_of(bands, addr: int):
    return next((b for b in bands.bands.values() if b["start"] <= addr < b["end"]), None)


@pytest.mark.parametrize("source", SOURCES)
def test_regions_backed_by_huge_pages_are_marked(bands, runs, source):
    """A THP is young as a whole when any byte of it is touched: every region of the
    THP bands says how many of its pages huge pages back, the 4 KiB bands none."""
    seen = set()
    for iv in runs[source][0]:
        for reg in iv["regions"]:
            band = band_of(bands, reg["start"])
            if band is not None:
                seen.add(band["thp"])
                assert reg["huge"] == (PAGES if band["thp"] else 0), (band["name"], reg)
    assert seen == {True, False}


def test_rows_backed_by_huge_pages_are_marked_in_frames_and_svg(bands, runs, tmp_path):
    rec = runs["mglru"][1]
    r = heatmap("--replay", rec, env=dict(os.environ, COLUMNS="120", LINES="60"))
    assert r.returncode == 0, r.stderr
    frame = r.stdout.rstrip("\n").split("\n\n")[-1]
    marks = {}
    for line in frame.splitlines():
        head = line.split(" ", 1)[0]
        try:
            band = band_of(bands, int(head, 16))
        except ValueError:
            continue
        if band is not None:
            marks.setdefault(band["thp"], set()).add(line[heatmap_label_width(frame)])
    assert marks == {True: {"H"}, False: {"|"}}, marks
    assert "H huge pages back the row" in frame
    svg = tmp_path / "run.svg"
    r = heatmap("--replay", rec, "--svg", svg)
    assert r.returncode == 0, r.stderr
    text = svg.read_text()
    assert text.count('class="huge"') >= len([b for b in bands.bands.values() if b["thp"]])
    assert "huge pages back the row" in text


def heatmap_label_width(frame: str) -> int:
    """Where a frame's rows have their separator: the axis line's '+' (the only line
    that starts with spaces)."""
    axis = next(ln for ln in frame.splitlines() if re.match(r" +\+", ln))
    return axis.index("+")


# a process whose second thread touches 4 MiB of 4 KiB pages; prints that thread's id,
# its process id and the hot range's start; ends when stdin closes
THREADED = r"""
import ctypes, mmap, os, sys, threading, time
m = mmap.mmap(-1, 6 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
base = ctypes.addressof(ctypes.c_char.from_buffer(m))
hot = base + (-base) % (2 << 20)
ctypes.CDLL(None).madvise(ctypes.c_void_p(hot), ctypes.c_size_t(4 << 20), 15)
view, lo = memoryview(m), hot - base
tid, ready = [0], threading.Event()
def toucher():
    tid[0] = threading.get_native_id()
    ready.set()
    while True:
        view[lo:lo + (4 << 20):4096] = b"\1" * 1024
        time.sleep(0.02)
threading.Thread(target=toucher, daemon=True).start()
ready.wait()
print(tid[0], os.getpid(), hot, flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def threaded():
    p = subprocess.Popen([sys.executable, "-c", THREADED], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        tid, tgid, hot = map(int, p.stdout.readline().split())
        yield tid, tgid, hot
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("source", SOURCES)
def test_a_thread_id_watches_its_process(threaded, source):
    tid, tgid, hot = threaded
    assert tid != tgid
    r = heatmap(tid, "--source", source, "--json", "--count", 2, "--interval", 1)
    assert r.returncode == 0, r.stderr
    comm = Path(f"/proc/{tgid}/comm").read_text().strip()
    assert r.stderr.splitlines()[0] == (f"heatmap: {tid} is a thread of process {tgid} "
                                        f"({comm}): watching the process"), r.stderr
    intervals = json_intervals(r.stdout)
    assert [iv["pid"] for iv in intervals] == [tgid, tgid]
    young = sum(a for start, a in accessed(intervals[-1]).items()
                if hot <= start < hot + (4 << 20))
    if source in ("mglru", "idle"):
        assert young == 2 * PAGES
    elif source == "refs":
        assert young > 0
    # (DAMON misses most accesses to hot 4 KiB pages under QEMU: README, sources)


@pytest.mark.parametrize("source", SOURCES)
def test_a_stopped_run_keeps_its_partial_interval(bands, source, tmp_path):
    """SIGTERM 7 s into a 30 s interval: those 7 s are drained, written as an interval
    marked partial (JSON and recording) and replayed as such."""
    rec = tmp_path / "run.jsonl"
    p = start(bands.pid, "--source", source, "--json", "--interval", 30, "--record", rec)
    try:
        deadline = time.monotonic() + 120
        while not (rec.exists() and rec.read_text().count("\n") >= 1):  # the header:
            assert p.poll() is None and time.monotonic() < deadline, p.stderr.read()
            time.sleep(0.1)  # written when the first interval starts
        time.sleep(7)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0 and "Traceback" not in err, err
    (iv,) = json_intervals(out)
    assert iv["partial"] is True and 7 <= iv["t"] < 30, iv["t"]
    hot = [accessed(iv).get(a, 0) for a, _ in bands.bands["thp-hot"]["regions"]]
    if source in ("mglru", "idle"):
        assert hot == [PAGES] * len(hot)
    else:
        assert min(hot) > 0, hot
    assert "the last one partial" in end_of_run(err), err
    recorded = [json.loads(ln) for ln in rec.read_text().splitlines()]
    assert [o.get("partial") for o in recorded if o["type"] == "interval"] == [True]
    r = heatmap("--replay", rec, "--json")
    assert r.returncode == 0 and json_intervals(r.stdout)[0]["partial"] is True, r.stderr


def test_auto_takes_mglru_on_the_patched_kernel(bands):
    r = heatmap(bands.pid, "--json", "--count", 1, "--interval", 1)
    assert r.returncode == 0, r.stderr
    assert json_intervals(r.stdout)[0]["source"] == "mglru"


# --- DAMON's kdamond: every way a run ends ------------------------------------------------


def damon_state() -> tuple:
    return int((KDAMONDS / "nr_kdamonds").read_text()), RECORD.exists()


def assert_clean(before, what: str) -> None:
    assert damon_state() == (0, False), f"DAMON state left behind after {what}"
    assert not leftovers(before), f"BPF objects left behind after {what}"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("source", SOURCES)
def test_a_signal_leaves_nothing(bands, source, sig):
    before = kernel_ids()
    p = start(bands.pid, "--source", source, "--json", "--interval", 1)
    assert p.stdout.readline(), p.stderr.read()
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0 and "Traceback" not in err, err
    assert_clean(before, f"{sig.name} ({source})")


def test_damon_target_exit_leaves_nothing():
    before = kernel_ids()
    w = Bands(regions=1)
    p = start(w.pid, "--source", "damon", "--json", "--interval", 1, "--count", 100)
    try:
        assert p.stdout.readline()
        w.close()
        rest, err = p.communicate(timeout=120)
    finally:
        w.close()
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0 and "target exited" in err, err
    assert_clean(before, "the target's exit")


def test_damon_closed_stdout_leaves_nothing(bands):
    before = kernel_ids()
    r = subprocess.run(f"{sys.executable} heatmap.py {bands.pid} --source damon --json "
                       f"--interval 1 | head -c 10", shell=True, capture_output=True,
                       text=True, cwd=REPO, timeout=300)
    assert len(r.stdout) == 10 and "output closed" in r.stderr, r.stderr
    assert_clean(before, "a closed stdout")


def test_damon_error_mid_run_leaves_nothing(bands):
    before = kernel_ids()
    r = heatmap(bands.pid, "--source", "damon", "--count", 3, "--interval", 1,
                "--record", "/dev/full")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "cannot write /dev/full" in r.stderr
    assert_clean(before, "an error")


def test_a_kdamond_a_killed_run_left_is_stopped_by_the_next(bands):
    before = kernel_ids()
    p = start(bands.pid, "--source", "damon", "--json", "--interval", 1)
    assert p.stdout.readline()
    kdamond = int((KDAMONDS / "0" / "pid").read_text())
    p.kill()  # no clean-up possible
    p.communicate(timeout=60)
    assert damon_state() == (1, True)
    assert (KDAMONDS / "0" / "state").read_text().strip() == "on"
    r = heatmap(bands.pid, "--source", "damon", "--count", 1, "--interval", 1)
    assert r.returncode == 0, r.stderr
    note = r.stderr.splitlines()[0]
    assert note == (f"heatmap: stopped the kdamond (pid {kdamond}) that an earlier heatmap "
                    f"run (pid {p.pid}, watching pid {bands.pid}) left behind")
    assert_clean(before, "the second run")


def test_someone_elses_kdamond_is_left_alone(bands):
    theirs = {"nr_contexts": "1", "operations": "vaddr", "pid_target": str(bands.pid)}
    (KDAMONDS / "nr_kdamonds").write_text("1")
    k = KDAMONDS / "0"
    try:
        (k / "contexts" / "nr_contexts").write_text(theirs["nr_contexts"])
        ctx = k / "contexts" / "0"
        (ctx / "operations").write_text(theirs["operations"])
        (ctx / "targets" / "nr_targets").write_text("1")
        (ctx / "targets" / "0" / "pid_target").write_text(theirs["pid_target"])
        (k / "state").write_text("on")
        kdamond = (k / "pid").read_text()
        r = heatmap(bands.pid, "--source", "damon", "--count", 1, "--interval", 1)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
        assert "DAMON is in use by another program (kdamond 0 on vaddr" in r.stderr
        assert "sources available here: mglru, idle, refs" in r.stderr
        # untouched: still running, same thread, same settings, no record of ours
        assert (k / "state").read_text().strip() == "on" and (k / "pid").read_text() == kdamond
        assert (ctx / "targets" / "0" / "pid_target").read_text().strip() == str(bands.pid)
        assert not RECORD.exists()
        time.sleep(0.1)
    finally:
        (k / "state").write_text("off")
        (KDAMONDS / "nr_kdamonds").write_text("0")
