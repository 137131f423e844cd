"""The attach kinds this host's kernel refuses, in the guest on the patched 6.12:
kprobe.multi (a glob resolved against available_filter_functions), kretprobe.multi,
kprobe.session and ksyscall programs count the test's nanosleeps exactly; a
map-element iterator walks the map it is attached to; nothing stays behind.
(struct_ops is tested on the host: this guest kernel has no CONFIG_MODULES, without
which 6.12 registers no struct_ops type.)"""

from __future__ import annotations

import os
import time

import pytest

import bpfload
from bpfload import links

pytestmark = pytest.mark.usefixtures("no_leaks", "tracefs")
CALLS = 20


def _sleep(n: int = CALLS) -> None:
    for _ in range(n):
        time.sleep(0.0001)


def test_kprobe_multi_glob_resolves_to_the_function():
    assert links.kernel_functions("hrtimer_nanoslee?") == ["hrtimer_nanosleep"]
    with pytest.raises(bpfload.AttachError, match="no kernel function matches 'nope_*"):
        links.kernel_functions("nope_*_bpfload")


@pytest.mark.parametrize("prog,counters", [
    ("count_multi", ["multi_hits"]), ("count_multi_ret", ["multi_ret_hits"]),
    ("count_session", ["session_entries", "session_returns"]),
    ("count_ksyscall", ["ksyscall_hits"])])
def test_multi_link_kinds_count_and_detach(bpf_object, prog, counters):
    with bpfload.load(bpf_object("kprobe_multi"), set={"target_tgid": os.getpid()},
                      programs=[prog]) as obj:
        (link,) = obj.attach()
        _sleep()
        assert [obj.get(c) for c in counters] == [CALLS] * len(counters)
        link.close()
        _sleep()
        assert [obj.get(c) for c in counters] == [CALLS] * len(counters)


def test_kprobe_multi_on_a_missing_function_is_one_line(bpf_object):
    with bpfload.load(bpf_object("kprobe_multi"), programs=["count_multi"]) as obj, \
            pytest.raises(bpfload.AttachError, match="no kernel function 'no_such_fn_x'"):
        links.attach_kprobe_multi(obj.program("count_multi"), "no_such_fn_x")


def test_map_element_iterator_walks_its_map(bpf_object):
    with bpfload.load(bpf_object("iters"), programs=["numbers_dump"]) as obj:
        numbers = obj.map("numbers")
        for i in range(4):
            numbers.update(i.to_bytes(4, "little"), (10 * i + 1).to_bytes(8, "little"))
        link = links.attach_iter(obj.program("numbers_dump"), numbers.fileno())
        obj.links.append(link)
        assert link.read().decode().splitlines() == ["0 1", "1 11", "2 21", "3 31"]
        with pytest.raises(bpfload.AttachError, match="walks a map: give one"):
            links.attach_iter(obj.program("numbers_dump"))


def test_probe_in_the_guest_sees_what_the_guest_has():
    from bpfload.probe import probe

    report = probe()
    kinds = report["attach_kinds"]
    assert kinds["fentry"] and kinds["kprobe"] and kinds["kprobe.multi"]
    assert kinds["kprobe.session"]
