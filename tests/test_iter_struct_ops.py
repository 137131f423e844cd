"""Iterators and struct_ops on the running kernel: a task iterator lists exactly this
process's threads, each read() a fresh run; struct_ops maps register a TCP congestion
control the kernel then offers (and that a socket can use), and closing the link
unregisters it, for `.struct_ops` maps (deleting the value) and `.struct_ops.link`
ones (a link) alike. The map-element iterator, which this host refuses, runs in the
guest (tests/guest/test_attach_kinds_guest.py)."""

from __future__ import annotations

import os
import socket
import threading

import pytest

import bpfload
from bpfload import features
from bpfload.sys.constants import MapFlags

pytestmark = pytest.mark.usefixtures("no_leaks")
AVAILABLE = "/proc/sys/net/ipv4/tcp_available_congestion_control"


def _threads() -> set[int]:
    return {int(t) for t in os.listdir("/proc/self/task")}


def test_task_iterator_lists_this_processes_threads(bpf_object):
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        with bpfload.load(bpf_object("iters"), set={"target_tgid": os.getpid()},
                          programs=["tasks_of"]) as obj:
            (link,) = obj.attach()
            assert link.kind == "iter" and link.target == "task"
            first = link.read().decode()
            tids = {int(row.split()[0]) for row in first.splitlines()}
            assert tids == _threads() and len(tids) >= 2
            assert link.read().decode() == first  # each read() runs it again
    finally:
        stop.set()
        worker.join()


def _available() -> list[str]:
    with open(AVAILABLE) as f:
        return f.read().split()


def test_struct_ops_maps_register_and_unregister(bpf_object):
    with bpfload.load(bpf_object("struct_ops")) as obj:
        links = obj.attach()
        assert sorted(link.target for link in links) == ["bpfload_ca", "bpfload_ca_link"]
        assert {"bpfload_ca", "bpfload_ca_link"} <= set(_available())
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # usable by sockets
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"bpfload_ca")
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16) \
                .rstrip(b"\0") == b"bpfload_ca"
        for link in links:
            link.close()
        assert not {"bpfload_ca", "bpfload_ca_link"} & set(_available())
    assert "bpfload_ca" not in _available()


def test_a_name_registered_twice_is_refused(bpf_object):
    with bpfload.load(bpf_object("struct_ops")) as a, bpfload.load(bpf_object("struct_ops")) as b:
        a.attach_struct_ops("bpfload_ca")
        with pytest.raises(bpfload.AttachError, match="'bpfload_ca': EEXIST: ops of that name "
                                                      "are registered already"):
            b.attach_struct_ops("bpfload_ca")
        assert b.links == []


def test_struct_ops_links_make_every_map_a_link(bpf_object):
    """struct_ops_links=True (what `load --attach` uses): .struct_ops maps too are
    created BPF_F_LINK, so a killed process cannot leave them registered."""
    if not features.struct_ops_link():
        pytest.skip("this kernel has no struct_ops links")
    with bpfload.load(bpf_object("struct_ops"), struct_ops_links=True) as obj:
        assert obj.map("bpfload_ca").flags & MapFlags.LINK
        (link,) = [x for x in obj.attach() if x.target == "bpfload_ca"][:1]
        assert link.fd is not None and "bpfload_ca" in _available()
    assert "bpfload_ca" not in _available()
    with bpfload.load(bpf_object("struct_ops")) as obj:  # by default as libbpf makes them
        assert not obj.map("bpfload_ca").flags & MapFlags.LINK
        assert obj.map("bpfload_ca_link").flags & MapFlags.LINK


def test_no_struct_ops_map_of_that_name(bpf_object):
    with bpfload.load(bpf_object("struct_ops")) as obj, \
            pytest.raises(bpfload.BPFLoadError, match="no created struct_ops map 'unused_ca'"):
        obj.attach_struct_ops("unused_ca")
