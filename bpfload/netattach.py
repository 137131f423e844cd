"""XDP and tc programs on a network interface.

XDP programs attach through an XDP link (Linux 5.9+). tc programs (SCHED_CLS) attach
through a tcx link (Linux 6.6+) on the interface's ingress or egress, as their section
says (tc/ingress, tcx/egress, ...; the bare `tc` and `classifier` sections go to
ingress), or netkit programs to a netkit device. Links detach when closed or when the
process ends, however it ends. Where the kernel has no tcx, a `tc`/`classifier`
program goes the legacy way (:mod:`.netlink`): a direct-action cls_bpf filter on a
clsact qdisc, added if the interface has none, both removed again by close() — but
not if the process is killed first, which leaves the filter behind (as with libbpf's
bpf_tc_attach).
"""

from __future__ import annotations

import errno
import socket

from . import netlink
from .errors import NOT_SUPPORTED, AttachError, SyscallError
from .links import Link, attach_error
from .programs import Program
from .sys import attrs
from .sys.constants import AttachType, Cmd, ProgType
from .sys.syscall import bpf_fd

XDP_FLAGS = {None: 0, "skb": 1 << 1, "native": 1 << 2, "hw": 1 << 3}
TC_MODES = ("auto", "tcx", "netlink")


def interface_index(ifname: str | int) -> int:
    """The index of an interface given by name (or already by index)."""
    if isinstance(ifname, int):
        return ifname
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        raise AttachError(f"no network interface '{ifname}'") from None


def attach(prog: Program, ifname: str | int, *, egress: bool | None = None,
           tc_mode: str = "auto", xdp_mode: str | None = None) -> Link:
    """Attach an XDP or tc program to the interface (see the module docstring)."""
    if prog.type == ProgType.XDP:
        return attach_xdp(prog, ifname, xdp_mode)
    if prog.type == ProgType.SCHED_CLS:
        return attach_tc(prog, ifname, egress=egress, mode=tc_mode)
    raise AttachError(f"program '{prog.name}' ({prog.section}) does not attach to an "
                      f"interface")


def attach_xdp(prog: Program, ifname: str | int, mode: str | None = None) -> Link:
    """An XDP link; `mode` 'skb' (generic), 'native' (driver) or 'hw', default: the
    driver's if it has one."""
    if mode not in XDP_FLAGS:
        raise AttachError(f"XDP mode '{mode}' is not one of skb, native, hw")
    ifindex = interface_index(ifname)
    attr = attrs.LinkCreateAttr(prog_fd=prog.fileno(), target_fd=ifindex,
                                attach_type=AttachType.XDP, flags=XDP_FLAGS[mode])
    try:
        fd = bpf_fd(Cmd.LINK_CREATE, attr, f"attaching XDP program '{prog.name}' to {ifname}")
    except SyscallError as e:
        msg = _busy(e, ifname, "an XDP program")
        if msg:
            raise AttachError(f"attaching '{prog.name}': {msg}", e.errno) from e
        raise attach_error(prog, str(ifname), e) from e
    return Link("xdp", prog, str(ifname), fd)


def _busy(e: SyscallError, ifname, what: str) -> str | None:
    if e.errno in (errno.EBUSY, errno.EEXIST):
        return f"interface {ifname} has {what} attached already"
    return None


def _tc_attach_type(prog: Program, egress: bool | None) -> int:
    if prog.attach_type in (AttachType.TCX_INGRESS, AttachType.TCX_EGRESS,
                            AttachType.NETKIT_PRIMARY, AttachType.NETKIT_PEER):
        if egress is not None and (prog.attach_type == AttachType.TCX_EGRESS) != egress:
            raise AttachError(f"program '{prog.name}' is a {prog.section} program: it "
                              f"attaches to {'egress' if not egress else 'ingress'} only")
        return prog.attach_type
    return AttachType.TCX_EGRESS if egress else AttachType.TCX_INGRESS


def attach_tc(prog: Program, ifname: str | int, *, egress: bool | None = None,
              mode: str = "auto") -> Link:
    """A tc program on the interface's ingress (or egress): through a tcx link, or
    (mode 'netlink', or 'auto' on a kernel without tcx) a cls_bpf filter."""
    if mode not in TC_MODES:
        raise AttachError(f"tc mode '{mode}' is not one of {', '.join(TC_MODES)}")
    ifindex = interface_index(ifname)
    attach_type = _tc_attach_type(prog, egress)
    legacy_ok = prog.attach_type == 0  # only tc/classifier programs can go either way
    if mode == "netlink":
        if not legacy_ok:
            raise AttachError(f"program '{prog.name}' ({prog.section}) attaches through "
                              f"tcx links only")
        return _attach_cls_bpf(prog, ifname, ifindex, attach_type == AttachType.TCX_EGRESS)
    attr = attrs.LinkCreateAttr(prog_fd=prog.fileno(), target_fd=ifindex,
                                attach_type=attach_type)
    hook = AttachType.name_of(attach_type).lower().replace("_", " ")
    try:
        fd = bpf_fd(Cmd.LINK_CREATE, attr, f"attaching '{prog.name}' to {hook} of {ifname}")
    except SyscallError as e:
        if mode == "auto" and legacy_ok and (e.errno == errno.EINVAL
                                             or e.errno in NOT_SUPPORTED):
            return _attach_cls_bpf(prog, ifname, ifindex,
                                   attach_type == AttachType.TCX_EGRESS)
        raise attach_error(prog, f"{hook} of {ifname}", e) from e
    return Link(hook.split()[0], prog, f"{ifname} {hook.split()[-1]}", fd)


def _attach_cls_bpf(prog: Program, ifname, ifindex: int, egress: bool) -> Link:
    where = f"{ifname} {'egress' if egress else 'ingress'}"
    try:
        made_qdisc = netlink.add_clsact(ifindex)
    except SyscallError as e:
        raise attach_error(prog, where, e) from e
    try:
        filt = netlink.add_bpf_filter(ifindex, egress, prog.fileno(), prog.name)
    except BaseException as e:
        if made_qdisc:
            netlink.delete_clsact(ifindex)
        if isinstance(e, SyscallError):
            raise attach_error(prog, where, e) from e
        raise

    def detach() -> None:
        try:
            netlink.delete_bpf_filter(filt)
        except SyscallError as e:
            if e.errno not in (errno.ENOENT, errno.ENODEV):  # gone with its interface
                raise
        if made_qdisc:
            try:
                netlink.delete_clsact(ifindex)
            except SyscallError as e:
                if e.errno not in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
                    raise

    return Link("tc", prog, where, None, detach=detach)
