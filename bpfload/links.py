"""Attaching loaded programs to their hooks. A Link owns the attachment: closing it (or
the process exiting) detaches the program.

attach() goes by the program's section (the ATTACH_* kind of its row in
:mod:`.sections`, after libbpf's attach functions) and, for the kinds libbpf leaves to
the caller, by its program type: cgroup programs need a cgroup, XDP and tc programs an
interface. Here: fentry/fexit/fmod_ret/lsm and tp_btf (BPF_LINK_CREATE with the BTF
target fixed at load), raw tracepoints (BPF_RAW_TRACEPOINT_OPEN), tracepoints, kprobes
and ksyscalls (a perf event: tracefs id or the kprobe PMU), kprobe.multi and
kprobe.session links, cgroup links and iterators. Uprobes are in :mod:`.uprobes`, USDT
in :mod:`.usdt`, XDP and tc in :mod:`.netattach`, struct_ops maps in
:mod:`.struct_ops`.
"""

from __future__ import annotations

import ctypes
import errno
import os

from . import sections
from .errors import NOT_SUPPORTED, AttachError, SyscallError
from .programs import Program
from .sys import attrs
from .sys.constants import (
    PERF_EVENT_IOC_ENABLE,
    PERF_EVENT_IOC_SET_BPF,
    PERF_SAMPLE_RAW,
    PERF_TYPE_TRACEPOINT,
    AttachType,
    Cmd,
    ProgType,
)
from .sys.syscall import FD, address, bpf_fd, ioctl, perf_event_open

TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
PMU_DIR = "/sys/bus/event_source/devices"


class Link:
    """An attachment. close() detaches it: it closes the link (or perf event) and
    whatever else the attachment holds, after running the detach step an attachment
    that is not a kernel link needs (a struct_ops map's unregistration, a tc filter's
    removal)."""

    def __init__(self, kind: str, program: Program | None, target: str, fd: FD | None,
                 perf_fd: FD | None = None, *, holds: tuple = (), detach=None):
        self.kind = kind
        self.program = program
        self.target = target
        self.fd = fd
        self.perf_fd = perf_fd
        self._holds = [x for x in (fd, perf_fd, *holds) if x is not None]
        self._detach = detach
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._detach is not None:
                self._detach()
        finally:
            for held in self._holds:
                held.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        what = self.program.name if self.program is not None else self.kind
        return f"Link({self.kind} {self.target!r} -> {what!r})"


#: What programs that no section names a hook for attach to (libbpf leaves these to
#: the caller): a cgroup, or a network interface.
NEEDS_CGROUP = "cgroup"
NEEDS_INTERFACE = "interface"

_CGROUP_TYPES = frozenset({ProgType.CGROUP_SKB, ProgType.CGROUP_SOCK, ProgType.CGROUP_SOCK_ADDR,
                           ProgType.CGROUP_SYSCTL, ProgType.CGROUP_SOCKOPT,
                           ProgType.CGROUP_DEVICE, ProgType.SOCK_OPS})


def needs(prog: Program) -> str | None:
    """NEEDS_CGROUP, NEEDS_INTERFACE, or None for a program its section places."""
    if prog.type in _CGROUP_TYPES or (prog.type == ProgType.LSM
                                      and prog.attach_type == AttachType.LSM_CGROUP):
        return NEEDS_CGROUP
    if (prog.type == ProgType.XDP and prog.attach_type in (0, AttachType.XDP)) or \
            prog.type == ProgType.SCHED_CLS:
        return NEEDS_INTERFACE
    return None


#: kinds whose programs libbpf's skeleton attaches only when the section names the
#: hook (a bare SEC("kprobe") is attached by the caller, with a target)
_TARGET_FROM_SECTION = frozenset({
    sections.ATTACH_RAW_TP, sections.ATTACH_TRACEPOINT, sections.ATTACH_KPROBE,
    sections.ATTACH_KRETPROBE, sections.ATTACH_KPROBE_MULTI,
    sections.ATTACH_KRETPROBE_MULTI, sections.ATTACH_KPROBE_SESSION,
    sections.ATTACH_KSYSCALL, sections.ATTACH_KRETSYSCALL, sections.ATTACH_UPROBE,
    sections.ATTACH_URETPROBE, sections.ATTACH_UPROBE_MULTI,
    sections.ATTACH_URETPROBE_MULTI, sections.ATTACH_USDT})


def attaches_by_itself(prog: Program) -> bool:
    """Whether attach() needs nothing but the program (libbpf's auto-attach)."""
    kind = prog.attach_kind
    if kind in (sections.ATTACH_NONE, sections.ATTACH_RUN, sections.ATTACH_FREPLACE, "",
                None):
        return False
    return bool(prog.attach_target) or kind not in _TARGET_FROM_SECTION


def attach(prog: Program, target: str | None = None, *, cgroup: str | int | None = None,
           ifname: str | int | None = None) -> Link:
    """Attach `prog` the way its section name says (target overrides the name's part);
    cgroup programs to `cgroup` (a path or an open fd), XDP and tc programs to the
    interface `ifname` (a name or an index). USDT probes need their object
    (BPFObject.attach)."""
    kind = prog.attach_kind
    target = target if target is not None else prog.attach_target
    where = f"attaching program '{prog.name}'"
    need = needs(prog)
    if need == NEEDS_CGROUP:
        if cgroup is None:
            raise AttachError(f"{where}: a {prog.section} program attaches to a cgroup: "
                              f"give one (--cgroup PATH)")
        return attach_cgroup(prog, cgroup)
    if need == NEEDS_INTERFACE:
        if ifname is None:
            raise AttachError(f"{where}: a {prog.section} program attaches to a network "
                              f"interface: give one (--ifname NAME)")
        from . import netattach

        return netattach.attach(prog, ifname)
    if kind in (sections.ATTACH_TRACING, sections.ATTACH_TP_BTF):
        return attach_tracing(prog, target)
    if kind == sections.ATTACH_ITER:
        return attach_iter(prog)
    if kind in _TARGET_FROM_SECTION and not target:
        raise AttachError(f"{where}: section '{prog.section}' does not name what to attach "
                          f"to (libbpf's {kind}/... form), and no target was given")
    if kind == sections.ATTACH_RAW_TP:
        return attach_raw_tracepoint(prog, target)
    if kind == sections.ATTACH_TRACEPOINT:
        return attach_tracepoint(prog, target)
    if kind in (sections.ATTACH_KPROBE, sections.ATTACH_KRETPROBE):
        return attach_kprobe(prog, target, ret=kind == sections.ATTACH_KRETPROBE)
    if kind in (sections.ATTACH_KSYSCALL, sections.ATTACH_KRETSYSCALL):
        return attach_ksyscall(prog, target, ret=kind == sections.ATTACH_KRETSYSCALL)
    if kind in (sections.ATTACH_KPROBE_MULTI, sections.ATTACH_KRETPROBE_MULTI,
                sections.ATTACH_KPROBE_SESSION):
        return attach_kprobe_multi(prog, target, ret=kind == sections.ATTACH_KRETPROBE_MULTI)
    if kind in (sections.ATTACH_UPROBE, sections.ATTACH_URETPROBE,
                sections.ATTACH_UPROBE_MULTI, sections.ATTACH_URETPROBE_MULTI):
        from . import uprobes

        return uprobes.attach_from_section(prog, target)
    if kind == sections.ATTACH_USDT:
        raise AttachError(f"{where}: a usdt program is attached through its object "
                          f"(BPFObject.attach or attach_usdt), which holds its specs")
    if kind == sections.ATTACH_RUN:
        raise AttachError(f"{where}: {prog.section} programs are not attached; run them "
                          f"with test_run()")
    if kind == sections.ATTACH_FREPLACE:
        raise AttachError(f"{where}: freplace programs replace a function of another "
                          f"loaded program; bpfload does not attach them")
    raise AttachError(f"{where}: section '{prog.section}' does not say where to attach")


def attach_tracing(prog: Program, target: str = "") -> Link:
    """fentry/fexit/fmod_ret/lsm/tp_btf: the target was fixed at load time (attach_btf_id)."""
    attr = attrs.LinkCreateAttr(prog_fd=prog.fileno(), attach_type=prog.attach_type)
    try:
        fd = bpf_fd(Cmd.LINK_CREATE, attr, f"attaching '{prog.name}' to {target}")
    except SyscallError as e:
        if e.errno != errno.EINVAL:
            raise attach_error(prog, target, e) from e
        # kernels before 5.13 attach tracing programs through RAW_TRACEPOINT_OPEN
        try:
            fd = bpf_fd(Cmd.RAW_TRACEPOINT_OPEN, attrs.RawTracepointAttr(prog_fd=prog.fileno()),
                        f"attaching '{prog.name}' to {target}")
        except SyscallError as e2:
            raise attach_error(prog, target, e2) from e2
    return Link(prog.attach_kind, prog, target, fd)


def attach_raw_tracepoint(prog: Program, name: str) -> Link:
    if not name:
        raise AttachError(f"attaching '{prog.name}': no raw tracepoint name in section "
                          f"'{prog.section}'")
    buf = ctypes.create_string_buffer(name.encode())
    attr = attrs.RawTracepointAttr(name=address(buf), prog_fd=prog.fileno())
    try:
        fd = bpf_fd(Cmd.RAW_TRACEPOINT_OPEN, attr, f"attaching '{prog.name}' to raw "
                                                   f"tracepoint {name}")
    except SyscallError as e:
        if e.errno == errno.ENOENT:
            raise AttachError(f"attaching '{prog.name}': the kernel has no raw tracepoint "
                              f"'{name}'", e.errno) from e
        raise attach_error(prog, name, e) from e
    return Link(sections.ATTACH_RAW_TP, prog, name, fd)


def tracefs() -> str:
    for d in TRACEFS_DIRS:
        if os.path.isdir(os.path.join(d, "events")):
            return d
    raise AttachError("tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)")


def tracepoint_id(category: str, name: str) -> int:
    path = os.path.join(tracefs(), "events", category, name, "id")
    try:
        with open(path) as f:
            return int(f.read())
    except FileNotFoundError:
        raise AttachError(f"the kernel has no tracepoint {category}/{name}") from None
    except (OSError, ValueError) as e:
        raise AttachError(f"cannot read {path}: {e}") from None


def attach_tracepoint(prog: Program, target: str) -> Link:
    category, _, name = target.partition("/")
    if not category or not name:
        raise AttachError(f"attaching '{prog.name}': tracepoint section needs CATEGORY/NAME, "
                          f"got '{target}'")
    pattr = attrs.PerfEventAttr(type=PERF_TYPE_TRACEPOINT, config=tracepoint_id(category, name),
                                sample_period=1, sample_type=PERF_SAMPLE_RAW, wakeup_events=1)
    pfd = perf_event_open(pattr, what=f"opening tracepoint {target}")
    return attach_perf_event(prog, pfd, "tracepoint", target)


def pmu_type(pmu: str) -> int:
    """The perf event type of the kprobe or uprobe PMU."""
    try:
        with open(os.path.join(PMU_DIR, pmu, "type")) as f:
            return int(f.read())
    except OSError:
        raise AttachError(f"the kernel has no {pmu} PMU (CONFIG_{pmu.upper()}_EVENTS "
                          f"off?)") from None


def retprobe_bit(pmu: str) -> int:
    """The config bit that makes a kprobe/uprobe PMU event a return probe."""
    try:
        with open(os.path.join(PMU_DIR, pmu, "format", "retprobe")) as f:
            return int(f.read().strip().split(":")[1])
    except (OSError, IndexError, ValueError):
        return 0


def attach_kprobe(prog: Program, function: str, ret: bool = False) -> Link:
    if not function:
        raise AttachError(f"attaching '{prog.name}': no function in section '{prog.section}'")
    func, _, off = function.partition("+")
    try:
        offset = int(off, 0) if off else 0
    except ValueError:
        raise AttachError(f"attaching '{prog.name}': '{off}' in '{function}' is not an "
                          f"offset (kprobe/FUNCTION+OFFSET)") from None
    kind = "kretprobe" if ret else "kprobe"
    try:
        pfd = open_kprobe(func, offset, ret)
    except SyscallError as e:
        if e.errno == errno.ENOENT:
            raise AttachError(f"attaching '{prog.name}': no kernel function '{func}' to "
                              f"probe", e.errno) from e
        raise
    return attach_perf_event(prog, pfd, kind, function)


def open_kprobe(func: str, offset: int = 0, ret: bool = False, pid: int = -1,
                cpu: int = 0) -> FD:
    """A perf event of the kprobe PMU on `func` (+offset), not yet given a program."""
    name = ctypes.create_string_buffer(func.encode())
    pattr = attrs.PerfEventAttr(type=pmu_type("kprobe"), sample_period=1, wakeup_events=1,
                                config1=address(name), config2=offset)
    if ret:
        pattr.config = 1 << retprobe_bit("kprobe")
    kind = "kretprobe" if ret else "kprobe"
    return perf_event_open(pattr, pid=pid, cpu=cpu, what=f"opening {kind} on {func}")


def attach_ksyscall(prog: Program, syscall: str, ret: bool = False) -> Link:
    """ksyscall/NAME: a kprobe on the system call's entry point, which is
    __<arch>_sys_NAME where the kernel wraps system calls, else sys_NAME (libbpf)."""
    from .features import SYSCALL_PREFIX, syscall_wrapper

    prefix = SYSCALL_PREFIX.get(os.uname().machine)
    func = f"__{prefix}_sys_{syscall}" if prefix and syscall_wrapper() else f"sys_{syscall}"
    link = attach_kprobe(prog, func, ret)
    link.kind = "kretsyscall" if ret else "ksyscall"
    return link


def attach_kprobe_multi(prog: Program, pattern: str, ret: bool = False,
                        cookies: list[int] | None = None) -> Link:
    """kprobe.multi/PATTERN (and kretprobe.multi, kprobe.session): one link on every
    kernel function the glob matches in available_filter_functions, as libbpf
    resolves it; a name without wildcards is passed as it is."""
    names = kernel_functions(pattern) if any(c in pattern for c in "*?[") else [pattern]
    syms = (ctypes.c_char_p * len(names))(*(n.encode() for n in names))
    attach_type = (AttachType.TRACE_KPROBE_SESSION
                   if prog.attach_type == AttachType.TRACE_KPROBE_SESSION
                   else AttachType.TRACE_KPROBE_MULTI)
    attr = attrs.LinkCreateAttr(prog_fd=prog.fileno(), attach_type=attach_type)
    attr.kprobe_multi.flags = KPROBE_MULTI_RETURN if ret else 0
    attr.kprobe_multi.cnt = len(names)
    attr.kprobe_multi.syms = ctypes.addressof(syms)
    if cookies is not None:
        cookie_buf = (ctypes.c_uint64 * len(names))(*cookies)
        attr.kprobe_multi.cookies = ctypes.addressof(cookie_buf)
    kind = prog.attach_kind
    try:
        fd = bpf_fd(Cmd.LINK_CREATE, attr, f"attaching '{prog.name}' to {kind} {pattern}")
    except SyscallError as e:
        missing = _missing_functions(names, e.errno)
        if missing:
            raise AttachError(f"attaching '{prog.name}': no kernel function "
                              f"'{missing[0]}' to probe", e.errno) from e
        raise attach_error(prog, pattern, e) from e
    return Link(kind, prog, pattern, fd)


def _missing_functions(names: list[str], err: int) -> list[str]:
    """The names a failed kprobe-multi link could not find. The kernel says ESRCH,
    except that one without CONFIG_MODULES (6.12) takes a missing name for address 0
    and says EINVAL: the names are looked up in tracefs."""
    if err not in (errno.ESRCH, errno.ENOENT, errno.EINVAL):
        return []
    missing = _not_traceable(names)
    return names if not missing and err != errno.EINVAL else missing


def _not_traceable(names: list[str]) -> list[str]:
    try:
        known = set(_traceable_functions())
    except AttachError:
        return []
    return [n for n in names if n not in known]


KPROBE_MULTI_RETURN = 1  # BPF_F_KPROBE_MULTI_RETURN


def kernel_functions(pattern: str) -> list[str]:
    """Kernel functions kprobes can attach to whose names match the glob, in the order
    tracefs lists them, each once."""
    import fnmatch

    names = dict.fromkeys(n for n in _traceable_functions() if fnmatch.fnmatchcase(n, pattern))
    if not names:
        raise AttachError(f"no kernel function matches '{pattern}' (in "
                          f"{os.path.join(tracefs(), 'available_filter_functions')})")
    return list(names)


def _traceable_functions() -> list[str]:
    """available_filter_functions' names (a module's are followed by [module])."""
    path = os.path.join(tracefs(), "available_filter_functions")
    try:
        with open(path) as f:
            return [line.split(maxsplit=1)[0] for line in f if line.strip()]
    except OSError as e:
        raise AttachError(f"cannot read {path}: {e.strerror}") from None


def attach_cgroup(prog: Program, cgroup: str | int) -> Link:
    """A cgroup link: the program runs for every task in the cgroup (and its
    descendants) at the hook its expected attach type names. `cgroup` is a cgroup v2
    directory or an open descriptor of one."""
    if not prog.attach_type and prog.type != ProgType.CGROUP_DEVICE:
        raise AttachError(f"attaching '{prog.name}': section '{prog.section}' does not say "
                          f"which cgroup hook (use e.g. cgroup_skb/ingress)")
    what = cgroup if isinstance(cgroup, str) else f"cgroup fd {cgroup}"
    if isinstance(cgroup, str):
        try:
            cg_fd = FD(os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        except OSError as e:
            raise AttachError(f"attaching '{prog.name}': cannot open cgroup {cgroup}: "
                              f"{e.strerror}") from None
    else:
        cg_fd = None
    try:
        attr = attrs.LinkCreateAttr(prog_fd=prog.fileno(),
                                    target_fd=cg_fd.fileno() if cg_fd else cgroup,
                                    attach_type=prog.attach_type)
        try:
            fd = bpf_fd(Cmd.LINK_CREATE, attr, f"attaching '{prog.name}' to {what}")
        except SyscallError as e:
            if e.errno == errno.EBADF:
                raise AttachError(f"attaching '{prog.name}': {what} is not a cgroup v2 "
                                  f"directory", e.errno) from e
            raise attach_error(prog, str(what), e) from e
    finally:
        if cg_fd is not None:
            cg_fd.close()  # the link holds the cgroup
    return Link("cgroup", prog, str(what), fd)


class IterLink(Link):
    """An iterator link; read() runs the iterator once and returns what it wrote."""

    def open(self) -> FD:
        """A new iterator over the link (BPF_ITER_CREATE): read it to its end."""
        attr = attrs.IterCreateAttr(link_fd=self.fd.fileno())
        return bpf_fd(Cmd.ITER_CREATE, attr, f"creating an iterator of '{self.program.name}'")

    def read(self) -> bytes:
        out = bytearray()
        with self.open() as it:
            while True:
                try:
                    chunk = os.read(it.fileno(), 65536)
                except InterruptedError:
                    continue
                except OSError as e:
                    raise SyscallError(f"reading iterator '{self.program.name}'",
                                       e.errno or 0) from None
                if not chunk:
                    return bytes(out)
                out += chunk


def attach_iter(prog: Program, map_fd: int | None = None) -> IterLink:
    """iter/NAME: an iterator link (the target was fixed at load); a map-element
    iterator (iter/bpf_map_elem and the like) walks the map `map_fd`."""
    attr = attrs.LinkCreateAttr(prog_fd=prog.fileno(), attach_type=AttachType.TRACE_ITER)
    if map_fd is not None:
        info = attrs.IterMapInfo(map_fd=map_fd)
        attr.iter.iter_info = ctypes.addressof(info)
        attr.iter.iter_info_len = ctypes.sizeof(info)
    try:
        fd = bpf_fd(Cmd.LINK_CREATE, attr, f"attaching iterator '{prog.name}'")
    except SyscallError as e:
        # no map: EINVAL, or (6.12's map-element iterators) EBADF for map fd 0
        if e.errno in (errno.EINVAL, errno.EBADF) and map_fd is None \
                and "map" in prog.attach_target:
            raise AttachError(f"attaching iterator '{prog.name}': a {prog.attach_target} "
                              f"iterator walks a map: give one", e.errno) from e
        raise attach_error(prog, prog.attach_target, e) from e
    return IterLink("iter", prog, prog.attach_target, fd)


def attach_perf_event(prog: Program, pfd: FD, kind: str, target: str, cookie: int = 0) -> Link:
    """A link from `prog` to the perf event `pfd` (which the Link then owns)."""
    attr = attrs.LinkCreateAttr(prog_fd=prog.fileno(), target_fd=pfd.fileno(),
                                attach_type=AttachType.PERF_EVENT, perf_event_cookie=cookie)
    try:
        fd = bpf_fd(Cmd.LINK_CREATE, attr, f"attaching '{prog.name}' to {kind} {target}")
        return Link(kind, prog, target, fd, perf_fd=pfd)
    except SyscallError as e:
        if e.errno not in NOT_SUPPORTED and e.errno != errno.EINVAL:
            pfd.close()
            raise attach_error(prog, target, e) from e
    if cookie:
        pfd.close()
        raise AttachError(f"attaching '{prog.name}' to {kind} {target}: this kernel has no "
                          f"perf links, so no BPF cookie (Linux 5.15+)")
    try:  # kernels before 5.15: the perf event owns the attachment
        ioctl(pfd.fileno(), PERF_EVENT_IOC_SET_BPF, prog.fileno(), "PERF_EVENT_IOC_SET_BPF")
        ioctl(pfd.fileno(), PERF_EVENT_IOC_ENABLE, 0, "PERF_EVENT_IOC_ENABLE")
    except SyscallError as e:
        pfd.close()
        raise attach_error(prog, target, e) from e
    return Link(kind, prog, target, pfd)


def attach_error(prog: Program, target: str, e: SyscallError) -> AttachError:
    """The AttachError for a refused attach call (raise it `from e`)."""
    msg = f"attaching program '{prog.name}' to {target or prog.section}: {e.errname}"
    if e.hint:
        msg += f": {e.hint}"
    elif e.errno in NOT_SUPPORTED:
        msg += ": the kernel cannot attach this program type here"
    return AttachError(msg, e.errno)
