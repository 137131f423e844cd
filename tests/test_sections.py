"""bpfload's SEC() table is libbpf 1.5's: read section_defs[] from tools/lib/bpf/libbpf.c
of the linux-source-6.12 tarball and compare row for row, in order (the first row that
matches a name wins, so order is part of the convention)."""

from __future__ import annotations

import re

import kernel_source
import pytest
from required import cannot_run

from bpfload import sections
from bpfload.sys.constants import AttachType, ProgType

LIBBPF_C = "tools/lib/bpf/libbpf.c"

# libbpf's attach function for a row -> the attach kinds bpfload may give it
ATTACH_FUNCTIONS = {
    None: {sections.ATTACH_NONE, sections.ATTACH_RUN},
    "attach_kprobe": {sections.ATTACH_KPROBE, sections.ATTACH_KRETPROBE},
    "attach_uprobe": {sections.ATTACH_UPROBE, sections.ATTACH_URETPROBE},
    "attach_kprobe_multi": {sections.ATTACH_KPROBE_MULTI, sections.ATTACH_KRETPROBE_MULTI},
    "attach_kprobe_session": {sections.ATTACH_KPROBE_SESSION},
    "attach_uprobe_multi": {sections.ATTACH_UPROBE_MULTI, sections.ATTACH_URETPROBE_MULTI},
    "attach_ksyscall": {sections.ATTACH_KSYSCALL, sections.ATTACH_KRETSYSCALL},
    "attach_usdt": {sections.ATTACH_USDT},
    "attach_tp": {sections.ATTACH_TRACEPOINT},
    "attach_raw_tp": {sections.ATTACH_RAW_TP},
    "attach_trace": {sections.ATTACH_TRACING, sections.ATTACH_TP_BTF, sections.ATTACH_FREPLACE},
    "attach_lsm": {sections.ATTACH_TRACING},
    "attach_iter": {sections.ATTACH_ITER},
}

_ROW = re.compile(r'SEC_DEF\("([^"]+)",\s*(\w+),\s*(\w+),\s*([\w\s|]+?)\s*(?:,\s*(\w+))?\s*\)')


def parse_section_defs(source: str) -> list[tuple]:
    """(pattern, ProgType, expected attach type, flags, attach function) per row."""
    start = source.index("static const struct bpf_sec_def section_defs[] = {")
    table = source[start:source.index("\n};", start)]
    flag_values = {name: getattr(sections, name) for name in dir(sections)
                   if name.startswith("SEC_")}
    flag_values["SEC_NONE"] = 0
    rows = []
    for m in _ROW.finditer(table):
        pattern, ptype, atype, flags, fn = m.groups()
        attach = 0 if atype == "0" else AttachType.items()[atype.removeprefix("BPF_")]
        bits = 0
        for name in flags.split("|"):
            bits |= flag_values[name.strip()]
        rows.append((pattern, ProgType.items()[ptype], attach, bits, fn))
    assert len(rows) == table.count("SEC_DEF("), "a row of section_defs[] was not parsed"
    return rows


@pytest.fixture(scope="module")
def libbpf_rows() -> list[tuple]:
    try:
        root = kernel_source.unpacked([LIBBPF_C])
    except kernel_source.Unavailable as e:
        cannot_run(str(e), "HEATMAP_REQUIRE_REFERENCE")
    return parse_section_defs((root / LIBBPF_C).read_text())


def test_every_libbpf_convention_in_libbpf_order(libbpf_rows):
    ours = [s.pattern for s in sections.SECTIONS]
    theirs = [r[0] for r in libbpf_rows]
    missing = [p for p in theirs if p not in ours]
    extra = [p for p in ours if p not in theirs]
    assert not missing and not extra, f"missing {missing}, not in libbpf {extra}"
    assert ours == theirs, "rows are in another order than libbpf's"
    assert len(ours) > 100


def test_each_row_says_what_libbpf_says(libbpf_rows):
    by_pattern = {s.pattern: s for s in sections.SECTIONS}
    for pattern, ptype, atype, flags, fn in libbpf_rows:
        s = by_pattern[pattern]
        assert (s.prog_type, s.attach_type, s.flags) == (ptype, atype, flags), pattern
        assert fn in ATTACH_FUNCTIONS, f"{pattern}: libbpf attach function {fn} is new"
        assert s.attach in ATTACH_FUNCTIONS[fn], f"{pattern}: attaches with {fn}"


def test_parser_sees_a_changed_row():
    row = 'static const struct bpf_sec_def section_defs[] = {\n' \
          '\tSEC_DEF("fentry.s+", TRACING, BPF_TRACE_FENTRY, SEC_ATTACH_BTF | SEC_SLEEPABLE, ' \
          'attach_trace),\n\tSEC_DEF("socket", SOCKET_FILTER, 0, SEC_NONE),\n};\n'
    assert parse_section_defs(row) == [
        ("fentry.s+", ProgType.TRACING, AttachType.TRACE_FENTRY,
         sections.SEC_ATTACH_BTF | sections.SEC_SLEEPABLE, "attach_trace"),
        ("socket", ProgType.SOCKET_FILTER, 0, 0, None)]


@pytest.mark.parametrize("name,pattern", [
    ("kprobe", "kprobe+"), ("kprobe/do_sys_open", "kprobe+"), ("kprobex", None),
    ("kprobe.multi/f*", "kprobe.multi+"), ("uprobe.s//bin/sh:main", "uprobe.s+"),
    ("sk_reuseport/migrate", "sk_reuseport/migrate"), ("sk_reuseport", "sk_reuseport"),
    ("xdp.frags/devmap", "xdp.frags/devmap"), ("xdp/foo", None), ("tc/ingress", "tc/ingress"),
    ("tc/other", None), ("cgroup/sock", "cgroup/sock"), ("struct_ops.s/init", "struct_ops.s+"),
    ("iter/task", "iter+"), ("lsm_cgroup/socket_bind", "lsm_cgroup+"),
])
def test_matching_is_libbpfs(name, pattern):
    sdef = sections.find(name)
    assert (sdef.pattern if sdef else None) == pattern


def test_prefix_rows_match_any_name_they_start():
    sdef = sections.SectionDef("type/", ProgType.KPROBE, 0)
    assert sdef.matches("type/x") and not sdef.matches("type")


def test_flags_give_load_behaviour():
    assert sections.lookup("iter.s/task").sleepable
    assert sections.lookup("kretprobe/x").attach == sections.ATTACH_KRETPROBE
    assert sections.lookup("tp_btf/x").btf_target
    assert not sections.lookup("raw_tp/x").btf_target
    assert sections.lookup("kprobe").target("kprobe") == ""
    assert sections.lookup("tracepoint/a/b").target("tracepoint/a/b") == "a/b"
