"""heatmap.py's counts sources (--source) on this machine's kernel: auto takes refs and
gets each mapping's share right, each source the kernel lacks is one line naming what
is missing and what works instead; the sources' own logic on known inputs; replays
drawn with their source's legend."""

from __future__ import annotations

import array
import io
import json
import os
import random
import subprocess
import sys

import pytest
from bandsload import Bands
from heatmap_fakes import (
    HEATMAP,
    SMALL_MAPS,
    FakeClock,
    exit_target,
    heatmap,
    json_intervals,
    make_factory,
    make_proc,
    maps_line,
    small_script,
)
from hypothesis import given, settings
from hypothesis import strategies as st

EARLIER = ("mglru", "idle", "damon")  # what auto would take before refs


def run_heatmap(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HEATMAP), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def offered_here(name: str, pid: int) -> bool:
    return heatmap.source_class(name).unavailable(pid) is None


# --- on this machine's kernel ------------------------------------------------------------


def test_auto_takes_refs_and_gets_each_mappings_share(tmp_path):
    with Bands(regions=16) as w:
        better = [n for n in EARLIER if offered_here(n, w.pid)]
        if better:
            pytest.skip(f"this kernel offers {better[0]}, which auto takes before refs")
        rec = tmp_path / "run.jsonl"
        r = run_heatmap(w.pid, "--json", "--count", 3, "--interval", 0.5, "--record", rec)
        assert r.returncode == 0, r.stderr
        header = json.loads(rec.read_text().splitlines()[0])
        assert (header["source"], header["auto"]) == ("refs", True)
        intervals = json_intervals(r.stdout)
        assert len(intervals) == 3
        for iv in intervals:
            assert iv["source"] == "refs"
            accessed = {reg["start"]: reg for reg in iv["regions"]}
            for band in w.bands.values():
                got = [accessed.get(a, {"accessed": 0, "pages": 512}) for a, _ in band["regions"]]
                share = sum(g["accessed"] for g in got) / (512 * len(got))
                assert abs(share - band["share"]) <= 0.05, (band["name"], share)
                # per mapping: every region of a mapping has the mapping's share
                assert len({g["accessed"] for g in got}) <= 2, band["name"]
            for reg in iv["regions"]:  # refs cannot tell these
                assert reg["node"] is reg["nodes"] is reg["anon"] is reg["file"] is None
        assert w.bands["4k-hot"]["share"] == 1 and w.bands["4k-cold"]["share"] == 0


@pytest.mark.parametrize("name,names", [
    ("mglru", ("kernel/patches", "CONFIG_DEBUG_INFO_BTF", "CONFIG_LRU_GEN", "lru_gen")),
    ("idle", ("CONFIG_IDLE_PAGE_TRACKING", "CONFIG_PROC_PAGE_MONITOR")),
    ("damon", ("CONFIG_DAMON_VADDR", "CONFIG_DAMON_SYSFS", "in use by another program")),
])
def test_a_source_the_kernel_lacks_is_one_line(name, names):
    with Bands(regions=1) as w:
        if offered_here(name, w.pid):
            pytest.skip(f"this kernel offers the {name} source")
        r = run_heatmap(w.pid, "--source", name, "--count", 1)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    line = r.stderr.strip()
    assert line.startswith("heatmap: ") and any(n in line for n in names), line
    assert line.endswith("sources available here: refs"), line


def test_nothing_available_says_why_for_each(monkeypatch):
    monkeypatch.setattr(heatmap, "INTERFACE", {"no_such_hook": "no_such_hook"})
    monkeypatch.setattr(heatmap, "PAGE_IDLE_BITMAP", "/nonexistent/page_idle/bitmap")
    monkeypatch.setattr(heatmap, "DAMON_KDAMONDS", "/nonexistent/damon/kdamonds")
    monkeypatch.setattr(heatmap, "SOURCES", heatmap.SOURCES[:3])  # every kernel has refs
    err = io.StringIO()
    rc = heatmap.main([str(os.getpid()), "--count", "1"], stdout=io.StringIO(), stderr=err)
    line = err.getvalue().strip()
    assert rc == 1 and len(line.splitlines()) == 1
    assert line.startswith("heatmap: no source works here (mglru: ")
    for what in ("no_such_hook", "CONFIG_IDLE_PAGE_TRACKING", "CONFIG_DAMON_SYSFS"):
        assert what in line


def test_a_source_failing_because_its_target_went_ends_the_run_normally(tmp_path):
    """A source reading the target's /proc files (pagemap, smaps, maps) sees them go
    when the target exits: that is the end of the run, not an error."""
    make_proc(tmp_path, 4242, SMALL_MAPS)

    def gone(n):
        if n == 3:
            exit_target(tmp_path, 4242)
            raise FileNotFoundError(2, "No such file or directory", "/proc/4242/pagemap")

    clock = FakeClock()
    factory = make_factory(small_script(), clock=clock, on_age=gone)
    err = io.StringIO()
    rc = heatmap.main(["4242", "--json"], counts_factory=factory, proc_root=str(tmp_path),
                      clock=clock, sleep=clock.sleep, stdout=io.StringIO(), stderr=err)
    assert rc == 0 and "(target exited)" in err.getvalue(), err.getvalue()
    assert factory.instances[0].closed == 1


# --- idle: pagemap runs and the bitmap ---------------------------------------------------

P, FILE = heatmap.PM_PRESENT, heatmap.PM_FILE


def naive_runs(entries, page0, pmd):
    """The runs pagemap_runs must find, built page by page."""
    out = []
    for i, e in enumerate(entries):
        if not e & P:
            continue
        page, pfn, kind = page0 + i, e & heatmap.PM_PFN, bool(e & FILE)
        last = out[-1] if out else None
        if (last and last[0] + last[2] == page and last[1] + last[2] == pfn
                and last[3] == kind and page % pmd):
            last[2] += 1
        else:
            out.append([page, pfn, 1, kind])
    return [tuple(r) + (r[2] == pmd and not r[0] % pmd and not r[1] % pmd,) for r in out]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 700), st.booleans(),
                          st.booleans()), max_size=12),
       st.integers(0, 1 << 20), st.integers(0, 1 << 30))
def test_pagemap_runs_match_page_by_page(pieces, page0, pfn0):
    entries = []
    pfn = pfn0
    for kind, length, is_file, soft_dirty in pieces:
        if kind == 0:  # not present
            entries += [0] * length
            continue
        if kind == 1:  # a jump to elsewhere
            pfn = random.Random(length).randrange(1 << 40)
        flags = P | (FILE if is_file else 0) | ((1 << 55) if soft_dirty else 0)
        entries += [flags | (pfn + k) for k in range(length)]
        pfn += length
    raw = array.array("Q", entries).tobytes()
    assert heatmap.pagemap_runs(raw, page0, 512) == naive_runs(entries, page0, 512)


def test_a_whole_aligned_pmd_is_one_run_marked_whole():
    entries = [P | (1024 + k) for k in range(512)] + [P | (7 + k) for k in range(512)]
    runs = heatmap.pagemap_runs(array.array("Q", entries).tobytes(), 512 * 3, 512)
    assert runs == [(1536, 1024, 512, False, True), (2048, 7, 512, False, False)]


def test_bitmap_bits_set_and_counted():
    rnd = random.Random(9)
    for _ in range(300):
        buf = bytearray(64)
        lo = rnd.randrange(0, 500)
        hi = rnd.randrange(lo + 1, 513)
        heatmap.set_bits(buf, lo, hi)
        ones = {i for i in range(512) if buf[i >> 3] >> (i & 7) & 1}
        assert ones == set(range(lo, hi))
        a = rnd.randrange(0, 512)
        b = rnd.randrange(a + 1, 513)
        assert heatmap.count_bits(buf, a, b) == len(ones & set(range(a, b)))


def test_bitmap_windows_are_aligned_and_merge_close_spans():
    assert heatmap.bitmap_windows([(0, 1), (70, 200)]) == [[0, 32]]
    far = 64 * (heatmap.SYSFS_IO + 64)
    assert heatmap.bitmap_windows([(1, 2), (far, far + 64)]) == [[0, 8], [far // 8,
                                                                          far // 8 + 8]]


# --- refs ----------------------------------------------------------------------------------

SMAPS = b"""\
00400000-00600000 r-xp 00000000 08:01 1234    /usr/bin/x
Size:               2048 kB
Rss:                1024 kB
Pss:                1024 kB
Referenced:          256 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
7f0000000000-7f0000400000 rw-p 00000000 00:00 0
Size:               4096 kB
Rss:                4096 kB
Referenced:         4096 kB
VmFlags: rd wr mr mw me ac
"""


def test_smaps_referenced_per_mapping():
    assert heatmap.smaps_referenced(SMAPS) == [(0x400000, 0x600000, 1024, 256),
                                               (0x7f0000000000, 0x7f0000400000, 4096, 4096)]
    with open("/proc/self/smaps", "rb") as f:  # the running kernel's format
        real = heatmap.smaps_referenced(f.read())
    with open("/proc/self/maps") as f:
        assert len(real) == len(f.read().splitlines())


def test_spread_adds_up_and_stays_within_one():
    rnd = random.Random(3)
    for _ in range(200):
        sizes = [rnd.randrange(1, 600) for _ in range(rnd.randrange(1, 20))]
        total = rnd.random() * sum(sizes)
        got = heatmap.spread(total, sizes)
        assert sum(got) == round(total)
        for g, s in zip(got, sizes):
            assert abs(g - total * s / sum(sizes)) <= 1


# --- damon ---------------------------------------------------------------------------------

FORMAT = """\
name: damon_aggregated
ID: 325
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long target_id;\toffset:8;\tsize:8;\tsigned:0;
\tfield:unsigned int nr_regions;\toffset:16;\tsize:4;\tsigned:0;
\tfield:unsigned long start;\toffset:24;\tsize:8;\tsigned:0;
\tfield:unsigned long end;\toffset:32;\tsize:8;\tsigned:0;
\tfield:unsigned int nr_accesses;\toffset:40;\tsize:4;\tsigned:0;
\tfield:unsigned int age;\toffset:44;\tsize:4;\tsigned:0;
"""


def test_damon_event_offsets_are_what_the_bpf_program_reads():
    offsets = heatmap.event_offsets(FORMAT)  # 6.12's, as the test guest shows it
    assert all(offsets[f] == o for f, o in heatmap.DAMON_EVENT_FIELDS.items())
    assert offsets["common_pid"] == 4 and offsets["age"] == 44


def test_damon_intervals_from_the_heatmap_interval():
    assert heatmap.damon_intervals(2.0) == (10_000, 200_000, 1_000_000)
    sample, aggr, update = heatmap.damon_intervals(0.1)
    assert sample >= heatmap.DAMON_MIN_SAMPLE_US and aggr == 10_000 and update == 100_000


def test_damon_frequencies_keep_an_incomplete_aggregation_for_later():
    # target 0: aggregation 1 complete (2 regions), 2 complete, 3 half reported so far
    recs = [(1, 0, 0, 10, 4, 2), (1, 0, 10, 20, 0, 2), (2, 0, 0, 10, 6, 2),
            (2, 0, 10, 20, 2, 2), (3, 0, 0, 10, 9, 2)]
    sums, n, kept = heatmap.damon_frequencies(recs)
    assert (sums, n, kept) == ({(0, 0, 10): 10, (0, 10, 20): 2}, {0: 2}, [(3, 0, 0, 10, 9, 2)])
    sums, n, kept = heatmap.damon_frequencies([(3, 0, 10, 20, 1, 2)], kept)
    assert (sums, n, kept) == ({(0, 0, 10): 9, (0, 10, 20): 1}, {0: 1}, [])
    assert heatmap.damon_frequencies([]) == ({}, {}, [])


def test_damon_frequencies_count_each_target_apart():
    # aggregation 5: target 1 (one region) and target 2 (two); a drain saw target 2's
    # first region only; the kdamond had reported target 1 of aggregation 6 already
    recs = [(5, 1, 0, 10, 3, 1), (5, 2, 100, 200, 7, 2), (6, 1, 0, 10, 1, 1)]
    sums, n, kept = heatmap.damon_frequencies(recs)
    assert sums == {(1, 0, 10): 4} and n == {1: 2}
    assert kept == [(5, 2, 100, 200, 7, 2)]
    # the rest of target 2's part of aggregation 5 comes with the next drain
    sums, n, kept = heatmap.damon_frequencies([(5, 2, 200, 300, 1, 2)], kept)
    assert (sums, n, kept) == ({(2, 100, 200): 7, (2, 200, 300): 1}, {2: 1}, [])


@pytest.mark.parametrize("order, joining, want", [
    ([0], [1], [0, 1]),  # appended: no index changes its process
    ([0, None, 2], [3], [0, 3, 2]),  # the hole of one that exited
    ([0, None, 2, None], [3, 4, 5], [0, 3, 2, 4, 5]),
    ([None, 1, 2], [], [2, 1]),  # a hole filled with the last
    ([0, 1, None, None], [5], [0, 1, 5]),  # a hole at the end dropped
    ([None, None], [7], [7]),
])
def test_damon_target_order_changes_as_few_indexes_as_it_can(order, joining, want):
    assert heatmap.damon_target_order(order, joining) == want


def _vmas(*spans, vsyscall=True):
    maps = [heatmap.Mapping(a, b, "rw-p", 0, "00:00", 0, "") for a, b in spans]
    if vsyscall:
        maps.append(heatmap.Mapping(0xffffffffff600000, 0xffffffffff601000, "--xp", 0,
                                    "00:00", 0, "[vsyscall]"))
    return maps


def test_damon_initial_regions_are_damons_three_ranges_split_evenly():
    """As DAMON's vaddr init does (__damon_va_three_regions, __damon_va_init_regions):
    cut at the two widest gaps (the 1 MiB one between text and heap stays inside), the
    gate area not a VMA, then pieces of a min_regions'th of the total."""
    mib = 1 << 20
    maps = _vmas((0x400000, 0x500000), (0x600000, 0x700000),
                 (0x7f0000000000, 0x7f0000000000 + mib),
                 (0x7ffc00000000, 0x7ffc00021000))
    got = heatmap.damon_initial_regions(maps, 4, 4096)
    three = [(0x400000, 0x700000), (0x7f0000000000, 0x7f0000000000 + mib),
             (0x7ffc00000000, 0x7ffc00021000)]
    size = (3 * mib + mib + 0x21000) // 4
    for start, end in three:  # each range covered exactly, in order, by even pieces
        inside = [r for r in got if start <= r[0] < end]
        assert inside[0][0] == start and inside[-1][1] == end
        assert all(a[1] == b[0] for a, b in zip(inside, inside[1:]))
        assert len(inside) == max(1, (end - start) // size)
    assert sum(e - s for s, e in got) == sum(e - s for s, e in three)
    assert all(s % 4096 == 0 and e % 4096 == 0 and s < e for s, e in got)
    assert got == sorted(got)
    # unaligned ends are aligned up, as ALIGN(x, DAMON_MIN_REGION)
    odd = heatmap.damon_initial_regions(_vmas((0x1000, 0x1800), (0x10000, 0x11000),
                                              (0x100000, 0x101000)), 1, 4096)
    assert odd == [(0x1000, 0x2000), (0x10000, 0x11000), (0x100000, 0x101000)]


def test_damon_initial_regions_need_two_gaps():
    assert heatmap.damon_initial_regions(_vmas((0x1000, 0x2000), (0x3000, 0x4000)),
                                         10, 4096) == []
    assert heatmap.damon_initial_regions(_vmas((0x1000, 0x2000), (0x2000, 0x3000),
                                               vsyscall=False), 10, 4096) == []


def bare_damon(targets: dict, order: list):
    """A DamonCounts' bookkeeping of targets, without a kdamond."""
    d = heatmap.DamonCounts.__new__(heatmap.DamonCounts)
    d.targets, d._order, d._joining = dict(targets), list(order), []
    d._history = {i: [(0, s)] for i, s in enumerate(order)}
    return d


def test_damon_commit_remaps_only_the_indexes_whose_process_changed():
    d = bare_damon({0: 100, 2: 300}, [0, None, 2])
    d.add_target(400, 3)
    d.add_target(500, 4)
    order = heatmap.damon_target_order(d._order, d._joining)
    assert order == [0, 3, 2, 4]
    d._remap(order, 10, 12)  # aggregations 10 before the commit, 12 after it returned
    # index 0 and 2 kept their process throughout
    assert [d._slot_at(0, a) for a in (9, 11, 13, 20)] == [0, 0, 0, 0]
    assert [d._slot_at(2, a) for a in (9, 11, 13, 20)] == [2, 2, 2, 2]
    # index 1: the exited process's (1) before, nobody's around the commit, 3's after
    assert [d._slot_at(1, a) for a in (10, 11, 12, 13, 14)] == [None, None, None, None, 3]
    assert [d._slot_at(3, a) for a in (10, 11, 13, 14)] == [None, None, None, 4]
    d._prune(14)
    assert d._history[1] == [(14, 3)] and d._slot_at(1, 14) == 3


def test_damon_commit_moves_the_last_target_into_a_hole_left_over():
    d = bare_damon({0: 100, 2: 300, 3: 400}, [0, None, None, 3])
    d.remove_target(0)
    d.add_target(500, 4)
    order = heatmap.damon_target_order(d._order, d._joining)
    assert order == [4, 3]
    d._remap(order, 7, 7)
    # 3 moved from index 3 to 1: counted there from the second aggregation after the
    # commit returned, at its old index up to the aggregation before the commit
    assert [d._slot_at(3, a) for a in (7, 8)] == [3, None]
    assert [d._slot_at(1, a) for a in (7, 8, 9)] == [None, None, 3]
    assert [d._slot_at(0, a) for a in (7, 8, 9)] == [0, None, 4]


def test_damon_forgets_a_process_that_exits_until_a_commit_reuses_its_index():
    d = bare_damon({0: 100, 1: 200}, [0, 1])
    d.add_target(300, 2)
    d.remove_target(1)
    d.remove_target(2)  # gone before its commit
    assert (d.targets, d._order, d._joining) == ({0: 100}, [0, None], [])
    with pytest.raises(heatmap.HeatmapError, match="at most 1024 processes"):
        d.add_target(1, heatmap.MAX_TARGETS)


def kdamond_files(root, targets: list[int], state="on", kpid=4242):
    k = root / "0"
    (k / "contexts" / "0" / "targets").mkdir(parents=True)
    (root / "nr_kdamonds").write_text("1\n")
    (k / "state").write_text(state + "\n")
    (k / "pid").write_text(f"{kpid}\n")
    (k / "contexts" / "0" / "operations").write_text("vaddr\n")
    t = k / "contexts" / "0" / "targets"
    (t / "nr_targets").write_text(f"{len(targets)}\n")
    for i, pid in enumerate(targets):
        (t / str(i)).mkdir()
        (t / str(i) / "pid_target").write_text(f"{pid}\n")
    return [str(k)]


@pytest.mark.parametrize("targets, ours", [
    ([11, 22], True),
    ([22, 0], True),  # killed while writing a target's directory
    ([11, 33], False),  # a pid the run never gave DAMON: someone else's
    ([], False),
])
def test_a_leftover_kdamond_is_ours_when_every_target_is_in_our_record(tmp_path, targets,
                                                                      ours):
    kdamonds = kdamond_files(tmp_path, targets)
    record = {"heatmap": 1, "targets": [11, 22], "kdamond": 4242}
    assert heatmap.DamonCounts._is_leftover(record, kdamonds) is ours
    # a record of a heatmap from before several targets
    assert heatmap.DamonCounts._is_leftover({"target": 11, "kdamond": 4242},
                                            kdamond_files(tmp_path / "old", [11]))
    assert not heatmap.DamonCounts._is_leftover(record, kdamond_files(tmp_path / "k2",
                                                                      [11], kpid=1))


def test_damon_ranges_spread_over_mapped_pages_of_regions():
    maps = heatmap.parse_maps("\n".join([maps_line(0x200000, 0x400000),
                                         maps_line(0x600000, 0x700000)]))
    # one DAMON region over both mappings and the gap between them, accessed half
    # the time, and one over nothing mapped
    got = heatmap.spread_over_regions([(0x200000, 0x700000, 0.5), (0x800000, 0x900000, 1.0)],
                                      maps, 21, 12)
    assert got == {1: 256.0, 3: 128.0}


# --- replays: each source's legend ---------------------------------------------------------

def recording(path, source: str) -> None:
    maps = [[0x400000, 0x600000, "r-xp", 0, "08:01", 12, "/usr/bin/x"],
            [0x10000000, 0x10800000, "rw-p", 0, "00:00", 0, "[heap]"],
            [0x7f0000000000, 0x7f0000400000, "rw-p", 0, "00:00", 0, ""]]
    counts = [[0x10000000 >> 21, 0, 512, 0], [(0x10000000 >> 21) + 1, 0, 512, 0],
              [0x7f0000000000 >> 21, 0, 100, 0]]
    lines = [{"type": "heatmap-record", "version": 1, "pid": 7, "comm": "x",
              "region_shift": 21, "page_size": 4096, "interval": 1.0, "started": 0,
              "source": source, "auto": source != "mglru"},
             {"type": "maps", "maps": maps}]
    lines += [{"type": "interval", "seq": i, "t": float(i), "aging": 0.001, "dropped": 0,
               "rss_kb": 1000, "counts": counts} for i in (1, 2)]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def replay(path, *args) -> str:
    out, err = io.StringIO(), io.StringIO()
    rc = heatmap.main(["--replay", str(path), *map(str, args)], stdout=out, stderr=err,
                      environ={"COLUMNS": "100", "LINES": "20"})
    assert rc == 0, err.getvalue()
    return out.getvalue()


@pytest.mark.parametrize("source,heading", [
    ("mglru", "% of the row's pages found young"),
    ("idle", "% of the row's pages found accessed"),
    ("damon", "% of DAMON's samples that found the row accessed"),
    ("refs", "% of the mapping's resident pages referenced"),
])
def test_replay_draws_each_sources_legend(tmp_path, source, heading):
    rec = tmp_path / "run.jsonl"
    recording(rec, source)
    frame = replay(rec).split("\n\n")[-2]
    assert heading + " (blank: none):" in frame
    auto = " (auto" if source != "mglru" else ""
    assert f"via {source}{auto}" in frame.splitlines()[0]
    node = replay(rec, "--view", "node").split("\n\n")[-2]
    if source in ("damon", "refs"):  # no node: "?" instead of made-up data
        assert f"the {source} source cannot tell the NUMA node" in node
        rows = [ln.split("|", 1)[1] for ln in node.splitlines() if "|" in ln]
        assert {c for r in rows for c in r} <= {" ", "?"} and any("?" in r for r in rows)
    else:
        assert "node0" in node and "?" not in node
    svg = tmp_path / "run.svg"
    replay(rec, "--svg", svg)
    assert heading in svg.read_text()


def test_refs_replay_has_one_row_per_mapping(tmp_path):
    rec = tmp_path / "run.jsonl"
    recording(rec, "refs")
    rows = [ln for ln in replay(rec).split("\n\n")[-2].splitlines() if "|" in ln]
    assert [r.split("|")[0].split()[1] for r in rows] == ["x", "[heap]", "anon"]
    assert "per mapping" in replay(rec).splitlines()[0]
    recording(rec, "mglru")
    assert len([ln for ln in replay(rec).split("\n\n")[-2].splitlines() if "|" in ln]) > 3


def test_a_recording_from_an_unknown_source_is_refused(tmp_path):
    rec = tmp_path / "run.jsonl"
    recording(rec, "crystal-ball")
    err = io.StringIO()
    assert heatmap.main(["--replay", str(rec)], stdout=io.StringIO(), stderr=err) == 1
    assert "does not know ('crystal-ball')" in err.getvalue()
