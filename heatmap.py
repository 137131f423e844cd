#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""heatmap: a live map of where in a process's address space memory is hot or cold.

    python heatmap.py PID [PID...] [--children] [--cgroup PATH]
                          [--interval SECONDS] [--aging-interval SECONDS] [--count N]
                          [--region-size SIZE] [--range START-END] [--mapping NAME]
                          [--source auto|mglru|idle|damon|refs]
                          [--view heat|node|anon] [--color auto|always|never]
                          [--json] [--record FILE] [--svg FILE]
    python heatmap.py [OPTIONS] [--children] [--cmd-output FILE] -- CMD [ARGS...]
    python heatmap.py --replay FILE [--speed FACTOR] [--count N] [--view ...]
                          [--color ...] [--json] [--record FILE] [--svg FILE]

Every interval heatmap.py asks the kernel's multi-gen LRU (MGLRU) to scan the target:
the scan walks the target's page tables and clears the PTE "accessed" bits, without
aging anything.  A BPF program on the series' tracepoint (kernel/patches) counts, per
address region (2 MiB unless --region-size says otherwise), the pages found *young*,
i.e. touched since the previous scan, split by NUMA node and anon/file.

That is the mglru source, the best one, on a kernel with our patches.  On other kernels
(--source, default auto: the first of these that the kernel offers):

  * idle: idle page tracking (CONFIG_IDLE_PAGE_TRACKING): the target's pages are marked
    idle in /sys/kernel/mm/page_idle/bitmap and read back an interval later; a cell
    means what it means for mglru (share of the row's pages accessed), node and kind
    included.  The bitmap's reads and writes walk every page's mappings (the "rmap"
    time in the header).
  * damon: DAMON (CONFIG_DAMON_VADDR, CONFIG_DAMON_SYSFS) with a kdamond of its own: a
    cell is an access frequency, the share of DAMON's samples (one random page of each
    adaptive region per sampling interval) that found the row accessed.  DAMON cannot
    tell the node or anon from file: those views show "?" for accessed cells.
  * refs: clear_refs and smaps (almost every kernel): per mapping only, one row per
    mapping, a cell being the share of the mapping's resident pages referenced.  No
    node, no anon/file.

The header names the source ("via idle (auto)").  The picture:

  * rows: the target's address space as /proc/PID/maps describes it.  Unmapped gaps are
    skipped, every row is one contiguous address range inside one mapping (or a merged
    run of neighbouring small mappings when there are more mappings than rows) and is
    labelled with its start address and mapping ([heap], [stack], file name, anon).
    Rows are shared out among mappings by the square root of their size, every mapping
    getting at least one, so a 4 GiB heap and a 64 KiB stack are both readable; when
    mappings outnumber half the rows, neighbouring small ones share rows (labelled
    "name +N"), mappings far apart in the address space last.
    [vvar], [vvar_vclock], [vsyscall] and PROT_NONE mappings (guard pages, reserved
    arena space) can never be found young and are not shown.
  * columns: intervals, newest on the right, scrolling left.  --aging-interval S ages
    (looks at the pages) every S seconds, several times per column: a cell is then the
    mean share over the column's agings, so a page found young at every aging counts
    fully and one found young once of k agings counts 1/k (the header says "x4
    agings", the legend "mean of 4 agings").  idle and refs age that often too; DAMON
    samples every S seconds on its own.
  * working set: the header shows the bytes found young in the last interval (the
    mean per aging) and a trend of the last 8 ([_.-=^]: low to high against their
    largest); the line at the end of a run gives its min, median and max.
  * heat view (h): the share of the row's mapped pages found young during the interval,
    on a fixed log-like scale: blank none, '.' under 1 %, ':' 1-2 %, '-' 2-5 %,
    '=' 5-10 %, '+' 10-20 %, '*' 20-40 %, '#' 40-60 %, '%' 60-80 %, '@' 80 % and more
    (a viridis ramp in colour; the legend repeats the numbers).
  * node view (n): the NUMA node holding at least 3/4 of the cell's young pages, else
    "mixed".   anon view (a): anon or file when that kind holds at least 3/4 of the
    cell's young pages, else "mixed".  In colour both views also shade each cell by
    its heat: the brighter the hue, the larger the share of the row found young.
  * huge pages: one accessed bit stands for a whole PMD-mapped huge page (a THP or a
    hugetlb page), so one byte touched makes all its 512 pages young.  A row huge
    pages back (most of) shows "H" instead of "|" after its label (a bar in the SVG),
    and the legend says so; JSON gives each region's "huge" pages.  Found from
    /proc/PID/pagemap and /proc/kpageflags (root), for every source.
  * keys in the live view: h heat, n node, a anon/file, v next view, j/k (or the arrow
    keys) select a row, z zooms into it, x zooms back out, u lists what the run has
    never found young so far (u again: back), p or space pause, q quit.
    The selected row is in reverse video; the line under the header gives its
    addresses, size and, in a file-backed ELF mapping, its hottest symbols over the
    run (each region's young pages shared among the symbols in it by their bytes
    there).  A zoom watches the selected row's addresses with the region size
    following, as fine as gives each row a region of its own (a page at least); the
    counts are reopened with it (mglru: the BPF object reloaded with the smaller
    region shift; refs stays per mapping; damon keeps the run's region size, as a
    finer one would need a second kdamond) and the header says "range ... zoom N
    region ...".  With several processes a zoom goes into the selected row's
    process: its counts alone are reopened (the others' wait, not aged), the header
    says "pid P (comm) range ...", and if it exits the view zooms back out to the
    others.  Each zoom level starts its own history; zooming out goes on with
    the one from before.  A recording (--record, --svg) keeps the zooms (a zoom record
    per change) and replays them as they happened.  In a replay, z and x zoom the
    view only: the selected row's part of the recording at its recorded region size
    (nothing finer was counted: rows are at most one per recorded region), with its
    history so far, the header saying "view zoom N region ... as recorded"; a zoom the
    recording itself makes ends it.

--range START-END (hexadecimal 0x... or decimal, END exclusive, widened to whole pages)
and --mapping NAME (a row label such as [heap] or libc.so.6, or a full path) watch part
of the address space: the rows, the JSON regions and a recording hold only that part
(the header says which; a region partly inside is counted whole).

-- CMD [ARGS...]: heatmap starts CMD (held before its exec until the counts are
attached, so the first interval sees its start), ends when it exits and exits with its
status (a signal N as 128 + N).  CMD's output never goes through our frames or JSON:
to --cmd-output FILE, else to heatmap's stderr, or with the live view on the terminal
into a temporary file shown there when the view ends.  CMD runs in a process group of
its own: Ctrl-C, q, --count or SIGTERM stop it and everything in its group (SIGINT,
then SIGKILL after 2 s), and it dies with heatmap.

Several processes (several PIDs; --children: also every process they or CMD start,
found each interval; --cgroup PATH: every process of a cgroup v2 and its descendant
cgroups, found each interval): each process's rows come under a heading line with its
pid and name; one that exits is said in one line and the others are watched on; the
run ends when none is left (with -- CMD: when CMD exits).  mglru watches them all with
one BPF object (a set of targets, each scanned every interval), idle and refs with one
instance each; damon gives its kdamond one target per process (one joining a
running kdamond is committed to it with DAMON's initial regions for it).

PID may be a thread's id: heatmap watches its process (the counts are per process)
and says so.  The process name follows an exec.  A run that ends between intervals
(q, Ctrl-C, SIGTERM, SIGHUP) keeps what the interval under way counted so far, as a
last interval marked partial.

On a terminal the view is live (alternate screen); otherwise one plain-text frame is
printed per interval (colour only with --color always).  NO_COLOR is honoured; colours
are 24-bit when COLORTERM is truecolor or 24bit, else xterm 256-colour.

JSON (--json): one object per interval and line on stdout:

    {"seq": 1,                 interval number, from 1
     "t": 2.002,               seconds since the start of the run (end of the interval)
     "time": 1764608402.002,   the end of the interval as Unix time (seconds)
     "source": "mglru",        where the counts come from: mglru, idle, damon or refs
     "pid": 4242, "comm": "hotspot",
     "interval": 2.0,          requested interval, seconds
     "agings": 1,              agings (samplings, for damon) the interval's counts are
                               the mean of (--aging-interval)
     "aging_s": 0.0123,        seconds the kernel spent in this interval: the scan (mglru),
                               bitmap rmap walks (idle), the kdamond (damon), smaps and
                               clear_refs (refs)
     "dropped": 0,             updates the BPF side could not store so far (map full)
     "rss_kb": 262144,         target's VmRSS at the end of the interval
     "wss_bytes": 1228800,     working set: bytes found young (mean per aging)
     "region_size": 2097152, "page_size": 4096,
     "partial": false,         true for a last interval cut short by the end of the run
     "regions": [              regions with at least one young page, by address
        {"start": 140737..., "end": 140737...,   region bounds (bytes, end exclusive)
         "mapping": "[heap]",  mapping at the region's first mapped byte ("" if none)
         "pages": 512,         pages of the shown mappings inside the region
         "huge": 0,            of those, pages huge pages back (null: unknown, not root)
         "accessed": 300,      pages found young in this interval (anon + file), the
                               mean per aging (a float when not whole); for damon and
                               refs page equivalents: the measured share (frequency,
                               referenced share) times the region's pages
         "anon": 300, "file": 0,       null for damon and refs
         "node": 0,            node holding >= 3/4 of the young pages, or "mixed"
         "nodes": {"0": 300},  young pages per node; node and nodes null for damon, refs
         "symbols": ["hot_loop", "table"],  for regions of file-backed ELF mappings: the
                               functions and objects in the region (.symtab or .dynsym),
                               most bytes in it first, at most 3; absent when none
         "pid": 4242}          the process the region belongs to
     ],
     "targets": [{"pid", "comm"}, ...]}  several processes (a scope) only: every one
                               watched in this interval; "pid"/"comm" above: the first
     "zoom": {"level": 1, "start": ..., "end": ...}  an interval of the live view zoomed
                               in (absent at the run's own view): the level and the
                               addresses it watched, at "region_size" (several
                               processes: "pid" too, the addresses that process's own)

and, as the last line, the run's summary (also the recording's last record):

    {"type": "summary", "intervals": 30,
     "wss_bytes": {"min": ..., "median": ..., "max": ...},   over the intervals
     "never_touched_bytes": 10485760,  the ranges below, in all
     "never_touched_resident_bytes": 8388608,   of that resident at the end (null:
                               unknown: pagemap unreadable, or a replay of a recording
                               without it)
     "never_touched": [        address ranges of the shown mappings that no interval
                               found young (region granularity), largest first
        {"start": ..., "end": ..., "mapping": "[heap]", "bytes": ...,
         "resident_bytes": ...}]}

The end-of-run line on stderr is followed by the same list (its largest 5 ranges).

Recording (--record FILE; gzip-compressed when FILE ends in .gz): JSON lines, one
object each, the kind in "type":

    {"type": "heatmap-record", "version": 1 (2: of a live view, which may hold zoom
     records; a heatmap from before them refuses it), "pid", "comm", "region_shift",
     "page_size", "interval", "aging_interval", "started" (Unix time), "source"
     (mglru if absent), "auto" (true if --source auto chose it), "range" ([start,
     end] of --range), "mapping" (--mapping's name),
     "targets" (several processes: [[slot, pid, comm], ...])}         first line
    {"type": "maps", "maps": [[start, end, perms, offset, dev, inode, path], ...]}
        the target's /proc/PID/maps, written before the first interval and again
        before each interval whose maps differ from the previous ones
    {"type": "interval", "seq", "t", "time" (Unix time; absent in older recordings:
     "started" + "t"), "aging", "dropped", "rss_kb", "agings" (when not 1),
     "counts": [[region_index, node, anon_pages, file_pages], ...] (summed over the
     agings),
     "comm" (when it changed: an exec), "partial" (true: cut short by the run's end),
     "huge": [[region_index, pages], ...] (when it changed: pages huge pages back),
     "targets" (when the processes or their names changed)}
        exactly what the source reported (region_index = address >> region_shift;
        node 0 and every page anon for sources that cannot tell).  With several
        processes, process slot s's addresses (maps, region indexes) are offset by
        s << 57 (TARGET_BITS); recordings without "targets" are of one process
    {"type": "zoom", "zoom": N, "region_shift", "range" ([start, end]), "mapping"}
        the live view zoomed in to level N (0: back at the run's own view, the header's
        region_shift, range and mapping) before the next interval, whose maps (the
        zoomed range's) follow at once; from there on the counts are at this
        region_shift.  Checked on replay: a level N > 0 watches a range inside the
        header's (of the same mapping) at a region size no coarser; only in version 2
    {"type": "summary", ...}  the run's summary (as in --json), the last record

--replay FILE renders a recording (no root, no patched kernel), with its source's legend:
at the recorded pace on a terminal (--speed FACTOR, 0 = at once), at once otherwise.  It
ends with the recording; on a terminal its last frame stays on the screen.  A recording
cut short (an interrupted run) is shown up to the cut; one with a damaged record is shown
up to that record, says where it broke and exits 1.  Replaying with --record writes an
identical file.  --svg FILE writes the whole run as one SVG image; a run that zoomed gets
a panel per view (the run's own and each zoom level's: their rows, at their region size),
stacked on one time axis, each interval drawn in the panel of the view it watched, a
dashed line where the view changed.

Contents, in reading order (each section builds on the ones above it; the live source
alone looks ahead, to size the kernel's map with the layout's spanned_regions()):

  1. errors        HeatmapError (one line, non-zero exit), TargetExited, _Stop
  2. counts sources
     2.1 what a source delivers: Sample, Mapping (/proc/PID/maps)
     2.2 counts sources: their interface (CountsSource) and traits
     2.3 mglru: KernelCounts (load, attach, scan, drain the BPF side on the series)
     2.4 idle: IdleCounts (pagemap, the idle bitmap)
     2.5 damon: DamonCounts (a kdamond through sysfs, its tracepoint through BPF)
     2.6 refs: RefsCounts (clear_refs, smaps)
     2.7 choosing one: SourceChoice (--source)
     2.8 a live run: LiveSource (counts + /proc, one Sample per interval)
     2.9 a recording: ReplaySource (Samples read back from --record's file)
  3. layout        BinLayout (fine bins the history is kept in), RowLayout (screen rows)
  4. model         Model: a bounded ring of binned columns
  5. rendering     render_frame(): one text frame, legend, the three views
  6. live view     PlainUI (one frame per interval), LiveScreen (alternate screen, keys)
  7. outputs       --json (interval_json), --record (Recorder), --svg (write_svg)
  8. command line  parse_args(), main()
"""

from __future__ import annotations

import _signal  # signal's C half: built in, so this runs before any import can be hit

if __name__ == "__main__" and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    # Until main() is ready to clean up, Ctrl-C simply ends the process (nothing
    # exists yet that needs releasing) instead of printing a traceback from whatever
    # import or parse step it interrupts.
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)

import argparse
import array
import bisect
import collections
import contextlib
import ctypes
import errno
import glob
import heapq
import itertools
import json
import math
import os
import re
import signal
import stat
import statistics
import struct
import sys
import threading
import time
import zlib

__version__ = "0.1.0"

# =====================================================================================
# 1. errors
# =====================================================================================

class HeatmapError(Exception):
    """A problem the user can act on: main() prints it as one line, exits non-zero."""


class TargetExited(Exception):
    """The watched process went away: the run ends normally."""


class _Stop(Exception):
    """Raised by the SIGTERM/SIGHUP handler to end the run cleanly."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# =====================================================================================
# 2. counts sources: the kernel's counts, a live run, a recording
# =====================================================================================
#
# A source delivers Samples: one interval's young-page counts per (region, node), with
# the target's maps when they changed.  LiveSource makes them from a counts source (one
# of the kernel's ways in: MGLRU through our series, idle page tracking, DAMON,
# clear_refs) and /proc; ReplaySource reads them back from a recording.


# ---- 2.1 what a source delivers: samples and the target's mappings -------------------

class Sample:
    """One interval as a source (live or replayed) delivers it."""

    __slots__ = ("seq", "t", "aging", "dropped", "rss_kb", "maps", "counts", "comm",
                 "partial", "huge", "agings", "time", "targets", "zoom")

    def __init__(self, seq, t, aging, dropped, rss_kb, maps, counts, comm=None,
                 partial=False, huge=None, agings=1, time=None, targets=None, zoom=None):
        self.seq = seq  # interval number, from 1
        self.t = t  # seconds since the start, end of the interval
        self.aging = aging  # seconds spent aging
        self.dropped = dropped  # cumulative updates the BPF side could not store
        self.rss_kb = rss_kb
        self.maps = maps  # list[Mapping] when they changed since the previous sample
        self.counts = counts  # [(region_index, node, anon, file)]
        self.comm = comm  # the target's name when it changed (an exec) since the last
        self.partial = partial  # cut short by the end of the run: shorter than the rest
        # [(region_index, pages huge pages back)] when that changed since the last
        self.huge = huge
        # how often the interval looked at the pages: counts are summed over that many
        # agings (a page young at every one counts `agings` times)
        self.agings = agings
        self.time = time  # Unix time at the end of the interval (None: unknown)
        # several processes: [[slot, pid, comm], ...] when the set or a name changed
        self.targets = targets
        # the live view zoomed (or back out) since the last sample: from this interval
        # on, the view is {"zoom": level, "region_shift": ..., "range"?, "mapping"?}
        self.zoom = zoom


class Mapping(collections.namedtuple("Mapping", "start end perms offset dev inode path")):
    """One line of /proc/PID/maps."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return mapping_name(self.path)


def mapping_name(path: str) -> str:
    """What a row label calls a mapping: [heap], [stack], file basename, or anon."""
    if not path:
        return "anon"
    if path.startswith("["):
        return path
    deleted = path.endswith(" (deleted)")
    base = path[: -len(" (deleted)")] if deleted else path
    base = base.rstrip("/").rsplit("/", 1)[-1] or base
    return base + " (deleted)" if deleted else base


def parse_maps(text: str) -> list[Mapping]:
    """Parse /proc/PID/maps.  The path is everything after the inode (it may contain
    spaces, end in " (deleted)" or be a [pseudo] name); lines that do not parse are
    skipped.  The kernel escapes newlines in paths, so lines split on "\\n" only."""
    out = []
    for line in text.split("\n"):
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        rng, perms, offset, dev, inode = parts[:5]
        start_s, dash, end_s = rng.partition("-")
        try:
            start = int(start_s, 16)
            end = int(end_s, 16)
            off = int(offset, 16)
            ino = int(inode)
        except ValueError:
            continue
        if not dash or end <= start or len(perms) < 4:
            continue
        path = parts[5].rstrip("\r") if len(parts) == 6 else ""
        out.append(Mapping(start, end, perms, off, dev, ino, path))
    out.sort()
    return out


def clip_maps(maps: list[Mapping], lo: int, hi: int) -> list[Mapping]:
    """The parts of sorted maps inside [lo, hi): mappings cut at the edges (a cut start
    moves the file offset along, so a file mapping's addresses still find its bytes)."""
    out = []
    for m in maps:
        if m.end <= lo or m.start >= hi:
            continue
        start, end = max(m.start, lo), min(m.end, hi)
        out.append(m._replace(start=start, end=end, offset=m.offset + start - m.start))
    return out


class Scope:
    """The part of the target's address space that is watched: all of it, an address
    range (--range), the mappings of one name (--mapping), or the mappings of that name
    inside the range.  A name is matched against each mapping's row label ([heap],
    libc.so.6, anon) and its full path, every interval, so a growing heap stays in."""

    def __init__(self, lo: int | None = None, hi: int | None = None,
                 mapping: str | None = None):
        self.lo, self.hi, self.mapping = lo, hi, mapping

    @property
    def whole(self) -> bool:
        return self.lo is None and self.mapping is None

    def apply(self, maps: list[Mapping]) -> list[Mapping]:
        if self.mapping is not None:
            maps = [m for m in maps if self.mapping in (m.name, m.path)]
        if self.lo is not None:
            maps = clip_maps(maps, self.lo, self.hi)
        return maps

    def describe(self) -> str:
        """How the header and the errors name it."""
        parts = []
        if self.mapping is not None:
            parts.append(f"mapping {_printable(self.mapping)}")
        if self.lo is not None:
            parts.append(f"range {self.lo:#x}-{self.hi:#x}")
        return " in ".join(parts) or "everything"

    def narrowed(self, lo: int, hi: int) -> Scope:
        """[lo, hi) of this scope (a zoom into part of it)."""
        if self.lo is not None:
            lo, hi = max(lo, self.lo), min(hi, self.hi)
        return Scope(lo, hi, self.mapping)

    def fields(self) -> dict:
        """What a recording's header keeps of it."""
        out: dict = {}
        if self.lo is not None:
            out["range"] = [self.lo, self.hi]
        if self.mapping is not None:
            out["mapping"] = self.mapping
        return out

    def missing(self, maps: list[Mapping], pid: int, comm: str) -> str | None:
        """Why nothing of the target is watched (one line), or None."""
        if any(map(is_shown, self.apply(maps))):
            return None
        who = f"process {pid} ({_printable(comm)})"
        if self.mapping is not None and not any(self.mapping in (m.name, m.path)
                                                for m in maps):
            names = list(dict.fromkeys(_printable(m.name) for m in maps if is_shown(m)))
            more = f" and {len(names) - 12} more" if len(names) > 12 else ""
            return (f"{who} has no mapping named {_printable(self.mapping)!r}; its mappings: "
                    f"{', '.join(names[:12])}{more}")
        return f"{who} has nothing mapped in {self.describe()}"


def counted_in(counts: list, maps: list[Mapping], shift: int) -> list:
    """The counts of regions that hold some of the (sorted) maps: a scope's counts."""
    spans = [(m.start >> shift, ((m.end - 1) >> shift) + 1) for m in maps]
    starts = [s[0] for s in spans]
    ends = list(itertools.accumulate((s[1] for s in spans), max))
    out = []
    for c in counts:
        i = bisect.bisect_right(starts, c[0]) - 1
        if i >= 0 and c[0] < ends[i]:
            out.append(c)
    return out


# Several processes in one run (several PIDs, --children, --cgroup) share one model:
# each has a slot (0 for the first), and its addresses, region indexes included, are
# offset by slot << TARGET_BITS, above any user address (x86-64's 5-level page tables
# have 56 bits).  The layout then keeps each process's rows together and apart from the
# others; JSON and the row labels give the process and its own addresses.  A run of one
# process is slot 0: nothing is offset.
TARGET_BITS = 57
TARGET_MASK = (1 << TARGET_BITS) - 1


def target_slot(addr: int) -> int:
    """The slot of the process an address of the model belongs to."""
    return addr >> TARGET_BITS


def in_slot(maps: list[Mapping], slot: int) -> list[Mapping]:
    """A process's mappings moved to its slot's addresses (those above TARGET_BITS,
    i.e. [vsyscall], which no source reports, left out)."""
    if not slot:
        return maps
    off = slot << TARGET_BITS
    return [m._replace(start=m.start + off, end=m.end + off) for m in maps
            if m.end <= 1 << TARGET_BITS]


def _printable(text: str) -> str:
    """Labels come from file names: keep them to printable ASCII (no escapes)."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)


# ---- 2.2 counts sources: one small interface for each kernel's way in -----------------
#
# A counts source tells which pages of one process were accessed, interval by interval:
#
#   cls(pid, region_shift, max_regions, interval)   start watching (interval: seconds)
#   age() -> seconds     end an interval on the kernel's side (an MGLRU scan, a
#                        read-back and re-marking of the idle bitmap, a smaps read and
#                        clear_refs, ...): what the kernel spent on it
#   drain() -> counts    what the interval found: [(region_index, node, anon, file)],
#                        region_index = address >> region_shift, anon and file in pages
#   dropped() -> int     updates the kernel side could not store, since the start
#   resize(max_regions)  the target's mappings changed size
#   close()              release everything made in the kernel (every exit path)
#
# Sources that measure something else than pages touched (DAMON's access frequency,
# clear_refs' per-mapping share) report "page equivalents": the measured share times the
# pages it stands for, so that a cell (young pages / pages of the row) is that share.
# A source whose kernel cannot tell the node or anon from file reports node 0 and every
# page as anon; its traits (the class attributes of CountsSource) say so, and rendering,
# JSON and replays go by the traits of the source a recording names.  A source the
# running kernel does not offer raises SourceUnavailable naming what is missing; `auto`
# takes the first of SOURCES that opens.  Several agings per column, several targets or
# a finer region_shift (zoom) are more calls or more instances of the same interface.


#: what loading and attaching the BPF side takes (names as bpfload.procfs knows them)
CAPS = ("CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN")
CAPABILITIES = ", ".join(CAPS[:-1]) + " and " + CAPS[-1]
CAPS_TEXT = f"heatmap needs {CAPABILITIES} (run it as root)"


class SourceUnavailable(HeatmapError):
    """The running kernel does not offer this source (the message says what is missing)."""


class CountsSource:
    """What every counts source has: its traits, and the methods above."""

    name = ""  # --source NAME
    cell = "% of the row's pages found young"  # a heat cell, as the legend says it
    kernel_work = "aging"  # what Sample.aging times, as the header calls it
    tells_node = True  # the NUMA node of a page
    tells_kind = True  # anon or file
    per_mapping = False  # no detail inside a mapping: one row per mapping
    zooms_finer = True  # a zoom may open it anew at a finer region size
    # samples several times per interval on its own (DAMON), told the aging interval;
    # LiveSource ages the others several times per column instead
    samples_itself = False
    aging_word = "aging"  # what one look at the pages is called (the legend says "mean of")
    capabilities: tuple[str, ...] = ()  # names from CAPS the source needs
    notes: tuple[str, ...] = ()  # what opening it did that the user should know

    @classmethod
    def unavailable(cls, pid: int) -> str | None:
        """Why the running kernel cannot offer this source, or None; looks, touches
        nothing."""
        return None

    def age(self) -> float:
        raise NotImplementedError

    _pending: list[tuple[int, int, int, int]] = []  # what the last age() counted

    def drain(self) -> list[tuple[int, int, int, int]]:
        """(For sources that count in age(): what it counted.)"""
        out, self._pending = self._pending, []
        return out

    def dropped(self) -> int:
        return 0

    def resize(self, max_regions: int) -> None:
        pass

    def close(self) -> None:
        pass


# ---- 2.3 MGLRU through the series' tracepoint and scan (--source mglru) ---------------
#
# kernel/heatmap.bpf.o on the interface of kernel/patches: its tp_btf program on the
# lru_gen_young_tp tracepoint counts the young pages of the target's mm per (region,
# node) in a hash map, whoever harvests them (our scan, reclaim's aging, the eviction);
# age() runs its syscall program, which asks for a scan of the target alone with
# bpf_lru_gen_scan_task() (no aging: MGLRU's generations stay as they are, other
# processes are not walked, so several heatmaps do not disturb each other) and flushes
# the target's TLB; drain() empties the map with batch operations.

KERNEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel")
# the prebuilt object: beside heatmap.py in a checkout, under the prefix once installed
# (pyproject.toml's data-files put it in share/heatmap)
BPF_OBJECT_DIRS = (KERNEL_DIR, os.path.join(sys.prefix, "share", "heatmap"))
SCAN_KFUNC = "bpf_lru_gen_scan_task"
#: what the series adds to vmlinux BTF (the tracepoint's BPF entry, the scan kfunc), as
#: a user is told it is missing
INTERFACE = {"__bpf_trace_lru_gen_young_tp": "the lru_gen_young_tp tracepoint",
             SCAN_KFUNC: f"the {SCAN_KFUNC} kfunc"}
LRU_GEN_ENABLED = "/sys/kernel/mm/lru_gen/enabled"
_KEY = struct.Struct("<QII")  # struct region_key
_VAL = struct.Struct("<QQ")  # struct region_val
_SCAN = struct.Struct("<iIiI")  # struct scan_args
MAX_TARGETS = 1024  # slot_mms' entries: processes one object can watch at once


def bpf_object(name: str = "heatmap.bpf.o") -> str:
    """A prebuilt object of kernel/ (heatmap.bpf.o, damon.bpf.o), wherever this copy of
    heatmap.py keeps it."""
    for d in BPF_OBJECT_DIRS:
        path = os.path.join(d, name)
        if os.path.exists(path):
            return path
    raise HeatmapError(f"the prebuilt BPF object {name} is missing (looked in "
                       f"{' and '.join(BPF_OBJECT_DIRS)}): reinstall heatmap, or run it "
                       f"from a checkout")


def version_text() -> str:
    """--version: the version, and which BPF objects this copy would load."""
    where = []
    for name in ("heatmap.bpf.o", "damon.bpf.o"):
        try:
            where.append(bpf_object(name))
        except HeatmapError:
            where.append(f"{name} missing")
    return f"heatmap {__version__} (BPF objects: {', '.join(where)})"


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def check_mglru() -> None:
    """Fail with how to fix it unless MGLRU is on (the scan does not need MGLRU's own
    page-table walk, bit 0x0002, which only decides how reclaim ages)."""
    try:
        caps = int(_read(LRU_GEN_ENABLED).strip(), 0)
    except FileNotFoundError:
        raise SourceUnavailable("the kernel has no multi-gen LRU (CONFIG_LRU_GEN): the mglru "
                                "source needs it and the series in kernel/patches") from None
    except (OSError, ValueError) as e:
        raise HeatmapError(f"cannot read {LRU_GEN_ENABLED}: {e}") from None
    if not caps & 1:
        raise SourceUnavailable(f"the multi-gen LRU is disabled: enable it with "
                                f"'echo y > {LRU_GEN_ENABLED}'")


class KernelCounts(CountsSource):
    """Young-page counts of one process from the series' tracepoint (the BPF side)."""

    name = "mglru"
    kernel_work = "scan"  # bpf_lru_gen_scan_task(): a walk of the target's page tables
    capabilities = CAPS

    @classmethod
    def unavailable(cls, pid: int) -> str | None:
        from bpfload import BPFLoadError
        from bpfload.btf.kernel import KernelBTF

        try:
            with contextlib.closing(KernelBTF()) as kbtf:
                missing = [name for name in INTERFACE if kbtf.func(name) is None]
        except BPFLoadError as e:
            return str(_bpf_error(e))
        if missing:
            return cls._not_patched(missing[0])
        try:
            check_mglru()
        except HeatmapError as e:
            return str(e)
        return None

    @staticmethod
    def _not_patched(name: str) -> str:
        return (f"the kernel lacks {INTERFACE[name]}: build and boot a kernel with the "
                f"series in kernel/patches (kernel/build-kernel, kernel/run-guest)")

    def __init__(self, pid: int, region_shift: int, max_regions: int, interval=None):
        self.pid = pid
        self.region_shift = region_shift
        self._obj = None
        self._carry: list[tuple[int, int, int, int]] = []
        self.targets = {0: 0}  # slot -> tgid (0: target_tgid, i.e. pid)
        import bpfload
        from bpfload.btf.kernel import KernelBTF

        self._bpfload = bpfload
        try:
            self._kbtf = KernelBTF()
        except bpfload.BPFLoadError as e:
            raise SourceUnavailable(str(_bpf_error(e))) from None
        try:
            for name in INTERFACE:
                if self._kbtf.func(name) is None:
                    raise SourceUnavailable(self._not_patched(name))
            # after the interface: on an unpatched kernel MGLRU is not the problem
            check_mglru()
        except bpfload.BTFError as e:
            self._kbtf.close()
            raise HeatmapError(str(e)) from None
        except BaseException:
            self._kbtf.close()
            raise
        self.capacity = 0
        self._load(max_regions)

    def _load(self, max_regions: int) -> None:
        nodes = max(1, len(_node_list("has_memory")))
        capacity = max(1024, max_regions * nodes)

        def configure(obj) -> None:
            obj.set("target_tgid", self.pid)
            obj.set("region_shift", self.region_shift)
            obj.set("page_shift", os.sysconf("SC_PAGE_SIZE").bit_length() - 1)
            obj.set_max_entries("counts", capacity)

        obj = _attached_object(bpf_object(), configure, ["young"], kernel_btf=self._kbtf)
        self._obj = obj
        self._counts = obj.map("counts")
        self.capacity = capacity

    #: the kfunc's -EBUSY (cgroup v1 charges of the target's memcg being moved) passes:
    #: up to this many scans, waiting BUSY_WAIT s before the first retry, doubling
    BUSY_TRIES = 5
    BUSY_WAIT = 0.02

    # several targets (ProcessSetCounts): one object, one slot each; their
    # counts come back with region_index + (slot << (TARGET_BITS - region_shift))
    multi_target = True

    def add_target(self, pid: int, slot: int) -> None:
        if not 0 < slot < MAX_TARGETS:
            raise HeatmapError(f"the mglru source watches at most {MAX_TARGETS} processes")
        self.targets[slot] = pid

    def remove_target(self, slot: int) -> None:
        """Forget a target: a scan with tgid -1 unfiles its mm."""
        if self.targets.pop(slot, None) is not None:
            self._scan(slot, -1)

    def age(self) -> float:
        """Scan the targets (the tracepoint program counts what is young); returns the
        seconds it took.  With several targets one that is gone is skipped (the run
        finds out from /proc)."""
        t0 = time.perf_counter()
        for slot, tgid in list(self.targets.items()):
            ret = self._scan_patiently(slot, tgid)
            if ret == -errno.ESRCH and len(self.targets) == 1:
                # gone, or a zombie: the caller tells which
                raise ProcessLookupError(errno.ESRCH, f"process {self.pid} has no memory left")
            if ret < 0 and ret != -errno.ESRCH:
                from bpfload.errors import errno_text

                again = (f" {self.BUSY_TRIES} times in a row (cgroup v1 charges of the "
                         f"target's memcg kept moving)" if ret == -errno.EBUSY else "")
                raise HeatmapError(f"the scan failed: {SCAN_KFUNC}() returned "
                                   f"{errno_text(-ret)}{again}")
        return time.perf_counter() - t0

    def _scan_patiently(self, slot: int, tgid: int) -> int:
        """A target's scan, again while the kfunc says EBUSY (BUSY_TRIES)."""
        wait = self.BUSY_WAIT
        for _ in range(self.BUSY_TRIES - 1):
            # a retry counts no access twice: the failed pass cleared what it reported
            ret = self._scan(slot, tgid)
            if ret != -errno.EBUSY:
                return ret
            time.sleep(wait)
            wait *= 2
        return self._scan(slot, tgid)

    def _scan(self, slot: int, tgid: int) -> int:
        """One pass of the kfunc over a target (tgid 0: target_tgid; -1: unfile the
        slot): its return value."""
        try:
            ctx = self._obj.program("scan").test_run(_SCAN.pack(0, slot, tgid, 0)).ctx
        except self._bpfload.BPFLoadError as e:
            raise _bpf_error(e) from None
        return _SCAN.unpack(ctx)[0]

    def drain(self) -> list[tuple[int, int, int, int]]:
        try:
            keys, values, n = self._counts.lookup_batch(delete=True)
        except self._bpfload.BPFLoadError as e:
            raise _bpf_error(e) from None
        slot_shift = TARGET_BITS - self.region_shift
        out = [(region + (slot << slot_shift), node, anon, file)
               for (region, node, slot), (anon, file) in
               zip(_KEY.iter_unpack(keys), _VAL.iter_unpack(values))]
        if self._carry:
            out = self._carry + out
            self._carry = []
        return out

    def warm(self, slot: int) -> None:
        """A new target's first scan reports all it touched since forever: dropped (the
        other targets' counts drained meanwhile are kept)."""
        self._scan(slot, self.targets[slot])
        shift = TARGET_BITS - self.region_shift
        self._carry = [c for c in self.drain() if c[0] >> shift != slot]

    def dropped(self) -> int:
        return self._obj.get("dropped_pages") if self._obj is not None else 0

    def resize(self, max_regions: int) -> None:
        """Size the map for the target's mappings (a BPF map cannot be resized in place:
        the programs are reloaded with a new map; counts drained meanwhile are kept)."""
        nodes = max(1, len(_node_list("has_memory")))
        if max(1024, max_regions * nodes) == self.capacity:
            return
        pending = self.drain()
        dropped = self.dropped()
        self._obj.close()
        self._obj = None
        self._load(max_regions)
        self._carry = pending
        self._obj.set("dropped_pages", dropped)
        for slot, tgid in self.targets.items():  # (files their mms in the new object)
            self._scan(slot, tgid)
        self._carry += self.drain()

    def close(self) -> None:
        if self._obj is not None:
            self._obj.close()
            self._obj = None
        self._kbtf.close()


def _node_list(state: str) -> list[int]:
    """Node ids in a /sys/devices/system/node state list (e.g. has_memory)."""
    from bpfload.procfs import parse_id_list

    try:
        return parse_id_list(_read(f"/sys/devices/system/node/{state}"))
    except (OSError, ValueError):
        return [0]


def _attached_object(path: str, configure, programs=None, **open_args):
    """The BPF object at path, configured by configure(obj), loaded and attached
    (programs: those names, default all); closed again on any failure, a loader error
    turned into the one line of _bpf_error."""
    import bpfload

    try:
        obj = bpfload.BPFObject(path, **open_args)
    except bpfload.BPFLoadError as e:  # the object unreadable, pyelftools missing, ...
        raise _bpf_error(e) from None
    try:
        configure(obj)
        obj.load()
        if programs:
            obj.attach(programs)
        else:
            obj.attach()
    except bpfload.BPFLoadError as e:
        obj.close()
        raise _bpf_error(e) from None
    except BaseException:
        obj.close()
        raise
    return obj


def _bpf_error(e: Exception) -> HeatmapError:
    """A loader error as the one line a heatmap user needs."""
    import errno as errno_mod

    from bpfload.procfs import has_all_bpf_privileges

    if getattr(e, "errno", None) in (errno_mod.EPERM, errno_mod.EACCES) and \
            not getattr(e, "log", "") and not has_all_bpf_privileges():
        return HeatmapError(f"not permitted: the heatmap needs root ({CAPABILITIES})")
    line = f"BPF: {e}".splitlines()[0]
    tail = getattr(e, "tail", None)  # a verifier rejection: its last word is the reason
    return HeatmapError(f"{line} (verifier: {tail[-1]})" if tail else line)


# ---- 2.4 idle page tracking (--source idle) -------------------------------------------
#
# /sys/kernel/mm/page_idle/bitmap has one bit per page frame: writing 1 marks the page
# idle (clearing the accessed bits of its PTEs through the rmap), reading returns 1
# while it stays idle.  Every interval: the target's page frame numbers (PFNs) from
# /proc/PID/pagemap, the bitmap read back for them (a page no longer idle was accessed
# since the last interval; a page not marked yet, just faulted in, counts as accessed
# too), then marked again.  The work is done per run of pages with consecutive PFNs:
# one big-integer comparison tells whether a PMD's worth of pagemap entries is one run,
# the bitmap moves in page-sized aligned chunks (the most sysfs takes per call), and
# bits are counted per run.  A transparent huge page is one folio whose tail pages the
# bitmap ignores: its head page's bit stands for all its pages (/proc/kpageflags tells
# a THP's head from a block of small pages).  The node of a page frame comes from
# move_pages(2), once per memory section.

PAGE_IDLE_BITMAP = "/sys/kernel/mm/page_idle/bitmap"
KPAGEFLAGS = "/proc/kpageflags"
PM_PFN = (1 << 55) - 1
PM_FILE = 1 << 61  # a page-cache or shared anonymous page (what MGLRU calls file)
PM_PRESENT = 1 << 63
PM_KEEP = PM_PFN | PM_FILE | PM_PRESENT  # what pages of one run share (not soft-dirty..)
KPF_COMPOUND_HEAD = 1 << 15
KPF_THP = 1 << 22
SYSFS_IO = 4096  # kernfs moves at most a page per read(2) or write(2)
PAGEMAP_CHUNK = 1 << 16  # pagemap entries read at once (512 KiB)
SECTION_SHIFT = 27  # memory sections (never spanning two nodes): 128 MiB on x86-64, arm64
SYS_MOVE_PAGES = {"x86_64": 279, "aarch64": 239, "riscv64": 239, "ppc64le": 301,
                  "s390x": 310, "loongarch64": 239}

_LANES: dict[int, tuple[int, int, int]] = {}


def _lanes(n: int) -> tuple[int, int, int]:
    """n little-endian u64 lanes as one integer: (1 in each, 0..n-1, PM_KEEP in each)."""
    got = _LANES.get(n)
    if got is None:
        ones = int.from_bytes(b"\1\0\0\0\0\0\0\0" * n, "little")
        steps = int.from_bytes(array.array("Q", range(n)).tobytes(), "little")
        got = _LANES[n] = (ones, steps, ones * PM_KEEP)
    return got


def pagemap_runs(raw: bytes, page0: int, pmd_pages: int) -> list[tuple]:
    """Runs of present pages with consecutive PFNs and the same kind in the pagemap
    entries `raw` of the pages from page index page0:
    [(page, pfn, npages, is_file, whole_pmd)].  No run crosses a multiple of pmd_pages
    pages; whole_pmd marks a run that is a whole aligned PMD at an aligned PFN (the
    shape of a THP).  A PMD's worth of entries is handled as one big integer of u64
    lanes: one comparison tells whether it is one run, else a few operations mark the
    lanes where a run ends, and only those are visited."""
    out = []
    n = len(raw) // 8
    i = 0
    while i < n:
        page = page0 + i
        m = min(n - i, pmd_pages - page % pmd_pages)
        x = int.from_bytes(raw[8 * i: 8 * (i + m)], "little")
        i += m
        if not x:
            continue  # nothing mapped
        ones, steps, keep = _lanes(m)
        x &= keep
        e0 = x & 0xFFFFFFFFFFFFFFFF
        if e0 & PM_PRESENT and x == e0 * ones + steps:
            pfn = e0 & PM_PFN
            whole = m == pmd_pages and not pfn % pmd_pages
            out.append((page, pfn, m, bool(e0 & PM_FILE), whole))
            continue
        # lane j is nonzero where entry j+1 does not continue entry j's run (a present
        # entry continues with the next PFN, an absent one with another absent one)
        ends = (x >> 64) ^ (x + ((x >> 63) & ones))
        ends |= ends >> 32
        ends |= ends >> 16
        ends |= ends >> 8  # byte 0 of each lane: is any byte of the lane nonzero
        entries = array.array("Q", x.to_bytes(8 * m, "little"))
        start = 0
        for end in _NONZERO.finditer(ends.to_bytes(8 * m, "little")[::8]):
            j = end.start()
            e = entries[start]
            if e & PM_PRESENT:
                out.append((page + start, e & PM_PFN, j + 1 - start, bool(e & PM_FILE), False))
            start = j + 1
    return out


_NONZERO = re.compile(rb"[^\x00]")


def bitmap_windows(spans: list[tuple[int, int]], gap: int = SYSFS_IO) -> list[list[int]]:
    """Byte ranges [lo, hi) of the idle bitmap covering the PFN ranges `spans` (sorted
    by start), 8-byte aligned (the bitmap's unit), merged when under `gap` apart."""
    out: list[list[int]] = []
    for a, b in spans:
        lo = (a >> 6) << 3
        hi = ((b + 63) >> 6) << 3
        if out and lo <= out[-1][1] + gap:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out


def set_bits(buf: bytearray, lo: int, hi: int) -> None:
    """Set bits lo..hi-1 of buf (bit i is bit i % 8 of byte i // 8, as in the bitmap)."""
    b0, b1 = lo >> 3, (hi - 1) >> 3
    if b0 == b1:
        buf[b0] |= ((1 << (hi - lo)) - 1) << (lo & 7)
        return
    buf[b0] |= (0xFF << (lo & 7)) & 0xFF
    if b1 > b0 + 1:
        buf[b0 + 1: b1] = b"\xff" * (b1 - b0 - 1)
    buf[b1] |= 0xFF >> (7 - ((hi - 1) & 7))


def count_bits(buf, lo: int, hi: int) -> int:
    """How many of bits lo..hi-1 of buf are set."""
    v = int.from_bytes(buf[lo >> 3: (hi + 7) >> 3], "little") >> (lo & 7)
    v &= (1 << (hi - lo)) - 1
    return v.bit_count() if hasattr(v, "bit_count") else bin(v).count("1")  # 3.9


def soft_dirty_tracking() -> bool:
    """Whether the kernel tracks soft-dirty pages (CONFIG_MEM_SOFT_DIRTY): then it
    flags new mappings "sd" in smaps."""
    try:
        with open("/proc/self/smaps", "rb") as f:
            return any(line.startswith(b"VmFlags:") and b"sd" in line.split()
                       for line in f)
    except OSError:
        return True


# Clearing accessed bits (idle marking, clear_refs) does not flush the TLB: a page that
# stays in a TLB afterwards is accessed without its bit being set again, and looks idle
# for as long as it stays there (a hot page most of all).  A soft-dirty reset through
# clear_refs ends with a flush of the target's TLB; on a kernel without soft-dirty
# tracking that flush is all it does (FileSource._open_tlb_flush: a write of "4").  With
# tracking it would also write-protect every page and wipe soft-dirty state others may
# use (CRIU): there we do without the flush.
NO_TLB_FLUSH = ("this kernel tracks soft-dirty pages, so heatmap does not flush the "
                "target's TLB after clearing accessed bits: pages that stay in the TLB "
                "(the hottest) may be under-counted")




class FileSource(CountsSource):
    """A source working through files it keeps open (the target's /proc files, sysfs):
    opened with _open(), all closed by close()."""

    def __init__(self, pid: int, region_shift: int):
        why = self.unavailable(pid)
        if why:
            raise SourceUnavailable(why)
        self.pid = pid
        self.region_shift = region_shift
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        self.page_shift = self.page_size.bit_length() - 1
        self._pending = []
        self._fds: list[int] = []

    def _open(self, path: str, flags: int) -> int:
        fd = os.open(path, flags | os.O_CLOEXEC)
        self._fds.append(fd)
        return fd

    def _open_tlb_flush(self) -> int | None:
        """open_tlb_flush() for the target, kept open; None (and a note) where not."""
        if soft_dirty_tracking():
            self.notes = (NO_TLB_FLUSH,)
            return None
        return self._open(f"/proc/{self.pid}/clear_refs", os.O_WRONLY)

    def close(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)


class IdleCounts(FileSource):
    """Accessed pages from idle page tracking (CONFIG_IDLE_PAGE_TRACKING)."""

    name = "idle"
    cell = "% of the row's pages found accessed"
    kernel_work = "rmap"  # the bitmap's reads and writes walk each page's mappings
    capabilities = ("CAP_SYS_ADMIN",)  # PFNs in pagemap; the bitmap is root's

    @classmethod
    def unavailable(cls, pid: int) -> str | None:
        if not os.path.exists(PAGE_IDLE_BITMAP):
            return (f"the kernel has no idle page tracking ({PAGE_IDLE_BITMAP} is missing: "
                    f"CONFIG_IDLE_PAGE_TRACKING)")
        if not os.path.exists(KPAGEFLAGS):
            return f"the kernel has no {KPAGEFLAGS} (CONFIG_PROC_PAGE_MONITOR)"
        return None

    def __init__(self, pid: int, region_shift: int, max_regions: int, interval=None):
        super().__init__(pid, region_shift)
        self.pmd_pages = 1 << (self.page_shift - 3)  # a page table holds a page of u64
        self._section_node: dict[int, int] = {}
        self._chunks: dict[tuple[int, int, int], list] = {}  # see _runs()
        self._last_plan = None  # see _plan()
        nodes = _node_list("has_memory")
        self._only_node = nodes[0] if len(nodes) == 1 else None
        try:
            self._bitmap = self._open(PAGE_IDLE_BITMAP, os.O_RDWR)
            self._pagemap = self._open(f"/proc/{pid}/pagemap", os.O_RDONLY)
            self._kpageflags = self._open(KPAGEFLAGS, os.O_RDONLY)
            self._flush = self._open_tlb_flush()
        except BaseException:
            self.close()
            raise

    def _runs(self) -> list[tuple]:
        """The runs of the target's shown mappings, from a fresh pagemap.  Memory that
        is not faulted, freed or moved keeps its pagemap entries from one interval to
        the next: a chunk of entries whose hash did not change keeps its runs."""
        ps = self.page_shift
        runs: list[tuple] = []
        before, self._chunks = self._chunks, {}
        for m in shown_mappings(read_maps("/proc", self.pid)):
            page, end = m.start >> ps, m.end >> ps
            while page < end:
                n = min(end - page, PAGEMAP_CHUNK)
                raw = os.pread(self._pagemap, 8 * n, 8 * page)
                key = (page, len(raw), hash(raw))
                got = before.get(key)
                if got is None:
                    got = pagemap_runs(raw, page, self.pmd_pages)
                self._chunks[key] = got
                runs.extend(got)
                page += n
        if runs and not any(r[1] for r in runs):
            raise HeatmapError("pagemap shows no page frame numbers: the idle source needs "
                               "CAP_SYS_ADMIN (run it as root)")
        return runs

    def _thp_heads(self, runs) -> set[int]:
        """PFNs of the runs that are a THP's head page."""
        heads = set()
        for _page, pfn, _n, _file, whole in runs:
            if whole:
                flags = int.from_bytes(os.pread(self._kpageflags, 8, 8 * pfn), "little")
                if flags & KPF_COMPOUND_HEAD and flags & KPF_THP:
                    heads.add(pfn)
        return heads

    def _bitmap_io(self, windows, marks, write: bool) -> list:
        """Read the bitmap in the windows (or write marks to it), a page-aligned chunk
        at a time, skipping chunks without a bit of ours."""
        out = []
        for (lo, hi), mark in zip(windows, marks):
            got = None if write else bytearray(hi - lo)
            off = lo
            while off < hi:
                end = min(hi, (off // SYSFS_IO + 1) * SYSFS_IO)
                chunk = mark[off - lo: end - lo]
                if chunk.count(0) != len(chunk):
                    if write:
                        os.pwrite(self._bitmap, chunk, off)
                    else:
                        got[off - lo: end - lo] = os.pread(self._bitmap, end - off, off)
                off = end
            out.append(got)
        return out

    def _nodes(self, runs) -> list[int]:
        """The node of each run (move_pages(2) for sections not seen before)."""
        if self._only_node is not None:
            return [self._only_node] * len(runs)
        shift = SECTION_SHIFT - self.page_shift
        known = self._section_node
        ask: dict[int, int] = {}
        for page, pfn, *_ in runs:
            s = pfn >> shift
            if s not in known and s not in ask:
                ask[s] = page << self.page_shift
        if ask:
            nr = SYS_MOVE_PAGES.get(os.uname().machine)
            n = len(ask)
            status = (ctypes.c_int * n)()
            libc = ctypes.CDLL(None, use_errno=True)
            if nr is not None and libc.syscall(
                    ctypes.c_long(nr), ctypes.c_int(self.pid), ctypes.c_ulong(n),
                    (ctypes.c_void_p * n)(*ask.values()), None, status, ctypes.c_int(0)) == 0:
                for s, node in zip(ask, status):
                    if node >= 0:  # else gone meanwhile: asked again next time
                        known[s] = node
        return [known.get(r[1] >> shift, 0) for r in runs]

    def _plan(self, runs: list, heads: set) -> tuple:
        """(windows, marks, [(window, bit) per run], nodes per run): the bitmap's part
        for these runs, kept while the runs and THPs stay the same."""
        if self._last_plan is not None and self._last_plan[0] == (runs, heads):
            return self._last_plan[1]
        # the bits that matter: a THP's head page stands for all of it
        spans = sorted((pfn, pfn + 1 if pfn in heads else pfn + n)
                       for _page, pfn, n, _f, _w in runs)
        windows = bitmap_windows(spans)
        starts = [lo << 3 for lo, _hi in windows]  # first PFN of each window
        marks = [bytearray(hi - lo) for lo, hi in windows]
        for a, b in spans:
            w = bisect.bisect_right(starts, a) - 1
            set_bits(marks[w], a - starts[w], b - starts[w])
        where = []
        for run in runs:
            w = bisect.bisect_right(starts, run[1]) - 1
            where.append((w, run[1] - starts[w]))
        plan = (windows, marks, where, self._nodes(runs))
        self._last_plan = ((runs, heads), plan)
        return plan

    def age(self) -> float:
        runs = self._runs()
        heads = self._thp_heads(runs)
        windows, marks, where, nodes = self._plan(runs, heads)
        t0 = time.perf_counter()
        seen = self._bitmap_io(windows, marks, write=False)
        took = time.perf_counter() - t0
        rshift = self.region_shift - self.page_shift
        per_region = (1 << rshift) - 1
        counts: dict[tuple[int, int], list[int]] = {}
        for (page, pfn, n, is_file, _w), node, (w, bit) in zip(runs, nodes, where):
            bits = seen[w]
            thp = pfn in heads
            if thp and bits[bit >> 3] >> (bit & 7) & 1:
                continue  # an idle THP
            if (page & per_region) + n <= per_region + 1:  # in one region (the usual)
                young = n if thp else n - count_bits(bits, bit, bit + n)
                if young:
                    c = counts.setdefault((page >> rshift, node), [0, 0])
                    c[is_file] += young
                continue
            p, end = page, page + n
            while p < end:  # one count per region the run covers
                q = min(end, (p | per_region) + 1)
                young = q - p
                if not thp:
                    young -= count_bits(bits, bit + p - page, bit + q - page)
                if young:
                    c = counts.setdefault((p >> rshift, node), [0, 0])
                    c[is_file] += young
                p = q
        t0 = time.perf_counter()
        self._bitmap_io(windows, marks, write=True)
        if self._flush is not None:
            os.write(self._flush, b"4")
        took += time.perf_counter() - t0
        self._pending = [(r, nd, a, f) for (r, nd), (a, f) in counts.items()]
        return took


# ---- 2.5 DAMON (--source damon) -------------------------------------------------------
#
# A kdamond of our own watches the target through DAMON's sysfs interface (operations
# vaddr): every sampling interval it checks one random page of each of its adaptive
# regions, and at the end of each aggregation interval reports per region how many
# samples found it accessed (nr_accesses), through the damon:damon_aggregated
# tracepoint, which kernel/damon.bpf.o stores in a map we drain every interval.  (The
# other way to read the results, a tried-regions snapshot through sysfs, costs a sysfs
# directory per region and waits for the kdamond; bench/sources.py measures both.)  A
# cell is an access frequency, the share of the samples that found the row accessed,
# averaged over the aggregations that ended in the interval.  DAMON's sysfs interface
# cannot add a kdamond while another runs, and its kdamonds outlive the process that
# started them: /run/heatmap-damon holds our record of the one we run, locked while we
# run, so that a later run can tell a kdamond a killed run left behind (and stop it)
# from someone else's (never touched).
#
# Several processes (PIDs, --children, --cgroup) are the kdamond's targets, one per
# process; the tracepoint names a target by its index in the kdamond's list, so we keep
# which slot (ProcessSetSource) each index stands for.  A process that joins goes into
# the list with a `commit` (DAMON applies it between two aggregations) in the hole of
# one that exited, else at the end; the kdamond keeps an exited process's target until
# then (a commit with its reaped pid would fail).  Around a commit the aggregations of
# an index whose process changed are not counted: we cannot tell on which side of the
# commit they were sampled.

DAMON_KDAMONDS = "/sys/kernel/mm/damon/admin/kdamonds"
DAMON_RUN_DIR = "/run/heatmap-damon"
DAMON_AGGREGATIONS = 10  # aggregation intervals per heatmap interval
DAMON_SAMPLES = 20  # sampling intervals per aggregation interval
DAMON_MIN_SAMPLE_US = 1000
DAMON_NR_REGIONS = (100, 1000)  # DAMON's default maximum; 10 times its minimum
DAMON_MAP_ENTRIES = 2 * DAMON_AGGREGATIONS * DAMON_NR_REGIONS[1]
# byte offsets of the tracepoint's fields that kernel/damon.bpf.c reads
DAMON_EVENT_FIELDS = {"target_id": 8, "nr_regions": 16, "start": 24, "end": 32,
                      "nr_accesses": 40}
_DAMON_KEY = struct.Struct("<QIIQ")  # struct region_key: aggregation, target, pad, start
_DAMON_VAL = struct.Struct("<QII")  # struct region_val: end, nr_accesses, nr_regions


def _write(path: str, value) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def event_offsets(format_text: str) -> dict[str, int]:
    """Field name -> byte offset from a tracefs events/*/*/format text."""
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(r"field:[^;]*?(\w+)(?:\[\d*\])?;\s*offset:(\d+);", format_text)}


def damon_intervals(interval: float, aging_interval: float | None = None
                    ) -> tuple[int, int, int]:
    """(sample_us, aggr_us, update_us) for a heatmap interval in seconds.  DAMON's
    sampling interval is the aging interval when one is given (a whole number k of them
    per column, aggregated up to DAMON_AGGREGATIONS times per column: a column then
    averages its k samples), else DAMON_SAMPLES per aggregation, DAMON_AGGREGATIONS
    aggregations per column."""
    update = round(interval * 1e6)
    if aging_interval is None:
        aggr = max(DAMON_MIN_SAMPLE_US, round(interval * 1e6 / DAMON_AGGREGATIONS))
        sample = max(DAMON_MIN_SAMPLE_US, aggr // DAMON_SAMPLES)
    else:
        k = agings_per_column(interval, aging_interval)
        per_column = max(n for n in range(1, min(k, DAMON_AGGREGATIONS) + 1) if k % n == 0)
        sample = max(DAMON_MIN_SAMPLE_US, round(aging_interval * 1e6))
        aggr = sample * (k // per_column)
    return sample, aggr, max(aggr, min(1_000_000, update))


def damon_frequencies(records, carry=()) -> tuple[dict, dict, list]:
    """From drained records (aggregation, target, start, end, nr_accesses, nr_regions):
    per target, the nr_accesses summed per (target, start, end) over its complete
    aggregations and how many aggregations that is ({target: n}), and the records of a
    target's newest aggregation if it is still incomplete (the kdamond was reporting it
    while we drained), to be kept for the next drain.  Counted per target, so that an
    aggregation whose targets a drain split counts once for each."""
    by_agg: dict[tuple[int, int], list] = {}
    for rec in itertools.chain(carry, records):
        by_agg.setdefault((rec[1], rec[0]), []).append(rec)
    kept: list = []
    newest: dict[int, int] = {}
    for target, agg in by_agg:
        newest[target] = max(agg, newest.get(target, agg))
    for target, agg in newest.items():
        pending = by_agg[(target, agg)]
        if len(pending) < pending[0][5]:
            kept += by_agg.pop((target, agg))
    sums: dict[tuple[int, int, int], int] = {}
    aggs: dict[int, int] = {}
    for (target, _agg), recs in by_agg.items():
        aggs[target] = aggs.get(target, 0) + 1
        for _a, _t, start, end, acc, _n in recs:
            sums[(target, start, end)] = sums.get((target, start, end), 0) + acc
    return sums, aggs, kept


def damon_target_order(order: list, joining: list) -> list:
    """The kdamond's targets after a commit, from its list now (slots; None for a
    process that exited) and the slots that join: each joiner in the first hole, else
    at the end; a hole left over filled with the last target (or dropped, at the end),
    so that as few indexes as can be change their process."""
    out = list(order)
    for slot in joining:
        if None in out:
            out[out.index(None)] = slot
        else:
            out.append(slot)
    while None in out:
        last = out.pop()
        if last is not None:
            out[out.index(None)] = last
    return out


def damon_initial_regions(maps: list[Mapping], min_regions: int, page: int
                          ) -> list[tuple[int, int]]:
    """The regions DAMON's vaddr operations start a target with, from its mappings
    (/proc/PID/maps, sorted): the address space cut at its two widest gaps into three
    ranges, split evenly into about min_regions pieces.  A target committed to a running
    kdamond is given them in sysfs, as it gets nothing until DAMON's next update of its
    ranges otherwise (up to update_us on, then still unsplit).  [] when there are fewer
    than two gaps (DAMON cannot watch such a process either)."""
    vmas = [m for m in maps if m.path != "[vsyscall]"]  # (the gate area: no VMA)
    gaps = sorted(((b.start - a.end, a.end, b.start) for a, b in zip(vmas, vmas[1:])
                   if b.start > a.end), reverse=True)[:2]
    if len(gaps) < 2:
        return []
    (_, g1, h1), (_, g2, h2) = sorted(gaps, key=lambda g: g[1])
    up = lambda a: -(-a // page) * page  # noqa: E731 (ALIGN)
    ranges = [(up(vmas[0].start), up(g1)), (up(h1), up(g2)), (up(h2), up(vmas[-1].end))]
    size = max(page, sum(e - s for s, e in ranges) // max(1, min_regions))
    out = []
    for start, end in ranges:
        pieces = (end - start) // size
        piece = (end - start) // pieces // page * page if pieces else 0
        if not piece:
            out.append((start, end))
            continue
        cuts = [start + i * piece for i in range(pieces)] + [end]
        out += list(zip(cuts, cuts[1:]))
    return out


def spread_over_regions(ranges, maps: list[Mapping], shift: int, page_shift: int
                        ) -> dict[int, float]:
    """For (start, end, weight) address ranges and sorted shown mappings: the weighted
    mapped pages per region (address >> shift)."""
    out: dict[int, float] = {}
    starts = [m.start for m in maps]
    for start, end, weight in ranges:
        if weight <= 0:
            continue
        j = max(0, bisect.bisect_right(starts, start) - 1)
        while j < len(maps) and maps[j].start < end:
            a, b = max(start, maps[j].start), min(end, maps[j].end)
            j += 1
            r = a >> shift
            while a < b:
                nxt = min(b, (r + 1) << shift)
                out[r] = out.get(r, 0.0) + weight * ((nxt - a) >> page_shift)
                a, r = nxt, r + 1
    return out


def _kallsyms_has(prefix: bytes) -> bool | None:
    """Whether a kernel symbol starts with prefix (None if kallsyms cannot be read)."""
    try:
        with open("/proc/kallsyms", "rb") as f:
            tail = b""
            for block in iter(lambda: f.read(1 << 20), b""):
                if prefix in tail + block:
                    return True
                tail = block[-len(prefix):]
    except OSError:
        return None
    return False


def _recorded_pids(record: dict) -> list:
    """The pids a record of ours says its run gave DAMON (older ones: "target")."""
    return list(record.get("targets") or [record.get("target")])


class DamonCounts(CountsSource):
    """Access frequencies from a kdamond of our own (CONFIG_DAMON_VADDR, DAMON_SYSFS)."""

    name = "damon"
    cell = "% of DAMON's samples that found the row accessed"
    kernel_work = "kdamond"  # the kdamond's CPU time
    tells_node = tells_kind = False
    samples_itself = True  # every sampling interval; --aging-interval sets it
    aging_word = "sample"
    capabilities = CAPS  # sysfs as root; the BPF side
    # several processes (ProcessSetCounts): the kdamond's targets, one slot each;
    # counts come back with region_index + (slot << (TARGET_BITS - region_shift))
    multi_target = True
    # a zoom keeps the run's region size: counts at a finer one would be a second
    # kdamond, and DAMON's sysfs interface is one user's (ours is locked by this run)
    zooms_finer = False

    NO_SYSFS = (f"the kernel has no DAMON sysfs interface ({DAMON_KDAMONDS} is missing: "
                f"CONFIG_DAMON, CONFIG_DAMON_SYSFS)")

    @classmethod
    def unavailable(cls, pid: int) -> str | None:
        if not os.path.isdir(DAMON_KDAMONDS):
            return cls.NO_SYSFS
        ops = cls._operations()
        if ops is None:
            ops = ["vaddr"] if _kallsyms_has(b" damon_va_") is not False else []
        if "vaddr" not in ops:
            return cls._no_vaddr(ops)
        return cls._in_use()

    @staticmethod
    def _operations() -> list[str] | None:
        """DAMON's operation sets, if a context (anyone's) is there to say (read only)."""
        for path in sorted(glob.glob(f"{DAMON_KDAMONDS}/*/contexts/*/avail_operations")):
            with contextlib.suppress(OSError):
                return _read(path).split()
        return None

    _intervals = staticmethod(damon_intervals)

    @staticmethod
    def _no_vaddr(ops) -> str:
        return (f"the kernel's DAMON cannot watch a process (operations: "
                f"{', '.join(ops) or 'none'}; CONFIG_DAMON_VADDR)")

    @staticmethod
    def _kdamonds() -> list[str]:
        n = int(_read(f"{DAMON_KDAMONDS}/nr_kdamonds"))
        return [f"{DAMON_KDAMONDS}/{i}" for i in range(n)]

    @classmethod
    def _in_use(cls, leftover=None) -> str | None:
        """Why the kdamonds there are not ours to use (None: there are none, or they
        are exactly the leftover record of a dead run)."""
        kdamonds = cls._kdamonds()
        if not kdamonds or (leftover is not None and cls._is_leftover(leftover, kdamonds)):
            return None
        what = []
        for k in kdamonds:
            state = _read(f"{k}/state").strip()
            pid = _read(f"{k}/pid").strip() if state == "on" else ""
            ops = ""
            with contextlib.suppress(OSError):
                ops = " " + _read(f"{k}/contexts/0/operations").strip()
            what.append(f"kdamond {k.rsplit('/', 1)[1]} {state}{ops}" +
                        (f" (pid {pid})" if pid and pid != "-1" else ""))
        return (f"DAMON is in use by another program ({', '.join(what)}); heatmap leaves "
                f"it alone, and DAMON's sysfs interface cannot add a kdamond meanwhile")

    @staticmethod
    def _is_leftover(record: dict, kdamonds: list[str]) -> bool:
        """Whether the kdamonds are the one a dead heatmap run recorded: its targets
        all pids the run gave it (or 0, a target directory not written yet)."""
        if len(kdamonds) != 1:
            return False
        k = kdamonds[0]
        targets = f"{k}/contexts/0/targets"
        try:
            pids = {int(_read(f"{targets}/{i}/pid_target"))
                    for i in range(int(_read(f"{targets}/nr_targets")))}
            ops = _read(f"{k}/contexts/0/operations").strip()
            running = _read(f"{k}/state").strip() == "on"
            pid = int(_read(f"{k}/pid")) if running else 0
        except (OSError, ValueError):
            return False
        ours = set(_recorded_pids(record)) | {0}
        return (ops == "vaddr" and bool(pids) and pids <= ours
                and (not running or not record.get("kdamond") or pid == record["kdamond"]))

    def __init__(self, pid: int, region_shift: int, max_regions: int, interval=2.0,
                 aging_interval=None):
        if not os.path.isdir(DAMON_KDAMONDS):
            raise SourceUnavailable(self.NO_SYSFS)
        ops = self._operations()
        if ops is not None and "vaddr" not in ops:  # before whether DAMON is in use
            raise SourceUnavailable(self._no_vaddr(ops))
        self.pid = pid
        self.region_shift = region_shift
        self.page_shift = os.sysconf("SC_PAGE_SIZE").bit_length() - 1
        self.sample_us, self.aggr_us, self.update_us = self._intervals(interval or 2.0,
                                                                       aging_interval)
        # (DAMON samples on its own: LiveSource ages it once per column)
        self.samples_per_column = max(1, round((interval or 2.0) * 1e6 / self.sample_us))
        self.notes = ()
        self._lock = None
        self._made = False  # nr_kdamonds is ours to set back to 0
        self._obj = None
        self._carry: list = []
        self._pending = []
        self._kdamond = 0
        self._cpu = 0.0
        self.targets = {0: pid}  # slot -> pid: the processes watched
        self._order: list[int | None] = [0]  # the kdamond's targets: index -> slot
        # index -> [(from aggregation, slot or None: not counted)], oldest first
        self._history: dict[int, list] = {0: [(0, 0)]}
        self._joining: list[int] = []  # slots added since the last commit
        self._pids = [pid]  # every pid given to the kdamond (our record)
        try:
            self._claim()
            self._start()
        except PermissionError:
            self.close()
            raise HeatmapError("not permitted to set up DAMON: the damon source needs "
                               "root") from None
        except BaseException:
            self.close()
            raise

    # -- our record, and claiming DAMON's sysfs interface -------------------------------
    @property
    def _record_path(self) -> str:
        return os.path.join(DAMON_RUN_DIR, "damon.json")

    def _claim(self) -> None:
        """Lock our record; stop a kdamond a dead run left; refuse anyone else's."""
        import fcntl

        os.makedirs(DAMON_RUN_DIR, mode=0o700, exist_ok=True)
        self._lock = os.open(os.path.join(DAMON_RUN_DIR, "damon.lock"),
                             os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SourceUnavailable("another heatmap run is using DAMON") from None
        try:
            record = json.loads(_read(self._record_path))
        except (OSError, ValueError):
            record = None
        busy = self._in_use(record if isinstance(record, dict) else None)
        if busy:
            raise SourceUnavailable(busy)
        if self._kdamonds():  # a dead run's, as its record says
            self._made = True
            pid = record.get("kdamond")
            self._teardown()
            watched = _recorded_pids(record)
            self.notes = (f"stopped the kdamond{f' (pid {pid})' if pid else ''} that an "
                          f"earlier heatmap run (pid {record.get('heatmap')}, watching "
                          f"pid{'s' if len(watched) > 1 else ''} "
                          f"{', '.join(map(str, watched))}) left behind",)
        self._save_record(0)

    def _save_record(self, kdamond: int) -> None:
        """Our record: before a pid goes into DAMON's sysfs files, so that whatever
        a kill leaves there, the next run knows it for ours."""
        tmp = self._record_path + ".tmp"
        _write(tmp, json.dumps({"heatmap": os.getpid(), "targets": self._pids,
                                "kdamond": kdamond}))
        os.replace(tmp, self._record_path)

    # -- the kdamond and the tracepoint -------------------------------------------------
    def _start(self) -> None:
        k = f"{DAMON_KDAMONDS}/0"
        ctx = f"{k}/contexts/0"
        self._made = True
        _write(f"{DAMON_KDAMONDS}/nr_kdamonds", 1)
        _write(f"{k}/contexts/nr_contexts", 1)
        ops = _read(f"{ctx}/avail_operations").split()
        if "vaddr" not in ops:
            raise SourceUnavailable(self._no_vaddr(ops))
        _write(f"{ctx}/operations", "vaddr")
        attrs = f"{ctx}/monitoring_attrs"
        _write(f"{attrs}/intervals/sample_us", self.sample_us)
        _write(f"{attrs}/intervals/aggr_us", self.aggr_us)
        _write(f"{attrs}/intervals/update_us", self.update_us)
        _write(f"{attrs}/nr_regions/min", DAMON_NR_REGIONS[0])
        _write(f"{attrs}/nr_regions/max", DAMON_NR_REGIONS[1])
        self._load()  # (the kdamond is turned on by the first age())

    def _first_on(self) -> None:
        """Turn the kdamond on with every process added so far (the first age()), so
        that each gets its regions from DAMON's own start rather than a commit."""
        order = self._order + self._joining
        self._pids += [self.targets[s] for s in self._joining]
        self._save_record(0)
        try:
            self._write_targets(order)
            self._turn_on()
        except OSError as e:
            pids = ", ".join(str(self.targets[s]) for s in order)
            raise HeatmapError(f"DAMON would not start watching pid{'s' * (len(order) > 1)} "
                               f"{pids}: {e.strerror or e}") from None
        self._order, self._joining = order, []
        self._history = {i: [(0, slot)] for i, slot in enumerate(order)}

    def _turn_on(self) -> None:
        k = f"{DAMON_KDAMONDS}/0"
        _write(f"{k}/state", "on")
        self._kdamond = int(_read(f"{k}/pid"))
        self._follow(self._kdamond)
        self._save_record(self._kdamond)
        self._cpu = self._kdamond_cpu()

    def _follow(self, kdamond: int) -> None:
        """Keep the tracepoint's reports of this kdamond thread (and only of it)."""
        self._obj.set("kdamond_pid", kdamond)

    def _write_targets(self, order: list[int], regions=None) -> None:
        """The targets DAMON's sysfs files hold (for `on` and `commit`), and initial
        regions {index: [(start, end)]} for some.  Writing nr_targets makes every
        target directory anew, so an index without regions here has none in sysfs,
        and a commit leaves that target's regions in the kdamond as they are."""
        targets = f"{DAMON_KDAMONDS}/0/contexts/0/targets"
        _write(f"{targets}/nr_targets", len(order))
        for i, slot in enumerate(order):
            _write(f"{targets}/{i}/pid_target", self.targets[slot])
            given = (regions or {}).get(i)
            if given:
                _write(f"{targets}/{i}/regions/nr_regions", len(given))
                for j, (start, end) in enumerate(given):
                    _write(f"{targets}/{i}/regions/{j}/start", start)
                    _write(f"{targets}/{i}/regions/{j}/end", end)

    def _initial_regions(self, slot: int) -> list[tuple[int, int]]:
        try:
            maps = read_maps("/proc", self.targets[slot])
        except OSError:
            return []  # (gone: the commit fails and is tried again without it)
        return damon_initial_regions(maps, DAMON_NR_REGIONS[0], 1 << self.page_shift)

    # -- several processes: targets joining and leaving ---------------------------------
    def add_target(self, pid: int, slot: int) -> None:
        """Watch one more process, from the next age() on (one commit for all that
        joined meanwhile)."""
        if not 0 < slot < MAX_TARGETS:
            raise HeatmapError(f"the damon source watches at most {MAX_TARGETS} processes")
        self.targets[slot] = pid
        self._joining.append(slot)

    def warm(self, slot: int) -> None:
        """(Nothing to drop: DAMON samples a joining process from its commit on.)"""

    def remove_target(self, slot: int) -> None:
        """Forget a process that exited; its target stays in the kdamond (reporting
        nothing we count) until the next commit gives its index to another."""
        if self.targets.pop(slot, None) is not None:
            self._order = [None if s == slot else s for s in self._order]
            self._joining = [s for s in self._joining if s != slot]

    def _forget_gone(self) -> None:
        """Processes reaped since the run last looked: a commit with their pid would
        fail (or, the pid reused, watch another process)."""
        for slot, pid in list(self.targets.items()):
            if not os.path.exists(f"/proc/{pid}"):
                self.remove_target(slot)

    def _commit(self) -> None:
        """Give the kdamond the processes that joined: a commit, which DAMON applies
        between two aggregations (the kdamond started again if it had stopped: every
        target it had exited)."""
        if not self._kdamond:
            self._first_on()
            return
        k = f"{DAMON_KDAMONDS}/0"
        problem = None
        for _ in range(3):  # (a process reaped meanwhile fails the commit: again)
            self._forget_gone()
            if not self._joining:
                return
            order = damon_target_order(self._order, self._joining)
            self._pids += [self.targets[s] for s in self._joining]
            self._save_record(self._kdamond)
            regions = {i: self._initial_regions(slot) for i, slot in enumerate(order)
                       if slot in self._joining}
            before = self._aggregations()
            try:
                self._write_targets(order, regions)
                if _read(f"{k}/state").strip() == "on":
                    _write(f"{k}/state", "commit")
                else:
                    self._turn_on()
            except OSError as e:
                problem = e
                continue
            self._remap(order, before, self._aggregations())
            self._joining = []
            return
        pids = ", ".join(str(self.targets[s]) for s in self._joining)
        raise HeatmapError(f"DAMON would not start watching pid {pids}: "
                           f"{problem.strerror or problem}")

    def _remap(self, order: list[int], before: int, after: int) -> None:
        """After a commit: an index whose process changed is counted again from the
        second aggregation after the commit returned (the commit came after
        aggregation `before` and, at the latest, just before aggregation after + 1)."""
        old, self._order = self._order, list(order)
        for i in range(max(len(old), len(order))):
            was = old[i] if i < len(old) else None
            now = order[i] if i < len(order) else None
            if was is not None and was == now:
                continue
            history = self._history.setdefault(i, [])
            history.append((before + 1, None))
            if now is not None:
                history.append((after + 2, now))

    def _slot_at(self, index: int, aggregation: int) -> int | None:
        """The slot a record of the kdamond's target `index` in `aggregation` is
        for (None: not counted)."""
        slot = None
        for start, s in self._history.get(index, ()):
            if start > aggregation:
                break
            slot = s
        return slot

    def _prune(self, oldest: int) -> None:
        """Forget what the indexes stood for before aggregation `oldest`."""
        for history in self._history.values():
            while len(history) > 1 and history[1][0] <= oldest:
                history.pop(0)

    def _load(self) -> None:
        """Load and attach kernel/damon.bpf.o (before the kdamond starts)."""
        import bpfload
        from bpfload.links import tracefs

        try:
            fmt = _read(os.path.join(tracefs(), "events", "damon", "damon_aggregated",
                                     "format"))
        except FileNotFoundError:
            raise SourceUnavailable("the kernel has no damon:damon_aggregated tracepoint "
                                    "(CONFIG_TRACEPOINTS)") from None
        except bpfload.BPFLoadError as e:  # tracefs not mounted
            raise HeatmapError(str(e)) from None
        offsets = event_offsets(fmt)
        if any(offsets.get(f) != o for f, o in DAMON_EVENT_FIELDS.items()):
            raise HeatmapError("the damon:damon_aggregated tracepoint's layout is not the "
                               "one kernel/damon.bpf.c reads")
        self._obj = _attached_object(
            bpf_object("damon.bpf.o"),
            lambda obj: obj.set_max_entries("regions", DAMON_MAP_ENTRIES))
        self._bpfload = bpfload

    def _kdamond_cpu(self) -> float:
        """Seconds the kdamond has run on a CPU (ticks where there is no schedstat)."""
        try:
            return int(_read(f"/proc/{self._kdamond}/schedstat").split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            pass
        try:
            fields = _read(f"/proc/{self._kdamond}/stat").rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return self._cpu  # stopped: its target exited

    def age(self) -> float:
        self._commit()
        cpu = self._kdamond_cpu()
        took, self._cpu = cpu - self._cpu, cpu
        oldest = self._aggregations()  # (what comes later is of this one on)
        records = []
        for agg, index, start, end, acc, nr in self._records():
            slot = self._slot_at(index, agg)
            if slot in self.targets:
                records.append((agg, slot, start, end, acc, nr))
        sums, aggs, self._carry = damon_frequencies(records, self._carry)
        self._prune(min([oldest] + [rec[0] for rec in self._carry]))
        samples = max(1, self.aggr_us // self.sample_us)
        ranges: dict[int, list] = {}
        for (slot, s, e), acc in sorted(sums.items()):
            ranges.setdefault(slot, []).append((s, e, acc / (aggs[slot] * samples)))
        self._pending = []
        for slot, found in ranges.items():
            if slot not in self.targets:
                continue  # (carried over from before it exited)
            try:
                maps = shown_mappings(read_maps("/proc", self.targets[slot]))
            except OSError:
                if len(self.targets) == 1:
                    raise
                continue  # gone: the run finds out from /proc
            off = slot << (TARGET_BITS - self.region_shift)
            young = spread_over_regions(found, maps, self.region_shift, self.page_shift)
            self._pending += [(r + off, 0, round(y), 0) for r, y in young.items() if round(y)]
        return took

    def _aggregations(self) -> int:
        """The number of the newest aggregation the tracepoint reported."""
        return self._obj.get("aggregations")

    def _records(self) -> list[tuple[int, int, int, int, int, int]]:
        """What the tracepoint stored since the last call: (aggregation, target index,
        start, end, nr_accesses, nr_regions) per region."""
        try:
            keys, values, _n = self._obj.map("regions").lookup_batch(delete=True)
        except self._bpfload.BPFLoadError as e:
            raise _bpf_error(e) from None
        return [(agg, index, start, end, acc, nr) for (agg, index, _pad, start), (end, acc, nr)
                in zip(_DAMON_KEY.iter_unpack(keys), _DAMON_VAL.iter_unpack(values))]

    def dropped(self) -> int:
        return self._obj.get("dropped_regions") if self._obj is not None else 0

    # -- teardown, on every exit path ---------------------------------------------------
    def _teardown(self) -> None:
        """Stop the kdamond and remove its sysfs directories (nr_kdamonds 0)."""
        k = f"{DAMON_KDAMONDS}/0"
        with contextlib.suppress(FileNotFoundError):
            if _read(f"{k}/state").strip() == "on":
                _write(f"{k}/state", "off")
        _write(f"{DAMON_KDAMONDS}/nr_kdamonds", 0)

    def close(self) -> None:
        problem = None
        obj, self._obj = self._obj, None
        if obj is not None:
            obj.close()
        if self._made:
            try:
                self._teardown()
                self._made = False
            except OSError as e:
                problem = f"could not stop heatmap's kdamond: {e.strerror or e}"
        if self._lock is not None:
            if not self._made:
                with contextlib.suppress(OSError):
                    os.unlink(self._record_path)
            os.close(self._lock)
            self._lock = None
        if problem:
            raise HeatmapError(problem)


# ---- 2.6 clear_refs and smaps (--source refs) -----------------------------------------
#
# Writing 1 to /proc/PID/clear_refs clears the accessed bits of all the target's pages;
# /proc/PID/smaps then says per mapping how much of its resident memory was referenced
# since.  Almost every kernel has both (CONFIG_PROC_PAGE_MONITOR), and the target's
# owner may use them.  Per mapping only: each region of a mapping gets the mapping's
# share of referenced resident pages, and the rows are one per mapping.

_SMAPS_SHARE = re.compile(
    rb"^([0-9a-f]+)-([0-9a-f]+) [^\n]*\n(?:[^\n]*\n)*?Rss:\s+(\d+) kB\n"
    rb"(?:[^\n]*\n)*?Referenced:\s+(\d+) kB", re.M)


def smaps_referenced(text: bytes) -> list[tuple[int, int, int, int]]:
    """(start, end, rss_kb, referenced_kb) of every mapping in a /proc/PID/smaps text."""
    return [(int(a, 16), int(b, 16), int(rss), int(ref))
            for a, b, rss, ref in _SMAPS_SHARE.findall(text)]


def spread(total: float, sizes: list[int]) -> list[int]:
    """round(total) shared out over items in proportion to their sizes, as integers
    (running rounding: each item's share is within one of exact)."""
    whole = sum(sizes)
    out = []
    acc = done = 0
    for size in sizes:
        acc += size
        upto = round(total * acc / whole) if whole else 0
        out.append(upto - done)
        done = upto
    return out


class RefsCounts(FileSource):
    """Referenced pages per mapping from clear_refs and smaps."""

    name = "refs"
    cell = "% of the mapping's resident pages referenced"
    kernel_work = "scan"  # smaps and clear_refs walk the target's page tables
    tells_node = tells_kind = False
    per_mapping = True

    @classmethod
    def unavailable(cls, pid: int) -> str | None:
        if os.path.exists(f"/proc/{pid}") and not os.path.exists(f"/proc/{pid}/clear_refs"):
            return (f"the kernel has no /proc/{pid}/clear_refs (CONFIG_PROC_PAGE_MONITOR)")
        return None

    def __init__(self, pid: int, region_shift: int, max_regions: int, interval=None):
        super().__init__(pid, region_shift)
        try:
            self._clear = self._open(f"/proc/{pid}/clear_refs", os.O_WRONLY)
            self._smaps = self._open(f"/proc/{pid}/smaps", os.O_RDONLY)
            self._flush = self._open_tlb_flush()
        except BaseException:
            self.close()
            raise

    def _read_smaps(self) -> bytes:
        parts = []
        while True:
            b = os.read(self._smaps, 1 << 20)
            if not b:
                os.lseek(self._smaps, 0, os.SEEK_SET)
                return b"".join(parts)
            parts.append(b)

    def age(self) -> float:
        t0 = time.perf_counter()
        text = self._read_smaps()
        os.write(self._clear, b"1")
        if self._flush is not None:
            os.write(self._flush, b"4")
        took = time.perf_counter() - t0
        shift, page = self.region_shift, self.page_size
        counts = []
        for start, end, rss, ref in smaps_referenced(text):
            if not (rss and ref):
                continue
            regions = range(start >> shift, ((end - 1) >> shift) + 1)
            pages = [(min(end, (r + 1) << shift) - max(start, r << shift)) // page
                     for r in regions]
            share = min(1.0, ref / rss)
            counts.extend((r, 0, y, 0) for r, y in zip(regions, spread(share * sum(pages),
                                                                       pages)) if y)
        self._pending = counts
        return took


# ---- 2.7 choosing a source (--source) -------------------------------------------------

SOURCES = (KernelCounts, IdleCounts, DamonCounts, RefsCounts)  # auto's order: best first
SOURCE_NAMES = ("auto",) + tuple(cls.name for cls in SOURCES)


def source_class(name: str) -> type[CountsSource]:
    """The source class of a --source name (its traits, for rendering a recording)."""
    for cls in SOURCES:
        if cls.name == name:
            return cls
    raise KeyError(name)


def source_traits(header: dict) -> type[CountsSource]:
    """The traits of the source a run's header names (recordings before sources: mglru)."""
    return source_class(header.get("source") or "mglru")


class SourceChoice:
    """--source as a counts factory: the named source, or for auto the first of SOURCES
    that the running kernel offers and heatmap has the capabilities for."""

    checks_capabilities = True  # LiveSource leaves that to us

    def __init__(self, name: str, proc_root: str = "/proc", aging_interval=None):
        self.name = name
        self.proc = proc_root
        self.aging_interval = aging_interval  # (None: the interval)

    def _missing(self, cls) -> list[str]:
        from bpfload.procfs import missing_capabilities

        try:
            with open(f"{self.proc}/self/status", encoding="utf-8") as f:
                return missing_capabilities(f.read(), cls.capabilities)
        except OSError:
            return []

    def __call__(self, pid: int, region_shift: int, max_regions: int, interval=2.0):
        if self.name == "auto":
            return self._auto(pid, region_shift, max_regions, interval)
        cls = source_class(self.name)
        missing = self._missing(cls)
        if missing:
            raise HeatmapError(f"not permitted: the {cls.name} source needs "
                               f"{', '.join(cls.capabilities)} (run it as root); missing "
                               f"{', '.join(missing)}")
        try:
            counts = self._make(cls, pid, region_shift, max_regions, interval)
        except SourceUnavailable as e:
            others = [c.name for c in SOURCES
                      if c is not cls and not self._missing(c) and c.unavailable(pid) is None]
            raise SourceUnavailable(f"{e}; sources available here: "
                                    f"{', '.join(others) or 'none'}") from None
        counts.auto = False
        return counts

    def _make(self, cls, pid, region_shift, max_regions, interval):
        """cls opened; a source that samples on its own is told the aging interval
        (LiveSource ages the others that often)."""
        if cls.samples_itself and self.aging_interval not in (None, interval):
            return cls(pid, region_shift, max_regions, interval,
                       aging_interval=self.aging_interval)
        return cls(pid, region_shift, max_regions, interval)

    def _auto(self, pid, region_shift, max_regions, interval):
        reasons = []
        for cls in SOURCES:
            missing = self._missing(cls)
            if missing:
                reasons.append(f"{cls.name}: needs {', '.join(missing)}")
                continue
            try:
                counts = self._make(cls, pid, region_shift, max_regions, interval)
            except SourceUnavailable as e:
                reasons.append(f"{cls.name}: {e}")
                continue
            counts.auto = True
            return counts
        raise HeatmapError("no source works here (" + "; ".join(reasons) + ")")


# ---- 2.8 a live run: the counts, aged and drained every interval, and /proc ----------

PAGEMAP_CHUNK = 1 << 16  # pagemap entries read at once (512 KiB)


def agings_per_column(interval: float, aging_interval: float) -> int:
    """How many agings of aging_interval seconds make one column of interval seconds
    (HeatmapError unless a whole number: a column must be the same agings every time)."""
    k = round(interval / aging_interval)
    if k < 1 or abs(k * aging_interval - interval) > 1e-6 * interval:
        raise HeatmapError(f"--interval {interval:g} is not a whole number of agings of "
                           f"--aging-interval {aging_interval:g} (e.g. --aging-interval "
                           f"{interval / max(1, k):g})")
    return k


def map_capacity(regions: int) -> int:
    """Regions the BPF map is sized for (per node): the spanned regions plus slack."""
    return regions + max(64, regions // 4)


def read_stat(proc_root: str, pid: int) -> tuple[str, str]:
    """(comm, state) from /proc/PID/stat; FileNotFoundError/ProcessLookupError if gone."""
    with open(f"{proc_root}/{pid}/stat", encoding="utf-8", errors="replace") as f:
        text = f.read()
    i, j = text.find("("), text.rfind(")")
    if i < 0 or j < i:
        return "?", "?"
    return text[i + 1: j], text[j + 2: j + 3]


def read_status_number(proc_root: str, pid: int, field: str) -> int | None:
    """The first number of a /proc/PID/status line ("Tgid:", "VmRSS:"), None if not
    there or unreadable."""
    try:
        with open(f"{proc_root}/{pid}/status", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def read_tgid(proc_root: str, pid: int) -> int | None:
    """The process (thread group) that thread `pid` belongs to, None if unknown."""
    return read_status_number(proc_root, pid, "Tgid:")


def read_rss_kb(proc_root: str, pid: int) -> int:
    return read_status_number(proc_root, pid, "VmRSS:") or 0


def read_maps(proc_root: str, pid: int) -> list[Mapping]:
    with open(f"{proc_root}/{pid}/maps", encoding="utf-8", errors="replace") as f:
        return parse_maps(f.read())


# Where huge pages back the target, for every source: one accessed bit stands for a
# whole PMD-mapped huge page, so touching one byte of it makes all of it young (the
# kernel's truth, not the share of the memory used).  A page table maps a huge page
# only at a PMD-aligned address, so one pagemap entry per aligned PMD slot (its PFN),
# /proc/kpageflags for that frame (a THP's head, or a hugetlb page) and the slot's last
# entry (the same folio, PFN + pages - 1) find them.
KPF_HUGE = 1 << 17  # hugetlbfs
HUGE_SLOTS = 1 << 14  # PMD slots looked at per interval (32 GiB of 2 MiB slots)


class HugePages:
    """Pages huge pages back per region of the target; unknown (None) without the
    PFNs pagemap shows only to CAP_SYS_ADMIN, or without /proc/kpageflags."""

    def __init__(self, proc_root: str, pid: int, shift: int, page_size: int):
        self.shift = shift
        self.page_size = page_size
        self.pmd_pages = page_size // 8  # a page of u64 page-table entries
        self._pagemap = self._kpageflags = None
        try:
            self._pagemap = os.open(f"{proc_root}/{pid}/pagemap", os.O_RDONLY)
            self._kpageflags = os.open(KPAGEFLAGS, os.O_RDONLY)
        except OSError:
            self.close()

    def _entry(self, page: int) -> int:
        raw = os.pread(self._pagemap, 8, 8 * page)
        return int.from_bytes(raw, "little") if len(raw) == 8 else 0

    def _huge_at(self, page: int) -> bool:
        """Whether one huge page maps the PMD slot that starts at virtual page `page`."""
        entry = self._entry(page)
        pfn = entry & PM_PFN
        if not entry & PM_PRESENT or not pfn or pfn % self.pmd_pages:
            return False
        raw = os.pread(self._kpageflags, 8, 8 * pfn)
        flags = int.from_bytes(raw, "little") if len(raw) == 8 else 0
        if not (flags & KPF_HUGE or flags & KPF_THP and flags & KPF_COMPOUND_HEAD):
            return False
        last = self._entry(page + self.pmd_pages - 1)
        return bool(last & PM_PRESENT) and last & PM_PFN == pfn + self.pmd_pages - 1

    def find(self, maps: list[Mapping]) -> list[tuple[int, int]] | None:
        """[(region, pages huge pages back)], regions in order; None if unknown."""
        if self._kpageflags is None:
            return None
        ps, slot_pages, shift = self.page_size, self.pmd_pages, self.shift
        slot = slot_pages * ps
        per_region = max(1, (1 << shift) // ps)
        found: dict[int, int] = {}
        budget = HUGE_SLOTS
        try:
            for m in filter(is_shown, maps):  # (not PROT_NONE reservations)
                lo = -(-m.start // slot) * slot
                for addr in range(lo, m.end - slot + 1, slot):
                    budget -= 1
                    if budget < 0:
                        return sorted(found.items())
                    if not self._huge_at(addr // ps):
                        continue
                    for region in range(addr >> shift, (addr + slot - 1 >> shift) + 1):
                        found[region] = found.get(region, 0) + min(slot_pages, per_region)
        except OSError:  # the target went away meanwhile
            return None
        return sorted(found.items())

    def close(self) -> None:
        for fd in (self._pagemap, self._kpageflags):
            if fd is not None:
                os.close(fd)
        self._pagemap = self._kpageflags = None


ZOOM_REGIONS = 1 << 18  # regions a zoomed-in counts map may hold per node (~16 MiB)
MAX_ZOOM = 64  # zoom levels a run may go down (a recording's zoom records are checked)


def zoomed_header(header: dict, zoom: dict) -> dict:
    """The recording header a zoom level's model reads: the run's, with the level's
    region shift, scope and depth (`zoom`: a zoom record's fields)."""
    out = {k: v for k, v in header.items() if k not in ("range", "mapping", "zoom")}
    return out | zoom


def zoom_view(info: dict) -> tuple:
    """What tells one zoom level's view from another in a header: level, region shift
    and scope."""
    return (info.get("zoom") or 0, info["region_shift"], tuple(info.get("range") or ()),
            info.get("mapping"))


def zoomed_process(info: dict) -> tuple | None:
    """(pid, comm, start, end) of a zoom level into one process of several (its range in
    the process's own addresses), else None."""
    if not (info.get("zoom") and info.get("targets") and info.get("range")):
        return None
    lo, hi = info["range"]
    slot = target_slot(lo)
    pid, comm = next(((p, c) for s, p, c in info["targets"] if s == slot), (None, ""))
    off = slot << TARGET_BITS
    return pid, comm, lo - off, hi - off


def zoom_shift(span: int, rows: int, page_size: int, shift: int, maps) -> int:
    """The region shift for a zoom into `span` bytes on `rows` rows: the largest that
    still gives every row a region of its own, never coarser than `shift` nor finer
    than a page, and coarse enough that the whole process (the kernel counts all of
    it) spans at most ZOOM_REGIONS regions."""
    page_shift = page_size.bit_length() - 1
    want = max(page_shift, min(shift, (max(1, span // max(1, rows))).bit_length() - 1))
    while want < shift and spanned_regions(maps, want) > ZOOM_REGIONS:
        want += 1
    return want


def _unwatchable(state: str) -> str:
    """Why a process with that /proc state letter and no mappings has nothing to watch."""
    if state == "Z":
        return "a zombie: it has exited and waits for its parent to reap it"
    if state == "X":
        return "exiting: it has no user memory left to watch"
    return "a kernel thread: it has no user memory to watch"


class LiveSource:
    """Samples from the kernel: every interval age the target, drain the counts, read
    its maps.  The counts come from counts_factory (a SourceChoice, or a fake in tests)."""

    truncated = False  # (a live run never ends mid-record; see ReplaySource)
    damaged = None
    can_zoom = True  # (a recording of its live view may hold zoom records)

    def __init__(self, pid, region_shift, interval, counts_factory, proc_root, clock,
                 page_size=None, scope: Scope | None = None, aging_interval=None):
        self.pid = pid
        self.shift = region_shift
        self.scope = scope or Scope()
        self.interval = interval
        self.aging_interval = aging_interval or interval
        # agings per column: age() that many times, the counts summed (see take())
        self.agings = agings_per_column(interval, self.aging_interval)
        self.calls = self.agings  # age() calls per column (1 for a self-sampling source)
        self.done = 0  # age() calls made in the column under way
        self.summed: dict[tuple[int, int], list[int]] = {}  # their counts
        self.aging_s = 0.0  # and the seconds they took
        self.factory = counts_factory
        self.proc = proc_root
        self.clock = clock
        self.page_size = page_size or os.sysconf("SC_PAGE_SIZE")
        self.counts = None
        self.header: dict = {}
        self.capacity = 0
        self.seq = 0
        self.t0 = 0.0
        self.next_due = 0.0
        self.prev_maps = None
        self.prev_all = None  # every mapping, as the capacity was last fitted to
        self.zooms: list[tuple[Scope, int]] = []  # (scope, shift) before each zoom
        self.zoomed: dict | None = None  # the view a zoom left, for the next sample
        self.comm = ""
        self.huge_pages: HugePages | None = None
        self.prev_huge = None
        self.notes: tuple[str, ...] = ()  # what opening the counts did, for the user
        # what the run waits for before its clock starts (the CLI: the symbols being
        # read, so that no interval's output waits for them and delays its agings)
        self.before_start = None

    def _wait_ready(self) -> None:
        if self.before_start is not None:
            self.before_start()

    def _exited(self) -> bool:
        try:
            return read_stat(self.proc, self.pid)[1] in ("Z", "X")
        except (FileNotFoundError, ProcessLookupError):
            return True

    def _missing_capabilities(self) -> list[str]:
        from bpfload.procfs import missing_capabilities

        try:
            with open(f"{self.proc}/self/status", encoding="utf-8") as f:
                return missing_capabilities(f.read(), CAPS)
        except OSError:
            return []

    def _refused(self, path: str) -> HeatmapError:
        """The error for a /proc file of the target we may not read."""
        if self._missing_capabilities():
            return HeatmapError(f"not permitted to read {path}: {CAPS_TEXT}")
        return HeatmapError(f"not permitted to read {path}, although heatmap has the "
                            f"capabilities it needs: the kernel keeps this process's memory "
                            f"map private (a non-dumpable process, or one outside this user "
                            f"namespace)")

    def _process_of(self, pid: int) -> tuple[int, tuple[str, ...]]:
        """A thread id stands for its process: the counts (and the walk's filter) are
        per process, so a thread's own id would match nothing."""
        tgid = read_tgid(self.proc, pid)
        if tgid is None or tgid == pid:
            return pid, ()
        try:
            comm = read_stat(self.proc, tgid)[0]
        except OSError:
            return pid, ()  # gone meanwhile: the checks below say so for the thread
        return tgid, (f"{pid} is a thread of process {tgid} ({_printable(comm)}): "
                      f"watching the process",)

    def _watchable(self, pid: int) -> tuple[str, list[Mapping]]:
        """(comm, maps) of a process heatmap can watch, else the one line why not."""
        try:
            comm, state = read_stat(self.proc, pid)
        except (FileNotFoundError, ProcessLookupError):
            raise HeatmapError(f"no such process: {pid}") from None
        except PermissionError:
            raise self._refused(f"/proc/{pid}/stat") from None
        try:
            maps = read_maps(self.proc, pid)
        except (FileNotFoundError, ProcessLookupError):
            raise HeatmapError(f"no such process: {pid}") from None
        except PermissionError:
            raise self._refused(f"/proc/{pid}/maps") from None
        if not maps or state in ("Z", "X"):
            raise HeatmapError(f"process {pid} ({_printable(comm)}) is {_unwatchable(state)}")
        missing = self.scope.missing(maps, pid, comm)
        if missing:
            raise HeatmapError(missing)
        return comm, maps

    def open(self) -> None:
        self.pid, said = self._process_of(self.pid)
        pid = self.pid
        comm, maps = self._watchable(pid)
        missing = [] if getattr(self.factory, "checks_capabilities", False) else \
            self._missing_capabilities()
        if missing:
            raise HeatmapError(f"not permitted: {CAPS_TEXT}; missing {', '.join(missing)}")
        self.capacity = map_capacity(spanned_regions(maps, self.shift))
        try:
            self.counts = self._open_counts(pid)
            self.notes = said + tuple(getattr(self.counts, "notes", ()))
            self._wait_ready()
            # the first aging reports everything touched since forever: drop it
            self.counts.age()
            self.counts.drain()
        except PermissionError:
            raise HeatmapError("not permitted: " + CAPS_TEXT) from None
        except OSError as e:
            raise HeatmapError(f"kernel counts: {e}") from None
        self.header = self._header(pid, comm)
        self.comm = comm
        self.huge_pages = HugePages(self.proc, pid, self.shift, self.page_size)
        self.t0 = self.clock()
        self.next_due = self.t0 + self.interval / self.calls

    def _open_counts(self, pid: int):
        """The counts source; one that samples on its own (samples_per_column: DAMON,
        told the aging interval by SourceChoice) is aged once per column."""
        counts = self.factory(pid, self.shift, self.capacity, interval=self.interval)
        own = getattr(counts, "samples_per_column", None)
        if own:
            self.agings, self.calls = own, 1
        return counts

    def _header(self, pid: int, comm: str) -> dict:
        return {"type": RECORD_TYPE, "version": RECORD_VERSION, "pid": pid,
                "comm": comm, "region_shift": self.shift,
                "page_size": self.page_size, "interval": self.interval,
                "aging_interval": self.aging_interval,
                "started": round(time.time(), 3),
                "source": getattr(self.counts, "name", "") or "mglru",
                "auto": bool(getattr(self.counts, "auto", False)),
                **self.scope.fields()}

    def due(self) -> float:
        """When the next aging is due (the column's last one ends it: take())."""
        return self.next_due

    def mid_column(self) -> bool:
        """Whether the aging that is due is one inside the column (age_between())."""
        return self.done + 1 < self.calls

    def _age_once(self) -> None:
        """One aging, its counts added to the column's."""
        self.aging_s += float(self.counts.age())
        for region, node, a, f in self.counts.drain():
            c = self.summed.setdefault((region, node), [0, 0])
            c[0] += a
            c[1] += f
        self.done += 1

    def _advance(self, now: float) -> None:
        self.next_due += self.interval / self.calls
        if self.next_due <= now:  # fell behind (slow aging, suspended): skip, don't burst
            self.next_due = now + self.interval / self.calls

    def age_between(self) -> None:
        """An aging inside the column: counted, nothing shown yet."""
        try:
            self._age_once()
        except OSError as e:
            raise self._counts_error(e) from None
        self._advance(self.clock())

    def _counts_error(self, e: OSError) -> Exception:
        """What a failed aging means: the target gone (ESRCH: its memory is, so it is
        exiting even while /proc still shows it running), or one line."""
        if isinstance(e, PermissionError):
            return HeatmapError("not permitted: " + CAPS_TEXT)
        if isinstance(e, ProcessLookupError) or self._exited():  # its /proc files too
            return TargetExited()
        return HeatmapError(f"kernel counts: {e}")

    def _name(self) -> str | None:
        """The target's name when it changed (an exec), else None; TargetExited if it
        is gone."""
        try:
            comm, state = read_stat(self.proc, self.pid)
        except (FileNotFoundError, ProcessLookupError):
            raise TargetExited() from None
        except OSError:  # (an exec made it unreadable: keep the old name)
            return None
        if state in ("Z", "X"):
            raise TargetExited()
        if comm == self.comm:
            return None
        self.comm = comm
        return comm

    def take(self, partial: bool = False) -> Sample:
        """The interval that is due, or with partial=True the one under way, cut short
        because the run ends."""
        try:
            self._age_once()
            dropped = int(self.counts.dropped())
        except OSError as e:
            raise self._counts_error(e) from None
        counts = [(r, nd, a, f) for (r, nd), (a, f) in self.summed.items()]
        aging, done = self.aging_s, self.done
        self.summed, self.aging_s, self.done = {}, 0.0, 0
        # a self-sampling source's counts are its measured share times the pages: in
        # page-agings like the others'
        agings = done * self.agings // self.calls
        if self.calls != self.agings:
            counts = [(r, nd, a * agings, f * agings) for r, nd, a, f in counts]
        now, wall = self.clock(), round(time.time(), 3)  # (the interval's end, both ways)
        maps = self._read_maps()
        comm = self._name()
        self._fit_capacity(maps)
        if not self.scope.whole:
            maps = self.scope.apply(maps)
            counts = counted_in(counts, maps, self.shift)
        huge = self.huge_pages.find(maps)
        if huge == self.prev_huge:
            huge = None  # (unchanged, or unknown)
        else:
            self.prev_huge = huge
        self.seq += 1
        changed = maps != self.prev_maps
        self.prev_maps = maps
        self._advance(now)
        counts.sort()
        zoomed, self.zoomed = self.zoomed, None
        return Sample(self.seq, round(now - self.t0, 6), round(aging, 6), dropped,
                      self._rss_kb(), maps if changed else None, counts,
                      comm, partial, huge, agings, wall, targets=self._targets_changed(),
                      zoom=zoomed)

    # (what ProcessSetSource, several processes, does otherwise)
    def _read_maps(self) -> list[Mapping]:
        try:
            maps = read_maps(self.proc, self.pid)
        except (FileNotFoundError, ProcessLookupError):
            raise TargetExited() from None
        if not maps:
            raise TargetExited()
        return maps

    def _rss_kb(self) -> int:
        return read_rss_kb(self.proc, self.pid)

    def _targets_changed(self):
        return None

    def _fit_capacity(self, maps: list[Mapping]) -> None:
        """Resize the counts for the target's mappings when they changed (all of them:
        the kernel counts the whole process, whatever the scope)."""
        if maps == self.prev_all:
            return
        self.prev_all = maps
        need = spanned_regions(maps, self.shift)
        if need > self.capacity or map_capacity(need) * 4 < self.capacity:
            self.capacity = map_capacity(need)
            self.counts.resize(self.capacity)

    def resident(self, ranges) -> list[int | None]:
        """Resident bytes of each (start, end, ...) address range of the target, from
        the present bits of /proc/PID/pagemap (None where it cannot be read)."""
        ps = self.page_size
        try:
            fd = os.open(f"{self.proc}/{self.pid}/pagemap", os.O_RDONLY)
        except OSError:
            return [None] * len(ranges)
        out: list[int | None] = []
        try:
            for start, end, *_ in ranges:
                present = 0
                try:
                    for page in range(start // ps, -(-end // ps), PAGEMAP_CHUNK):
                        n = min(PAGEMAP_CHUNK, -(-end // ps) - page)
                        entries = array.array("Q", os.pread(fd, 8 * n, 8 * page))
                        present += sum(1 for e in entries if e & PM_PRESENT)
                except (OSError, ValueError):
                    out.append(None)
                    continue
                out.append(present * ps)
        finally:
            os.close(fd)
        return out

    def resync(self) -> None:
        """After a pause: age and drop what accumulated, restart the column."""
        self.counts.age()
        self.counts.drain()
        self.summed, self.aging_s, self.done = {}, 0.0, 0
        self.next_due = self.clock() + self.interval / self.calls

    # -- zoom: a closer look at part of the scope, with regions as fine as it needs ----
    def zoom(self, lo: int, hi: int, rows: int) -> None:
        """Watch [lo, hi) of the current scope, with the region size following: as
        fine as gives each of `rows` rows a region of its own (page size at least,
        the whole process's map within ZOOM_REGIONS); the counts are reopened with it
        (for mglru: its BPF object reloaded with the smaller region shift)."""
        scope = self.scope.narrowed(lo, hi)
        if scope.lo >= scope.hi:
            raise HeatmapError("nothing to zoom into")
        if len(self.zooms) >= MAX_ZOOM:
            raise HeatmapError(f"{MAX_ZOOM} levels deep: zoom out first")
        shift = self.shift
        if not getattr(self.counts, "per_mapping", False) and \
                getattr(self.counts, "zooms_finer", True):
            shift = zoom_shift(scope.hi - scope.lo, rows, self.page_size, self.shift,
                               self._all_maps())
        self.zooms.append((self.scope, self.shift))
        try:
            self._rescope(scope, shift, len(self.zooms))
        except BaseException:
            self.zooms.pop()
            raise

    def unzoom(self) -> bool:
        """Back to the scope and region size before the last zoom; False if none."""
        if not self.zooms:
            return False
        scope, shift = self.zooms[-1]
        self._rescope(scope, shift, len(self.zooms) - 1)
        self.zooms.pop()
        return True

    def _all_maps(self) -> list[Mapping]:
        try:
            return read_maps(self.proc, self.pid)
        except (FileNotFoundError, ProcessLookupError):
            raise TargetExited() from None

    def _counts_like(self, old, pid: int, shift: int, capacity: int):
        """Counts of the same kind as `old` for `pid` at another region shift (a zoom
        level's)."""
        # a source that samples on its own keeps the aging interval it was told
        told = {"aging_interval": self.aging_interval} if getattr(
            old, "samples_itself", False) and self.aging_interval != self.interval else {}
        try:
            new = type(old)(pid, shift, capacity, self.interval, **told)
        except OSError as e:
            raise HeatmapError(f"kernel counts: {e}") from None
        new.auto = getattr(old, "auto", False)
        return new

    def _rescope(self, scope: Scope, shift: int, depth: int) -> None:
        if shift != self.shift:
            maps = self._all_maps()
            capacity = map_capacity(spanned_regions(maps, shift))
            # (the new counts before the old go: if they cannot, the old stay)
            new = self._counts_like(self.counts, self.pid, shift, capacity)
            self.counts.close()
            self.counts, self.capacity, self.prev_all = new, capacity, maps
            self.shift = shift
            self.huge_pages.close()
            self.huge_pages = HugePages(self.proc, self.pid, shift, self.page_size)
        self._settle(scope, depth)

    def _settle(self, scope: Scope, depth: int) -> None:
        """The counts reopened for a zoom level: its scope from the next sample on."""
        self.scope = scope
        self.prev_maps = self.prev_huge = None  # the next sample has them all
        self.zoomed = {"zoom": depth, "region_shift": self.shift, **scope.fields()}
        self.header = zoomed_header(self.header, self.zoomed)
        self.resync()  # (what the old scope counted meanwhile is not this one's)

    def close(self) -> None:
        if self.huge_pages is not None:
            self.huge_pages.close()
        counts, self.counts = self.counts, None
        if counts is not None:
            counts.close()


# ---- 2.8b several processes: PIDs, --children, --cgroup --------------------------------
#
# A ProcessSet says which processes a run watches, now: the PIDs given (or the command's),
# with --children everything they started since (found each interval), with --cgroup
# every process of a cgroup v2 and its descendant cgroups.  ProcessSetSource is a LiveSource
# over all of them, one slot each (TARGET_BITS): the mglru source watches them all with
# one BPF object (a set of targets in kernel/heatmap.bpf.c, each scanned every
# interval), idle and refs with one instance per process, damon with one kdamond
# target per process (2.5).

CGROUP_ROOT = "/sys/fs/cgroup"


def read_ppids(proc_root: str) -> dict[int, int]:
    """Every process's parent (pid -> ppid), from /proc/*/stat."""
    out = {}
    for entry in os.listdir(proc_root):
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc_root}/{entry}/stat", encoding="utf-8", errors="replace") as f:
                out[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return out


def descendants(roots: list[int], ppids: dict[int, int]) -> list[int]:
    """The processes roots started, and theirs, ..., parents before their children."""
    children: dict[int, list[int]] = {}
    for pid, ppid in sorted(ppids.items()):
        children.setdefault(ppid, []).append(pid)
    out: list[int] = []
    seen = set(roots)
    queue = collections.deque(roots)
    while queue:
        for child in children.get(queue.popleft(), ()):
            if child not in seen:
                seen.add(child)
                out.append(child)
                queue.append(child)
    return out


def cgroup_dir(path: str) -> str:
    """The cgroup v2 directory --cgroup PATH names (relative paths also under
    /sys/fs/cgroup), or the one line why it is none."""
    found = path
    if not os.path.exists(found) and not os.path.isabs(path):
        found = os.path.join(CGROUP_ROOT, path)
    if not os.path.exists(found):
        raise HeatmapError(f"--cgroup {path}: no such directory")
    if not os.path.isdir(found):
        raise HeatmapError(f"--cgroup {path}: not a directory")
    if not os.path.exists(os.path.join(found, "cgroup.procs")):
        raise HeatmapError(f"--cgroup {path}: not a cgroup directory (no cgroup.procs)")
    if not os.path.exists(os.path.join(found, "cgroup.controllers")):
        raise HeatmapError(f"--cgroup {path}: a cgroup v1 directory; --cgroup needs cgroup "
                           f"v2 (the unified hierarchy, usually {CGROUP_ROOT})")
    return found


def cgroup_procs(path: str) -> list[int]:
    """The processes of a cgroup and its descendant cgroups ([] once it is removed)."""
    out = []
    for d, _dirs, files in os.walk(path):
        if "cgroup.procs" not in files:
            continue
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                out.extend(int(line) for line in f if line.strip())
        except (OSError, ValueError):
            continue  # removed meanwhile
    return out


class ProcessSet:
    """Which processes a run watches: pids (a command's too), with children their
    descendants, with cgroup a cgroup's processes."""

    def __init__(self, pids: list[int], children: bool = False, cgroup: str | None = None,
                 command: bool = False, proc_root: str = "/proc"):
        self.pids = list(pids)
        self.children = children
        self.cgroup = cgroup
        self.command = command  # pids[0] is -- CMD's: the run ends when it exits
        self.proc = proc_root

    @property
    def changes(self) -> bool:
        """Whether processes can join the scope while it runs."""
        return self.children or self.cgroup is not None

    def current(self) -> list[int]:
        found = list(self.pids)
        if self.cgroup is not None:
            found += cgroup_procs(self.cgroup)
        if self.children:
            found += descendants(found, read_ppids(self.proc))
        me = os.getpid()  # (heatmap in the cgroup it watches: not itself)
        return [pid for pid in dict.fromkeys(found) if pid != me]

    def describe(self) -> str:
        return f"cgroup {self.cgroup}" if self.cgroup is not None else "the processes given"


class _Target:
    """One process of a ProcessSetSource."""

    def __init__(self, slot: int, pid: int, comm: str, maps: list[Mapping]):
        self.slot = slot
        self.pid = pid
        self.comm = comm
        self.maps = maps
        self.counts = None  # its own counts source (idle, refs), or None: the shared one
        self.huge: HugePages | None = None


class ProcessSetCounts:
    """The counts source interface over every target of a ProcessSetSource: region indexes
    come back offset by each target's slot.  Zoomed in at a finer region size, only the
    zoomed process's own counts (ProcessSetSource.focus_counts) are aged."""

    def __init__(self, source: ProcessSetSource, first):
        self.source = source
        self.name = getattr(first, "name", "")
        self.auto = getattr(first, "auto", False)
        self.per_mapping = getattr(first, "per_mapping", False)
        self.zooms_finer = getattr(first, "zooms_finer", True)
        self.notes = tuple(getattr(first, "notes", ()))

    def _each(self):
        return [t.counts for t in self.source.targets.values()]

    def age(self) -> float:
        if self.source.focus_counts is not None:
            try:
                return self.source.focus_counts.age()
            except OSError:  # gone: the source finds out from /proc
                return 0.0
        if self.source.shared is not None:
            return self.source.shared.age()
        total = 0.0
        for counts in self._each():
            try:
                total += counts.age()
            except OSError:  # gone: the source finds out from /proc
                pass
        return total

    def drain(self) -> list[tuple[int, int, int, int]]:
        source = self.source
        if source.focus_counts is not None:
            off = source.zoomed_into.slot << (TARGET_BITS - source.shift)
            try:
                return [(r + off, n, a, f) for r, n, a, f in source.focus_counts.drain()]
            except OSError:
                return []
        if self.source.shared is not None:
            return self.source.shared.drain()
        out = []
        for t in self.source.targets.values():
            off = t.slot << (TARGET_BITS - self.source.shift)
            try:
                out += [(r + off, n, a, f) for r, n, a, f in t.counts.drain()]
            except OSError:
                pass
        return out

    def _whole(self) -> list:
        """The counts that cover the view: the zoom's, the shared one, or each target's."""
        for one in (self.source.focus_counts, self.source.shared):
            if one is not None:
                return [one]
        return self._each()

    def dropped(self) -> int:
        return sum(c.dropped() for c in self._whole())

    def resize(self, max_regions: int) -> None:
        for counts in self._whole():
            counts.resize(max_regions)

    def close(self) -> None:
        pass  # (ProcessSetSource.close closes every target's)


class _ProcessSetHuge:
    """HugePages.find() over every target of a ProcessSetSource."""

    def __init__(self, source: ProcessSetSource):
        self.source = source

    def find(self, maps) -> list[tuple[int, int]] | None:
        out = []
        for t in self.source.targets.values():
            found = in_slot_regions(t.huge.find(t.maps), t.slot, self.source.shift)
            if found is None:
                return None
            out += found
        return sorted(out)

    def close(self) -> None:
        pass


def in_slot_regions(found, slot: int, shift: int):
    """HugePages.find()'s (region, pages) of a process moved to its slot (None stays)."""
    if found is None:
        return None
    off = slot << (TARGET_BITS - shift)
    return [(r + off, n) for r, n in found]


class _SlotHuge:
    """HugePages of the one process a zoom watches, found in its slot's addresses."""

    def __init__(self, huge: HugePages, slot: int, shift: int):
        self.huge, self.slot, self.shift = huge, slot, shift

    def find(self, maps) -> list[tuple[int, int]] | None:
        off = self.slot << TARGET_BITS
        own = [m._replace(start=m.start - off, end=m.end - off) for m in maps
               if target_slot(m.start) == self.slot]
        return in_slot_regions(self.huge.find(own), self.slot, self.shift)

    def close(self) -> None:
        self.huge.close()


class _SlotScope:
    """A Scope (--range, --mapping) applied to each process of a ProcessSetSource in
    its own addresses."""

    def __init__(self, scope: Scope):
        self.inner = scope

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def apply(self, maps: list[Mapping]) -> list[Mapping]:
        out: list[Mapping] = []
        for slot, group in itertools.groupby(maps, key=lambda m: target_slot(m.start)):
            off = slot << TARGET_BITS
            own = [m._replace(start=m.start - off, end=m.end - off) for m in group]
            out += in_slot(self.inner.apply(own), slot)
        return out

    def narrowed(self, lo: int, hi: int) -> Scope:
        """[lo, hi) of one process (a zoom into one of its rows), in its slot's
        addresses: a Scope of the slotted maps from then on."""
        off = target_slot(lo) << TARGET_BITS
        inner = self.inner.narrowed(lo - off, hi - off)
        return Scope(inner.lo + off, inner.hi + off, inner.mapping)


class ProcessSetSource(LiveSource):
    """A LiveSource over several processes (a ProcessSet): one slot each, processes that
    exit dropped (one line each), new ones (--children, --cgroup) added each interval."""

    def __init__(self, processes: ProcessSet, region_shift, interval, counts_factory,
                 proc_root, clock, page_size=None, scope: Scope | None = None,
                 aging_interval=None):
        super().__init__(processes.pids[0] if processes.pids else 0, region_shift, interval,
                         counts_factory, proc_root, clock, page_size, scope, aging_interval)
        self.process_set = processes
        self.scope = _SlotScope(self.scope)
        self.targets: dict[int, _Target] = {}
        self.shared = None  # a counts source that watches every target (mglru)
        self.say = None  # callable(line): a process came or went
        self._slots = itertools.count()
        self._changed = True
        self._gone: set[int] = set()  # (never watched again: a pid reused is another)
        # zoomed in at a finer region size: the zoomed process's own counts (the others'
        # stay open, not aged, until the zoom is back at the run's region size)
        self.focus_counts = None
        self.zoomed_into: _Target | None = None
        self.base_shift = region_shift
        self._whole_capacity = 0

    def _tell(self, text: str) -> None:
        if self.say is not None:
            self.say(text)

    def open(self) -> None:
        scope = self.process_set  # (not self.scope: the address range watched)
        if scope.command:
            scope.pids = [self.pid]
        notes: list[str] = []
        given = []
        for pid in scope.pids:
            tgid, said = self._process_of(pid)
            notes += said
            given.append(tgid)
        scope.pids = list(dict.fromkeys(given))
        found = [(pid, self._watchable(pid)) for pid in scope.pids]  # errors, for these
        for pid in scope.current()[len(scope.pids):]:
            with contextlib.suppress(HeatmapError):  # kernel threads, gone meanwhile
                found.append((pid, self._watchable(pid)))
        if not found:
            raise HeatmapError(f"{scope.describe()} has no process to watch")
        missing = [] if getattr(self.factory, "checks_capabilities", False) else \
            self._missing_capabilities()
        if missing:
            raise HeatmapError(f"not permitted: {CAPS_TEXT}; missing {', '.join(missing)}")
        self.capacity = map_capacity(sum(spanned_regions(maps, self.shift)
                                         for _, (_, maps) in found))
        self.counts = None
        try:
            for pid, (comm, maps) in found:
                self._add(pid, comm, maps, warm=False)
            if self.counts is None:
                raise HeatmapError(f"{scope.describe()} has no process to watch")
            self.notes = tuple(notes) + self.counts.notes
            self._wait_ready()
            self.counts.age()  # (the first harvest is everything since forever)
            self.counts.drain()
        except PermissionError:
            raise HeatmapError("not permitted: " + CAPS_TEXT) from None
        except OSError as e:
            raise HeatmapError(f"kernel counts: {e}") from None
        first = next(iter(self.targets.values()))
        self.pid, self.comm = first.pid, first.comm
        self.header = self._header(first.pid, first.comm)
        self.header["targets"] = self._target_list()
        self._changed = False
        self.huge_pages = _ProcessSetHuge(self)
        self.base_shift = self.shift
        self.t0 = self.clock()
        self.next_due = self.t0 + self.interval

    def _add(self, pid: int, comm: str, maps: list[Mapping], warm: bool = True) -> None:
        """Watch one more process (warm: drop its first harvest, as open() does)."""
        slot = next(self._slots)
        t = _Target(slot, pid, comm, maps)
        if self.counts is None:  # the first: it decides how the others are watched
            counts = self._open_counts(pid)  # (DAMON: samples per column its own)
            self.counts = ProcessSetCounts(self, counts)
            if getattr(counts, "multi_target", False):
                self.shared = counts
            else:
                t.counts = counts
        elif self.shared is not None:
            self.shared.add_target(pid, slot)
            if warm:
                self.shared.warm(slot)
        else:
            capacity = self.capacity if self.focus_counts is None else self._whole_capacity
            t.counts = self.factory(pid, self.base_shift, capacity, interval=self.interval)
            if warm:
                t.counts.age()
                t.counts.drain()
        t.huge = HugePages(self.proc, pid, self.base_shift, self.page_size)
        self.targets[slot] = t
        self._changed = True


    def _drop(self, t: _Target, why: str) -> None:
        del self.targets[t.slot]
        self._gone.add(t.pid)
        self._changed = True
        if self.shared is not None:
            with contextlib.suppress(HeatmapError):
                self.shared.remove_target(t.slot)
        elif t.counts is not None:
            with contextlib.suppress(HeatmapError, OSError):
                t.counts.close()
        if t.huge is not None:
            t.huge.close()
        if self.targets:
            n = len(self.targets)
            self._tell(f"process {t.pid} ({_printable(t.comm)}) {why}; watching {n} "
                       f"other{'' if n == 1 else 's'}")

    def _exited(self) -> bool:
        return not self.targets

    def _read_maps(self) -> list[Mapping]:
        """Every target's maps, in its slot; processes gone dropped, new ones added."""
        for t in list(self.targets.values()):
            try:
                comm, state = read_stat(self.proc, t.pid)
                maps = read_maps(self.proc, t.pid) if state not in ("Z", "X") else []
            except OSError:
                maps = []
            if not maps:
                if self.process_set.command and t.slot == 0:
                    raise TargetExited()
                self._drop(t, "exited")
                continue
            if comm != t.comm:
                t.comm, self._changed = comm, True
            t.maps = maps
        if self.process_set.changes:
            self._join()
        if not self.targets:
            raise TargetExited()
        return [m for t in self.targets.values() for m in in_slot(t.maps, t.slot)]

    def _join(self) -> None:
        """Watch the processes that joined the scope since the last interval."""
        watched = {t.pid for t in self.targets.values()} | self._gone
        for pid in self.process_set.current():
            if pid in watched:
                continue
            try:
                comm, maps = self._watchable(pid)
            except HeatmapError:
                continue  # kernel threads, gone already
            try:
                self._add(pid, comm, maps)
            except OSError:
                continue
            self._tell(f"process {pid} ({_printable(comm)}) joined; watching "
                       f"{len(self.targets)}")

    def _name(self) -> str | None:
        return None  # (each target's name: in the targets list)

    def resident(self, ranges) -> list[int | None]:
        """LiveSource.resident() of each range's process, in its own addresses (None
        for a process gone)."""
        out: list[int | None] = []
        pid = self.pid
        for start, end, *_ in ranges:
            t = self.targets.get(target_slot(start))
            if t is None:
                out.append(None)
                continue
            off = t.slot << TARGET_BITS
            self.pid = t.pid
            try:
                out += super().resident([(start - off, end - off)])
            finally:
                self.pid = pid
        return out

    # -- zoom: into one process's row; its own counts at the finer region size --------
    def zoom(self, lo: int, hi: int, rows: int) -> None:
        t = self.targets.get(target_slot(lo))
        if t is None:
            raise HeatmapError("that row's process has exited")
        self.zoomed_into = t  # (every level down is in that process)
        super().zoom(lo, min(hi, (t.slot + 1) << TARGET_BITS), rows)

    def _zoomed_target(self) -> _Target | None:
        """The process a zoom watches (None: not zoomed in, or it is gone)."""
        return self.targets.get(self.zoomed_into.slot) if self.zooms else None

    def _all_maps(self) -> list[Mapping]:
        t = self.zoomed_into  # (the kernel counts all of it, whatever the range)
        if t.slot not in self.targets:
            raise HeatmapError(f"process {t.pid} ({_printable(t.comm)}) has exited")
        try:
            return read_maps(self.proc, t.pid)
        except (FileNotFoundError, ProcessLookupError):
            raise HeatmapError(f"process {t.pid} ({_printable(t.comm)}) has exited") from None

    def _rescope(self, scope: Scope, shift: int, depth: int) -> None:
        """A zoom level at the run's region size goes on with the counts of every
        process; a finer one opens counts of the zoomed process alone."""
        if shift == self.base_shift:
            if self.focus_counts is not None:
                self._close_focus()
                self.capacity, self.prev_all = self._whole_capacity, None
                self.huge_pages = _ProcessSetHuge(self)
        elif shift != self.shift:
            maps = self._all_maps()
            t = self.zoomed_into
            capacity = map_capacity(spanned_regions(maps, shift))
            new = self._counts_like(self.shared or t.counts or self._any_counts(), t.pid,
                                    shift, capacity)
            if self.focus_counts is None:
                self._whole_capacity = self.capacity
            self._close_focus()
            self.focus_counts, self.capacity = new, capacity
            self.prev_all = in_slot(maps, t.slot)  # (as _fit_capacity() gets them)
            self.huge_pages = _SlotHuge(HugePages(self.proc, t.pid, shift, self.page_size),
                                        t.slot, shift)
        self.shift = shift
        self._settle(scope, depth)

    def _any_counts(self):
        return next(t.counts for t in self.targets.values() if t.counts is not None)

    def _close_focus(self) -> None:
        counts, self.focus_counts = self.focus_counts, None
        if counts is not None:
            with contextlib.suppress(HeatmapError, OSError):
                counts.close()
        if isinstance(self.huge_pages, _SlotHuge):
            self.huge_pages.close()
            self.huge_pages = None

    def _fit_capacity(self, maps: list[Mapping]) -> None:
        if self.focus_counts is not None:
            t = self._zoomed_target()
            if t is None:
                return  # (it exited: the next take() zooms out)
            maps = [m for m in maps if target_slot(m.start) == t.slot]
        super()._fit_capacity(maps)

    def take(self, partial: bool = False) -> Sample:
        if self.zooms and self._zoomed_target() is None:
            self._zoom_out_of_exited()
        return super().take(partial)

    def _zoom_out_of_exited(self) -> None:
        """The zoomed process exited: back to the whole view, whose history goes on (the
        interval under way is not counted); the sample's zoom record says so (Runner)."""
        scope, shift = self.zooms[0]
        self.zooms.clear()
        self._rescope(scope, shift, 0)

    def _rss_kb(self) -> int:
        return sum(read_rss_kb(self.proc, t.pid) for t in self.targets.values())

    def _target_list(self) -> list[list]:
        return [[t.slot, t.pid, t.comm] for t in self.targets.values()]

    def _targets_changed(self):
        if not self._changed:
            return None
        self._changed = False
        return self._target_list()

    def close(self) -> None:
        self._close_focus()
        for t in list(self.targets.values()):
            if t.huge is not None:
                t.huge.close()
            if t.counts is not None:
                with contextlib.suppress(HeatmapError, OSError):
                    t.counts.close()
        self.targets.clear()
        shared, self.shared = self.shared, None
        if shared is not None:
            shared.close()
        self.counts = None


# `-- CMD`: heatmap starts the command itself, held back until the counts are attached
# so that the first interval sees its first accesses.  It runs in a process group of its
# own (so stopping it stops what it started) and dies with heatmap (PR_SET_PDEATHSIG).
PR_SET_PDEATHSIG = 1
STOP_GRACE = 2.0  # seconds a command has to exit on SIGINT before SIGKILL


def _exit_status(wait_status: int) -> int:
    """A wait status as a shell's $? (a signal N as 128 + N)."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


class Command:
    """The command of `heatmap.py -- CMD [ARGS...]`: forked held at a gate, started
    (exec'd) by release(), stopped and reaped by stop()."""

    def __init__(self, argv: list[str], stdin=None, stdout=None, stderr=None):
        self.argv = argv
        self.fds = (stdin, stdout, stderr)  # file descriptors for CMD, None: inherit
        self.pid: int | None = None
        self.status: int | None = None  # as a shell's $?, once reaped
        self._gate = self._errors = None

    def check(self) -> None:
        """Fail with one line unless argv[0] names a program heatmap can run."""
        import shutil

        name = self.argv[0]
        path = name if "/" in name else shutil.which(name)
        if path is None or not os.path.exists(path):
            raise HeatmapError(f"{name}: command not found")
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise HeatmapError(f"{name}: not an executable file")

    def start(self) -> int:
        """Fork the child, held before its exec; returns its pid."""
        self.check()
        gate_r, gate_w = os.pipe()
        err_r, err_w = os.pipe()
        os.set_inheritable(err_w, False)  # closed by a successful exec
        pid = os.fork()
        if pid == 0:  # the child: never returns into heatmap's code
            try:
                self._child(gate_r, gate_w, err_r, err_w)
            finally:
                os._exit(127)
        os.close(gate_r)
        os.close(err_w)
        self.pid, self._gate, self._errors = pid, gate_w, err_r
        return pid

    def _child(self, gate_r, gate_w, err_r, err_w) -> None:
        try:
            os.close(gate_w)
            os.close(err_r)
            os.setpgid(0, 0)
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            for sig in (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM,
                        signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            with open("/proc/self/comm", "w") as f:  # what exec will call it anyway
                f.write(os.path.basename(self.argv[0])[:15])
            for target, fd in enumerate(self.fds):
                if fd is not None:
                    os.dup2(fd, target)
            if not os.read(gate_r, 1):  # heatmap gave up before starting it
                os._exit(127)
            os.execvp(self.argv[0], self.argv)
        except OSError as e:
            os.write(err_w, str(e.errno or 0).encode())

    def release(self) -> None:
        """Let the child exec CMD; one line if the exec fails."""
        os.write(self._gate, b"x")
        os.close(self._gate)
        self._gate = None
        with os.fdopen(self._errors, "rb") as f:  # EOF: the exec closed it
            self._errors = None
            failed = f.read()
        if failed:
            self.stop()
            raise HeatmapError(f"cannot run {self.argv[0]}: {os.strerror(int(failed))}")

    def exited(self) -> bool:
        """Whether CMD has exited (reaping it)."""
        if self.status is None and self.pid is not None:
            pid, wait_status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = _exit_status(wait_status)
        return self.status is not None

    def stop(self) -> None:
        """Stop CMD and everything in its process group (SIGINT, then SIGKILL after
        STOP_GRACE seconds) and reap it; nothing stays behind."""
        for fd in (self._gate, self._errors):
            if fd is not None:
                os.close(fd)
        self._gate = self._errors = None
        if self.pid is None:
            return
        for sig in (signal.SIGINT, signal.SIGKILL):
            if not self.exited():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, sig)
            deadline = time.monotonic() + STOP_GRACE
            while not self.exited() and time.monotonic() < deadline:
                time.sleep(0.02)
            with contextlib.suppress(ProcessLookupError):  # what CMD left in its group
                os.killpg(self.pid, signal.SIGKILL)
            if self.exited():
                return


# ---- 2.9 a recording (its format: the module docstring; its writer: section 7) -------

RECORD_TYPE = "heatmap-record"
RECORD_VERSION = 1
#: a recording that may hold zoom records (one of the live view: keys can zoom it), so
#: that a heatmap from before them refuses it instead of misreading what follows one
RECORD_VERSION_ZOOM = 2
ZOOM_TYPE = "zoom"


def _open_text(path: str, mode: str):
    """Open a recording for "r" or "w", gzip when writing *.gz or reading gzip data."""
    import gzip

    if mode == "w":
        if path.endswith(".gz"):
            return gzip.open(path, "wt", encoding="utf-8", compresslevel=6)
        return open(path, "w", encoding="utf-8")
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _as_int(v) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"not an integer: {v!r}")
    return v


def _as_finite(v) -> float:
    """A recorded number of seconds: JSON numbers (or their text), never NaN/infinity."""
    if isinstance(v, bool):
        raise ValueError(f"not a number: {v!r}")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"not a finite number: {v!r}")
    return f


#: NUMA node ids the kernel can report (MAX_NUMNODES with the largest NODES_SHIFT)
MAX_NODES = 1 << 10
#: Bounds no real recording reaches: young pages of one region in one interval (the
#: BPF side's u64 counters, 2^48 pages = 1 EiB of 4 KiB pages) and region indexes
#: (a 64-bit address space at the smallest region size, 4 KiB).
MAX_RECORDED_COUNT = 1 << 48
MAX_REGION_INDEX = MAX_TARGETS << (TARGET_BITS - 12)  # (process slots: TARGET_BITS)
#: agings per interval: an interval is at most a day, an aging at least INTERVAL_RANGE[0]
MAX_AGINGS = 1 << 20


def _targets(value) -> list[list]:
    """A recording's "targets" ([[slot, pid, comm], ...]), checked."""
    out = [[_as_int(slot), _as_int(pid), str(comm)] for slot, pid, comm in value]
    if any(not 0 <= slot < MAX_TARGETS for slot, _, _ in out):
        raise ValueError("process slot out of range")
    return out


class ReplaySource:
    """Samples from a recording, paced like the original run (speed 1), faster, or all
    at once (speed 0).  Reads the file as it goes: memory stays bounded."""

    def __init__(self, path: str, speed: float = 0.0, clock=time.monotonic, limit=None):
        self.path = path
        self.speed = speed
        self.clock = clock
        self.limit = limit
        self.f = None
        self.header: dict = {}
        self.lineno = 0
        self._pending_maps = None
        self._next: Sample | None = None
        self._peeked = False
        self._base = None
        self._taken = 0
        self.truncated = False  # the file ends mid-record (an interrupted run)
        self.damaged: str | None = None  # where a damaged record stopped the replay, why
        self.summary: dict | None = None  # the run's summary record, once read
        self._pending_zoom: dict | None = None

    def open(self) -> None:
        try:
            self.f = _open_text(self.path, "r")
            line = self.f.readline()
        except EOFError:
            line = ""
        except zlib.error as e:
            raise HeatmapError(f"{self.path}: damaged recording ({e})") from None
        except OSError as e:  # BadGzipFile included
            raise HeatmapError(f"cannot read {self.path}: {e.strerror or e}") from None
        except UnicodeDecodeError:
            line = ""
        self.lineno = 1
        try:
            header = json.loads(line)
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("type") != RECORD_TYPE:
            raise HeatmapError(f"{self.path}: not a heatmap recording")
        if header.get("version") not in (RECORD_VERSION, RECORD_VERSION_ZOOM):
            raise HeatmapError(f"{self.path}: recording version {header.get('version')!r}, "
                               f"this heatmap reads versions {RECORD_VERSION} and "
                               f"{RECORD_VERSION_ZOOM}")
        try:
            shift = _as_int(header["region_shift"])
            page_size = _as_int(header.get("page_size", 4096))
            if _as_finite(header.get("interval", 0)) < 0:
                raise ValueError("interval")
            if not 12 <= shift <= 40:
                raise ValueError("region_shift")
            if page_size < 1 or page_size & (page_size - 1):
                raise ValueError("page_size")
            if "range" in header:  # (--range: the run watched only these addresses)
                lo, hi = map(_as_int, header["range"])
                if not 0 <= lo < hi <= ADDRESS_LIMIT:
                    raise ValueError("range")
                header["range"] = [lo, hi]
            if not isinstance(header.get("mapping", ""), str):
                raise ValueError("mapping")
        except (KeyError, ValueError, TypeError):
            raise HeatmapError(f"{self.path}: bad recording header") from None
        try:
            if header.get("targets") is not None:
                header["targets"] = _targets(header["targets"])
        except (ValueError, TypeError):
            raise HeatmapError(f"{self.path}: bad recording header") from None
        try:
            source_traits(header)
        except (KeyError, TypeError):
            raise HeatmapError(f"{self.path}: recorded from a source this heatmap does not "
                               f"know ({header.get('source')!r})") from None
        self.header = header

    def _bad(self, why: str) -> None:
        """A damaged record ends the replay there: what came before it is shown (as
        for a recording cut short), and the run says where it broke."""
        self.damaged = f"{self.path}:{self.lineno}: {why}"

    def _read(self) -> Sample | None:
        if self.damaged or self.limit is not None and self._taken >= self.limit:
            return None
        while True:
            try:
                line = self.f.readline()
            except EOFError:  # a gzip stream cut short: a run interrupted mid-write
                self.truncated = True
                return None
            except (OSError, UnicodeDecodeError, zlib.error) as e:  # a bad CRC, corruption
                return self._bad(f"damaged recording ({e})")
            self.lineno += 1
            if not line:
                return None
            try:
                obj = json.loads(line)
            except ValueError:
                if not line.endswith("\n"):
                    self.truncated = True  # the last line of an interrupted recording
                    return None
                return self._bad("not JSON")
            kind = obj.get("type") if isinstance(obj, dict) else None
            try:
                if kind == "maps":
                    self._pending_maps = [
                        Mapping(_as_int(s), _as_int(e), str(p), _as_int(o), str(d),
                                _as_int(i), str(path))
                        for s, e, p, o, d, i, path in obj["maps"]]
                elif kind == "interval":
                    counts = []
                    for r, n, a, f in obj["counts"]:
                        r, n, a, f = _as_int(r), _as_int(n), _as_int(a), _as_int(f)
                        if a < 0 or f < 0 or r < 0:
                            raise ValueError("negative count")
                        if max(a, f) > MAX_RECORDED_COUNT or r > MAX_REGION_INDEX:
                            raise ValueError("count or region out of any possible range")
                        if not 0 <= n < MAX_NODES:
                            raise ValueError(f"no such NUMA node: {n}")
                        counts.append((r, n, a, f))
                    comm = obj.get("comm")
                    if comm is not None and not isinstance(comm, str):
                        raise ValueError("comm")
                    huge = obj.get("huge")
                    if huge is not None:
                        huge = [(_as_int(r), _as_int(n)) for r, n in huge]
                        if any(not 0 <= r <= MAX_REGION_INDEX or n < 0 for r, n in huge):
                            raise ValueError("huge pages out of any possible range")
                    agings = _as_int(obj.get("agings", 1))
                    if not 1 <= agings <= MAX_AGINGS:
                        raise ValueError(f"agings out of range: {agings}")
                    when = obj.get("time")
                    targets = obj.get("targets")
                    if targets is not None:
                        targets = _targets(targets)
                    if self._pending_zoom is not None and self._pending_maps is None:
                        raise ValueError("the first interval after a zoom comes without "
                                         "the maps of the zoomed view")
                    s = Sample(_as_int(obj["seq"]), _as_finite(obj["t"]),
                               _as_finite(obj["aging"]),
                               _as_int(obj["dropped"]), _as_int(obj["rss_kb"]),
                               self._pending_maps, counts, comm,
                               obj.get("partial") is True, huge, agings,
                               None if when is None else _as_finite(when),
                               targets=targets, zoom=self._pending_zoom)
                    self._pending_maps = self._pending_zoom = None
                    return s
                elif kind == ZOOM_TYPE:
                    self._pending_zoom = self._zoom_record(obj)
                elif kind == SUMMARY_TYPE:
                    self.summary = obj  # (its resident bytes: resident())
                # other types: from a newer writer; skipped
            except (KeyError, ValueError, TypeError) as e:
                return self._bad(f"bad {kind} record ({e})")

    def _zoom_record(self, obj: dict) -> dict:
        """A zoom record's view, checked against what a live zoom can write: level 0 is
        the recording's own view; a level above it a range inside that one (of the
        same --mapping), at a region size no coarser."""
        header = self.header
        if header["version"] != RECORD_VERSION_ZOOM:
            raise ValueError(f"a version {header['version']} recording has none")
        depth, shift = _as_int(obj["zoom"]), _as_int(obj["region_shift"])
        zoom = {"zoom": depth, "region_shift": shift}
        if "range" in obj:
            lo, hi = map(_as_int, obj["range"])
            zoom["range"] = [lo, hi]
        if "mapping" in obj:
            zoom["mapping"] = obj["mapping"]
        if not 0 <= depth <= MAX_ZOOM:
            raise ValueError(f"zoom level {depth} out of range")
        if obj.get("mapping") != header.get("mapping"):
            raise ValueError("a mapping other than the recording's")
        if depth == 0:
            if shift != header["region_shift"] or zoom.get("range") != header.get("range"):
                raise ValueError("level 0 other than the recording's own view")
            return zoom
        if "range" not in zoom:
            raise ValueError(f"level {depth} without its range")
        lo, hi = zoom["range"]
        outer_lo, outer_hi = header.get("range") or (0, ADDRESS_LIMIT)
        if header.get("targets"):  # (a zoom into one process: in its slot's addresses)
            slot = target_slot(lo)
            if target_slot(hi - 1) != slot:
                raise ValueError(f"range {lo:#x}-{hi:#x} across two processes")
            lo, hi = lo - (slot << TARGET_BITS), hi - (slot << TARGET_BITS)
        if not outer_lo <= lo < hi <= outer_hi:
            raise ValueError(f"range {lo:#x}-{hi:#x} outside the recording's")
        if shift > header["region_shift"]:
            raise ValueError(f"region_shift {shift} coarser than the recording's "
                             f"({header['region_shift']})")
        if shift < 12:
            raise ValueError(f"region_shift {shift} finer than a 4 KiB page")
        return zoom

    def due(self) -> float:
        if not self._peeked:
            self._next = self._read()
            self._peeked = True
        if self.speed <= 0 or self._next is None:
            return -math.inf
        if self._base is None:
            self._base = (self.clock(), self._next.t)
        return self._base[0] + (self._next.t - self._base[1]) / self.speed

    def take(self) -> Sample | None:
        if not self._peeked:
            self._next = self._read()
        self._peeked = False
        s, self._next = self._next, None
        if s is not None:
            self._taken += 1
        return s

    @property
    def taken(self) -> int:
        """Intervals handed out so far."""
        return self._taken

    def watched(self):
        """(header of the view it watched, sample) for each interval left: the
        recording's own, or since a zoom record that zoom level's (zoomed_header())."""
        view = self.header
        while True:
            s = self.take()
            if s is None:
                return
            if s.zoom is not None:
                view = zoomed_header(self.header, s.zoom)
            yield view, s

    def resync(self) -> None:
        self._base = None

    def resident(self, ranges) -> list[int | None]:
        """The resident bytes the recorded run measured for these ranges (None where
        it did not: a recording without a summary, or one replayed only in part)."""
        known = {(r.get("start"), r.get("end")): r.get("resident_bytes")
                 for r in (self.summary or {}).get("never_touched", ())
                 if isinstance(r, dict)}
        out = []
        for start, end, *_ in ranges:
            v = known.get((start, end))
            out.append(v if isinstance(v, int) and not isinstance(v, bool) and v >= 0
                       else None)
        return out

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None


# ---- 2.10 what the memory is: symbols of file-backed ELF mappings ---------------------
#
# A row of a file mapping (a program's text, a library's data) is code or data the file
# names: its .symtab (or, stripped, its .dynsym) gives each function and object a
# link-time address and size.  A mapped address is a file offset (the mapping's offset
# plus the distance from its start); the PT_LOAD segment holding that offset turns it
# into a link-time address.  The files are read once each, from the target's view of
# the filesystem (/proc/PID/root), and only if they are still the ones mapped (device
# and inode as in /proc/PID/maps); anything that is not an ELF file has no symbols.

SYMBOL_TYPES = frozenset((1, 2, 10))  # STT_OBJECT, STT_FUNC, STT_GNU_IFUNC
SHN_LORESERVE = 0xFF00  # section indexes from here on are not sections (SHN_ABS, ...)
HOT_SYMBOLS = 3  # symbols named per row (live view) and per region (--json)
# Elf64_Sym and Elf32_Sym: (st_name, st_info, st_shndx, st_value, st_size) from each;
# read with struct rather than pyelftools' per-symbol objects (~5x faster: libLLVM's
# 43,000 symbols in 0.4 s instead of 1.9 s)
_SYM_FORMATS = {64: ("IBxHQQ", (0, 1, 2, 3, 4)), 32: ("IIIBxH", (0, 3, 4, 1, 2))}


class ElfSymbols:
    """The sized function and data symbols of one ELF file as disjoint address runs
    (an alias or a nested symbol gives way to the one before it), and its PT_LOAD
    segments."""

    def __init__(self, f, page_size: int = 4096):
        from elftools.elf.elffile import ELFFile

        elf = ELFFile(f)
        self.page_size = page_size
        self.segments = [(s["p_offset"], s["p_memsz"], s["p_vaddr"])
                         for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        found: dict[int, tuple[int, str]] = {}
        for table in (".symtab", ".dynsym"):  # (.symtab's names first for aliases)
            sec = elf.get_section_by_name(table)
            if sec is not None and sec["sh_type"] in ("SHT_SYMTAB", "SHT_DYNSYM"):
                strtab = elf.get_section(sec["sh_link"]).data()
                for name, value, size in self._symbols(elf, sec.data(), strtab):
                    found.setdefault(value, (value + size, name))
        starts = sorted(found)
        self.starts = starts
        self.ends = [min(found[a][0], b) for a, b in
                     zip(starts, starts[1:] + [1 << 64])]
        self.names = [found[a][1] for a in starts]

    @staticmethod
    def _symbols(elf, raw: bytes, strtab: bytes):
        """(name, value, size) of a table's sized, defined object and function symbols."""
        fmt, order = _SYM_FORMATS[elf.elfclass]
        layout = struct.Struct(("<" if elf.little_endian else ">") + fmt)
        usable = len(raw) - len(raw) % layout.size
        for fields in layout.iter_unpack(raw[:usable]):
            st_name, st_info, shndx, value, size = (fields[i] for i in order)
            if st_info & 0xF in SYMBOL_TYPES and size and 0 < shndx < SHN_LORESERVE:
                end = strtab.find(b"\0", st_name)
                name = strtab[st_name:end if end >= 0 else len(strtab)]
                if name:
                    yield name.decode("utf-8", "replace"), value, size

    def bias(self, offset: int) -> int | None:
        """Link-time address minus file offset in the segment that maps `offset` (a
        mapping starts at its segment's offset rounded down to a page), None if no
        segment does."""
        for p_offset, p_memsz, p_vaddr in self.segments:
            if p_offset - p_offset % self.page_size <= offset < p_offset + p_memsz:
                return p_vaddr - p_offset
        return None

    def inside(self, lo: int, hi: int) -> list[tuple[str, int]]:
        """(name, bytes inside) of the symbols overlapping link-time [lo, hi)."""
        i = max(0, bisect.bisect_right(self.starts, lo) - 1)
        out = []
        while i < len(self.starts) and self.starts[i] < hi:
            n = min(hi, self.ends[i]) - max(lo, self.starts[i])
            if n > 0:
                out.append((self.names[i], n))
            i += 1
        return out


class SymbolFiles:
    """ElfSymbols per mapped file, read once; None for what has none (not ELF, not a
    regular file, gone, replaced since it was mapped, unreadable).

    The first read of a big file takes long (libpython's 14,000 symbols: 0.1 s here,
    about 2 s under QEMU TCG): done on demand in the middle of a run it would hold up the
    agings due meanwhile, so a run's output would shift its aging clock.  prefetch()
    reads the files a target maps when the run starts in a background thread, while
    the first interval's agings go on; of() waits only for a file still being read."""

    def __init__(self, root: str = "", page_size: int = 4096):
        self.root = root  # the target's root directory ("" for this one's)
        self.page_size = page_size
        self._files: dict[tuple, ElfSymbols | None] = {}
        self._pending: dict[tuple, threading.Event] = {}  # being read by prefetch()
        self._lock = threading.Lock()

    @staticmethod
    def _key(m: Mapping) -> tuple | None:
        if not m.path.startswith("/") or m.path.endswith(" (deleted)"):
            return None
        return (m.path, m.dev, m.inode)

    def of(self, m: Mapping) -> ElfSymbols | None:
        key = self._key(m)
        if key is None:
            return None
        with self._lock:
            pending = self._pending.get(key)
        if pending is not None:
            pending.wait()
        with self._lock:
            if key in self._files:
                return self._files[key]
        syms = self._read(m)
        with self._lock:
            return self._files.setdefault(key, syms)

    def prefetch(self, maps: list[Mapping]) -> threading.Thread | None:
        """Read the files of `maps` not read yet, in a daemon thread (it holds nothing
        that an exit must release); the thread, or None if there is nothing to read."""
        todo = []
        with self._lock:
            for m in maps:
                key = self._key(m)
                if key is not None and key not in self._files and key not in self._pending:
                    self._pending[key] = threading.Event()
                    todo.append((key, m))
        if not todo:
            return None
        worker = threading.Thread(target=self._read_all, args=(todo,), daemon=True,
                                  name="heatmap-symbols")
        worker.start()
        return worker

    def _read_all(self, todo: list[tuple[tuple, Mapping]]) -> None:
        for key, m in todo:
            syms = None
            try:
                syms = self._read(m)
            finally:  # (whatever happens, no of() waits forever)
                with self._lock:
                    self._files.setdefault(key, syms)
                    self._pending.pop(key).set()

    def _read(self, m: Mapping) -> ElfSymbols | None:
        path = self.root + m.path
        try:
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_ino != m.inode or \
                    f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}" != m.dev:
                return None
            with open(path, "rb") as f:
                return ElfSymbols(f, self.page_size)
        except Exception:  # a file that is not a valid ELF file (truncated, damaged, not
            return None  # one at all) has no symbols; it must not end the run

    def inside(self, maps: list[Mapping], lo: int, hi: int, j: int = 0
               ) -> list[tuple[str, int]]:
        """(name, bytes inside) of the symbols of sorted disjoint maps (searched from
        index j) inside [lo, hi), largest first."""
        sizes: dict[str, int] = {}
        while j < len(maps) and maps[j].end <= lo:
            j += 1
        while j < len(maps) and maps[j].start < hi:
            m = maps[j]
            j += 1
            syms = self.of(m)
            bias = syms.bias(m.offset) if syms is not None else None
            if bias is None:
                continue
            shift = m.offset - m.start + bias  # address -> link-time address
            a, b = max(lo, m.start), min(hi, m.end)
            for name, n in syms.inside(a + shift, b + shift):
                sizes[name] = sizes.get(name, 0) + n
        return sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))


def hot_symbols(model, files: SymbolFiles, lo: int, hi: int, n: int = HOT_SYMBOLS
                ) -> list[tuple[str, float]]:
    """The symbols where [lo, hi) was found young most during the run: each region's
    young pages shared out among the symbols in it by their bytes there; (name, share of
    the range's young pages), hottest first."""
    shift = model.shift
    size = 1 << shift
    weights: dict[str, float] = {}
    total = 0
    for region in sorted(r for r in model.region_totals if lo >> shift <= r <= (hi - 1) >> shift):
        young = model.region_totals[region]
        total += young
        r_lo, r_hi = max(lo, region << shift), min(hi, (region + 1) << shift)
        for name, nbytes in files.inside(model.maps, r_lo, r_hi):
            weights[name] = weights.get(name, 0.0) + young * nbytes / size
    ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [(name, w / total) for name, w in ranked]


# =====================================================================================
# 3. the layout: rows from /proc/PID/maps
# =====================================================================================

HIDDEN = frozenset(("[vvar]", "[vvar_vclock]", "[vsyscall]"))


def is_shown(m: Mapping) -> bool:
    """Mappings that can hold young pages.  The vsyscall/vvar pages are never walked and
    PROT_NONE mappings cannot be accessed: both would only be empty rows."""
    return m.path not in HIDDEN and m.perms[:3] != "---"


def shown_mappings(maps) -> list[Mapping]:
    return sorted(m for m in maps if is_shown(m) and m.end > m.start)


def build_areas(shown: list[Mapping], shift: int) -> list[list]:
    """Split the shown mappings into areas: disjoint runs of whole regions, one per
    mapping (adjacent pieces of one file, like a library's text/data, are one area).
    A region shared by two mappings belongs to the first; a mapping entirely inside
    regions already taken adds no area.  Returns [[r0, r1, start_address], ...]."""
    areas: list[list] = []
    prev_path = None
    prev_end = -1
    for m in shown:
        r0 = m.start >> shift
        r1 = ((m.end - 1) >> shift) + 1
        same_file = bool(m.path) and m.path == prev_path and m.start == prev_end
        prev_path, prev_end = m.path, m.end
        if areas:
            last = areas[-1]
            if same_file:
                last[1] = max(last[1], r1)
                continue
            if r0 < last[1]:
                r0 = last[1]
        if r1 <= r0:
            continue
        areas.append([r0, r1, max(m.start, r0 << shift)])
    return areas


def spanned_regions(maps, shift: int) -> int:
    """How many regions the shown mappings span: what the BPF map must hold per node."""
    return sum(a[1] - a[0] for a in build_areas(shown_mappings(maps), shift))


def overlap_bytes(ranges, maps) -> list[int]:
    """For sorted disjoint [lo, hi) ranges, the bytes of the sorted disjoint mappings
    that fall inside each."""
    out = [0] * len(ranges)
    j = 0
    n = len(maps)
    for i, (lo, hi) in enumerate(ranges):
        while j < n and maps[j].end <= lo:
            j += 1
        k = j
        total = 0
        while k < n and maps[k].start < hi:
            total += min(hi, maps[k].end) - max(lo, maps[k].start)
            k += 1
        out[i] = total
    return out


FAR_GAP = 1 << 30  # mappings further apart than this are merged last


def merge_runs(sizes: list[int], budget: int, gaps: list[int] | None = None
               ) -> list[tuple[int, int]]:
    """Partition items 0..n-1 into at most budget runs [i0, i1) of adjacent items by
    repeatedly merging the adjacent pair with the smallest combined size (ties: the
    lower address), pairs separated by a gap of FAR_GAP bytes or more (gaps[i] is the
    gap between items i and i+1) only when no closer pair is left."""
    n = len(sizes)
    budget = max(1, budget)
    if n <= budget:
        return [(i, i + 1) for i in range(n)]
    far = [int(g >= FAR_GAP) for g in gaps] if gaps else [0] * (n - 1)
    size = list(sizes)
    end = [i + 1 for i in range(n)]
    nxt = [i + 1 for i in range(n)]
    prv = [i - 1 for i in range(n)]
    alive = [True] * n
    heap = [(far[i], size[i] + size[i + 1], i, i + 1) for i in range(n - 1)]
    heapq.heapify(heap)
    count = n
    while count > budget:
        _, s, i, j = heapq.heappop(heap)
        if not (alive[i] and alive[j]) or nxt[i] != j or size[i] + size[j] != s:
            continue  # stale
        size[i] = s
        end[i] = end[j]
        alive[j] = False
        nxt[i] = nxt[j]
        if nxt[j] < n:
            prv[nxt[j]] = i
        count -= 1
        # the gap after a run is the gap after its last item
        if prv[i] >= 0:
            heapq.heappush(heap, (far[end[prv[i]] - 1], size[prv[i]] + size[i], prv[i], i))
        if nxt[i] < n:
            heapq.heappush(heap, (far[end[i] - 1], size[i] + size[nxt[i]], i, nxt[i]))
    return [(i, end[i]) for i in range(n) if alive[i]]


def group_budget(slots: int) -> int:
    """How many mappings (or merged runs) may share `slots` rows: half of the rows are
    kept for sharing by size, so a big mapping is never squeezed into one row by a crowd
    of small ones.  Up to that many mappings, every mapping has its own row."""
    return max(1, slots // 2)


def concave_weight(pages: int) -> int:
    """16 * sqrt(pages), as an integer so that sharing is exact arithmetic."""
    return math.isqrt(max(1, pages) << 8)


def share(total: int, weights: list[int], caps: list[int]) -> list[int]:
    """Share total slots among items: one each first (if caps allow), the rest in
    proportion to weights by the largest-remainder method, no item above its cap
    (items that would reach their cap are pinned there and the rest re-shared).
    Integer arithmetic, ties to the lower index: the result is deterministic."""
    n = len(weights)
    alloc = [1 if c > 0 else 0 for c in caps]
    if sum(alloc) > total:
        raise ValueError("more items than slots: merge first")
    remaining = total - sum(alloc)
    active = [i for i in range(n) if alloc[i] < caps[i]]
    while remaining > 0 and active:
        wsum = sum(weights[i] for i in active)
        pinned = [i for i in active
                  if (alloc[i] - caps[i]) * wsum + remaining * weights[i] >= 0]
        if pinned:
            for i in pinned:
                remaining -= caps[i] - alloc[i]
                alloc[i] = caps[i]
            pinned_set = set(pinned)
            active = [i for i in active if i not in pinned_set]
            continue
        rema = {}
        given = 0
        for i in active:
            q, r = divmod(remaining * weights[i], wsum)
            alloc[i] += q
            given += q
            rema[i] = r
        for i in sorted(active, key=lambda i: (-rema[i], i))[: remaining - given]:
            alloc[i] += 1
        remaining = 0
    return alloc


def _split(lo: int, hi: int, k: int) -> list[int]:
    """Starts of k near-equal contiguous runs of [lo, hi) (k <= hi - lo)."""
    m = hi - lo
    return [lo + (m * i) // k for i in range(k)]


class BinLayout:
    """The fine, terminal-independent partition of the shown address space that the
    history is stored in.  Slots are the spanned regions in address order (gaps
    skipped); bins are contiguous slot runs; groups are runs of areas (one per mapping,
    merged only when there are more than `budget`), each with its share of bins."""

    def __init__(self, shown: list[Mapping], shift: int, page_size: int, budget: int):
        self.shift = shift
        self.page_size = page_size
        self.maps = shown
        self.ident = 0
        areas = build_areas(shown, shift)
        self.area_r0 = [a[0] for a in areas]
        self.area_r1 = [a[1] for a in areas]
        slot0 = [0] * len(areas)
        s = 0
        for i, a in enumerate(areas):
            slot0[i] = s
            s += a[1] - a[0]
        self.area_slot0 = slot0
        self.nslots = s
        area_pages = [b // page_size for b in
                      overlap_bytes([(a[0] << shift, a[1] << shift) for a in areas], shown)]
        area_gaps = [(self.area_r0[i + 1] - self.area_r1[i]) << shift
                     for i in range(len(areas) - 1)]
        groups = merge_runs(area_pages, group_budget(budget), area_gaps)
        gpages = [sum(area_pages[a0:a1]) for a0, a1 in groups]
        self.group_gaps = [area_gaps[a1 - 1] for _a0, a1 in groups[:-1]]
        gslots = [(slot0[a1 - 1] + self.area_r1[a1 - 1] - self.area_r0[a1 - 1]) - slot0[a0]
                  for a0, a1 in groups]
        alloc = share(budget, [concave_weight(p) for p in gpages], gslots) if groups else []
        starts: list[int] = []
        group_bins = []
        for (a0, _a1), k, m in zip(groups, alloc, gslots):
            b0 = len(starts)
            starts.extend(_split(slot0[a0], slot0[a0] + m, k))
            group_bins.append((b0, len(starts)))
        self.bin_start = starts
        self.nbins = len(starts)
        self.group_bins = group_bins
        self.group_pages = gpages
        # pieces: (r0, r1, bin), region runs inside one area and one bin, by address
        pieces = []
        a = 0
        for b in range(self.nbins):
            s0 = starts[b]
            s1 = starts[b + 1] if b + 1 < self.nbins else self.nslots
            while s0 < s1:
                while slot0[a] + self.area_r1[a] - self.area_r0[a] <= s0:
                    a += 1
                take = min(s1, slot0[a] + self.area_r1[a] - self.area_r0[a]) - s0
                r = self.area_r0[a] + s0 - slot0[a]
                pieces.append((r, r + take, b))
                s0 += take
        self.pieces = pieces
        piece_bytes = overlap_bytes([(p[0] << shift, p[1] << shift) for p in pieces], shown)
        bin_pages = [0] * self.nbins
        bin_regions = [0] * self.nbins
        for (r0, r1, b), nbytes in zip(pieces, piece_bytes):
            bin_pages[b] += nbytes // page_size
            bin_regions[b] += r1 - r0
        self.bin_pages = bin_pages
        self.bin_regions = bin_regions
        self.key = (shift, tuple(self.area_r0), tuple(self.area_r1), tuple(starts))

    def bin_of(self, region: int) -> int:
        """The bin holding a region, -1 if no shown mapping spans it."""
        i = bisect.bisect_right(self.area_r0, region) - 1
        if i < 0 or region >= self.area_r1[i]:
            return -1
        slot = self.area_slot0[i] + region - self.area_r0[i]
        return bisect.bisect_right(self.bin_start, slot) - 1


class RowLayout:
    """Screen rows: each a contiguous run of bins within one group of a BinLayout.
    Groups are merged (smallest neighbours first) when there are more than nrows, then
    rows are shared out among groups by the square root of their pages (at least one
    each, at most one per bin) and each group's bins split evenly among its rows.  With
    one_per_group (a source that tells nothing inside a mapping) each group is one row."""

    def __init__(self, bins: BinLayout, nrows: int, one_per_group: bool = False):
        self.bins = bins
        self.requested = nrows
        self.key = 0
        self._proj: dict[int, list] = {}
        nrows = max(1, nrows)
        runs = merge_runs(bins.group_pages, nrows if one_per_group else group_budget(nrows),
                          bins.group_gaps)
        dgroups = [(bins.group_bins[g0][0], bins.group_bins[g1 - 1][1],
                    sum(bins.group_pages[g0:g1])) for g0, g1 in runs]
        caps = [1 if one_per_group else b1 - b0 for b0, b1, _ in dgroups]
        alloc = share(min(nrows, sum(caps)), [concave_weight(p) for _, _, p in dgroups],
                      caps) if dgroups else []
        starts: list[int] = []
        for (b0, b1, _), k in zip(dgroups, alloc):
            starts.extend(_split(b0, b1, k))
        self.starts = tuple(starts)
        self.n = len(starts)
        row_of_bin = array.array("i", bytes(4 * bins.nbins))
        pages = [0] * self.n
        for r in range(self.n):
            b1 = starts[r + 1] if r + 1 < self.n else bins.nbins
            for b in range(starts[r], b1):
                row_of_bin[b] = r
                pages[r] += bins.bin_pages[b]
        self.row_of_bin = row_of_bin
        self.pages = pages
        self.labels = self._labels()

    def _labels(self) -> list[tuple[int, str, int]]:
        """(first mapped address, first mapping's name, other mappings in the row)."""
        bins = self.bins
        shift = bins.shift
        maps = bins.maps
        out = []
        pieces = bins.pieces
        p = 0
        j = 0
        for r in range(self.n):
            addr = None
            names: list[str] = []
            while p < len(pieces) and self.row_of_bin[pieces[p][2]] == r:
                lo, hi = pieces[p][0] << shift, pieces[p][1] << shift
                while j < len(maps) and maps[j].end <= lo:
                    j += 1
                k = j
                while k < len(maps) and maps[k].start < hi:
                    if addr is None:
                        addr = max(lo, maps[k].start)
                    name = maps[k].name
                    if name not in names:
                        names.append(name)
                    k += 1
                p += 1
            out.append((addr or 0, names[0] if names else "?", max(0, len(names) - 1)))
        return out

    def span(self, r: int) -> tuple[int, int]:
        """[first, last + 1) mapped address of row r: what zooming into it watches."""
        bins = self.bins
        b0 = self.starts[r]
        b1 = self.starts[r + 1] if r + 1 < self.n else bins.nbins
        pieces = [p for p in bins.pieces if b0 <= p[2] < b1]
        lo, hi = pieces[0][0] << bins.shift, pieces[-1][1] << bins.shift
        inside = [m for m in bins.maps if m.start < hi and m.end > lo]
        return max(lo, inside[0].start), min(hi, inside[-1].end)

    def projection(self, old: BinLayout) -> list:
        """For each bin of old, ((row, weight), ...): the share of its regions that
        falls in each row of this layout (weight 1.0 for bins of the same layout)."""
        proj = self._proj.get(old.ident)
        if proj is None:
            if old.ident == self.bins.ident:
                proj = [((r, 1.0),) for r in self.row_of_bin]
            else:
                row_of_bin = self.row_of_bin
                proj = overlap_projection(old, [(r0, r1, row_of_bin[b])
                                                for r0, r1, b in self.bins.pieces])
            self._proj[old.ident] = proj
        return proj


def overlap_projection(old: BinLayout, targets: list[tuple[int, int, int]]) -> list:
    """For each bin of old, ((target, weight), ...) where targets are (r0, r1, index)
    region runs by address: the share of the bin's regions inside each target."""
    acc: list[dict[int, int]] = [{} for _ in range(old.nbins)]
    i = j = 0
    op = old.pieces
    while i < len(op) and j < len(targets):
        lo = max(op[i][0], targets[j][0])
        hi = min(op[i][1], targets[j][1])
        if hi > lo:
            d = acc[op[i][2]]
            t = targets[j][2]
            d[t] = d.get(t, 0) + hi - lo
        if op[i][1] <= targets[j][1]:
            i += 1
        else:
            j += 1
    return [tuple((t, ov / old.bin_regions[b]) for t, ov in sorted(d.items()))
            for b, d in enumerate(acc)]


def rebin(col: Column, new: BinLayout, proj: list) -> None:
    """Move a column's counts onto another BinLayout (exact for bins wholly inside a
    new bin, proportional and rounded at the edges)."""
    nb = new.nbins
    anon = [0.0] * nb
    file = [0.0] * nb
    nodes = col.nodes
    multi = isinstance(nodes, dict)
    per_node = {k: [0.0] * nb for k in nodes} if multi else None
    ca, cf = col.anon, col.file
    for b in range(len(ca)):
        a, f = ca[b], cf[b]
        if not (a or f):
            continue
        for t, w in proj[b]:
            anon[t] += a * w
            file[t] += f * w
            if multi:
                for k, arr in nodes.items():
                    if arr[b]:
                        per_node[k][t] += arr[b] * w

    def ints(values):
        return array.array("I", (min(COUNT_MAX, int(v + 0.5)) for v in values))

    col.anon, col.file = ints(anon), ints(file)
    if multi:
        col.nodes = {k: ints(v) for k, v in per_node.items()}
    col.bins = new
    col.key = None
    col.c_young = col.c_anon = col.c_node = None


# =====================================================================================
# 4. the model: regions x intervals
# =====================================================================================
#
# The kernel reports young pages per region (address >> region_shift) and node.  The
# model does not keep that per region: a 64 GiB target has 32,768 2 MiB regions and
# 1,000 intervals of them would not fit the memory budget.  Each interval is folded
# into the *bins* of a BinLayout (section 3): at most BIN_BUDGET contiguous slices of
# the address space, shared out among mappings like the rows but much finer, so that
# every screen layout up to BIN_BUDGET rows is an exact grouping of bins and a resize
# re-renders the kept history exactly.  When the mappings change, the bins change;
# older columns keep their own BinLayout and are projected onto the new rows by address
# overlap (exact where a row covers whole old bins, proportional at the edges); once
# the history spans more than MAX_LAYOUTS layouts it is re-binned onto the newest.
# History is a ring of columns sized from the terminal width (with headroom); the rest
# of a run streams to --record.

MIXED = -1  # no node / kind holds DOMINANCE of the young pages
NO_DATA = -2  # no young page
DOMINANCE = 0.75
COUNT_MAX = 0xFFFFFFFF
BIN_BUDGET = 1024
HISTORY_MIN = 256
MAX_LAYOUTS = 8  # distinct BinLayouts the history may reference at once


def dominant(per_key: dict, total: float) -> int:
    """The key holding at least DOMINANCE of total (unique, since it is over half),
    MIXED if none does, NO_DATA if total is 0."""
    if total <= 0:
        return NO_DATA
    for key, value in per_key.items():
        if value >= DOMINANCE * total:
            return key
    return MIXED


class Column:
    """One interval in the history: young pages per bin of its BinLayout, plus a cache
    of the same folded into the rows of the RowLayout last rendered."""

    __slots__ = ("seq", "t", "bins", "anon", "file", "nodes", "key", "c_young", "c_anon",
                 "c_node", "agings")

    def __init__(self, seq, t, bins, anon, file, nodes, agings=1):
        self.seq = seq
        self.t = t
        self.agings = agings  # the counts are summed over this many agings
        self.bins = bins
        self.anon = anon  # array('I') per bin
        self.file = file
        # None (no young page), an int (every young page on that node) or
        # {node: array('I') of young pages per bin}
        self.nodes = nodes
        self.key = None
        self.c_young = self.c_anon = self.c_node = None


class Model:
    """Intervals x regions, kept as a bounded ring of binned columns."""

    def __init__(self, info: dict, history: int = HISTORY_MIN, bin_budget: int = BIN_BUDGET):
        # the recording header: pid, comm (kept current), region_shift, page_size, ...
        self.info = dict(info)
        self.source = source_traits(info)
        self.shift = int(info["region_shift"])
        self.page_size = int(info.get("page_size", 4096))
        self.bin_budget = bin_budget
        self.maps: list[Mapping] = []
        self.bins: BinLayout | None = None
        self.columns: collections.deque[Column] = collections.deque(maxlen=history)
        self.intervals = 0
        self.last: Sample | None = None  # metadata of the newest sample (counts dropped)
        self.region_totals: dict[int, int] = {}
        self.huge: dict[int, int] | None = None  # pages huge pages back, per region
        # what the whole run found (shared by the models of one run: share_run())
        self.wss: list[float] = []  # bytes found young per interval (mean per aging)
        # regions found young at least once, per region shift (a zoom changes it)
        self.young_seen: dict[int, set[int]] = {}
        self._idents = itertools.count(1)
        self._rows: RowLayout | None = None

    # -- mappings --------------------------------------------------------------------
    def set_maps(self, maps: list[Mapping]) -> None:
        shown = shown_mappings(maps)
        new = BinLayout(shown, self.shift, self.page_size, self.bin_budget)
        old = self.bins
        new.ident = old.ident if old is not None and old.key == new.key else next(self._idents)
        self.maps = shown
        self.bins = new
        self._rows = None
        layouts = {col.bins.ident: col.bins for col in self.columns}
        if len(layouts) > MAX_LAYOUTS:
            # a target whose mappings keep changing: fold the history onto the newest
            # bins rather than keep one layout (and its projections) per change
            projs = {i: overlap_projection(old, new.pieces) for i, old in layouts.items()
                     if i != new.ident}
            for col in self.columns:
                if col.bins.ident != new.ident:
                    rebin(col, new, projs[col.bins.ident])

    def ensure_history(self, n: int) -> None:
        """Grow the ring to keep at least n columns (it never shrinks)."""
        if n > (self.columns.maxlen or 0):
            self.columns = collections.deque(self.columns, maxlen=n)

    # -- intervals -------------------------------------------------------------------
    def add(self, sample: Sample) -> Column:
        if sample.maps is not None:
            self.set_maps(sample.maps)
        bins = self.bins
        if bins is None:
            raise HeatmapError("an interval came before the target's memory maps")
        nb = bins.nbins
        zero = bytes(4 * nb)
        anon = array.array("I", zero)
        file = array.array("I", zero)
        per_node: dict[int, array.array] = {}
        totals = self.region_totals
        ever = self.young_seen.setdefault(self.shift, set())
        bin_of = bins.bin_of
        young_pages = 0
        agings = max(1, sample.agings)
        for region, node, a, f in sample.counts:
            y = a + f
            if y <= 0:
                continue
            young_pages += y
            ever.add(region)
            # (young pages per aging: what a page found young at each aging counts once)
            totals[region] = totals.get(region, 0) + (y if agings == 1 else y / agings)
            b = bin_of(region)
            if b < 0:
                continue  # not in a shown mapping (unmapped meanwhile, PROT_NONE)
            v = anon[b] + a
            anon[b] = v if v <= COUNT_MAX else COUNT_MAX
            v = file[b] + f
            file[b] = v if v <= COUNT_MAX else COUNT_MAX
            arr = per_node.get(node)
            if arr is None:
                arr = per_node[node] = array.array("I", zero)
            v = arr[b] + y
            arr[b] = v if v <= COUNT_MAX else COUNT_MAX
        if not per_node:
            nodes = None
        elif len(per_node) == 1:
            nodes = next(iter(per_node))
        else:
            nodes = per_node
        col = Column(sample.seq, sample.t, bins, anon, file, nodes, agings)
        self.columns.append(col)
        self.wss.append(young_pages * self.page_size / agings)
        self.intervals += 1
        if sample.comm is not None:
            self.info["comm"] = sample.comm
        if sample.targets is not None:
            self.info["targets"] = sample.targets
        if sample.huge is not None:
            self.huge = dict(sample.huge)
        self.last = Sample(sample.seq, sample.t, sample.aging, sample.dropped,
                           sample.rss_kb, None, None, partial=sample.partial,
                           agings=agings, time=sample.time)
        return col

    def huge_rows(self, layout: RowLayout) -> list[bool]:
        """Rows huge pages back most of (where a young cell may be one touched byte)."""
        pages = [0] * layout.n
        bins = layout.bins
        for region, n in (self.huge or {}).items():
            b = bins.bin_of(region)
            if b >= 0:
                pages[layout.row_of_bin[b]] += n
        return [2 * h >= p > 0 for h, p in zip(pages, layout.pages)]

    def share_run(self, other: Model) -> None:
        """Go on with other's run-wide figures (a zoom's model: another region size)."""
        self.wss = other.wss
        self.young_seen = other.young_seen

    def _ever_young(self) -> set[int]:
        """Regions (at this model's shift) any interval of the run found young, or that
        lie inside a larger region found young (which may have been elsewhere in it)."""
        shift = self.shift
        ever = set(self.young_seen.get(shift, ()))
        for s, regions in self.young_seen.items():
            if s < shift:
                ever.update(r >> (shift - s) for r in regions)
        coarser = {s: regions for s, regions in self.young_seen.items() if s > shift}
        if coarser:
            for m in self.maps:
                for r in range(m.start >> shift, ((m.end - 1) >> shift) + 1):
                    if any(r >> (s - shift) in regions for s, regions in coarser.items()):
                        ever.add(r)
        return ever

    def never_touched(self) -> list[tuple[int, int, str]]:
        """(start, end, mapping name) of the address ranges of the shown mappings that
        no interval found young (at region granularity), largest first."""
        out = []
        shift, ever = self.shift, self._ever_young()
        for m in self.maps:
            lo = None
            for region in range(m.start >> shift, ((m.end - 1) >> shift) + 1):
                a = max(m.start, region << shift)
                if region in ever:
                    if lo is not None:
                        out.append((lo, a, m.name))
                    lo = None
                elif lo is None:
                    lo = a
            if lo is not None:
                out.append((lo, m.end, m.name))
        out.sort(key=lambda r: (r[0] - r[1], r[0]))
        return out

    def peak(self) -> tuple[int, int] | None:
        """(region_index, young pages over the run) of the hottest region."""
        if not self.region_totals:
            return None
        region, total = min(self.region_totals.items(), key=lambda kv: (-kv[1], kv[0]))
        return region, total

    def processes(self) -> dict[int, tuple[int, str]]:
        """slot -> (pid, comm) of a run of several processes (a scope: several PIDs,
        --children, --cgroup); {} for a run of one PID."""
        return {slot: (pid, comm) for slot, pid, comm in self.info.get("targets") or ()}

    def region_process(self, region: int) -> tuple[int | None, int]:
        """(pid, address) of a region index: its process and its first byte there."""
        return self.address_process(region << self.shift)

    def address_process(self, addr: int) -> tuple[int | None, int]:
        """(pid, address) of an address of the model: its process and where in it."""
        slot = target_slot(addr)
        pid = self.processes().get(slot, (None,))[0] if slot else self.info.get("pid")
        if slot and pid is None:  # (a process already gone from the list)
            pid = -1
        return pid, addr & TARGET_MASK

    # -- rows ------------------------------------------------------------------------
    def shown_rows(self) -> RowLayout | None:
        """The RowLayout last asked for (the rows of the frame last rendered)."""
        return self._rows

    def rows_for(self, nrows: int) -> RowLayout:
        """The RowLayout of the current bins with at most nrows rows (cached)."""
        rows = self._rows
        if rows is not None and rows.requested == nrows:
            return rows
        new = RowLayout(self.bins or BinLayout([], self.shift, self.page_size, 1), nrows,
                        self.source.per_mapping)
        if rows is not None and rows.bins.ident == new.bins.ident and rows.starts == new.starts:
            new.key = rows.key
            new._proj = rows._proj
        else:
            new.key = next(self._idents)
        self._rows = new
        return new

    def cells(self, col: Column, rows: RowLayout):
        """(young, anon, node) per row of rows for one column (cached on the column)."""
        if col.key != rows.key:
            proj = rows.projection(col.bins)
            n = rows.n
            young = array.array("d", bytes(8 * n))
            anon_r = array.array("d", bytes(8 * n))
            nodes = col.nodes
            multi = isinstance(nodes, dict)
            node_sums = {k: [0.0] * n for k in nodes} if multi else None
            ca, cf = col.anon, col.file
            for b in range(len(ca)):
                a = ca[b]
                f = cf[b]
                if not (a or f):
                    continue
                for r, w in proj[b]:
                    young[r] += (a + f) * w
                    anon_r[r] += a * w
                    if multi:
                        for k, arr in nodes.items():
                            v = arr[b]
                            if v:
                                node_sums[k][r] += v * w
            node = array.array("h", [NO_DATA]) * n
            if multi:
                for r in range(n):
                    node[r] = dominant({k: s[r] for k, s in node_sums.items()}, young[r])
            elif nodes is not None:
                for r in range(n):
                    if young[r] > 0:
                        node[r] = nodes
            if col.agings > 1:  # the mean over the agings: a share of the row's pages
                scale = 1.0 / col.agings
                for r in range(n):
                    young[r] *= scale
                    anon_r[r] *= scale
            col.key = rows.key
            col.c_young, col.c_anon, col.c_node = young, anon_r, node
        return col.c_young, col.c_anon, col.c_node


class ViewZoom:
    """A replay's zoom into one row: that part of a model at the recorded region size
    (a recording has nothing finer, so its rows are at most one per region), with a
    history of its own, rebuilt from the recording and fed the intervals that follow."""

    def __init__(self, base: Model, lo: int, hi: int, level: int):
        info = base.info
        self.scope = Scope(*(info.get("range") or (None, None)), info.get("mapping"))
        self.scope = self.scope.narrowed(lo, hi)
        shown = {k: v for k, v in info.items() if k != "range"}
        self.model = Model(shown | self.scope.fields() | {"view_zoom": level},
                           history=base.columns.maxlen or HISTORY_MIN)
        self.maps: list[Mapping] = []  # the scope's part of the recorded maps

    def feed(self, sample: Sample) -> None:
        """One recorded interval, cut to the scope (as a live --range would count it)."""
        maps = None
        if sample.maps is not None:
            maps = self.maps = self.scope.apply(sample.maps)
        counts = counted_in(sample.counts, self.maps, self.model.shift)
        self.model.add(Sample(sample.seq, sample.t, sample.aging, sample.dropped,
                              sample.rss_kb, maps, counts, sample.comm, sample.partial,
                              sample.huge, sample.agings, sample.time))

    def rebuild(self, recording: str, taken: int, level: tuple) -> None:
        """The history so far: the first `taken` intervals of the recording, those of
        the recorded zoom level shown (zoom_view() `level`)."""
        src = ReplaySource(recording, limit=taken)
        src.open()
        try:
            for view, s in src.watched():
                if zoom_view(view) == level:
                    self.feed(s)
        finally:
            src.close()


# =====================================================================================
# 5. rendering: frames, legend, views
# =====================================================================================

VIEWS = ("heat", "node", "anon")
HEAT_BOUNDS = (0.01, 0.02, 0.05, 0.10, 0.20, 0.40, 0.60, 0.80)
HEAT_CHARS = " .:-=+*#%@"
HEAT_TEXT = ("none", "<1%", "1-2%", "2-5%", "5-10%", "10-20%", "20-40%", "40-60%", "60-80%",
             ">=80%")
# viridis sampled at 9 evenly spaced points: perceptually uniform, dark to bright
HEAT_RGB = (None, (68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
            (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37))
# Okabe-Ito: distinct for colour-blind readers too
NODE_RGB = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
            (213, 94, 0), (204, 121, 167))
MIXED_RGB = (187, 187, 187)
KIND_ANON, KIND_FILE = 1, 2
KIND_CHARS = {NO_DATA: " ", KIND_ANON: "a", KIND_FILE: "f", MIXED: "*"}
KIND_RGB = {NO_DATA: None, KIND_ANON: (213, 94, 0), KIND_FILE: (0, 114, 178),
            MIXED: (204, 121, 167)}
RESET = "\x1b[0m"
LEGEND_HEAD = {
    "heat": "% of the row's pages found young",
    "node": "NUMA node of >=75% of the young pages",
    "anon": "kind of >=75% of the young pages",
}
#: In colour the node and anon views shade each cell by its heat level: from this
#: share of the full colour for the faintest level up to the full colour at >=80%.
SHADE_FLOOR = 0.35
SHADE_NOTE = "brighter: hotter"
HUGE_CHAR = "H"  # in place of the "|" after the label of a row huge pages back
HUGE_NOTE = "huge pages back the row: one byte touched makes a whole huge page young"
#: A view whose category the source cannot tell shows this for an accessed cell.
UNKNOWN_CHAR = "?"
UNTOLD = {"node": "the NUMA node", "anon": "anon from file"}
UNTOLD_SHORT = {"node": "node", "anon": "anon/file"}
KEYS_HINT = "keys: h/n/a/v view  j/k row  z/x zoom  u never young  p/space pause  q quit"


def heat_level(young: float, pages: int) -> int:
    """0 for no young page, else 1..9 by HEAT_BOUNDS of young / pages."""
    if young <= 0:
        return 0
    if pages <= 0:
        return len(HEAT_BOUNDS) + 1
    return 1 + bisect.bisect_right(HEAT_BOUNDS, young / pages)


def kind_of(young: float, anon: float) -> int:
    if young <= 0:
        return NO_DATA
    if anon >= DOMINANCE * young:
        return KIND_ANON
    if young - anon >= DOMINANCE * young:
        return KIND_FILE
    return MIXED


def node_char(node: int) -> str:
    if node == NO_DATA:
        return " "
    if node == MIXED:
        return "*"
    if node < 10:
        return str(node)
    if node < 36:
        return chr(ord("a") + node - 10)
    return "#"


def node_rgb(node: int):
    if node == NO_DATA:
        return None
    if node == MIXED:
        return MIXED_RGB
    return NODE_RGB[node % len(NODE_RGB)]


def shade(rgb, level: int):
    """A category colour dimmed to show heat level 1..9 (level 9 is the colour itself)."""
    if rgb is None:
        return None
    f = SHADE_FLOOR + (1 - SHADE_FLOOR) * (level - 1) / (len(HEAT_CHARS) - 2)
    return tuple(round(c * f) for c in rgb)


def cell_class(view: str, young: float, anon: float, node: int, pages: int,
               told: bool = True) -> tuple:
    """(character, rgb or None) of one cell in a view. The node and anon views show
    the category by character and hue, and the heat by the hue's brightness; when the
    source cannot tell the category (told false) an accessed cell is "?" in grey."""
    level = heat_level(young, pages)
    if not told and view != "heat":
        return (UNKNOWN_CHAR, shade(MIXED_RGB, level)) if level else (" ", None)
    if view == "heat":
        return HEAT_CHARS[level], HEAT_RGB[level]
    if view == "node":
        return node_char(node), shade(node_rgb(node), level)
    kind = kind_of(young, anon)
    return KIND_CHARS[kind], shade(KIND_RGB[kind], level)


_XTERM_CACHE: dict = {}


def xterm_index(rgb: tuple) -> int:
    """Nearest xterm-256 colour (6x6x6 cube 16-231, greys 232-255) to rgb."""
    idx = _XTERM_CACHE.get(rgb)
    if idx is None:
        levels = (0, 95, 135, 175, 215, 255)
        best = None
        for i in range(16, 256):
            if i < 232:
                c = i - 16
                cand = (levels[c // 36], levels[c // 6 % 6], levels[c % 6])
            else:
                g = 8 + 10 * (i - 232)
                cand = (g, g, g)
            d = sum((x - y) ** 2 for x, y in zip(rgb, cand))
            if best is None or d < best[0]:
                best = (d, i)
        idx = _XTERM_CACHE[rgb] = best[1]
    return idx


class Style:
    """How a cell colour is written: None (plain text), "256" or "truecolor"."""

    def __init__(self, mode: str | None):
        self.mode = mode

    def bg(self, rgb) -> str:
        if rgb is None:
            return "\x1b[49m"
        if self.mode == "truecolor":
            return "\x1b[48;2;{};{};{}m".format(*rgb)
        return f"\x1b[48;5;{xterm_index(rgb)}m"


def color_mode(choice: str, isatty: bool, environ) -> str | None:
    """--color auto|always|never plus NO_COLOR, TERM and COLORTERM -> a Style mode."""
    if choice == "never":
        return None
    if choice == "auto" and (not isatty or environ.get("NO_COLOR")
                             or environ.get("TERM") == "dumb"):
        return None
    if environ.get("COLORTERM", "").lower() in ("truecolor", "24bit"):
        return "truecolor"
    return "256"


def fmt_size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{int(v)} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"


def fmt_secs(s: float) -> str:
    if s < 0.001:
        return "%.0f us" % (s * 1e6)
    if s < 1:
        return "%.1f ms" % (s * 1e3)
    return f"{s:.2f} s"


def fmt_span(s: float) -> str:
    if s < 10:
        return f"{s:.1f}s"
    if s < 1000:
        return f"{s:.0f}s"
    return "%.0fm" % (s / 60)


def header_items(model: Model, view: str, status: str = "") -> list[str]:
    """What the header says, most important first (a narrow terminal loses the last)."""
    info = model.info
    last = model.last
    src = model.source
    comm = _printable(str(info.get("comm", "")))
    processes = model.processes()
    if processes:
        items = [f"heatmap {len(processes)} processes"]
    else:
        items = [f"heatmap pid {info.get('pid')} ({comm})"]
    if last is not None:
        items.append("rss " + fmt_size(last.rss_kb * 1024))
    every = f"every {float(info.get('interval', 0)):g} s"
    agings = last.agings if last is not None else 1
    items.append(every + (f" x{agings} {src.aging_word}s" if agings > 1 else ""))
    via = [w for w, on in (("auto", info.get("auto")), ("per mapping", src.per_mapping)) if on]
    items.append(f"via {src.name}" + (f" ({', '.join(via)})" if via else ""))
    items.append(f"{src.kernel_work} " + (fmt_secs(last.aging) if last is not None else "-"))
    scope = Scope(*(info.get("range") or (None, None)), info.get("mapping"))
    into = zoomed_process(info)
    if into is not None:  # (into one process of several: its range in its addresses)
        pid, comm, lo, hi = into
        items.append(f"pid {pid} ({_printable(str(comm))}) "
                     + Scope(lo, hi, scope.mapping).describe())
    elif not scope.whole:
        items.append(scope.describe())
    if info.get("zoom"):
        items.append(f"zoom {info['zoom']}")
    if info.get("view_zoom"):  # (a replay's: rows no finer than the recorded regions)
        items.append(f"view zoom {info['view_zoom']}")
    items.append("region " + fmt_size(1 << model.shift)
                 + (" as recorded" if info.get("view_zoom") else ""))
    items.append("view " + view)
    if last is not None:
        items.append(f"#{last.seq} {last.t:.1f} s")
        items.append(f"wss {fmt_size(round(model.wss[-1]))} {wss_trend(model.wss)}")
    items.append(f"dropped {last.dropped if last is not None else 0}")
    if status:
        items.append(status)
    return items


TREND_CHARS = "_.-=^"  # low to high, against the largest of the values shown
TREND_LEN = 8


def wss_trend(values: list[float]) -> str:
    """The last TREND_LEN working-set sizes as a strip of TREND_CHARS, e.g. "[_.-=^^]"."""
    recent = values[-TREND_LEN:]
    top = max(recent, default=0)
    if top <= 0:
        return "[" + TREND_CHARS[0] * len(recent) + "]"
    n = len(TREND_CHARS) - 1
    return "[" + "".join(TREND_CHARS[round(v / top * n)] for v in recent) + "]"


def wrap_items(items: list[tuple[int, str]], width: int, max_lines: int) -> list[str]:
    """Join (visible length, text) items with two spaces into lines of at most width
    visible columns; an item wider than width is cut (plain text only)."""
    lines: list[str] = []
    cur: list[str] = []
    used = 0
    for vis, s in items:
        if cur and used + 2 + vis > width:
            lines.append("  ".join(cur))
            cur, used = [], 0
        if vis > width:
            if s.startswith("\x1b"):
                continue  # a colour swatch that cannot fit
            s, vis = s[:width], width
        cur.append(s)
        used += vis + (2 if used else 0)
    if cur:
        lines.append("  ".join(cur))
    return lines[:max_lines]


def nodes_seen(columns) -> list[int]:
    seen: set[int] = set()
    for col in columns:
        if isinstance(col.nodes, dict):
            seen.update(col.nodes)
        elif col.nodes is not None:
            seen.add(col.nodes)
    return sorted(seen)


def tells(src, view: str) -> bool:
    """Whether a source (its traits) can tell what a view shows."""
    return view == "heat" or (src.tells_node if view == "node" else src.tells_kind)


def legend_entries(view: str, nodes: list[int], src=CountsSource
                   ) -> list[tuple[str, object, str]]:
    """(char, rgb, text) for each colour a view uses."""
    if not tells(src, view):
        return [(UNKNOWN_CHAR, MIXED_RGB, f"accessed, {UNTOLD_SHORT[view]} unknown")]
    if view == "heat":
        return [(HEAT_CHARS[i], HEAT_RGB[i], HEAT_TEXT[i]) for i in range(1, len(HEAT_CHARS))]
    if view == "node":
        return [(node_char(n), node_rgb(n), f"node{n}") for n in nodes] + \
            [("*", MIXED_RGB, "mixed")]
    return [(KIND_CHARS[k], KIND_RGB[k], t)
            for k, t in ((KIND_ANON, "anon"), (KIND_FILE, "file"), (MIXED, "mixed"))]


def legend_head(view: str, none: str, shaded: bool = False, src=CountsSource,
                agings: int = 1) -> str:
    """The legend's heading (what a cell means for the source); `none` names how a cell
    with no young page looks, and `shaded` says the colours are shaded by heat (node and
    anon views in colour); `agings` per column make a heat cell a mean over them."""
    shading = f"; {SHADE_NOTE}" if shaded and view != "heat" else ""
    if not tells(src, view):
        what = f"the {src.name} source cannot tell {UNTOLD[view]}"
    else:
        what = src.cell if view == "heat" else LEGEND_HEAD[view]
        if view == "heat" and agings > 1:
            what += f", mean of {agings} {src.aging_word}s per column"
    return f"{what} ({none}: none{shading}):"


def legend_lines(view: str, nodes: list[int], width: int, style: Style, keys: bool,
                 max_lines: int = 3, src=CountsSource, huge: bool = False, agings: int = 1
                 ) -> list[str]:
    """The legend wrapped to width: heading, then one swatch (or character) per colour
    with the numbers it stands for; in the live view a line of keys."""
    head = legend_head(view, "blank", src=src, agings=agings)
    items: list[tuple[int, str]] = [(len(head), head)]
    for ch, rgb, text in legend_entries(view, nodes, src):
        if style.mode is None:
            s = f"{ch} {text}"
            items.append((len(s), s))
        else:
            items.append((3 + len(text), style.bg(rgb) + "  " + RESET + " " + text))
    if style.mode is not None and view != "heat":
        items.append((len(SHADE_NOTE) + 2, f"({SHADE_NOTE})"))
    if huge:
        items.append((len(HUGE_NOTE) + 2, f"{HUGE_CHAR} {HUGE_NOTE}"))
    lines = wrap_items(items, width, max_lines)
    if keys:
        lines.append(KEYS_HINT[:width])
    return lines


def selected_line(model: Model, rows: RowLayout, r: int, symbols: SymbolFiles | None,
                  width: int) -> str:
    """The line about the selected row: its addresses, size and, in a file-backed ELF
    mapping, its hottest symbols over the run (share of the row's young pages)."""
    lo, hi = rows.span(r)
    addr, name, more = rows.labels[r]
    text = f"> {lo & TARGET_MASK:x}-{hi & TARGET_MASK:x} {_printable(name)}" \
           f"{f' +{more}' if more else ''} ({fmt_size(hi - lo)})"
    hot = hot_symbols(model, symbols, lo, hi) if symbols is not None else []
    if hot:
        text += ": " + "  ".join(f"{_printable(n)} {100 * w:.0f}%" for n, w in hot)
    return text[:width]


def process_heading(pid, comm: str, width: int) -> str:
    """The line above a process's rows when a run watches several."""
    text = f"-- pid {pid} ({_printable(str(comm))}) "
    return (text + "-" * max(0, width - len(text)))[:width]


def render_frame(model: Model, view: str = "heat", width: int = 80, height: int = 24,
                 color: str | None = None, status: str = "", keys: bool = False,
                 cursor: int | None = None, symbols: SymbolFiles | None = None,
                 note: str = "") -> str:
    """One frame as text (ANSI colour escapes when color is "256" or "truecolor"),
    at most width columns wide and, above 3 lines, at most height lines high.
    With a cursor (the live view) that row is selected: shown in reverse video, with a
    line about it (its symbols from `symbols`; or the note, what a key could not do)
    under the header.  No trailing newline."""
    width = max(1, int(width))
    height = max(1, int(height))
    style = Style(color)
    columns = model.columns
    recent = list(itertools.islice(columns, max(0, len(columns) - width), None))
    legend = legend_lines(view, nodes_seen(recent), width, style, keys, src=model.source,
                          huge=any((model.huge or {}).values()),
                          agings=model.last.agings if model.last is not None else 1)
    told = tells(model.source, view)
    head = wrap_items([(len(s), s) for s in header_items(model, view, status)], width, 2)
    selecting = cursor is not None and height > 6
    # what gives way on a short terminal: the axis, then the legend, then header line 2
    axis_on = True
    nrows = height - len(head) - 1 - len(legend) - selecting
    if nrows < 1:
        axis_on = False
        nrows += 1
    if nrows < 1:
        legend = legend[: max(0, len(legend) + nrows - 1)]
        nrows = height - len(head) - len(legend)
    if nrows < 1:
        head = head[:1]
        nrows = max(1, height - 1 - len(legend))
    lines = list(head)
    processes = model.processes()  # several: a heading line above each one's rows
    rows = model.rows_for(max(1, nrows - len(processes)) if processes else nrows)
    cursor = min(max(0, cursor), rows.n - 1) if selecting and rows.n else None
    if selecting:
        lines.append(note[:width] if note else "" if cursor is None else
                     selected_line(model, rows, cursor, symbols, width))
    digits = max([len(f"{a & TARGET_MASK:x}") for a, _, _ in rows.labels] or [1])
    labels = []
    for addr, name, more in rows.labels:
        text = f"{addr & TARGET_MASK:0{digits}x} {_printable(name)}"
        labels.append(text + (f" +{more}" if more else ""))
    natural = max([len(s) for s in labels] or [0])
    label_w = min(natural, 36) if width >= 60 else min(natural, width // 3)
    label_w = max(0, min(label_w, width - 2))
    sep = "|" if width >= 3 else ""
    huge_rows = model.huge_rows(rows)
    ncols = max(1, width - label_w - len(sep))
    shown = recent[-ncols:] if ncols < len(recent) else recent
    pad = ncols - len(shown)
    cells = [model.cells(col, rows) for col in shown]
    if rows.n == 0:
        lines.append(("(no mappings)")[:width])
    heading = None
    for r in range(rows.n):
        slot = target_slot(rows.labels[r][0])
        if processes and slot != heading:
            heading = slot
            pid, comm = processes.get(slot, ("?", "exited"))
            lines.append(process_heading(pid, comm, width))
        pages = rows.pages[r]
        label = labels[r][:label_w].ljust(label_w)
        if r == cursor:
            label = "\x1b[7m" + label + "\x1b[27m"
        out = [label, HUGE_CHAR if sep and huge_rows[r] else sep]
        if style.mode is None:
            out.append(" " * pad)
            out.extend(cell_class(view, y[r], a[r], n[r], pages, told)[0]
                       for y, a, n in cells)
        else:
            out.append(" " * pad)
            cur = None
            for y, a, n in cells:
                rgb = cell_class(view, y[r], a[r], n[r], pages, told)[1]
                if rgb != cur:
                    out.append(style.bg(rgb))
                    cur = rgb
                out.append(" ")
            if cur is not None:
                out.append(RESET)
        lines.append("".join(out))
    if axis_on:
        axis = [" "] * ncols
        k = len(shown)
        for j in range(ncols - k, ncols):
            axis[j] = "-"
        if k and ncols >= 3:
            axis[ncols - 3:] = "now"
        if k >= 2:
            left = "-" + fmt_span(shown[-1].t - shown[0].t)
            if len(left) + 4 <= k:
                axis[ncols - k: ncols - k + len(left)] = left
        lines.append((" " * label_w + ("+" if sep else "") + "".join(axis))[:width])
    lines.extend(legend)
    return "\n".join(lines)


def render_untouched(model: Model, width: int, height: int, resident=None) -> str:
    """The live view's never-young list (key u): the header, what the run has never
    found young so far, largest first, as many ranges as fit."""
    head = wrap_items([(len(s), s) for s in header_items(model, "never young", "so far")],
                      width, 2)
    summary = run_summary(model, resident)
    lines = untouched_lines(summary, limit=max(1, height - len(head) - 2))
    body = [ln[:width] for ln in lines]
    return "\n".join(head + body + ["keys: u back to the heatmap  q quit"[:width]])


# =====================================================================================
# 6. the live view (a terminal: alternate screen, keys, resizes)
# =====================================================================================

ENTER_SCREEN = "\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J"
LEAVE_SCREEN = "\x1b[0m\x1b[?25h\x1b[?1049l"


class PlainUI:
    """No terminal: one frame per interval on stdout (or nothing with --json)."""

    live = False

    def __init__(self, out, view, color, frames, size, clock, sleep):
        self.out = out
        self.view = view
        self.color = color
        self.frames = frames
        self.size = size
        self.clock = clock
        self.sleep = sleep

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def wait(self, due):
        delay = due - self.clock()
        if delay > 0:
            self.sleep(delay)
        return None

    def show(self, model, initial=False):
        if not self.frames or initial:
            return
        width, height = self.size()
        model.ensure_history(max(HISTORY_MIN, 2 * width))
        self.out.write(render_frame(model, self.view, width, height, self.color) + "\n\n")
        self.out.flush()


class LiveScreen:
    """The interactive view: alternate screen, hidden cursor, cbreak keyboard, SIGWINCH
    re-layout, SIGTSTP handled; the terminal is restored on every way out."""

    live = True

    def __init__(self, out, inp, view, color, clock, symbols: SymbolFiles | None = None):
        self.out = out
        self.inp = inp
        self.view = view
        self.color = color
        self.clock = clock
        self.symbols = symbols  # for the selected row's line
        self.cursor = 0  # the selected row
        self.note = ""  # what the last key could not do (shown until the next key)
        self.untouched = False  # showing what the run never found young (u)
        self.resident = None  # resident(ranges) of the live source, for that list
        self.paused = False
        self.pending = ""  # keys read but not handled yet
        self.model = None
        self.kept = None  # the model whose last frame stays on the screen
        self.fd_in = None
        self.saved = None
        self.wake = None
        self.old_handlers: dict = {}
        self.active = False

    # -- terminal state ----------------------------------------------------------------
    def __enter__(self):
        try:
            self._setup()
        except BaseException:  # a dead terminal, Ctrl-C: undo what was done
            self.__exit__()
            raise
        return self

    def _setup(self):
        import termios
        import tty

        try:
            if self.inp is not None and self.inp.isatty():
                self.fd_in = self.inp.fileno()
                self.saved = termios.tcgetattr(self.fd_in)
                tty.setcbreak(self.fd_in)
        except (OSError, ValueError, termios.error):
            self.fd_in = None
        self.wake = os.pipe()
        os.set_blocking(self.wake[0], False)
        os.set_blocking(self.wake[1], False)
        for sig, handler in ((signal.SIGWINCH, self._on_winch), (signal.SIGTSTP, self._on_tstp),
                             (signal.SIGCONT, self._on_cont)):
            self.old_handlers[sig] = signal.signal(sig, handler)
        self._enter()

    def _enter(self):
        self.out.write(ENTER_SCREEN)
        self.out.flush()
        self.active = True

    def _leave(self):
        self.active = False
        try:
            self.out.write(LEAVE_SCREEN)
            self.out.flush()
        except (OSError, ValueError):
            pass
        if self.saved is not None:
            import termios

            try:
                termios.tcsetattr(self.fd_in, termios.TCSADRAIN, self.saved)
            except (OSError, termios.error):
                pass

    def __exit__(self, *exc):
        for sig, handler in self.old_handlers.items():
            try:
                signal.signal(sig, handler)
            except (OSError, ValueError, TypeError):
                pass
        self._leave()
        if self.kept is not None:
            width, height = self.size()
            try:
                self.out.write(render_frame(self.kept, self.view, width, height,
                                            self.color) + "\n")
                self.out.flush()
            except (OSError, ValueError):
                pass
        if self.wake:
            for fd in self.wake:
                os.close(fd)
            self.wake = None
        return False

    def _poke(self):
        try:
            os.write(self.wake[1], b"w")
        except (OSError, TypeError):
            pass

    def _on_winch(self, signum, frame):
        self._poke()

    def _on_tstp(self, signum, frame):
        self._leave()
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)  # stops here until SIGCONT

    def _on_cont(self, signum, frame):
        signal.signal(signal.SIGTSTP, self._on_tstp)
        if not self.active:
            if self.saved is not None:
                import tty

                try:
                    tty.setcbreak(self.fd_in)
                except OSError:
                    pass
            try:
                self._enter()
            except OSError:
                pass
        self._poke()

    # -- loop --------------------------------------------------------------------------
    def size(self):
        try:
            sz = os.get_terminal_size(self.out.fileno())
        except (OSError, ValueError):
            return 80, 24
        # a pty nobody sized (0x0, e.g. under some CI runners or `script`) is not a
        # terminal with no room: draw for the classic size instead of nothing
        return sz.columns or 80, sz.lines or 24

    def show(self, model, initial=False):
        self.model = model
        width, height = self.size()
        model.ensure_history(max(HISTORY_MIN, 2 * width))
        if self.untouched:
            frame = render_untouched(model, width, height, self.resident)
        else:
            frame = render_frame(model, self.view, width, height, self.color,
                                 status="paused" if self.paused else "", keys=True,
                                 cursor=self.cursor, symbols=self.symbols, note=self.note)
        rows = model.shown_rows()
        self.cursor = min(self.cursor, max(0, rows.n - 1)) if rows is not None else 0
        lines = frame.split("\n")[:height]
        self.out.write("\x1b[H" + "\x1b[K\r\n".join(lines) + "\x1b[K\x1b[J")
        self.out.flush()

    def keep(self, model) -> None:
        """Leave the last frame on the terminal's own screen when the view closes (the
        end of a replay: the alternate screen would take it away)."""
        self.kept = model

    def selected(self) -> tuple[tuple[int, int], int] | None:
        """((start, end) of the selected row, rows on the screen), None if no rows."""
        rows = self.model.shown_rows() if self.model is not None else None
        if rows is None or not rows.n:
            return None
        return rows.span(min(self.cursor, rows.n - 1)), rows.requested

    ARROWS = {"\x1b[A": "k", "\x1b[B": "j", "\x1bOA": "k", "\x1bOB": "j"}

    def _key(self, ch: str):
        self.note = ""
        if ch in "qQ":
            return "quit"
        views = {"h": "heat", "n": "node", "a": "anon"}
        if ch in "jk":
            self.cursor = max(0, self.cursor + (1 if ch == "j" else -1))
        elif ch == "z":
            return "zoom"
        elif ch == "x":
            return "unzoom"
        elif ch == "u":
            self.untouched = not self.untouched
        elif ch in views:
            self.view = views[ch]
        elif ch == "v":
            self.view = VIEWS[(VIEWS.index(self.view) + 1) % len(VIEWS)]
        elif ch in "p ":
            self.paused = not self.paused
            if not self.paused:
                return "resync"
        else:
            return None
        return "redraw"

    def wait(self, due):
        import select

        while True:
            now = self.clock()
            if not self.paused and now >= due:
                return None
            timeout = None if self.paused or due == math.inf else max(0.0, due - now)
            fds = [self.wake[0]] + ([self.fd_in] if self.fd_in is not None else [])
            ready, _, _ = select.select(fds, [], [], timeout)
            if self.wake[0] in ready:
                try:
                    while os.read(self.wake[0], 64):
                        pass
                except BlockingIOError:
                    pass
                if self.model is not None:
                    self.show(self.model)
            if self.fd_in is not None and self.fd_in in ready:
                data = os.read(self.fd_in, 64)
                if not data:
                    self.fd_in = None
                    continue
                self.pending += data.decode("latin-1")
            while self.pending:
                ch, self.pending = self.pending[0], self.pending[1:]
                if ch == "\x1b" and ch + self.pending[:2] in self.ARROWS:
                    ch, self.pending = self.ARROWS[ch + self.pending[:2]], self.pending[2:]
                act = self._key(ch)
                if act == "quit":
                    return "quit"
                if act == "resync":
                    if self.model is not None:
                        self.show(self.model)
                    return "resync"
                if act in ("zoom", "unzoom"):
                    return act
                if act == "redraw" and self.model is not None:
                    self.show(self.model)


# =====================================================================================
# 7. outputs: JSON, recording, SVG
# =====================================================================================

def _dump(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


class JsonSink:
    """--json: one object per interval (schema in the module docstring)."""

    def __init__(self, out, symbols: SymbolFiles | None = None):
        self.out = out
        self.symbols = symbols

    def write(self, sample: Sample, model: Model) -> None:
        self.out.write(interval_json(sample, model, self.symbols) + "\n")
        self.out.flush()

    def finish(self, summary: dict) -> None:
        self.out.write(_dump(summary) + "\n")
        self.out.flush()


def region_info(maps: list[Mapping], starts: list[int], region: int, shift: int,
                page_size: int) -> tuple[str, int]:
    """(name of the mapping at the region's first mapped byte, mapped pages in it)."""
    lo = region << shift
    i = max(0, bisect.bisect_right(starts, lo) - 1)
    return _mapped_in(maps, i, lo, lo + (1 << shift), page_size)[1:]


def _mapped_in(maps: list[Mapping], j: int, lo: int, hi: int, page_size: int
               ) -> tuple[int, str, int]:
    """For [lo, hi) and sorted disjoint maps searched from index j: (the first index
    whose mapping ends after lo, to start the next search from; the name of the first
    mapping inside; the mapped pages inside)."""
    while j < len(maps) and maps[j].end <= lo:
        j += 1
    name = ""
    pages = 0
    k = j
    while k < len(maps) and maps[k].start < hi:
        m = maps[k]
        if not name:
            name = m.name
        pages += (min(hi, m.end) - max(lo, m.start)) // page_size
        k += 1
    return j, name, pages


def per_aging(pages: int, agings: int):
    """Pages summed over agings as the mean per aging: an int where it is one."""
    return pages // agings if pages % agings == 0 else round(pages / agings, 3)


def interval_json(sample: Sample, model: Model, symbols: SymbolFiles | None = None) -> str:
    """One interval as a line of JSON (no newline), after model.add(sample).  Written
    piecewise: a dense interval of a big target has tens of thousands of regions.
    With symbols, regions of file-backed ELF mappings name the symbols in them."""
    info = model.info
    k = max(1, sample.agings)
    processes = model.processes()
    tell_node, tell_kind = model.source.tells_node, model.source.tells_kind
    shift = model.shift
    size = 1 << shift
    page_size = model.page_size
    maps = model.maps
    names: dict[str, str] = {}
    parts = []
    counts = sorted(sample.counts)
    j = 0
    i = 0
    n = len(counts)
    while i < n:
        region = counts[i][0]
        a = f = 0
        nodes: dict[int, int] = {}
        while i < n and counts[i][0] == region:
            _, node, ca, cf = counts[i]
            a += ca
            f += cf
            if ca + cf:
                nodes[node] = nodes.get(node, 0) + ca + cf
            i += 1
        if a + f <= 0:
            continue
        lo = region << shift
        hi = lo + size
        j, name, pages = _mapped_in(maps, j, lo, hi, page_size)
        pid, start = model.region_process(region)
        qname = names.get(name)
        if qname is None:
            qname = names[name] = json.dumps(name)
        if tell_node:
            node = dominant(nodes, a + f)
            node_text = '"mixed"' if node == MIXED else str(node)
            per_node = "{" + ",".join(f'"{nd}":{per_aging(y, k)}'
                                      for nd, y in sorted(nodes.items())) + "}"
        else:
            node_text = per_node = "null"
        kinds = f'"anon":{per_aging(a, k)},"file":{per_aging(f, k)}' if tell_kind else \
            '"anon":null,"file":null'
        huge = "null" if model.huge is None else model.huge.get(region, 0)
        named = symbols.inside(maps, lo, hi, j)[:HOT_SYMBOLS] if symbols else ()
        syms = f',"symbols":{_dump([name for name, _ in named])}' if named else ""
        parts.append(f'{{"pid":{pid},"start":{start},"end":{start + size},'
                     f'"mapping":{qname},"pages":{pages},'
                     f'"huge":{huge},"accessed":{per_aging(a + f, k)},{kinds},'
                     f'"node":{node_text},"nodes":{per_node}{syms}}}')
    wss = model.wss[-1] if model.wss else 0
    head = _dump({
        "seq": sample.seq, "t": sample.t, "time": sample_time(sample, info),
        "source": model.source.name,
        "pid": info.get("pid"), "comm": info.get("comm"),
        "interval": info.get("interval"), "agings": k, "aging_s": sample.aging,
        "dropped": sample.dropped, "rss_kb": sample.rss_kb,
        "wss_bytes": int(wss) if wss == int(wss) else round(wss),
        "region_size": size, "page_size": page_size, "partial": sample.partial,
    } | ({"targets": [{"pid": pid, "comm": comm} for pid, comm in processes.values()]}
         if processes else {}) | _zoom_json(info))
    return head[:-1] + ',"regions":[' + ",".join(parts) + "]}"


def _zoom_json(info: dict) -> dict:
    """A zoomed-in interval's "zoom": its level and the range it watched."""
    if not info.get("zoom"):
        return {}
    into = zoomed_process(info)
    if into is not None:  # (one process of several: in its own addresses)
        pid, _comm, lo, hi = into
        return {"zoom": {"level": info["zoom"], "pid": pid, "start": lo, "end": hi}}
    lo, hi = info["range"]
    return {"zoom": {"level": info["zoom"], "start": lo, "end": hi}}


def sample_time(sample: Sample, info: dict) -> float | None:
    """The interval's end as Unix time: as recorded, or for a recording older than
    "time" its start plus the interval's seconds."""
    if sample.time is not None:
        return sample.time
    started = info.get("started")
    return None if started is None else round(float(started) + sample.t, 3)


class Recorder:
    """--record: the header, maps when they change and every interval, as JSON lines,
    flushed per interval so that an interrupted run leaves a usable file."""

    def __init__(self, path: str):
        self.path = path
        try:
            self.f = _open_text(path, "w")
        except OSError as e:
            raise self._failed(e) from None

    def _failed(self, e: OSError) -> HeatmapError:
        return HeatmapError(f"cannot write {self.path}: {e.strerror or e}")

    def start(self, header: dict) -> None:
        try:
            self.f.write(_dump(header) + "\n")
            self.f.flush()  # (the run is under way: a watcher of the file can tell)
        except OSError as e:
            raise self._failed(e) from None

    def write(self, sample: Sample, model: Model | None = None) -> None:
        f = self.f
        try:
            if sample.zoom is not None:  # (the maps of the zoomed view follow)
                f.write(_dump({"type": ZOOM_TYPE, **sample.zoom}) + "\n")
            if sample.maps is not None:
                f.write(_dump({"type": "maps", "maps": [list(m) for m in sample.maps]}) + "\n")
            record = {"type": "interval", "seq": sample.seq, "t": sample.t,
                      "aging": sample.aging, "dropped": sample.dropped,
                      "rss_kb": sample.rss_kb, "counts": [list(c) for c in sample.counts]}
            if sample.time is not None:
                record["time"] = sample.time
            if sample.agings != 1:
                record["agings"] = sample.agings
            if sample.comm is not None:
                record["comm"] = sample.comm
            if sample.partial:
                record["partial"] = True
            if sample.huge is not None:
                record["huge"] = [list(h) for h in sample.huge]
            if sample.targets is not None:
                record["targets"] = sample.targets
            f.write(_dump(record) + "\n")
            f.flush()
        except OSError as e:
            raise self._failed(e) from None

    def finish(self, summary: dict) -> None:
        """The run's summary, its last record."""
        try:
            self.f.write(_dump(summary) + "\n")
            self.f.flush()
        except OSError as e:
            raise self._failed(e) from None

    def close(self) -> None:
        f, self.f = self.f, None
        if f is not None:
            try:
                f.close()
            except OSError as e:
                raise self._failed(e) from None


SUMMARY_TYPE = "summary"  # the record (and --json object) that ends a run
UNTOUCHED_SHOWN = 5  # ranges the end-of-run text lists (JSON has them all)


def run_summary(model: Model, resident=None) -> dict:
    """What a whole run found: its working set (min/median/max of the intervals') and
    the ranges never found young, largest first, with their resident bytes
    (resident(ranges) -> bytes or None each; None: unknown)."""
    ranges = model.never_touched()
    sizes = resident(ranges) if resident is not None else [None] * len(ranges)
    wss = [round(v) for v in model.wss]
    known = [r for r in sizes if r is not None]
    return {
        "type": SUMMARY_TYPE, "intervals": model.intervals,
        "wss_bytes": {"min": min(wss), "median": round(statistics.median(wss)),
                      "max": max(wss)} if wss else None,
        "never_touched_bytes": sum(b - a for a, b, _ in ranges),
        "never_touched_resident_bytes": sum(known) if len(known) == len(sizes) else None,
        "never_touched": [_untouched(model, a, b, name, r) for (a, b, name), r in
                          zip(ranges, sizes)],
    }


def _untouched(model: Model, start: int, end: int, name: str, resident) -> dict:
    """One never-touched range of run_summary(); with several processes its pid and
    its addresses in that process."""
    out = {"start": start, "end": end, "mapping": name, "bytes": end - start,
           "resident_bytes": resident}
    if model.processes():
        pid, own = model.address_process(start)
        out = {"pid": pid, **out, "start": own, "end": own + end - start}
    return out


def untouched_lines(summary: dict, limit: int = UNTOUCHED_SHOWN) -> list[str]:
    """The never-touched part of a summary as text: a total, then the largest ranges."""
    ranges = summary["never_touched"]
    if not ranges:
        return ["never found young: nothing (every shown region was young at least once)"]
    total = summary["never_touched_resident_bytes"]
    res = f", {fmt_size(total)} of it resident" if total is not None else ""
    n = len(ranges)
    lines = [f"never found young: {n} range{'' if n == 1 else 's'}, "
             f"{fmt_size(summary['never_touched_bytes'])}{res}"
             + (f"; the largest {limit}:" if n > limit else ":")]
    for r in ranges[:limit]:
        rb = r["resident_bytes"]
        who = f"pid {r['pid']} " if "pid" in r else ""
        lines.append(f"  {r['start']:#x}-{r['end']:#x} {who}{_printable(r['mapping']) or 'anon'} "
                     f"{fmt_size(r['bytes'])}"
                     + (f", {fmt_size(rb)} resident" if rb is not None else ""))
    return lines


def union_maps(snapshots) -> list[Mapping]:
    """The mappings of a whole run, newest first: a mapping from an older snapshot is
    kept only where no newer one overlaps it."""
    kept: list[Mapping] = []
    starts: list[int] = []
    for snap in reversed(snapshots):
        for m in shown_mappings(snap):
            i = bisect.bisect_right(starts, m.start)
            if i > 0 and kept[i - 1].end > m.start:
                continue
            if i < len(kept) and kept[i].start < m.end:
                continue
            kept.insert(i, m)
            starts.insert(i, m.start)
    return kept


SVG_ROWS = 48
SVG_NONE = "#f2f2f2"


def _xml(text: str) -> str:
    text = "".join(c if c >= " " or c in "\t\n" else "?" for c in str(text))
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _hex(rgb) -> str:
    return SVG_NONE if rgb is None else "#{:02x}{:02x}{:02x}".format(*rgb)


class _RunScan(collections.namedtuple(
        "_RunScan", "header panels panel_of intervals times nodes comm agings wss")):
    """What write_svg() needs to know of a whole recording before drawing it: its
    panels (one per zoom level's view) and the panel of each interval."""


class _Panel:
    """One view of a recording (the run's own, or a zoom level's) as write_svg() draws
    it: its header, maps snapshots, huge pages and intervals (0-based, in order)."""

    def __init__(self, info: dict, index: int):
        self.info = info
        self.index = index  # (panels top to bottom in the order the run first showed them)
        self.snapshots: list = []
        self.huge: dict[int, int] | None = None  # the most pages huge pages backed
        self.columns: list[int] = []


def _scan_recording(recording: str, limit) -> _RunScan:
    """The first pass over a recording: header, the views it shows (a zoom record
    starts another, or goes back to one), intervals, time span and the nodes seen (for
    the legend)."""
    src = ReplaySource(recording, limit=limit)
    src.open()
    panels = {zoom_view(src.header): _Panel(src.header, 0)}
    panel_of: list[int] = []
    times: list[float] = []
    nodes: set[int] = set()
    comm = None
    agings = 1  # (the most of any interval: a run has the same in every full one)
    wss: list[float] = []
    page_size = None
    processes = {t[0]: t for t in src.header.get("targets") or ()}
    try:
        for info, s in src.watched():
            if zoom_view(info) not in panels:
                panels[zoom_view(info)] = _Panel(info, len(panels))
            panel = panels[zoom_view(info)]
            panel_of.append(panel.index)
            panel.columns.append(len(times))
            page_size = page_size or int(src.header.get("page_size", 4096))
            times.append(s.t)
            agings = max(agings, s.agings)
            wss.append(sum(c[2] + c[3] for c in s.counts) * page_size / max(1, s.agings))
            comm = s.comm if s.comm is not None else comm
            if s.huge is not None:
                panel.huge = {} if panel.huge is None else panel.huge
                for region, n in s.huge:
                    panel.huge[region] = max(n, panel.huge.get(region, 0))
            if s.maps is not None:
                panel.snapshots.append(s.maps)
            for slot, pid, name in s.targets or ():  # (every process of the run)
                processes.setdefault(slot, [slot, pid, name])
            nodes.update(c[1] for c in s.counts if c[2] + c[3] > 0)
    finally:
        src.close()
    if processes:
        src.header["targets"] = sorted(processes.values())
    return _RunScan(src.header, list(panels.values()), panel_of, len(times), times, nodes,
                    src.header.get("comm") if comm is None else comm, agings, wss)


# Text is monospace: its width is known from its length.  Lines above the plot sit a
# line apart (13 px title, then 10 px lines every SVG_LINE px).
SVG_CHAR_W = {10: 6.1, 13: 7.9}  # px per character at these font sizes
SVG_LINE = 16
SVG_LABEL_W = 260
SVG_CELL_MAX = 12  # px per interval of a long run (short ones widen to the canvas)
SVG_PLOT_MAX = 1200
SVG_MARGIN = 20
SVG_TICK_STEPS = (1, 2, 5)  # times powers of ten: intervals between time ticks
SVG_WSS_H = 36  # px of the working-set strip's tallest bar
SVG_WSS_GAP = 4  # px between the strip and the subtitle above, the heading below
SVG_PANEL_GAP = SVG_LINE + 8  # px between two panels (zoom levels): the lower one's heading


class _SvgGrid(collections.namedtuple(
        "_SvgGrid", "n cell_w row_h label_w top plot_w plot_h width height tops")):
    """Where write_svg() draws: n intervals of cell_w, rows of row_h, labels left; the
    panels (one per zoom level's view) from tops[p] down, a heading line apart."""


def _text_w(text: str, size: int = 10) -> float:
    return len(text) * SVG_CHAR_W[size]


def _svg_grid(intervals: int, panel_rows: list[int], text_w: float) -> _SvgGrid:
    """The canvas as wide as its widest line of text or its plot, whichever is wider;
    a short run's cells widen to fill it.  Panels of panel_rows rows each, stacked."""
    n = max(1, intervals)
    label_w = SVG_LABEL_W
    narrow = max(1, min(SVG_CELL_MAX, SVG_PLOT_MAX // n))
    width = math.ceil(max(label_w + n * narrow + SVG_MARGIN, text_w + 2 * 8))
    cell_w = max(narrow, (width - label_w - SVG_MARGIN) // n)
    row_h = 12
    # title, subtitle, the working-set strip, column heading
    top = 18 + 2 * SVG_LINE + 8 + SVG_WSS_H + 2 * SVG_WSS_GAP
    plot_w = n * cell_w
    tops = [top]
    for nrows in panel_rows[:-1]:
        tops.append(tops[-1] + nrows * row_h + SVG_PANEL_GAP)
    plot_h = tops[-1] - top + panel_rows[-1] * row_h
    height = top + plot_h + 110
    return _SvgGrid(intervals, cell_w, row_h, label_w, top, plot_w, plot_h, width, height,
                    tops)


def _svg_title(header: dict, model: Model, view: str, intervals: int) -> str:
    per = ", per mapping" if model.source.per_mapping else ""
    return (f"heatmap: pid {header.get('pid')} ({model.info.get('comm')}), {intervals} "
            f"intervals of {float(header.get('interval', 0)):g} s, "
            f"{fmt_size(1 << model.shift)} regions, view {view}, "
            f"source {model.source.name}{per}")


def _svg_subtitle(header: dict) -> str:
    return (f"rows: address ranges of /proc/{header.get('pid')}/maps (start, mapping); "
            f"columns: intervals, oldest left")


def _svg_head(w, g: _SvgGrid, header: dict, title: str) -> None:
    w('<?xml version="1.0" encoding="UTF-8"?>\n')
    w(f'<svg xmlns="http://www.w3.org/2000/svg" width="{g.width}" height="{g.height}" '
      f'viewBox="0 0 {g.width} {g.height}">\n')
    w(f"<title>{_xml(title)}</title>\n")
    w("<style>text{font-family:monospace;font-size:10px;fill:#222}"
      ".t{font-size:13px}</style>\n")
    w(f'<rect x="0" y="0" width="{g.width}" height="{g.height}" fill="#ffffff"/>\n')
    w(f'<text class="t" x="8" y="18">{_xml(title)}</text>\n')
    w(f'<text x="8" y="{18 + SVG_LINE}">{_xml(_svg_subtitle(header))}</text>\n')


def _svg_wss(w, g: _SvgGrid, wss: list[float]) -> None:
    """The working set over the run: one bar per interval above its column, the
    tallest the run's largest, labelled with it."""
    bottom = g.top - SVG_LINE - SVG_WSS_GAP
    high = max(wss, default=0)
    w('<g class="wss">\n')
    w(f'<text x="8" y="{bottom - SVG_WSS_H // 2 + 4}">'
      f'{_xml(f"working set (max {fmt_size(round(high))})")}</text>\n')
    for j, v in enumerate(wss):
        h = round(SVG_WSS_H * v / high) if high > 0 else 0
        if h:
            w(f'<rect class="wss" x="{g.label_w + j * g.cell_w}" y="{bottom - h}" '
              f'width="{g.cell_w}" height="{h}" fill="#8a8a8a"/>\n')
    w("</g>\n")


def _svg_labels(w, g: _SvgGrid, top: int, layout: RowLayout, huge_rows: list[bool],
                processes: dict | None = None) -> None:
    """Row labels of a panel; with several processes each begins with its process's pid."""
    w('<g class="labels">\n')
    for r, (addr, name, more) in enumerate(layout.labels):
        pid = processes.get(target_slot(addr), ("?",))[0] if processes else None
        text = _xml((f"{pid}: " if processes else "") + f"{addr & TARGET_MASK:x} {name}"
                    + (f" +{more}" if more else ""))
        y = top + r * g.row_h
        w(f'<text x="{g.label_w - 6}" y="{y + g.row_h - 2}" text-anchor="end">{text}</text>\n')
        if huge_rows[r]:
            w(f'<rect class="huge" x="{g.label_w - 4}" y="{y}" width="3" height="{g.row_h}" '
              f'fill="#222"/>\n')
    w("</g>\n")


def _svg_cells(w, g: _SvgGrid, recording: str, limit, drawn: list, panel_of: list[int],
               view: str) -> None:
    """The second pass: every interval of the recording as one column of cells, in the
    panel of its view (drawn[p]: (model, layout, top) of panel p)."""
    w('<g class="cells">\n')
    src = ReplaySource(recording, limit=limit)
    src.open()
    try:
        j = 0
        while True:
            s = src.take()
            if s is None:
                break
            s.maps = None  # every interval is drawn on its panel's union layout
            model, layout, top = drawn[panel_of[j]]
            told = tells(model.source, view)
            col = model.add(s)
            y, a, nd = model.cells(col, layout)
            x = g.label_w + j * g.cell_w
            for r in range(layout.n):
                rgb = cell_class(view, y[r], a[r], nd[r], layout.pages[r], told)[1]
                w(f'<rect class="cell" x="{x}" y="{top + r * g.row_h}" width="{g.cell_w}" '
                  f'height="{g.row_h}" fill="{_hex(rgb)}"/>\n')
            j += 1
    finally:
        src.close()
    w("</g>\n")


def interval_spans(columns: list[int]) -> str:
    """0-based interval indexes as the 1-based runs a reader counts: "1-3, 7, 9-12"."""
    runs: list[list[int]] = []
    for c in columns:
        if runs and runs[-1][1] == c:
            runs[-1][1] = c + 1
        else:
            runs.append([c, c + 1])
    return ", ".join(f"{a + 1}" if b == a + 1 else f"{a + 1}-{b}" for a, b in runs)


def _panel_heading(panel: _Panel) -> str:
    """What a panel of a zoomed run shows: its level, addresses, region size and
    intervals (its other columns are blank: those intervals watched another view)."""
    info = panel.info
    scope = Scope(*(info.get("range") or (None, None)), info.get("mapping"))
    level = f"zoom {info['zoom']}" if info.get("zoom") else "the run's own view"
    return (f"{level}: {scope.describe()}, {fmt_size(1 << info['region_shift'])} regions, "
            f"intervals {interval_spans(panel.columns)} (blank: another zoom level)")


def _svg_panel_headings(w, g: _SvgGrid, panels: list[_Panel], changes: list[int]) -> None:
    """A run that zoomed: each panel's heading, and a dashed line across the working-set
    strip and every panel where the view changed."""
    w('<g class="zoom">\n')
    for panel, top in zip(panels, g.tops):
        w(f'<text class="panel" x="{g.label_w}" y="{top - 8}">'
          f'{_xml(_panel_heading(panel))}</text>\n')
    y0 = g.top - SVG_LINE - SVG_WSS_GAP - SVG_WSS_H
    for j in changes:
        x = g.label_w + j * g.cell_w
        w(f'<line class="zoom" x1="{x}" y1="{y0}" x2="{x}" y2="{g.top + g.plot_h}" '
          f'stroke="#d62728" stroke-dasharray="3,2"/>\n')
    w("</g>\n")


def tick_intervals(n: int, cell_w: float, label_w: float) -> list[int]:
    """Interval numbers (from 1) to put a time tick under: every step-th, step a
    1-2-5 number wide enough for the labels not to touch, and the last interval."""
    gap = label_w + 2 * SVG_CHAR_W[10]
    steps = (s * 10 ** k for k in itertools.count() for s in SVG_TICK_STEPS)
    step = next(st for st in steps if st * cell_w >= gap)
    ticks = list(range(step, n + 1, step))
    if ticks and (n - ticks[-1]) * cell_w < gap:
        ticks.pop()  # too close to the last one, which is labelled in any case
    return ticks + [n] if n else []


def _svg_axes(w, g: _SvgGrid, times: list[float]) -> None:
    n, label_w, cell_w = g.n, g.label_w, g.cell_w
    ax = g.top + g.plot_h
    w(f'<g class="axes">\n<line x1="{label_w}" y1="{ax + 1}" x2="{label_w + g.plot_w}" '
      f'y2="{ax + 1}" stroke="#222"/>\n')
    each = (times[-1] - times[0]) / (n - 1) if n > 1 else (times[0] if n else 1)
    decimals = 0 if each >= 1 else 1 if each >= 0.1 else 2  # adjacent ticks differ
    width = _text_w(f"{max(times, default=0):.{decimals}f}")
    for k in tick_intervals(n, cell_w, width):
        x = label_w + (k - 1) * cell_w + cell_w / 2
        w(f'<line x1="{x:.1f}" y1="{ax + 1}" x2="{x:.1f}" y2="{ax + 5}" stroke="#222"/>\n')
        w(f'<text class="tick" x="{x:.1f}" y="{ax + 16}" text-anchor="middle">'
          f'{times[k - 1]:.{decimals}f}</text>\n')
    w(f'<text x="{label_w + g.plot_w // 2}" y="{ax + 30}" text-anchor="middle">'
      'time since start (s)</text>\n')
    w(f'<text x="{label_w - 6}" y="{g.top - 8}" text-anchor="end">'
      'address (start, mapping)</text>\n')
    w("</g>\n")


def _swatch_w(text: str) -> float:
    """A legend entry's width: swatch, gap, text, space to the next."""
    return 18 + _text_w(text) + 10


def _svg_legend(w, g: _SvgGrid, head: str, entries, huge: bool) -> None:
    w('<g class="legend">\n')
    ly = g.top + g.plot_h + 48
    w(f'<text x="8" y="{ly + 10}">{_xml(head)}</text>\n')
    x = 8
    ly += 16
    for _ch, rgb, text in entries:
        w(f'<rect class="swatch" x="{x:.0f}" y="{ly}" width="14" height="14" '
          f'fill="{_hex(rgb)}"/>\n')
        w(f'<text x="{x + 18:.0f}" y="{ly + 11}">{_xml(text)}</text>\n')
        x += _swatch_w(text)
    if huge:  # drawn as the rows' mark
        w(f'<rect x="12" y="{ly + 20}" width="3" height="12" fill="#222"/>\n')
        w(f'<text x="26" y="{ly + 30}">{_xml(HUGE_NOTE)}</text>\n')
    w("</g>\n")


def write_svg(out_path: str, recording: str, view: str = "heat", limit=None,
              rows: int = SVG_ROWS) -> int:
    """Render a recording as one SVG image: one <rect class="cell"> per row and
    interval, row labels, time axis, title and legend.  Two streaming passes over the
    recording (the first for the union of the run's mappings), so memory stays small.
    A run that zoomed gets a panel per view, stacked on one time axis: a zoom level's
    rows are another address range at another region size, which the run's own rows
    could only show by calling what was not watched cold.  Returns the number of
    intervals drawn."""
    scan = _scan_recording(recording, limit)
    panels = [p for p in scan.panels if p.columns] or scan.panels[:1]
    drawn: list = [None] * len(scan.panels)
    for panel in panels:
        model = Model(panel.info, history=1)
        model.set_maps(union_maps(panel.snapshots))
        model.info["comm"] = scan.comm
        model.huge = panel.huge
        drawn[panel.index] = [model, model.rows_for(rows)]
    model, layout = drawn[panels[0].index]
    huge_rows = [drawn[p.index][0].huge_rows(drawn[p.index][1]) for p in panels]
    title = _svg_title(scan.header, model, view, scan.intervals)
    head = legend_head(view, "grey", shaded=True, src=model.source, agings=scan.agings)
    entries = legend_entries(view, sorted(scan.nodes), model.source)
    headings = [_panel_heading(p) for p in panels] if len(panels) > 1 else []
    text_w = max(_text_w(title, 13), _text_w(_svg_subtitle(scan.header)), _text_w(head),
                 sum(_swatch_w(text) for _, _, text in entries), 18 + _text_w(HUGE_NOTE),
                 *(SVG_LABEL_W + _text_w(h) for h in headings))
    grid = _svg_grid(scan.intervals, [drawn[p.index][1].n for p in panels], text_w)
    for panel, top in zip(panels, grid.tops):
        drawn[panel.index].append(top)
    with output_file(out_path) as f:
        w = f.write
        _svg_head(w, grid, scan.header, title)
        _svg_wss(w, grid, scan.wss)
        if headings:
            _svg_panel_headings(w, grid, panels, [j for j in range(1, scan.intervals)
                                                  if scan.panel_of[j] != scan.panel_of[j - 1]])
        for panel, top, huge in zip(panels, grid.tops, huge_rows):
            model, layout, _ = drawn[panel.index]
            _svg_labels(w, grid, top, layout, huge, model.processes())
        _svg_cells(w, grid, recording, limit, drawn, scan.panel_of, view)
        _svg_axes(w, grid, scan.times)
        _svg_legend(w, grid, head, entries, any(map(any, huge_rows)))
        w("</svg>\n")
    return grid.n


@contextlib.contextmanager
def output_file(path: str):
    """A text file to write `path` through, errors as HeatmapError naming it.  A regular
    file (or a new one) is written beside `path` and renamed over it only when complete,
    so a failed or interrupted run leaves no partial file; anything else (/dev/stdout, a
    FIFO, a symlink) is written in place, never replaced."""
    try:
        replace = stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        replace = True
    except OSError as e:
        raise HeatmapError(f"cannot write {path}: {e.strerror or e}") from None
    dest = f"{path}.{os.getpid()}.tmp" if replace else path
    try:
        with open(dest, "w", encoding="utf-8") as f:
            yield f
        if replace:
            os.replace(dest, path)
    except OSError as e:
        raise HeatmapError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if replace:
            try:
                os.unlink(dest)  # still there only if something failed
            except OSError:
                pass


# =====================================================================================
# 8. the command line: arguments and main()
# =====================================================================================

class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (HeatmapError) and prints help to the
    stdout main() was given."""

    out = None

    def error(self, message):
        raise HeatmapError(message)

    def _print_message(self, message, file=None):
        if message:
            (self.out or sys.stdout).write(message)


def parse_size(text: str) -> int:
    """'2M', '4k', '1GiB', '65536' -> bytes; a power of two from the page size (a region
    holds whole pages) to 1 GiB."""
    t = text.strip().lower()
    for suffix in ("ib", "b"):
        if t.endswith(suffix) and len(t) > len(suffix) and not t[:-len(suffix)].isdigit():
            t = t[: -len(suffix)]
            break
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(t[-1:], 1)
    digits = t[:-1] if mult > 1 else t
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (try 4K, 2M or 1G)")
    n = int(digits) * mult
    page = os.sysconf("SC_PAGE_SIZE")
    if n < page:
        raise argparse.ArgumentTypeError(f"{text} is smaller than a page ({_short_size(page)})")
    if n > 1 << 30:
        raise argparse.ArgumentTypeError(f"{text} is outside {_short_size(page)}..1G")
    if n & (n - 1):
        lo = 1 << (n.bit_length() - 1)
        below, above = _short_size(lo), _short_size(lo * 2)
        raise argparse.ArgumentTypeError(f"{text} is not a power of two (try {below} or {above})")
    return n


ADDRESS_LIMIT = 1 << 64


def _address(text: str) -> int:
    t = text.strip().lower()
    body, base = (t[2:], 16) if t.startswith("0x") else (t, 10)
    if not body or not all(c in "0123456789abcdef"[:base] for c in body):
        raise ValueError(text)
    return int(body, base)


def parse_range(text: str) -> tuple[int, int]:
    """'0x7f0000000000-0x7f0000200000' or '4096-8192' -> (start, end), end exclusive,
    widened to whole pages (a page is found young or not as a whole)."""
    start_s, dash, end_s = text.partition("-")
    try:
        if not dash:
            raise ValueError(text)
        lo, hi = _address(start_s), _address(end_s)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not START-END (each hexadecimal 0x... or decimal)") from None
    if hi <= lo:
        raise argparse.ArgumentTypeError(f"{text!r}: END must be above START")
    if hi > ADDRESS_LIMIT:
        raise argparse.ArgumentTypeError(f"{text!r} reaches past the 64-bit address space")
    page = os.sysconf("SC_PAGE_SIZE")
    return lo - lo % page, -(-hi // page) * page


def _mapping_name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a mapping's name, e.g. [heap] or libc.so.6")
    return text


def _short_size(n: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and not n & ((1 << shift) - 1):
            return f"{n >> shift}{unit}"
    return str(n)


def _checked(convert, ok, requirement: str):
    """An argparse type: `convert` the text, then require ok(value)."""
    what = "a whole number" if convert is int else "a number"

    def parse(text: str):
        try:
            v = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"{text!r} {requirement}")
        return v
    return parse


# bounds that keep every wait computable (select() overflows near 1e10 s): an interval
# shorter than an aging pass, or longer than a day, is not a heatmap anyone can read
INTERVAL_RANGE = (0.1, 86400.0)
SPEED_RANGE = (0.001, 1e6)
_interval = _checked(float, lambda v: INTERVAL_RANGE[0] <= v <= INTERVAL_RANGE[1],
                     "must be from {:g} to {:g} seconds".format(*INTERVAL_RANGE))
_positive_int = _checked(int, lambda v: v >= 1, "must be at least 1")
_speed = _checked(float, lambda v: v == 0 or SPEED_RANGE[0] <= v <= SPEED_RANGE[1],
                  "must be 0 (at once) or a factor from {:g} to {:g}".format(*SPEED_RANGE))
EPILOG = """\
cells: heat view = share of the row's mapped pages the kernel found young (accessed)
during the interval: blank none, '.' <1%, ':' 1-2%, '-' 2-5%, '=' 5-10%,
'+' 10-20%, '*' 20-40%, '#' 40-60%, '%' 60-80%, '@' >=80%.  node view = NUMA
node holding >=75% of the young pages (* mixed).  anon view = anon (a), file (f) or
mixed (*); in colour these two shade the hue by heat (brighter: hotter).  Keys
(live view): h heat, n node, a anon/file, v next view, j/k select a row, z zoom
into it, x zoom out, p/space pause, q quit (in a replay z/x zoom the view only, at
the recorded region size).

sources (--source; auto takes the first the kernel offers):
  mglru  root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN) and a kernel with the series in
         kernel/patches (its tracepoint and scan kfunc), MGLRU enabled
         (echo y > /sys/kernel/mm/lru_gen/enabled)
  idle   root, CONFIG_IDLE_PAGE_TRACKING: same cells as mglru
  damon  root, CONFIG_DAMON_VADDR + CONFIG_DAMON_SYSFS: cells are DAMON's access
         frequency; no node, no anon/file
  refs   the target's owner (clear_refs, smaps): one row per mapping, cells are the
         share of its resident pages referenced; no node, no anon/file
--replay needs none of them.

examples:
  heatmap.py 4242 --interval 2                   live view
  heatmap.py --json -- ./bench --fast            start ./bench, watch it until it exits
  heatmap.py 4242 4243 --children                two processes and what they start
  heatmap.py --cgroup system.slice/nginx.service a cgroup v2's processes
  heatmap.py 4242 --count 30 --record run.jsonl.gz --svg run.svg
  heatmap.py 4242 --json --count 10 | jq '.regions[]? | select(.accessed > 100)'
  heatmap.py 4242 --aging-interval 0.5           4 agings per 2 s column: cells are means
  heatmap.py 4242 --count 60 --json | tail -1 | jq '.never_touched[:5]'   never young
  heatmap.py --replay run.jsonl.gz --view node   look at it later, anywhere
"""


def build_parser(out=None) -> _Parser:
    p = _Parser(prog="heatmap.py", formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Live heatmap of where in a process's address space memory is "
                            "hot, warm or cold (MGLRU page-table walks + BPF, idle page "
                            "tracking, DAMON or clear_refs).",
                epilog=EPILOG)
    p.out = out
    p.add_argument("pids", nargs="*", metavar="PID",
                   help="processes to watch (each under a heading of its own); or, after "
                        "the options, -- CMD [ARGS...] to start CMD and watch it")
    p.add_argument("--children", action="store_true",
                   help="also watch the processes they (or CMD) start, found each interval")
    p.add_argument("--cgroup", metavar="PATH",
                   help="watch the processes of a cgroup v2 (and its child cgroups), found "
                        "each interval; PATH may be relative to /sys/fs/cgroup")
    p.add_argument("--cmd-output", metavar="FILE",
                   help="with -- CMD: where CMD's stdout and stderr go (default: heatmap's "
                        "stderr; with the live view, the terminal once the view ends)")
    p.add_argument("-i", "--interval", type=_interval, metavar="SECONDS",
                   help="one column (default 2)")
    p.add_argument("--aging-interval", type=_interval, metavar="SECONDS",
                   help="age (look at the pages) every SECONDS, several times per column: a "
                        "cell is then the mean share over the agings, so a page touched at "
                        "each counts fully and one touched once 1/k (default: the column "
                        "interval; it must divide it)")
    p.add_argument("-c", "--count", type=_positive_int, metavar="N",
                   help="stop after N intervals (default: until q, Ctrl-C, SIGTERM or the "
                        "target exits)")
    p.add_argument("-r", "--region-size", type=parse_size, metavar="SIZE",
                   help="bytes per counted region: a power of two, 4K..1G (default 2M)")
    p.add_argument("--range", type=parse_range, metavar="START-END",
                   help="watch only these addresses (hexadecimal 0x... or decimal, END "
                        "exclusive)")
    p.add_argument("--mapping", type=_mapping_name, metavar="NAME",
                   help="watch only the mappings of this name: [heap], [stack], a file's "
                        "name (libc.so.6) or path, anon")
    p.add_argument("-s", "--source", choices=SOURCE_NAMES, metavar="SOURCE",
                   help="where the counts come from: auto (default: the best the kernel "
                        "offers), mglru, idle, damon or refs")
    p.add_argument("--view", choices=VIEWS, default="heat",
                   help="heat (default), node (NUMA) or anon (anon/file)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour frames: auto (terminal, no NO_COLOR), always, never")
    p.add_argument("--json", action="store_true",
                   help="write one JSON object per interval to stdout instead of frames")
    p.add_argument("--record", metavar="FILE",
                   help="save the run (JSON lines; gzip if FILE ends in .gz)")
    p.add_argument("--replay", metavar="FILE", help="render a recording instead of a PID")
    p.add_argument("--speed", type=_speed, metavar="FACTOR",
                   help="replay pace: 1 recorded pace (default on a terminal), 2 twice as "
                        "fast, 0 at once (default otherwise)")
    p.add_argument("--svg", metavar="FILE", help="write the whole run as an SVG heatmap")
    p.add_argument("--version", action="version", version=version_text())
    return p


def split_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """heatmap's own arguments, and the CMD [ARGS...] after the first "--" (None if
    there is no "--")."""
    if "--" not in argv:
        return argv, None
    i = argv.index("--")
    return argv[:i], argv[i + 1:]


def _pid(text: str) -> int:
    try:
        pid = int(text)
    except ValueError:
        raise HeatmapError(f"PID must be a positive integer, not {text!r}") from None
    if pid < 1:
        raise HeatmapError(f"PID must be a positive integer, not {pid!r}")
    return pid


def parse_args(argv, out=None) -> argparse.Namespace:
    argv, command = split_command(list(sys.argv[1:] if argv is None else argv))
    args = build_parser(out).parse_intermixed_args(argv)
    args.command = command
    if command is not None and not command:
        raise HeatmapError("give the command to run after --")
    if command is not None and (args.pids or args.replay is not None):
        raise HeatmapError("give PIDs, -- CMD or --replay FILE, only one of them")
    if command is None and args.cmd_output is not None:
        raise HeatmapError("--cmd-output applies to -- CMD")
    args.pids = list(dict.fromkeys(_pid(text) for text in args.pids))
    args.pid = args.pids[0] if args.pids else None
    if args.replay is not None and (args.children or args.cgroup is not None):
        raise HeatmapError("--children and --cgroup apply to live runs")
    if args.cgroup is not None:
        args.cgroup = cgroup_dir(args.cgroup)
    if args.replay is None:
        if args.pid is None and command is None and args.cgroup is None:
            raise HeatmapError("give a PID to watch, -- CMD, --cgroup PATH or --replay FILE "
                               "(see --help)")
        if args.speed is not None:
            raise HeatmapError("--speed only applies to --replay")
        args.interval = 2.0 if args.interval is None else args.interval
        if args.aging_interval is None:
            args.aging_interval = args.interval
        agings_per_column(args.interval, args.aging_interval)
        args.source = args.source or "auto"
        args.region_size = args.region_size or (2 << 20)
    else:
        if args.pid is not None:
            raise HeatmapError("give either a PID or --replay FILE, not both")
        for opt in ("interval", "aging_interval"):
            if getattr(args, opt) is not None:
                raise HeatmapError(f"--{opt.replace('_', '-')} applies to live runs; a "
                                   f"recording keeps its own")
        if args.region_size is not None:
            raise HeatmapError("--region-size applies to live runs; a recording keeps its own")
        if args.source is not None:
            raise HeatmapError("--source applies to live runs; a recording names its own")
        for name in ("range", "mapping"):
            if getattr(args, name) is not None:
                raise HeatmapError(f"--{name} applies to live runs; a recording keeps "
                                   f"what it watched")
    for out, inp in (("record", "replay"), ("svg", "replay"), ("svg", "record")):
        a, b = getattr(args, out), getattr(args, inp)
        if a and b and _same_file(a, b):
            raise HeatmapError(f"--{out} would overwrite the --{inp} file")
    return args


def _check_writable(path: str) -> None:
    """Raise HeatmapError if `path` could not be created or overwritten (without
    touching it)."""
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        err = errno.EISDIR
    elif not os.path.isdir(parent):
        err = errno.ENOENT
    elif not os.access(path if os.path.exists(path) else parent, os.W_OK):
        err = errno.EACCES
    else:
        return
    raise HeatmapError(f"cannot write {path}: {os.strerror(err)}")


def _same_file(a: str, b: str) -> bool:
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def _terminal_size(out, environ) -> tuple[int, int]:
    """COLUMNS/LINES when set, else the terminal's size, else 80x24."""
    try:
        sz = os.get_terminal_size(out.fileno())
        cols, lines = sz.columns, sz.lines
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
        cols, lines = 80, 24
    try:
        cols = int(environ.get("COLUMNS", cols)) or cols
        lines = int(environ.get("LINES", lines)) or lines
    except ValueError:
        pass
    return max(1, cols), max(1, lines)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _say(stream, text: str) -> None:
    try:
        stream.write(text + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def _open_stream(stream):
    """The stream, or /dev/null for one the process started without (`>&-` leaves
    sys.stdout None); it stays open until the process exits."""
    return open(os.devnull, "w") if stream is None else stream  # noqa: SIM115


def summary_line(model: Model | None, reason: str) -> str:
    if model is None or model.last is None:
        return f"heatmap: no interval shown ({reason})"
    plural = "" if model.intervals == 1 else "s"
    cut = ", the last one partial" if model.last.partial else ""
    text = (f"heatmap: {model.intervals} interval{plural} in {model.last.t:.1f} s{cut} "
            f"({reason})")
    text += "; " + wss_figures(model.wss)
    peak = model.peak()
    if peak is None:
        return text + "; no young pages seen"
    region, total = peak
    name, _ = region_info(model.maps, [m.start for m in model.maps], region, model.shift,
                          model.page_size)
    pid, lo = model.region_process(region)
    hi = lo + (1 << model.shift)
    where = f" of pid {pid}" if model.processes() else ""
    return text + (f"; hottest region {lo:#x}-{hi:#x}{where} "
                   f"{_printable(name) or '(unmapped)'}: {round(total)} young pages")


def wss_figures(wss: list[float]) -> str:
    """The run's working set (bytes found young per interval) as min/median/max."""
    if not wss:
        return "working set unknown"
    low, mid, high = min(wss), statistics.median(wss), max(wss)
    return (f"working set min {fmt_size(round(low))}, median {fmt_size(round(mid))}, "
            f"max {fmt_size(round(high))}")


def _source_for(args, counts_factory, proc_root: str, clock, stdout):
    """The run's sample source: the recording of --replay, else the live target."""
    if args.replay is not None:
        tty = _isatty(stdout)
        speed = args.speed if args.speed is not None else (1.0 if tty and not args.json else 0.0)
        return ReplaySource(args.replay, speed, clock, args.count)
    lo, hi = args.range or (None, None)
    factory = counts_factory or SourceChoice(args.source, proc_root, args.aging_interval)
    shift = args.region_size.bit_length() - 1
    scope = Scope(lo, hi, args.mapping)
    if len(args.pids) > 1 or args.children or args.cgroup is not None:
        processes = ProcessSet(args.pids, args.children, args.cgroup,
                               args.command is not None, proc_root)
        return ProcessSetSource(processes, shift, args.interval, factory, proc_root, clock,
                                scope=scope, aging_interval=args.aging_interval)
    return LiveSource(args.pid or 0, shift, args.interval, factory, proc_root, clock,
                      scope=scope, aging_interval=args.aging_interval)


def _catch_signals() -> dict:
    """SIGTERM and SIGHUP end the run cleanly (_Stop); Ctrl-C raises KeyboardInterrupt
    again once main() can clean up.  Returns the handlers to put back."""
    def on_signal(signum, frame):
        raise _Stop("terminated" if signum == signal.SIGTERM else "hangup")

    old_handlers = {}
    handlers = {signal.SIGTERM: on_signal, signal.SIGHUP: on_signal}
    if signal.getsignal(signal.SIGINT) is signal.SIG_DFL:  # as set at start-up
        handlers[signal.SIGINT] = signal.default_int_handler
    for sig, handler in handlers.items():
        try:
            old_handlers[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    return old_handlers


def _restore_signals(old_handlers: dict) -> None:
    for sig, handler in old_handlers.items():
        signal.signal(sig, handler)


PARTIAL_MIN = 0.01  # of an interval: a run that ends sooner after one keeps no partial


class _Run:
    """One run of main(): the source, the outputs it feeds, and how it ended (status,
    and for a run that ended normally, ok and the reason the summary line gives)."""

    def __init__(self, args, source, stdout, stderr):
        self.args = args
        self.source = source
        self.stdout = stdout
        self.stderr = stderr
        self.model: Model | None = None
        self.recorder: Recorder | None = None
        self.spool: str | None = None  # --svg of a live run without --record: its recording
        self.sinks: list = []
        self._symbols: SymbolFiles | None = None
        self.outer: list[Model | None] = []  # the models of the zoom levels above this one
        self.views: list[ViewZoom] = []  # a replay's view zooms, innermost last
        self.fed: Model | None = None  # the model the last interval went to
        self.reason: str | None = None
        self.status = 0
        self.ok = False
        self.summary: dict | None = None  # what the whole run found (run_summary())
        self.command: Command | None = None  # -- CMD
        self.command_log: str | None = None  # CMD's output held while the live view runs

    def fail(self, message: str) -> None:
        _say(self.stderr, f"heatmap: {message}")
        self.status = 1

    def show(self, stdin, environ, clock, sleep) -> None:
        """Open the source and the outputs, show intervals until the run ends, close."""
        try:
            self._open(environ)
            ui = self._ui(stdin, environ, clock, sleep)
            with ui:
                self._loop(ui)
            self.ok = True
        except HeatmapError as e:
            self.fail(str(e))
        except TargetExited:
            self.reason, self.ok = "target exited", True
        except KeyboardInterrupt:
            self.reason, self.ok = "interrupted", True
        except _Stop as e:
            self.reason, self.ok = e.reason, True
        except BrokenPipeError:
            self.reason, self.ok = "output closed", True
            if self.stdout is sys.stdout:
                from bpfload.stdout import silence_stdout

                silence_stdout()
        except OSError as e:  # a terminal gone (EIO), a full disk under --record, ...
            self.fail(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
        finally:
            self._finish()
            self._close()

    def _finish(self) -> None:
        """A run that showed intervals ends with its summary: in the recording, as the
        last --json object, and (last_lines()) on stderr."""
        if not self.ok or self.fed is None or \
                getattr(self.source, "damaged", None):  # (a damaged recording: not whole)
            return
        try:  # (of the level the last interval counted: a zoom without one is not recorded)
            self.summary = run_summary(self.fed, getattr(self.source, "resident", None))
            for sink in self.sinks:
                sink.finish(self.summary)
        except BrokenPipeError:
            pass  # (the output closed: what it was given stands)
        except HeatmapError as e:
            self.fail(str(e))
        except OSError as e:
            self.fail(f"{e.strerror or e}")

    def _open(self, environ=None) -> None:
        args, source = self.args, self.source
        if args.command is not None:
            self.command = Command(args.command, *self._command_fds(environ or {}))
            source.pid = self.command.start()
        # the symbols of the target's files, for --json and the live view: read while the
        # source opens, before the clock starts (a command's, once it runs: after)
        named = isinstance(source, LiveSource) and (args.json or self._live(environ or {}))
        if named and self.command is None and source.pid is not None:
            reading = self._prefetch_symbols(source)
            if reading is not None:
                source.before_start = reading.join
        if isinstance(source, ProcessSetSource) and not self._live(environ or {}):
            source.say = lambda text: _say(self.stderr, f"heatmap: {text}")
        source.open()
        if self._symbols is not None:  # (the process the pid given names: a thread's own)
            self._symbols.root = f"{source.proc}/{source.pid}/root"
        if self.command is not None:
            self.command.release()
        for note in getattr(source, "notes", ()):
            _say(self.stderr, f"heatmap: {note}")
        self.model = Model(source.header)
        if args.record:
            self.recorder = Recorder(args.record)
        elif args.svg and args.replay is None:
            import tempfile

            fd, self.spool = tempfile.mkstemp(prefix="heatmap-", suffix=".jsonl")
            os.close(fd)
            self.recorder = Recorder(self.spool)
        if self.recorder is not None:
            header = source.header
            if getattr(source, "can_zoom", False) and self._live(environ or {}):
                header = dict(header, version=RECORD_VERSION_ZOOM)  # (keys may zoom it)
            self.recorder.start(header)
        json_sink = JsonSink(self.stdout, self.symbols()) if args.json else None
        self.sinks = [s for s in (self.recorder, json_sink) if s]
        if named and self.command is not None:
            self._prefetch_symbols(source)

    def _prefetch_symbols(self, source: LiveSource):
        """Start reading the symbols of the files the target maps now (SymbolFiles:
        reading them when a row first needs them would hold up the agings); the
        reading thread, or None."""
        try:
            maps = read_maps(source.proc, source.pid)
        except (OSError, ValueError):
            return None  # (not there or not readable: opening the source will say so)
        return self.symbols().prefetch(maps)

    def symbols(self) -> SymbolFiles:
        """The symbols of the target's files (one cache per run), as the target sees
        its filesystem; a replay's from this machine's (if they are still the same)."""
        if self._symbols is None:
            live = isinstance(self.source, LiveSource)
            root = f"{self.source.proc}/{self.source.pid}/root" if live else ""
            page_size = self.source.page_size if live else self.model.page_size
            self._symbols = SymbolFiles(root, page_size)
        return self._symbols

    def _live(self, environ) -> bool:
        """Whether the run shows the live view (alternate screen, keys)."""
        return _isatty(self.stdout) and not self.args.json and environ.get("TERM") != "dumb"

    def _command_fds(self, environ) -> tuple:
        """CMD's stdin, stdout and stderr (None: heatmap's own): never our stdout, which
        carries frames or JSON.  --cmd-output FILE; or while the live view holds the
        terminal, a temporary file shown there when the view ends; else our stderr."""
        path = self.args.cmd_output
        live = self._live(environ)
        if path is None and live:
            import tempfile

            fd, path = tempfile.mkstemp(prefix="heatmap-cmd-", suffix=".out")
            os.close(fd)
            self.command_log = path
        if path is not None:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
            except OSError as e:
                raise HeatmapError(f"cannot write {path}: {e.strerror}") from None
            stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC) if live else None
            self._command_files = [f for f in (fd, stdin) if f is not None]
            return stdin, fd, fd
        try:
            err = self.stderr.fileno()
        except (OSError, ValueError, AttributeError):
            err = None
        return None, err, err

    def _ui(self, stdin, environ, clock, sleep):
        args, stdout = self.args, self.stdout
        is_tty = _isatty(stdout)
        color = color_mode(args.color, is_tty, environ)
        if self._live(environ):
            screen = LiveScreen(stdout, stdin, args.view, color, clock, self.symbols())
            screen.resident = getattr(self.source, "resident", None)  # (for key u)
            return screen
        return PlainUI(stdout, args.view, color, not args.json,
                       lambda: _terminal_size(stdout, environ), clock, sleep)

    def _loop(self, ui) -> None:
        """Interval after interval until q, the end of a recording or --count."""
        source, model = self.source, self.model
        ui.show(model, initial=True)
        while True:
            try:
                act = ui.wait(source.due())
            except (_Stop, KeyboardInterrupt):
                self._partial(ui)
                raise
            if act == "quit":
                self.reason = "quit"
                self._partial(ui)
                return
            if act == "resync":
                source.resync()
                continue
            if act in ("zoom", "unzoom"):
                model = self._zoom(ui, act == "zoom")
                continue
            if getattr(source, "mid_column", bool)():
                source.age_between()  # (several agings per column: not the last one)
                continue
            sample = source.take()
            if sample is None:
                self.reason = "end of recording"
                if source.truncated:
                    self.reason = "the recording ends mid-record: an interrupted run?"
                if source.damaged:  # shown up to there; last_line() says where it broke
                    self.status = 1
                if isinstance(ui, LiveScreen):
                    ui.keep(self.shown())
                return
            if sample.zoom is not None and (not isinstance(source, LiveSource)
                                            or sample.zoom["zoom"] < len(self.outer)):
                model = self._follow_zoom(ui, sample.zoom)
                if isinstance(source, LiveSource):  # (ProcessSetSource._zoom_out_of_exited)
                    ui.note = "the zoomed process exited: zoomed back out to every process"
            self._add(sample)
            ui.show(self.shown())
            if self.args.count and model.intervals >= self.args.count:
                self.reason = "count reached"
                return

    def _add(self, sample: Sample) -> None:
        """One interval into the shown level's model, the view zooms and the outputs."""
        self.model.add(sample)
        self.fed = self.model
        for view in self.views:
            view.feed(sample)
        for sink in self.sinks:
            sink.write(sample, self.model)

    def shown(self) -> Model:
        """The model on the screen: the innermost view zoom's, else the level's."""
        return self.views[-1].model if self.views else self.model

    def _level_model(self, info: dict) -> Model:
        """A new zoom level's model (its regions have another size), going on with the
        run's figures."""
        model = Model(info)
        model.share_run(self.model)
        model.info["comm"] = self.model.info.get("comm")  # (as of now: an exec)
        self._take_over(model)
        return model

    def _take_over(self, model: Model) -> None:
        """A zoom level's model goes on where the shown one is: the run's intervals and
        its processes as of now (joined, exited meanwhile)."""
        model.intervals = self.model.intervals
        if self.model.info.get("targets"):
            model.info["targets"] = self.model.info["targets"]

    def _zoom(self, ui, closer: bool) -> Model:
        """Zoom into the selected row, or back out; the model shown from then on.  A
        live run's counts follow (a new model per zoom level: its regions have another
        size; zooming out goes on with the history from before the zoom; a recording
        gets the new view with the next interval, LiveSource.zoomed); a replay zooms
        its view only (ViewZoom)."""
        live = isinstance(self.source, LiveSource)
        why = ""
        try:
            if not closer:
                if not (self._live_unzoom() if live else self.views and self.views.pop()):
                    why = "not zoomed in"
            elif ui.selected() is None:
                why = "no row to zoom into"
            else:
                (lo, hi), rows = ui.selected()
                why = self._live_zoom(lo, hi, rows) if live else self._view_zoom(lo, hi)
                if not why:
                    ui.cursor = 0
        except HeatmapError as e:
            why = f"zoom: {e}"
        ui.note = why
        ui.show(self.shown())
        return self.model

    def _live_unzoom(self) -> bool:
        if not self.source.unzoom():
            return False
        model = self.outer.pop() or self._level_model(self.source.header)
        self._take_over(model)
        self.model = model
        return True

    def _live_zoom(self, lo: int, hi: int, rows: int) -> str:
        source = self.source
        source.zoom(lo, hi, rows)
        self.outer.append(self.model)
        model = self._level_model(source.header)
        # its rows at once; the counts follow at the next interval
        model.set_maps(source.scope.apply(source.prev_all or []))
        self.model = model
        return ""

    def _follow_zoom(self, ui, zoom: dict) -> Model:
        """A replay at a recorded zoom (or zoom out): its models go the way the live
        run's went in _zoom(), so that frames, --json and the summary come out the
        same.  A zoom record gives the level reached between two intervals: levels
        passed on the way have no model until one is shown."""
        info = zoomed_header(self.source.header, zoom)
        depth, model = zoom["zoom"], self.model
        if depth > len(self.outer):
            self.outer.append(model)
            self.outer.extend([None] * (depth - len(self.outer)))
            model = None
        while len(self.outer) > depth:
            model = self.outer.pop()
        if model is None or zoom_view(model.info) != zoom_view(info):
            model = self._level_model(info)  # (another row at the same level)
        self._take_over(model)
        if self.views:
            self.views = []
            ui.note = "the recording zooms here: the view zoom ends"
        self.model = model
        return model

    def _view_zoom(self, lo: int, hi: int) -> str:
        """A replay's zoom into [lo, hi) (ViewZoom), or why not."""
        base = self.shown()
        if lo >> base.shift == (hi - 1) >> base.shift:
            return (f"one recorded region ({fmt_size(1 << base.shift)}): a recording has "
                    f"nothing finer")
        view = ViewZoom(base, lo, hi, len(self.views) + 1)
        view.rebuild(self.source.path, self.source.taken, zoom_view(self.model.info))
        self.views.append(view)
        return ""

    def _partial(self, ui) -> None:
        """The run ends between two intervals: what the one under way counted so far
        is shown and recorded as a partial interval, not lost."""
        source, model = self.source, self.model
        if not isinstance(source, LiveSource) or getattr(ui, "paused", False):
            return  # (a pause's counts are dropped when it ends: so here too)
        since = model.last.t if model.last is not None else 0.0
        if source.clock() - source.t0 - since < PARTIAL_MIN * source.interval:
            return  # (the run ends right after an interval: nothing to add)
        try:
            sample = source.take(partial=True)
        except TargetExited:
            return
        self._add(sample)
        ui.show(self.shown())

    def _close(self) -> None:
        recorder = self.recorder
        if self.command is not None:
            self._stop_command()
        for close in (self.source.close, recorder.close if recorder is not None else None):
            try:
                if close is not None:
                    close()
            except HeatmapError as e:
                if not self.status:  # the first failure is the one to report
                    self.fail(str(e))

    def _stop_command(self) -> None:
        """Stop CMD (if it still runs), say how it ended, show what it wrote while the
        live view held the terminal."""
        command = self.command
        command.stop()
        for fd in getattr(self, "_command_files", ()):
            os.close(fd)
        self._command_files = []
        if self.reason == "target exited":
            self.reason = f"{command.argv[0]} exited with status {command.status}"
        if self.command_log is not None:
            log, self.command_log = self.command_log, None
            try:
                with open(log, errors="replace") as f:
                    while True:
                        chunk = f.read(1 << 16)
                        if not chunk:
                            break
                        self.stdout.write(chunk)
                self.stdout.flush()
            except OSError:
                pass
            finally:
                os.unlink(log)

    def exit_status(self) -> int:
        """heatmap's status: CMD's (as a shell's $?) for a run with -- CMD that ended
        normally, else its own."""
        if self.ok and self.command is not None and self.command.status is not None:
            return self.command.status
        return self.status

    def save_svg(self) -> None:
        """--svg, for a run that ended normally: drawn from its recording."""
        args = self.args
        if not (self.ok and args.svg and self.model is not None):
            return
        try:
            write_svg(args.svg, args.replay or args.record or self.spool, args.view,
                      limit=self.model.intervals)
        except HeatmapError as e:
            if self.spool is not None:  # the run exists nowhere else: keep it
                spool, self.spool = self.spool, None
                e = HeatmapError(f"{e}; the run is kept in {spool} (render it with "
                                 f"--replay {spool} --svg FILE)")
            _say(self.stderr, f"heatmap: {e}")
            self.status = self.status or 1
        except (KeyboardInterrupt, _Stop):
            _say(self.stderr, f"heatmap: {args.svg} not written: interrupted")
            self.status = self.status or 1

    def last_line(self) -> str:
        """The summary of a run that ended normally, or where a damaged recording
        stopped the replay and what was shown of it."""
        damaged = getattr(self.source, "damaged", None)
        if not damaged:
            text = summary_line(self.model, self.reason)
            if self.summary is None:
                return text
            return "\n".join([text] + [f"heatmap: {line}" if i == 0 else line for i, line in
                                        enumerate(untouched_lines(self.summary))])
        n = self.model.intervals if self.model is not None else 0
        shown = f"the {n} interval{'' if n == 1 else 's'} before it" if n else "nothing"
        return f"heatmap: {damaged}; shown: {shown}"

    def remove_spool(self) -> None:
        if self.spool is not None:
            try:
                os.unlink(self.spool)
            except OSError:
                pass


def main(argv=None, *, counts_factory=None, proc_root: str = "/proc", clock=None, sleep=None,
         stdin=None, stdout=None, stderr=None, environ=None) -> int:
    """The CLI.  Everything it touches can be injected (tests drive it with a fake
    counts_factory and a fake /proc); returns the exit status."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = _open_stream(sys.stdout if stdout is None else stdout)
    stderr = _open_stream(sys.stderr if stderr is None else stderr)
    environ = os.environ if environ is None else environ
    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    try:
        args = parse_args(argv, stdout)
    except HeatmapError as e:
        _say(stderr, f"heatmap: {e}")
        return 2
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0
    if args.svg:  # written at the end: find out now, not after the whole run
        try:
            _check_writable(args.svg)
        except HeatmapError as e:
            _say(stderr, f"heatmap: {e}")
            return 1
    run = _Run(args, _source_for(args, counts_factory, proc_root, clock, stdout), stdout,
               stderr)
    old_handlers = _catch_signals()
    try:
        run.show(stdin, environ, clock, sleep)
        run.save_svg()
    finally:  # also when something unexpected escapes: no temporary file stays behind
        run.remove_spool()
        _restore_signals(old_handlers)
    if run.ok:
        _say(stderr, run.last_line())
    return run.exit_status()


if __name__ == "__main__":
    sys.exit(main())
