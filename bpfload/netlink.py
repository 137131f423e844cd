"""The few rtnetlink requests legacy tc attachment needs: a clsact qdisc on an
interface, and a cls_bpf filter (direct-action) on its ingress or egress hook, each
added and deleted (include/uapi/linux/rtnetlink.h, pkt_sched.h, pkt_cls.h).

Messages are struct nlmsghdr, struct tcmsg, then attributes (struct rtattr: u16
length, u16 type, the data, padded to 4 bytes). Every request asks for an ACK; the
kernel's answer is an NLMSG_ERROR carrying 0 or a negative errno.
"""

from __future__ import annotations

import errno
import socket
import struct

from .errors import SyscallError

RTM_NEWQDISC = 36
RTM_DELQDISC = 37
RTM_NEWTFILTER = 44
RTM_DELTFILTER = 45
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_ECHO = 0x8
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

TCA_KIND = 1
TCA_OPTIONS = 2
TCA_BPF_FD = 6
TCA_BPF_NAME = 7
TCA_BPF_FLAGS = 8
TCA_BPF_FLAG_ACT_DIRECT = 1

TC_H_CLSACT = 0xFFFFFFF1
TC_H_MIN_INGRESS = 0xFFF2
TC_H_MIN_EGRESS = 0xFFF3
CLSACT_HANDLE = 0xFFFF0000  # TC_H_MAKE(TC_H_CLSACT, 0)
ETH_P_ALL = 0x0003

_NLMSGHDR = struct.Struct("=IHHII")
_TCMSG = struct.Struct("=BxxxiIII")
_RTATTR = struct.Struct("=HH")
_ERRMSG = struct.Struct("=i")


def _attr(kind: int, data: bytes) -> bytes:
    raw = _RTATTR.pack(_RTATTR.size + len(data), kind) + data
    return raw + bytes(-len(raw) % 4)


class TcMessage:
    """The struct tcmsg fields of a request or an answer."""

    def __init__(self, ifindex: int, handle: int = 0, parent: int = 0, info: int = 0):
        self.ifindex = ifindex
        self.handle = handle
        self.parent = parent
        self.info = info

    def pack(self) -> bytes:
        return _TCMSG.pack(socket.AF_UNSPEC, self.ifindex, self.handle, self.parent,
                           self.info)

    @classmethod
    def unpack(cls, data: bytes) -> TcMessage:
        _family, ifindex, handle, parent, info = _TCMSG.unpack_from(data)
        return cls(ifindex, handle, parent, info)


def request(msg_type: int, flags: int, tc: TcMessage, attrs: bytes, what: str
            ) -> list[TcMessage]:
    """Send one rtnetlink request and wait for its ACK; returns the tcmsgs the kernel
    echoed (with NLM_F_ECHO). SyscallError with the kernel's errno on a refusal."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        body = tc.pack() + attrs
        seq = 1
        sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type,
                                 flags | NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body)
        echoed = []
        while True:
            data = sock.recv(65536)
            pos = 0
            while pos + _NLMSGHDR.size <= len(data):
                length, rtype, _flags, rseq, _pid = _NLMSGHDR.unpack_from(data, pos)
                payload = data[pos + _NLMSGHDR.size:pos + length]
                pos += (length + 3) & ~3
                if rseq != seq:
                    continue
                if rtype == NLMSG_ERROR:
                    (err,) = _ERRMSG.unpack_from(payload)
                    if err:
                        raise SyscallError(what, -err)
                    return echoed
                if rtype == NLMSG_DONE:
                    return echoed
                if len(payload) >= _TCMSG.size:
                    echoed.append(TcMessage.unpack(payload))
                if length < _NLMSGHDR.size:
                    return echoed


def add_clsact(ifindex: int) -> bool:
    """Add a clsact qdisc to the interface; False if it has one already."""
    tc = TcMessage(ifindex, CLSACT_HANDLE, TC_H_CLSACT)
    try:
        request(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, tc, _attr(TCA_KIND, b"clsact\0"),
                f"adding a clsact qdisc to interface {ifindex}")
    except SyscallError as e:
        if e.errno == errno.EEXIST:
            return False
        raise
    return True


def delete_clsact(ifindex: int) -> None:
    tc = TcMessage(ifindex, CLSACT_HANDLE, TC_H_CLSACT)
    request(RTM_DELQDISC, 0, tc, _attr(TCA_KIND, b"clsact\0"),
            f"deleting the clsact qdisc of interface {ifindex}")


def hook_parent(egress: bool) -> int:
    return (TC_H_CLSACT & 0xFFFF0000) | (TC_H_MIN_EGRESS if egress else TC_H_MIN_INGRESS)


def add_bpf_filter(ifindex: int, egress: bool, prog_fd: int, name: str) -> TcMessage:
    """A direct-action cls_bpf filter running program `prog_fd`; returns the filter's
    identity (handle, priority) as the kernel chose it."""
    options = (_attr(TCA_BPF_FD, struct.pack("=I", prog_fd))
               + _attr(TCA_BPF_NAME, name.encode() + b"\0")
               + _attr(TCA_BPF_FLAGS, struct.pack("=I", TCA_BPF_FLAG_ACT_DIRECT)))
    tc = TcMessage(ifindex, 0, hook_parent(egress), socket.htons(ETH_P_ALL))
    echoed = request(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO, tc,
                     _attr(TCA_KIND, b"bpf\0") + _attr(TCA_OPTIONS, options),
                     f"adding a tc filter for '{name}' on interface {ifindex}")
    for msg in echoed:
        if msg.handle:
            return msg
    raise SyscallError(f"adding a tc filter for '{name}': the kernel did not say which",
                       errno.EPROTO)


def delete_bpf_filter(filt: TcMessage) -> None:
    tc = TcMessage(filt.ifindex, filt.handle, filt.parent, filt.info)
    request(RTM_DELTFILTER, 0, tc, _attr(TCA_KIND, b"bpf\0"),
            f"deleting tc filter {filt.handle:#x} of interface {filt.ifindex}")
