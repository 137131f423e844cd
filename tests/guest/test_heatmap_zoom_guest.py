"""heatmap.py zoom and symbols in the QEMU guest on the patched kernel: the symbols of a
program whose hot function and hot array are known, and a zoom into a row with a finer
region size that finds a hot band's exact edges (mglru source)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import pytest
import targets
from heatmap_fakes import json_intervals

from bpfc import REPO
from kernelstate import kernel_ids, leftovers

sys.path.insert(0, str(REPO))
import heatmap  # noqa: E402

pytestmark = pytest.mark.skipif(os.environ.get("HEATMAP_IN_GUEST") != "1",
                                reason="runs inside the test guest only")

PAGE = 4096


def run_heatmap(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "heatmap.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.fixture
def hotsym(tmp_path):
    """tests/targets/hotsym, compiled here (the checkout is read-only in the guest) and
    running."""
    running = targets.HotSym(targets.compile_program("hotsym", tmp_path / "hotsym"))
    yield running
    running.close()


def test_symbols_of_the_hot_function_and_array(hotsym):
    where = hotsym.where
    r = run_heatmap(hotsym.pid, "--json", "--count", 2, "--interval", 1, "--region-size", "4K",
                    "--mapping", "hotsym", "--source", "mglru")
    assert r.returncode == 0, r.stderr
    intervals = json_intervals(r.stdout)
    assert len(intervals) == 2
    for iv in intervals:
        young = {x["start"]: x for x in iv["regions"]}
        for name, size in (("hot_code", 64 << 10), ("hot_table", 4 << 20)):
            for page in range(where[name], where[name] + size, PAGE):
                assert young[page]["symbols"][0] == name, (name, hex(page), young.get(page))
        named = {s for x in iv["regions"] for s in x.get("symbols", ())}
        assert "hot_code" in named and "hot_table" in named
        assert not named & {"cold_code", "cold_table"}, named
        for x in iv["regions"]:  # nothing outside the program's own file
            assert x["mapping"] == "hotsym", x


# 4 MiB of 4 KiB pages, 2 MiB aligned; pages HOT_LO..HOT_HI-1 of the first 2 MiB are
# rewritten every 50 ms, the rest is touched once.  Exits by itself after argv[1] s.
HOT_LO, HOT_HI = 100, 300
BAND = f"""
import ctypes, mmap, sys, time
libc = ctypes.CDLL(None)
m = mmap.mmap(-1, 3 << 21, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
base = ctypes.addressof(ctypes.c_char.from_buffer(m))
off = (-base) % (2 << 20)
libc.madvise(ctypes.c_void_p(base + off), ctypes.c_size_t(2 << 21), 15)  # NOHUGEPAGE
view = memoryview(m)
view[off:off + (2 << 21):4096] = b"\\1" * 1024
print(base + off, flush=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    view[off + {HOT_LO} * 4096:off + {HOT_HI} * 4096:4096] = b"\\2" * {HOT_HI - HOT_LO}
    time.sleep(0.05)
"""


def young_pages(sample) -> set[int]:
    return {region for region, _node, anon, file in sample.counts if anon + file}


@contextlib.contextmanager
def band_watched():
    """BAND running, a mglru LiveSource on its 4 MiB (not opened yet); (its first 2
    MiB, the source).  Afterwards: BAND stopped, no BPF object left."""
    before = kernel_ids()
    proc = subprocess.Popen([sys.executable, "-c", BAND, "120"], stdout=subprocess.PIPE,
                            text=True)
    base = int(proc.stdout.readline())
    source = heatmap.LiveSource(proc.pid, 21, 1.0, heatmap.SourceChoice("mglru"), "/proc",
                                time.monotonic, scope=heatmap.Scope(base, base + (4 << 20)))
    try:
        yield (base, base + (2 << 20)), source
    finally:
        source.close()
        proc.kill()
        proc.wait()
    assert not leftovers(before), "the zoom left BPF objects in the kernel"


def test_zoom_to_pages_finds_the_hot_bands_exact_edges():
    with band_watched() as (window, source):
        base = window[0]
        source.open()
        time.sleep(1)
        coarse = source.take()
        # at 2 MiB the band is a share of one region: its edges are not to be seen
        assert young_pages(coarse) == {base >> 21}
        assert sum(a + f for _r, _n, a, f in coarse.counts) == HOT_HI - HOT_LO
        # zoom into the first 2 MiB with a row per page: the region size follows
        source.zoom(*window, 512)
        assert source.shift == 12 and source.header["zoom"] == 1
        assert source.header["range"] == list(window)
        time.sleep(1)
        fine = source.take()
        page0 = base >> 12
        assert young_pages(fine) == set(range(page0 + HOT_LO, page0 + HOT_HI))
        assert [(m.start, m.end) for m in fine.maps] == [window]
        # the rows of the zoomed view: the band's rows hot, the others blank
        model = heatmap.Model(source.header)
        model.add(fine)
        rows = model.rows_for(16)  # 32 pages a row: the band is rows 3..9, partly 3 and 9
        cells = model.cells(model.columns[-1], rows)[0]
        assert [r for r in range(rows.n) if cells[r]] == list(range(3, 10))
        assert cells[3] == 128 - HOT_LO and cells[9] == HOT_HI - 288
        assert all(cells[r] == 32 for r in range(4, 9))
        # and back out: 2 MiB regions again, the whole scope
        assert source.unzoom() and source.shift == 21 and source.header["zoom"] == 0
        time.sleep(1)
        back = source.take()
        assert young_pages(back) == {base >> 21}
        assert [(m.start, m.end) for m in back.maps] == [(base, base + (4 << 20))]


def test_a_recorded_zoom_replays_the_bands_exact_edges(tmp_path):
    """The recording path with the mglru source: the zoom reaches the recording (a
    zoom record, the zoomed maps, counts at 4 KiB) and its replay's JSON has the band's
    exact pages, between intervals at 2 MiB."""
    rec = tmp_path / "zoomed.jsonl.gz"
    recorder = heatmap.Recorder(str(rec))
    with band_watched() as (window, source), contextlib.closing(recorder):
        base = window[0]
        source.open()
        recorder.start(dict(source.header, version=heatmap.RECORD_VERSION_ZOOM))
        for step in ("coarse", "zoom", "unzoom"):
            if step == "zoom":
                source.zoom(*window, 512)
            elif step == "unzoom":
                assert source.unzoom()
            time.sleep(1)
            recorder.write(source.take())
    r = run_heatmap("--replay", rec, "--json")
    assert r.returncode == 0, r.stderr
    coarse, fine, back = json_intervals(r.stdout)
    for iv in (coarse, back):
        assert iv["region_size"] == 2 << 20 and "zoom" not in iv
        assert [(x["start"], x["accessed"]) for x in iv["regions"]] == [(base, HOT_HI - HOT_LO)]
    assert fine["region_size"] == PAGE
    assert fine["zoom"] == {"level": 1, "start": window[0], "end": window[1]}
    assert [x["start"] for x in fine["regions"]] == [base + p * PAGE
                                                     for p in range(HOT_LO, HOT_HI)]
    assert all(x["accessed"] == 1 and x["pages"] == 1 for x in fine["regions"])


def test_zoom_into_one_of_two_processes_finds_its_bands_exact_edges():
    """Two processes, each with the band: a zoom into the second's first 2 MiB reloads
    the BPF object for it alone at 4 KiB regions (its band's exact pages, in its slot),
    back out both are watched at 2 MiB; zoomed in again, it is killed: the run zooms
    back out to the first, and nothing is left in the kernel."""
    before = kernel_ids()
    procs = [subprocess.Popen([sys.executable, "-c", BAND, "120"], stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    bases = [int(p.stdout.readline()) for p in procs]
    slot1 = 1 << heatmap.TARGET_BITS
    window = (slot1 + bases[1], slot1 + bases[1] + (2 << 20))
    source = heatmap.ProcessSetSource(heatmap.ProcessSet([p.pid for p in procs]), 21, 1.0,
                                      heatmap.SourceChoice("mglru"), "/proc", time.monotonic)
    try:
        source.open()
        time.sleep(1)
        whole = source.take()
        both = {bases[0] >> 21, window[0] >> 21}
        assert both <= young_pages(whole)
        source.zoom(*window, 512)
        assert source.shift == 12 and source.header["range"] == list(window)
        time.sleep(1)
        fine = source.take()
        page0 = window[0] >> 12
        assert young_pages(fine) == set(range(page0 + HOT_LO, page0 + HOT_HI))
        assert [(m.start, m.end) for m in fine.maps] == [window]
        assert source.unzoom() and source.shift == 21 and source.header["zoom"] == 0
        time.sleep(1)
        assert both <= young_pages(source.take())
        # zoomed in again, the zoomed process exits: back out, the other watched on
        source.zoom(*window, 512)
        procs[1].kill()
        procs[1].wait()
        time.sleep(1)
        source.take()  # (the interval it exited in)
        time.sleep(1)
        back = source.take()
        assert back.zoom == {"zoom": 0, "region_shift": 21} and source.shift == 21
        assert list(source.targets) == [0]
        time.sleep(1)
        after = young_pages(source.take())
        assert bases[0] >> 21 in after and not any(r >> (57 - 21) for r in after)
    finally:
        source.close()
        stop = [p for p in procs if p.poll() is None]
        for p in stop:
            p.kill()
            p.wait()
    assert not leftovers(before), "the zoom left BPF objects in the kernel"
