"""heatmap.py layout and model: /proc/PID/maps parsing, areas and regions, row sharing
across mappings of very different sizes, bins, history bounds, projection after
mapping changes."""

from __future__ import annotations

from heatmap_fakes import DATA, SMALL_MAPS, heatmap

M = heatmap.Mapping
MiB = 1 << 20
GiB = 1 << 30


def test_parse_maps_edge_cases():
    maps = heatmap.parse_maps((DATA / "maps-edge-cases.txt").read_text())
    by_start = {m.start: m for m in maps}
    exe = by_start[0x55d0c0a00000]
    assert (exe.perms, exe.offset, exe.dev, exe.inode) == ("r--p", 0, "fd:01", 1311234)
    assert exe.path == "/usr/bin/python3.11" and exe.name == "python3.11"
    # a path with spaces, kept whole (padding before it dropped)
    spaced = by_start[0x7f3a1c000000]
    assert spaced.path == "/home/user/my data/big file.bin"
    assert spaced.name == "big file.bin"
    assert spaced.offset == 0x1000
    # deleted files and memfds
    assert by_start[0x7f3a1e000000].name == "libgone.so (deleted)"
    assert by_start[0x7f3a1e200000].name == "memfd:jit-cache (deleted)"
    assert by_start[0x7f3a1e400000].path == "/dev/zero (deleted)"
    # pseudo mappings and anon
    names = {m.name for m in maps}
    assert {"[heap]", "[stack]", "[vdso]", "[vvar]", "[vsyscall]", "anon",
            "[anon:jemalloc]"} <= names
    # malformed lines are skipped, not fatal; the output is sorted
    assert len(maps) == 16  # 19 lines, 3 malformed
    assert [m.start for m in maps] == sorted(m.start for m in maps)
    assert by_start[0xffffffffff600000].perms == "--xp"


def test_parse_maps_trailing_spaces_and_empty():
    assert heatmap.parse_maps("") == []
    assert heatmap.parse_maps("\n\n garbage line\n1000-2000 rw-p\n") == []
    (m,) = heatmap.parse_maps("1000-3000 rw-p 00000000 00:00 0 \n")
    assert (m.start, m.end, m.path, m.name) == (0x1000, 0x3000, "", "anon")
    (m,) = heatmap.parse_maps("1000-3000 r--p 00000000 08:01 5        /tmp/x \n")
    assert m.path == "/tmp/x "  # a trailing space belongs to the file name


def test_hidden_mappings():
    maps = heatmap.parse_maps((DATA / "maps-edge-cases.txt").read_text())
    shown = heatmap.shown_mappings(maps)
    names = [m.name for m in shown]
    assert "[vvar]" not in names and "[vsyscall]" not in names
    assert all(m.perms[:3] != "---" for m in shown)  # guard pages / PROT_NONE
    assert "[vdso]" in names and "[stack]" in names


def test_areas_share_regions_and_merge_file_segments():
    R = 2 * MiB
    maps = [
        # a library: text, rodata, data segments back to back -> one area
        M(0x7f0000000000, 0x7f0000028000, "r--p", 0, "08:01", 7, "/lib/libc.so.6"),
        M(0x7f0000028000, 0x7f00001bd000, "r-xp", 0x28000, "08:01", 7, "/lib/libc.so.6"),
        M(0x7f00001bd000, 0x7f0000215000, "r--p", 0x1bd000, "08:01", 7, "/lib/libc.so.6"),
        # anon right after, sharing libc's second region -> starts at the next region
        M(0x7f0000215000, 0x7f0000500000, "rw-p", 0, "00:00", 0, ""),
        # a small mapping entirely inside a region already taken -> no area
        M(0x7f0000500000, 0x7f0000501000, "rw-p", 0, "00:00", 0, ""),
    ]
    areas = heatmap.build_areas(heatmap.shown_mappings(maps), 21)
    r0 = 0x7f0000000000 // R
    assert [(a[0] - r0, a[1] - r0) for a in areas] == [(0, 2), (2, 3)]
    assert heatmap.spanned_regions(maps, 21) == 3
    assert heatmap.spanned_regions(maps, 12) == 0x501  # 4 KiB regions: every page
    assert heatmap.map_capacity(3) == 3 + 64
    assert heatmap.map_capacity(100000) == 125000


def test_share_is_concave_capped_and_exact():
    share = heatmap.share
    w = heatmap.concave_weight
    # 4 GiB heap vs 64 KiB stack: the heap gets many more rows, but not 65536x more
    alloc = share(20, [w(1 << 20), w(16)], [10**9, 10**9])
    assert sum(alloc) == 20 and alloc[1] >= 1 and alloc[0] > 10 * alloc[1]
    assert alloc == [19, 1]
    # the weight is the square root of the size: 16x the pages, 4x the weight, so a 256 MiB
    # mapping next to a 16 MiB one gets 1 + 8 of 12 rows, the small one 1 + 2
    assert w(16 * 4096) == 4 * w(4096)
    assert share(12, [w(65536), w(4096)], [10**9, 10**9]) == [9, 3]
    # caps pin and the rest is re-shared
    assert share(10, [1, 1, 1], [1, 100, 100]) == [1, 5, 4]
    assert share(10, [5, 1], [2, 3]) == [2, 3]  # everything capped: rows left unused
    assert share(3, [1, 1, 1], [5, 5, 5]) == [1, 1, 1]
    # deterministic tie-breaking: lower index first
    assert share(5, [1, 1], [9, 9]) == [3, 2]
    # invariants over many inputs
    for total in range(6, 40, 3):
        weights = [w(p) for p in (1, 16, 300, 5000, 1 << 20, 2)]
        caps = [1, 2, 40, 40, 1000, 3]
        alloc = share(total, weights, caps)
        assert all(1 <= a <= c for a, c in zip(alloc, caps))
        assert sum(alloc) == min(total, sum(caps))
        # monotone in size among uncapped items
        assert alloc[4] >= alloc[3] >= alloc[0]


def test_merge_runs_smallest_neighbours_first():
    runs = heatmap.merge_runs([100, 1, 1, 100, 1, 1, 1], 4)
    assert runs == [(0, 1), (1, 3), (3, 4), (4, 7)]
    assert heatmap.merge_runs([5, 5, 5], 3) == [(0, 1), (1, 2), (2, 3)]
    assert heatmap.merge_runs([1] * 1000, 1) == [(0, 1000)]
    # far-apart neighbours merge last even when small
    assert heatmap.merge_runs([10, 10, 1, 10], 3) == [(0, 1), (1, 3), (3, 4)]
    runs = heatmap.merge_runs([10, 10, 1, 10], 3, gaps=[0, heatmap.FAR_GAP, 0])
    assert runs == [(0, 1), (1, 2), (2, 4)]
    runs = heatmap.merge_runs([10, 10, 1, 10], 2, gaps=[0, heatmap.FAR_GAP, 0])
    assert runs == [(0, 2), (2, 4)]
    # big inputs are fast (heap-based) and cover every item exactly once
    sizes = [(i * 7919) % 1000 + 1 for i in range(50000)]
    runs = heatmap.merge_runs(sizes, 100)
    assert len(runs) == 100 and runs[0][0] == 0 and runs[-1][1] == 50000
    assert all(a[1] == b[0] for a, b in zip(runs, runs[1:]))


def big_process_maps(nlibs=30):
    maps = [M(0x55d0c0a00000, 0x55d0c0c00000, "r-xp", 0, "fd:01", 1, "/usr/bin/server"),
            M(0x55d0c2000000, 0x55d0c2000000 + 4 * GiB, "rw-p", 0, "00:00", 0, "[heap]")]
    for i in range(nlibs):
        base = 0x7f3a00000000 + i * 4 * MiB
        maps.append(M(base, base + MiB, "r--p", 0, "fd:01", 100 + i, f"/usr/lib/lib{i}.so"))
        maps.append(M(base + MiB, base + 3 * MiB, "r-xp", MiB, "fd:01", 100 + i,
                      f"/usr/lib/lib{i}.so"))
    maps.append(M(0x7ffd12340000, 0x7ffd12350000, "rw-p", 0, "00:00", 0, "[stack]"))
    maps.append(M(0x7ffd12400000, 0x7ffd12402000, "r-xp", 0, "00:00", 0, "[vdso]"))
    maps.append(M(0x7ffd12402000, 0x7ffd12404000, "r--p", 0, "00:00", 0, "[vvar]"))
    return maps


def layout(maps, nrows, shift=21):
    shown = heatmap.shown_mappings(maps)
    bins = heatmap.BinLayout(shown, shift, 4096, heatmap.BIN_BUDGET)
    return bins, heatmap.RowLayout(bins, nrows)


def test_row_sharing_4g_heap_64k_stack_many_libs():
    maps = big_process_maps(30)
    bins, rows = layout(maps, 80)
    names = [name for _, name, _ in rows.labels]
    # 34 mappings fit in half the rows: every one has its own row, the rest of the rows
    # go by sqrt(size): the 4 GiB heap gets most, a 3 MiB (2-region) library 1 or 2
    for i in range(30):
        assert names.count(f"lib{i}.so") in (1, 2)
    assert names.count("[stack]") == 1 and names.count("[vdso]") == 1
    assert names.count("server") == 1
    assert "[vvar]" not in names
    assert rows.n == 80
    assert names.count("[heap]") == 80 - 33 - sum(names.count(f"lib{i}.so") - 1
                                                   for i in range(30))
    assert names.count("[heap]") > 20
    assert all(more == 0 for _, _, more in rows.labels)
    # nothing lost: rows' pages add up to the shown mappings' pages
    shown_pages = sum((m.end - m.start) // 4096 for m in heatmap.shown_mappings(maps))
    assert sum(rows.pages) == shown_pages
    # rows are in address order and each is contiguous inside one mapping
    addrs = [a for a, _, _ in rows.labels]
    assert addrs == sorted(addrs)


def test_row_sharing_when_mappings_outnumber_rows():
    maps = big_process_maps(30)
    _, rows = layout(maps, 16)
    assert rows.n == 16
    names = [name for _, name, _ in rows.labels]
    assert names.count("[heap]") >= 6  # the 4 GiB heap stays readable
    assert "[stack]" in names  # far from everything else: merged last
    merged = [more for _, _, more in rows.labels if more]
    assert merged and sum(merged) + rows.n >= 34 - 1  # libraries merged, counted in labels
    shown_pages = sum((m.end - m.start) // 4096 for m in heatmap.shown_mappings(maps))
    assert sum(rows.pages) == shown_pages


def test_row_sharing_tiny_and_huge():
    maps = big_process_maps(30)
    for nrows in (1, 2, 3, 5, 300, 1000, 5000):
        bins, rows = layout(maps, nrows)
        assert 1 <= rows.n <= nrows
        assert sum(rows.pages) == sum(bins.bin_pages)
        assert list(rows.starts) == sorted(set(rows.starts))
    _, rows = layout(maps, 1)
    assert rows.labels[0][1] == "server" and rows.labels[0][2] == 33


def test_small_regions_on_a_big_heap_stay_bounded():
    # 4 KiB regions over a 4 GiB heap: a million regions, folded into <= 1024 bins
    maps = big_process_maps(3)
    bins, rows = layout(maps, 50, shift=12)
    assert bins.nslots == sum((m.end - m.start) // 4096
                              for m in heatmap.shown_mappings(maps))
    assert bins.nbins <= heatmap.BIN_BUDGET
    heap_r = 0x55d0c2000000 >> 12
    assert bins.bin_of(heap_r) >= 0 and bins.bin_of(heap_r + (4 * GiB >> 12) - 1) >= 0
    assert bins.bin_of(heap_r - 1) == -1  # the gap before the heap


def small_model(history=heatmap.HISTORY_MIN):
    model = heatmap.Model({"pid": 1, "comm": "x", "region_shift": 21, "interval": 1.0},
                          history=history)
    return model


def sample(seq, counts, maps=None):
    return heatmap.Sample(seq, float(seq), 0.001, 0, 100, maps, sorted(counts))


def test_model_history_is_bounded_and_grows_with_the_terminal():
    model = small_model()
    maps = heatmap.parse_maps(SMALL_MAPS)
    heap = 0x10000000 >> 21
    for i in range(1000):
        model.add(sample(i + 1, [(heap + i % 8, 0, 10, 0)], maps if i == 0 else None))
    assert len(model.columns) == heatmap.HISTORY_MIN
    assert model.columns[-1].seq == 1000 and model.columns[0].seq == 1000 - 255
    model.ensure_history(900)
    model.ensure_history(300)  # never shrinks
    assert model.columns.maxlen == 900 and len(model.columns) == 256
    assert model.intervals == 1000
    assert model.peak() == (heap, 1250)  # 125 intervals x 10 pages, lowest region wins


def test_model_cells_exact_for_any_row_count():
    """Re-layout (a resize) re-renders kept history exactly: every row's young pages
    equal the raw per-region sum over its address range."""
    maps = big_process_maps(5)
    model = small_model()
    heap = 0x55d0c2000000 >> 21
    raw = {}
    for i in range(20):
        counts = [(heap + (i * 97 + k * 13) % 2048, k % 2, 7 + k, k) for k in range(40)]
        counts.append((0x7ffd12340000 >> 21, 0, 2, 0))
        for r, _, a, f in counts:
            raw[r] = raw.get(r, 0) + a + f
        model.add(sample(i + 1, counts, maps if i == 0 else None))
    for nrows in (3, 17, 64, 400):
        rows = model.rows_for(nrows)
        total = [0.0] * rows.n
        for col in model.columns:
            y, a, n = model.cells(col, rows)
            for r in range(rows.n):
                total[r] += y[r]
        expect = [0] * rows.n
        for reg, v in raw.items():
            b = model.bins.bin_of(reg)
            expect[rows.row_of_bin[b]] += v
        assert total == expect


def test_model_counts_saturate_instead_of_wrapping():
    """A bin's young pages are 32-bit: past COUNT_MAX they stay there, never wrap to a
    small number that would show the hottest bin as cold."""
    model = small_model()
    maps = heatmap.parse_maps(SMALL_MAPS)
    heap = 0x10000000 >> 21
    top = heatmap.COUNT_MAX
    col = model.add(sample(1, [(heap, 0, top, top), (heap, 1, 5, 5)], maps))
    b = model.bins.bin_of(heap)
    assert (col.anon[b], col.file[b]) == (top, top)
    assert (col.nodes[0][b], col.nodes[1][b]) == (top, 10)


def test_model_node_dominance_and_multi_node_cells():
    assert heatmap.dominant({0: 75, 1: 25}, 100) == 0
    assert heatmap.dominant({0: 74, 1: 26}, 100) == heatmap.MIXED
    assert heatmap.dominant({}, 0) == heatmap.NO_DATA
    model = small_model()
    maps = heatmap.parse_maps(SMALL_MAPS)
    heap = 0x10000000 >> 21
    col = model.add(sample(1, [(heap, 0, 100, 0), (heap, 1, 10, 0), (heap + 1, 1, 50, 0),
                               (heap + 2, 0, 30, 0), (heap + 2, 1, 30, 0)], maps))
    assert isinstance(col.nodes, dict)
    rows = model.rows_for(11)
    y, a, n = model.cells(col, rows)
    assert list(y[1:4]) == [110, 50, 60]
    assert list(n[1:4]) == [0, 1, heatmap.MIXED]
    col = model.add(sample(2, [(heap, 3, 1, 1)]))
    assert col.nodes == 3  # single node: no per-node arrays kept
    y, a, n = model.cells(col, rows)
    assert n[1] == 3 and n[2] == heatmap.NO_DATA


def test_mapping_change_projects_old_columns():
    model = small_model()
    maps = heatmap.parse_maps(SMALL_MAPS)
    heap = 0x10000000 >> 21
    model.add(sample(1, [(heap, 0, 512, 0), (heap + 7, 0, 100, 0)], maps))
    # the heap doubles: new regions, new bins; the old column must still render
    grown = [m if m.path != "[heap]" else m._replace(end=m.start + 32 * MiB) for m in maps]
    model.add(sample(2, [(heap + 12, 0, 5, 0)], grown))
    rows = model.rows_for(20)
    old, new = model.columns
    assert old.bins is not new.bins and old.bins.key != new.bins.key
    y_old, _, _ = model.cells(old, rows)
    y_new, _, _ = model.cells(new, rows)
    assert sum(y_old) == 612  # everything still on screen, in the right rows
    assert sum(y_new) == 5
    heap_row = rows.row_of_bin[model.bins.bin_of(heap)]
    assert y_old[heap_row] == 512
    # unchanged structure (same regions, only pages differ) keeps the cache key
    before = model.bins.ident
    model.add(sample(3, [], [m if m.path != "[heap]" else m._replace(end=m.end - 4096)
                             for m in grown]))
    assert model.bins.ident == before
    # counts outside every shown mapping are not drawn but still counted for the peak
    model.add(sample(4, [(0x7e00000, 0, 9, 0)]))
    assert model.region_totals[0x7e00000] == 9


def test_history_folds_onto_new_bins_when_mappings_keep_changing():
    """A target whose mappings change every interval must not keep one layout (and its
    projection caches) per interval alive: the history is re-binned onto the newest."""
    model = small_model()
    base = heatmap.parse_maps(SMALL_MAPS)
    heap = 0x10000000 >> 21
    for i in range(100):
        grown = [m if m.path != "[heap]" else m._replace(end=m.start + (16 + 2 * i) * MiB)
                 for m in base]
        model.add(sample(i + 1, [(heap, 0, 10, 1), (heap + 7 + i, 1, 5, 0)], grown))
        layouts = {col.bins.ident for col in model.columns}
        assert len(layouts) <= heatmap.MAX_LAYOUTS + 1
    # every region still maps wholly into one bin: the re-binning lost nothing
    assert sum(sum(c.anon) + sum(c.file) for c in model.columns) == 100 * (11 + 5)
    rows = model.rows_for(30)
    total = 0.0
    for col in model.columns:
        y, _, n = model.cells(col, rows)
        total += sum(y)
    assert total == 100 * 16
    heap_row = rows.row_of_bin[model.bins.bin_of(heap)]
    assert model.cells(model.columns[0], rows)[2][heap_row] == 0
