"""A veth pair between this network namespace and a new one, for the XDP and tc tests:
`host` here (10.77.0.1), `peer` in namespace `ns` (10.77.0.2), neighbours set
statically so that no ARP exchange races the first packets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

HOST_IP, PEER_IP = "10.77.0.1", "10.77.0.2"
PORT = 9999  # net_attach.bpf.c's test_port


def _ip(*args: str, check: bool = True) -> str:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and r.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


class VethPair:
    def __init__(self):
        tag = os.getpid() % 100000
        self.ns = f"bpfload-{tag}"
        self.host = f"blh{tag}"
        self.peer = f"blp{tag}"
        _ip("netns", "add", self.ns)
        try:
            _ip("link", "add", self.host, "type", "veth", "peer", "name", self.peer,
                "netns", self.ns)
            _ip("addr", "add", f"{HOST_IP}/24", "dev", self.host)
            _ip("link", "set", self.host, "up")
            _ip("-n", self.ns, "addr", "add", f"{PEER_IP}/24", "dev", self.peer)
            _ip("-n", self.ns, "link", "set", self.peer, "up")
            _ip("-n", self.ns, "link", "set", "lo", "up")
            host_mac = _mac([], self.host)
            peer_mac = _mac(["-n", self.ns], self.peer)
            _ip("neigh", "replace", PEER_IP, "lladdr", peer_mac, "dev", self.host)
            _ip("-n", self.ns, "neigh", "replace", HOST_IP, "lladdr", host_mac, "dev",
                self.peer)
        except BaseException:
            self.close()
            raise

    def send_from_peer(self, n: int) -> None:
        """n UDP packets from the namespace to HOST_IP:PORT (ingress of `host`)."""
        code = (f"import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                f"for _ in range({n}): s.sendto(b'x', ('{HOST_IP}', {PORT}))\n")
        subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, "-c", code],
                       check=True)

    def send_from_host(self, n: int) -> None:
        """n UDP packets from here to PEER_IP:PORT (egress of `host`)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(n):
                s.sendto(b"x", (PEER_IP, PORT))

    def xdp_attached(self) -> bool:
        return "xdp" in _ip("-d", "link", "show", "dev", self.host)

    def tc(self, what: str, direction: str = "") -> str:
        """`tc qdisc|filter show dev HOST [ingress|egress]`."""
        cmd = ["tc", what, "show", "dev", self.host] + ([direction] if direction else [])
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    def close(self) -> None:
        _ip("link", "del", self.host, check=False)
        _ip("netns", "del", self.ns, check=False)


def _mac(netns: list[str], dev: str) -> str:
    return json.loads(_ip(*netns, "-j", "link", "show", "dev", dev))[0]["address"]
