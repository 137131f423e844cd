"""XDP and tc programs on a veth pair between this network namespace and one the test
makes: each counts exactly the UDP packets the test sends through it, and nothing is
left on the interface (XDP program, tcx link, clsact qdisc, cls_bpf filter) after it
is detached, by close(), by the object's close() or by a failed attach."""

from __future__ import annotations

import os
import subprocess

import pytest

import bpfload
from bpfload import netattach

pytestmark = pytest.mark.usefixtures("no_leaks")
N = 40


def _load(bpf_object, *progs):
    return bpfload.load(bpf_object("net_attach"), programs=list(progs))


@pytest.mark.parametrize("mode", [None, "skb"], ids=["default", "skb"])
def test_xdp_counts_the_packets_and_detaches(bpf_object, veth, mode):
    with _load(bpf_object, "count_xdp") as obj:
        link = netattach.attach_xdp(obj.program("count_xdp"), veth.host, mode)
        assert veth.xdp_attached()
        veth.send_from_peer(N)
        assert obj.get("xdp_packets") == N
        link.close()
        assert not veth.xdp_attached()
        veth.send_from_peer(N)
        assert obj.get("xdp_packets") == N


def test_tcx_ingress_and_egress(bpf_object, veth):
    with _load(bpf_object, "count_tcx", "count_tcx_egress", "count_tc") as obj:
        links = obj.attach(ifname=veth.host)
        assert sorted((link.kind, link.target) for link in links) == [
            ("tcx", f"{veth.host} egress"), ("tcx", f"{veth.host} ingress"),
            ("tcx", f"{veth.host} ingress")]  # the bare `tc` program goes to tcx ingress
        veth.send_from_peer(N)
        veth.send_from_host(N // 2)
        assert (obj.get("tcx_packets"), obj.get("tc_packets")) == (N, N)
        assert obj.get("tcx_egress_packets") == N // 2
    assert "clsact" not in veth.tc("qdisc")  # tcx needs no qdisc


def test_legacy_tc_filter_is_added_and_removed(bpf_object, veth):
    with _load(bpf_object, "count_tc") as obj:
        link = netattach.attach_tc(obj.program("count_tc"), veth.host, mode="netlink")
        assert "clsact" in veth.tc("qdisc")
        assert "count_tc" in veth.tc("filter", "ingress") and "direct-action" in \
            veth.tc("filter", "ingress")
        veth.send_from_peer(N)
        assert obj.get("tc_packets") == N
        link.close()
        assert veth.tc("filter", "ingress").strip() == ""
        assert "clsact" not in veth.tc("qdisc")  # it made the qdisc: it removes it


def test_legacy_tc_leaves_a_qdisc_it_did_not_make(bpf_object, veth):
    subprocess.run(["tc", "qdisc", "add", "dev", veth.host, "clsact"], check=True)
    with _load(bpf_object, "count_tc") as obj:
        with netattach.attach_tc(obj.program("count_tc"), veth.host, mode="netlink"):
            assert "count_tc" in veth.tc("filter", "ingress")
        assert veth.tc("filter", "ingress").strip() == ""
    assert "clsact" in veth.tc("qdisc")


def test_tc_on_egress_by_netlink(bpf_object, veth):
    with _load(bpf_object, "count_tc") as obj:
        with netattach.attach_tc(obj.program("count_tc"), veth.host, egress=True,
                                 mode="netlink"):
            assert "count_tc" in veth.tc("filter", "egress")
            veth.send_from_host(N)
            assert obj.get("tc_packets") == N
        assert veth.tc("filter", "egress").strip() == ""


def test_a_second_xdp_program_is_refused_and_the_first_stays(bpf_object, veth):
    with _load(bpf_object, "count_xdp") as obj, _load(bpf_object, "count_xdp") as other:
        link = netattach.attach_xdp(obj.program("count_xdp"), veth.host)
        with pytest.raises(bpfload.AttachError, match="has an XDP program attached already"):
            netattach.attach_xdp(other.program("count_xdp"), veth.host)
        veth.send_from_peer(3)
        assert obj.get("xdp_packets") == 3
        link.close()


def test_a_failed_attach_detaches_what_the_call_attached(bpf_object, veth):
    """obj.attach() attaches XDP, then fails on a cgroup program without a cgroup:
    the XDP link it made is gone again."""
    with _load(bpf_object, "count_xdp", "count_sock_create") as obj:
        with pytest.raises(bpfload.AttachError, match="attaches to a cgroup: give one"):
            obj.attach(["count_xdp", "count_sock_create"], ifname=veth.host)
        assert obj.links == [] and not veth.xdp_attached()


def test_interface_errors_are_one_line(bpf_object):
    with _load(bpf_object, "count_xdp", "count_tcx") as obj:
        with pytest.raises(bpfload.AttachError, match="no network interface 'nope0'"):
            obj.attach(ifname="nope0")
        with pytest.raises(bpfload.AttachError, match="attaches to a network interface: give "
                                                      "one"):
            obj.attach(["count_xdp"])
        with pytest.raises(bpfload.AttachError, match="tcx links only"):
            netattach.attach_tc(obj.program("count_tcx"), "lo", mode="netlink")
        with pytest.raises(bpfload.AttachError, match="egress only|ingress only"):
            netattach.attach_tc(obj.program("count_tcx"), "lo", egress=True)


def test_the_namespace_is_ours(veth):
    assert os.path.exists(f"/run/netns/{veth.ns}")
