"""Cgroup programs on a cgroup v2 directory the test makes: they count exactly the
sockets a child process in it creates and the UDP packets it sends, nothing from
processes outside it, and the attachment ends with the link."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import bpfload

pytestmark = pytest.mark.usefixtures("no_leaks")
SOCKETS, PACKETS = 7, 11


_CHILD = f"""
import socket
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range({SOCKETS})]
for _ in range({PACKETS}):
    socks[0].sendto(b"x", ("127.0.0.1", 9999))
"""


def _run_child(cgroup: str | None) -> None:
    def enter():
        if cgroup is not None:
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write("0")
    subprocess.run([sys.executable, "-c", _CHILD], check=True, preexec_fn=enter)


def test_cgroup_programs_count_what_the_cgroups_tasks_do(bpf_object, cgroup):
    with bpfload.load(bpf_object("net_attach"),
                      programs=["count_sock_create", "count_skb_egress"]) as obj:
        links = obj.attach(cgroup=cgroup)
        assert sorted(link.kind for link in links) == ["cgroup", "cgroup"]
        _run_child(None)  # outside the cgroup: not counted
        _run_child(cgroup)
        assert (obj.get("sock_creates"), obj.get("skb_egress_packets")) == (SOCKETS, PACKETS)
        for link in links:
            link.close()
        _run_child(cgroup)
        assert (obj.get("sock_creates"), obj.get("skb_egress_packets")) == (SOCKETS, PACKETS)


def test_a_cgroup_given_as_an_open_descriptor(bpf_object, cgroup):
    fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with bpfload.load(bpf_object("net_attach"), programs=["count_sock_create"]) as obj:
            obj.attach(cgroup=fd)
            _run_child(cgroup)
            assert obj.get("sock_creates") == SOCKETS
    finally:
        os.close(fd)


def test_cgroup_errors_are_one_line(bpf_object, tmp_path):
    with bpfload.load(bpf_object("net_attach"), programs=["count_sock_create"]) as obj:
        with pytest.raises(bpfload.AttachError, match="cannot open cgroup /nonexistent"):
            obj.attach(cgroup="/nonexistent")
        with pytest.raises(bpfload.AttachError, match="is not a cgroup v2 directory"):
            obj.attach(cgroup=str(tmp_path))
        assert obj.links == []
