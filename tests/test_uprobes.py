"""Uprobes, uretprobes, uprobe-multi links and USDT probes on tests/targets/probed
(built here with gcc), on the running kernel's uprobe PMU: the programs count calls
and read arguments exactly, a USDT probe's semaphore is raised only while it is
attached, and nothing stays behind."""

from __future__ import annotations

import pytest
from targets import Probed, build_target, named_uprobes_object

import bpfload
from bpfload import binaries, features, usdt

pytestmark = pytest.mark.usefixtures("no_leaks")
N = 25
SUM_I = N * (N + 1) // 2  # probed_add(i, 2i) for i = 1..N returns 3i


@pytest.fixture(scope="module")
def probed():
    try:
        return build_target("probed")
    except Exception as e:  # a compiler failure is this test's failure
        pytest.fail(str(e))


def _counters(obj) -> dict:
    return {n: obj.get(n) for n in ("uprobe_hits", "uprobe_arg_sum", "uretprobe_hits",
                                    "uretprobe_ret_sum", "multi_hits", "usdt_hits",
                                    "usdt_sum_i", "usdt_sum_neg", "usdt_sum_stacked")}


def test_uprobe_and_uretprobe_count_calls_and_see_arguments(bpf_object, probed):
    with bpfload.load(bpf_object("uprobes"), programs=["on_add", "on_add_return"]) as obj, \
            Probed(probed) as target:
        entry = obj.attach_uprobe("on_add", str(probed), "probed_add")
        ret = obj.attach_uprobe("on_add_return", str(probed), "probed_add")
        assert (entry.kind, ret.kind) == ("uprobe", "uretprobe")
        target.run(N)
        c = _counters(obj)
        assert (c["uprobe_hits"], c["uprobe_arg_sum"]) == (N, 3 * SUM_I)
        assert (c["uretprobe_hits"], c["uretprobe_ret_sum"]) == (N, 3 * SUM_I)
        entry.close()
        ret.close()
        target.run(N)
        assert _counters(obj)["uprobe_hits"] == N


def test_uprobe_pid_filter(bpf_object, probed):
    with bpfload.load(bpf_object("uprobes"), programs=["on_add"]) as obj, \
            Probed(probed) as mine, Probed(probed) as other:
        obj.attach_uprobe("on_add", str(probed), "probed_add", pid=mine.pid)
        other.run(N)
        mine.run(3)
        assert obj.get("uprobe_hits") == 3


def test_uprobe_multi_on_a_pattern(bpf_object, probed):
    names = [n for n, _ in binaries.pattern_offsets(str(probed), "probed_*")]
    assert names == ["probed_add"]
    with bpfload.load(bpf_object("uprobes"), programs=["on_probed_multi"]) as obj, \
            Probed(probed) as target:
        from bpfload import uprobes

        link = uprobes.attach_uprobe_multi(obj.program("on_probed_multi"), str(probed),
                                           "probed_*")
        target.run(N)
        assert obj.get("multi_hits") == N
        link.close()
        target.run(N)
        assert obj.get("multi_hits") == N


@pytest.mark.parametrize("multi", [True, False], ids=["uprobe-multi", "perf-events"])
def test_usdt_probe_reads_arguments_and_raises_its_semaphore(bpf_object, probed, monkeypatch,
                                                             multi):
    """Arguments of every form the probe uses (register, 32-bit sign-extended, stack
    slot), the cookie, and the semaphore: raised while attached, lowered after. Both
    ways libbpf attaches USDT: one uprobe-multi link, or a perf event per site (kernels
    without uprobe-multi, here by choice)."""
    if not multi:
        monkeypatch.setattr(features, "uprobe_multi_link", lambda: False)
    elif not features.uprobe_multi_link():
        pytest.skip("this kernel has no uprobe-multi links")
    with bpfload.load(bpf_object("uprobes"), programs=["on_tick"]) as obj, \
            Probed(probed) as target:
        assert target.run(N) == 0  # not attached: the semaphore is 0, the probe skipped
        link = obj.attach_usdt("on_tick", str(probed), "bpfload_test", "tick", cookie=77)
        assert target.run(N) == N
        c = _counters(obj)
        assert (c["usdt_hits"], c["usdt_sum_i"], c["usdt_sum_neg"], c["usdt_sum_stacked"]) \
            == (N, SUM_I, -SUM_I, 5 * SUM_I)
        assert obj.get("usdt_cookie") == 77
        link.close()
        assert target.run(N) == 0
        assert obj.get("usdt_hits") == N


def test_sections_that_name_the_binary_attach_by_themselves(probed):
    """uprobe/PATH:FUNC, uretprobe/..., uprobe.multi/PATH:PATTERN, usdt/PATH:PROV:NAME:
    obj.attach() attaches all four, as libbpf's skeleton does."""
    with bpfload.load(named_uprobes_object(probed)) as obj, Probed(probed) as target:
        kinds = sorted(link.kind for link in obj.attach())
        assert kinds == ["uprobe", "uprobe.multi", "uretprobe", "usdt"]
        assert target.run(N) == N
        c = _counters(obj)
        assert (c["uprobe_hits"], c["uretprobe_hits"], c["multi_hits"], c["usdt_hits"]) == \
            (N, N, N, N)


def test_bare_sections_are_not_attached_by_default(bpf_object):
    with bpfload.load(bpf_object("uprobes")) as obj:
        assert obj.attach() == []  # SEC("uprobe") and the like: the caller says where
        with pytest.raises(bpfload.AttachError, match="does not name what to attach to"):
            obj.attach(["on_add"])
        with pytest.raises(bpfload.BPFLoadError, match="does not name a probe"):
            obj.attach(["on_tick"])


def test_usdt_notes_and_argument_forms(probed):
    (note,) = usdt.notes(str(probed))
    assert (note.provider, note.name) == ("bpfload_test", "tick")
    assert note.semaphore and note.offset
    assert [a["arg_type"] for a in usdt.parse_args(note.args)] == [
        usdt.ARG_REG, usdt.ARG_REG, usdt.ARG_REG_DEREF]
    specs = usdt.parse_args("-4@%eax 8@-8(%rbp) 2@$5 1@(%rsp) 8@-96(%rbp,%rax,8)",
                            "x86_64")
    assert specs[0] == {"arg_type": usdt.ARG_REG, "arg_signed": True, "arg_bitshift": 32,
                        "val_off": 0, "reg_off": 80}
    assert (specs[1]["arg_type"], specs[1]["val_off"], specs[1]["reg_off"]) == (
        usdt.ARG_REG_DEREF, 2**64 - 8, 32)
    assert (specs[2]["arg_type"], specs[2]["val_off"], specs[2]["arg_bitshift"]) == (
        usdt.ARG_CONST, 5, 48)
    assert (specs[3]["arg_type"], specs[3]["val_off"], specs[3]["reg_off"]) == (
        usdt.ARG_REG_DEREF, 0, 152)
    assert (specs[4]["arg_type"], specs[4]["idx_reg_off"], specs[4]["scale_bitshift"]) == (
        usdt.ARG_SIB, 80, 3)


@pytest.mark.parametrize("args,says", [
    ("8@%xmm0", "unrecognized register 'xmm0'"), ("3@%rax", "size 3"),
    ("8@foo(%rip)", "unrecognized USDT argument #0"),
    ("8@(%rax,%rbx,3)", "scale 3")])
def test_bad_usdt_arguments_are_named(args, says):
    with pytest.raises(bpfload.AttachError, match=says):
        usdt.parse_args(args, "x86_64")


def test_attach_errors_name_what_is_missing(bpf_object, probed):
    with bpfload.load(bpf_object("uprobes"), programs=["on_add", "on_tick"]) as obj:
        with pytest.raises(bpfload.AttachError, match="no function 'nope' in"):
            obj.attach_uprobe("on_add", str(probed), "nope")
        with pytest.raises(bpfload.AttachError, match="no such binary: /nonexistent"):
            obj.attach_uprobe("on_add", "/nonexistent/x", "f")
        with pytest.raises(bpfload.AttachError, match="cannot find 'no-such-prog-x'"):
            obj.attach_uprobe("on_add", "no-such-prog-x", "f")
        with pytest.raises(bpfload.AttachError, match="no USDT probe bpfload_test:nope"):
            obj.attach_usdt("on_tick", str(probed), "bpfload_test", "nope")
        assert obj.links == []


def test_library_names_are_found_like_libbpf_finds_them():
    path = binaries.resolve_path("libc.so.6")
    assert path.endswith("/libc.so.6")
    assert binaries.function_offset(path, "getpid") > 0
