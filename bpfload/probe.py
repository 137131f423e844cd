"""`python -m bpfload probe`: what the running kernel supports, for kernel bring-up in
CI, as `bpftool feature probe` reports it.

Program types, map types and helpers are probed as libbpf probes them
(libbpf_probes.c): a two-instruction program of each type (TRACING and LSM are
supported when the kernel says "attach_btf_id 1 is not a function", EXT when it says
"Cannot replace kernel functions", STRUCT_OPS when it answers ENOTSUPP), a one-entry
map of each type, and per program type a program calling each helper (unsupported
when the verifier says "invalid func", "unknown func" or "program of this type cannot
use helper"), except the three that write to the kernel log when loaded
(trace_printk, trace_vprintk, probe_write_user), which bpftool too leaves out unless
asked. The names come from the kernel's own BTF (enum bpf_prog_type,
bpf_map_type, bpf_func_id), so a newer kernel's additions are probed too.

Attach kinds are bpfload's: each is tried for real where that leaves nothing behind
(a raw tracepoint, a tracepoint perf event, a kprobe on a system call), or by the
errno the kernel gives a request it must refuse for another reason (a cgroup link on
a directory that is no cgroup: EBADF; a tcx link on interface 0: ENODEV). A
kprobe-multi link is made for real on getpid's function and closed.
"""

from __future__ import annotations

import ctypes
import errno
import os

from . import asm
from .errors import ENOTSUPP, BPFLoadError, SyscallError
from .programs import LoadOptions, prog_load
from .sys import attrs
from .sys.constants import AttachType, Cmd, MapFlags, MapType, ProgFlags, ProgType
from .sys.syscall import FD, address, bpf_fd

_LOG_SIZE = 4096
_BPF_PREFIX = {"prog": "BPF_PROG_TYPE_", "map": "BPF_MAP_TYPE_", "func": "BPF_FUNC_"}
#: program types helpers cannot be probed for (libbpf_probe_bpf_helper)
_NO_HELPER_PROBE = frozenset({ProgType.TRACING, ProgType.EXT, ProgType.LSM,
                              ProgType.STRUCT_OPS})
#: helpers whose mere loading writes a warning to the kernel log: bpftool probes them
#: only in its "full" mode, and neither lists nor probes them here
_NOISY_HELPERS = frozenset({"trace_printk", "trace_vprintk", "probe_write_user"})


def _kernel_enum(kernel_btf, name: str, prefix: str, fallback: dict[str, int]
                 ) -> dict[str, int]:
    """lower-case name -> value of a kernel enum (ours when there is no kernel BTF)."""
    values = None
    if kernel_btf is not None:
        try:
            from .btf import format as btf_format

            spec = kernel_btf.vmlinux
            tid = spec.find_one(name, btf_format.KIND_ENUM)
            values = {v.name: v.value for v in spec[tid].values} if tid else None
        except BPFLoadError:
            values = None
    if values is None:
        values = {prefix + k: v for k, v in fallback.items()}
    return {k[len(prefix):].lower(): v for k, v in values.items()
            if k.startswith(prefix) and not k.startswith("__") and not k.endswith("UNSPEC")
            and "MAX" not in k[len(prefix):]}


def _load(prog_type: int, insns: list[asm.Insn], log: bool = False,
          **opts) -> tuple[bool, int, str]:
    """(loaded, errno, log) of one probe program (closed at once)."""
    buf = ctypes.create_string_buffer(_LOG_SIZE) if log else None
    o = LoadOptions(prog_type, **opts)
    try:
        prog_load("probe", asm.encode(insns), o, 1 if log else 0, buf).close()
        return True, 0, buf.value.decode("utf-8", "replace") if buf is not None else ""
    except SyscallError as e:
        return False, e.errno, buf.value.decode("utf-8", "replace") if buf is not None else ""


def _exit(r0: int = 0) -> list[asm.Insn]:
    return [asm.mov64_imm(0, r0), asm.Insn(asm.OP_EXIT)]


def _prog_options(prog_type: int) -> tuple[dict, int, str | None]:
    """libbpf's probe_prog_load: load options, the errno and log words that mean yes."""
    attach = {ProgType.CGROUP_SOCK_ADDR: AttachType.CGROUP_INET4_CONNECT,
              ProgType.CGROUP_SOCKOPT: AttachType.CGROUP_GETSOCKOPT,
              ProgType.SK_LOOKUP: AttachType.SK_LOOKUP,
              ProgType.LIRC_MODE2: AttachType.LIRC_MODE2,
              ProgType.NETFILTER: AttachType.NETFILTER}
    if prog_type in attach:
        return {"expected_attach_type": attach[prog_type]}, 0, None
    if prog_type in (ProgType.TRACING, ProgType.LSM):
        at = AttachType.TRACE_FENTRY if prog_type == ProgType.TRACING else \
            AttachType.MODIFY_RETURN
        return ({"expected_attach_type": at, "attach_btf_id": 1}, errno.EINVAL,
                "attach_btf_id 1 is not a function")
    if prog_type == ProgType.EXT:
        return {"attach_btf_id": 1}, errno.EINVAL, "Cannot replace kernel functions"
    if prog_type == ProgType.SYSCALL:
        return {"flags": ProgFlags.SLEEPABLE}, 0, None
    if prog_type == ProgType.STRUCT_OPS:
        return {}, ENOTSUPP, None
    return {}, 0, None


def prog_type_supported(prog_type: int) -> bool:
    opts, want_errno, want_words = _prog_options(prog_type)
    ok, err, log = _load(prog_type, _exit(), log=want_words is not None, **opts)
    if not want_errno:
        return ok
    return not ok and err == want_errno and (want_words is None or want_words in log)


def helper_supported(prog_type: int, helper: int) -> bool | None:
    """Whether programs of the type can call the helper (None: cannot be probed)."""
    if prog_type in _NO_HELPER_PROBE:
        return None
    opts, _, _ = _prog_options(prog_type)
    call = asm.Insn(asm.OP_CALL, 0, 0, 0, helper)
    ok, _err, log = _load(prog_type, [call, asm.Insn(asm.OP_EXIT)], log=True, **opts)
    if ok:
        return True
    return not any(words in log for words in ("invalid func ", "unknown func ",
                                              "program of this type cannot use helper "))


def _local_storage_btf() -> FD:
    """libbpf's BTF for probing local storage maps: int, struct bpf_spin_lock, and
    struct val { int cnt; struct bpf_spin_lock l; }."""
    from .btf import types as btf_types
    from .btf.encode import encode
    from .btf.load import load_btf

    types = [btf_types.Int("int", 4, 1),
             btf_types.Struct("bpf_spin_lock", 4, [btf_types.Member("val", 1, 0)]),
             btf_types.Struct("val", 8, [btf_types.Member("cnt", 1, 0),
                                         btf_types.Member("l", 2, 32)])]
    return load_btf(encode(types), "the local storage probe's BTF")


def map_type_supported(map_type: int) -> bool:
    from .maps import Map

    key, value, entries, flags, kw = 4, 4, 1, 0, {}
    want_errno = 0
    held: list = []
    if map_type == MapType.STACK_TRACE:
        value = 8
    elif map_type == MapType.LPM_TRIE:
        key, value, flags = 8, 8, MapFlags.NO_PREALLOC
    elif map_type in (MapType.CGROUP_STORAGE, MapType.PERCPU_CGROUP_STORAGE):
        key, value, entries = 16, 8, 0  # struct bpf_cgroup_storage_key
    elif map_type in (MapType.QUEUE, MapType.STACK, MapType.BLOOM_FILTER):
        key = 0
    elif map_type in (MapType.SK_STORAGE, MapType.INODE_STORAGE, MapType.TASK_STORAGE,
                      MapType.CGRP_STORAGE):
        try:
            btf = _local_storage_btf()
        except BPFLoadError:
            return False
        held.append(btf)
        value, entries, flags = 8, 0, MapFlags.NO_PREALLOC
        kw = {"btf_fd": btf.fileno(), "btf_key_type": 1, "btf_value_type": 3}
    elif map_type in (MapType.RINGBUF, MapType.USER_RINGBUF):
        key, value, entries = 0, 0, os.sysconf("SC_PAGE_SIZE")
    elif map_type == MapType.STRUCT_OPS:
        kw = {"btf_vmlinux_value_type": 1}
        want_errno = ENOTSUPP
    elif map_type == MapType.ARENA:
        key, value, flags = 0, 0, MapFlags.MMAPABLE
    elif map_type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
        try:
            inner = Map.create("probe_inner", MapType.HASH, 4, 4, 1)
        except BPFLoadError:
            return False
        held.append(inner)
        kw = {"inner_map_fd": inner.fileno()}
    try:
        Map.create("probe", map_type, key, value, entries, flags, **kw).close()
        return not want_errno
    except SyscallError as e:
        return bool(want_errno) and e.errno == want_errno
    finally:
        for h in held:
            h.close()


# --- attach kinds ------------------------------------------------------------------


def _link_errno(attr: attrs.LinkCreateAttr) -> int:
    """The errno of a LINK_CREATE the kernel must refuse (0 if it did not)."""
    try:
        bpf_fd(Cmd.LINK_CREATE, attr).close()
    except SyscallError as e:
        return e.errno
    return 0


def _with_prog(prog_type: int, attach_type: int, use, r0: int = 0, **opts):
    """use(program fd) for a loaded probe program; False if it does not load."""
    o = LoadOptions(prog_type, expected_attach_type=attach_type, **opts)
    try:
        prog = prog_load("probe", asm.encode(_exit(r0)), o, 0)
    except SyscallError:
        return False
    with prog:
        return use(prog.fileno())


def _raw_tp() -> bool:
    def use(fd: int) -> bool:
        name = ctypes.create_string_buffer(b"sys_enter")
        try:
            bpf_fd(Cmd.RAW_TRACEPOINT_OPEN,
                   attrs.RawTracepointAttr(name=address(name), prog_fd=fd)).close()
        except SyscallError:
            return False
        return True
    return _with_prog(ProgType.RAW_TRACEPOINT, 0, use)


def _tracepoint() -> bool:
    from .links import tracepoint_id
    from .sys.constants import PERF_TYPE_TRACEPOINT
    from .sys.syscall import perf_event_open

    try:
        tp = tracepoint_id("raw_syscalls", "sys_enter")
        perf_event_open(attrs.PerfEventAttr(type=PERF_TYPE_TRACEPOINT, config=tp,
                                            sample_period=1)).close()
    except BPFLoadError:
        return False
    return True


def _btf_target(kernel_btf, attach_type: int, name: str, prog_type: int = ProgType.TRACING
                ) -> bool:
    """A tracing program on `name` (a kernel function, or btf_trace_ tracepoint) loads
    and links."""
    from .btf import format as btf_format

    kind = btf_format.KIND_TYPEDEF if name.startswith("btf_trace_") else btf_format.KIND_FUNC
    try:
        found = kernel_btf.find_id(name, kind)
    except BPFLoadError:
        return False
    if found is None:
        return False
    btf_id, _module = found

    def use(fd: int) -> bool:
        return not _link_errno(attrs.LinkCreateAttr(prog_fd=fd, attach_type=attach_type))
    return _with_prog(prog_type, attach_type, use, attach_btf_id=btf_id)


def _getpid_function() -> str:
    """The kernel function of getpid(2), a system call every kernel traces."""
    from .features import SYSCALL_PREFIX

    prefix = SYSCALL_PREFIX.get(os.uname().machine, "")
    return f"__{prefix}_sys_getpid" if prefix else "sys_getpid"


def _kprobe() -> bool:
    from .links import open_kprobe

    try:
        open_kprobe(_getpid_function(), pid=os.getpid(), cpu=-1).close()
    except BPFLoadError:
        return False
    return True


def _kprobe_multi(attach_type: int) -> bool:
    """A kprobe-multi link on getpid's function, made and closed (a link on a missing
    function says too little: ESRCH, but EINVAL on a kernel without CONFIG_MODULES)."""
    def use(fd: int) -> bool:
        syms = (ctypes.c_char_p * 1)(_getpid_function().encode())
        attr = attrs.LinkCreateAttr(prog_fd=fd, attach_type=attach_type)
        attr.kprobe_multi.cnt = 1
        attr.kprobe_multi.syms = ctypes.addressof(syms)
        return _link_errno(attr) == 0
    return _with_prog(ProgType.KPROBE, attach_type, use)


def _pmu(name: str, fmt: str | None = None) -> bool:
    base = f"/sys/bus/event_source/devices/{name}"
    return os.path.exists(f"{base}/type") and (fmt is None or
                                               os.path.exists(f"{base}/format/{fmt}"))


def _cgroup_link() -> bool:
    def use(fd: int) -> bool:
        root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return _link_errno(attrs.LinkCreateAttr(
                prog_fd=fd, target_fd=root, attach_type=AttachType.CGROUP_INET_INGRESS)) \
                == errno.EBADF
        finally:
            os.close(root)
    return _with_prog(ProgType.CGROUP_SKB, AttachType.CGROUP_INET_INGRESS, use, r0=1)


def _netdev_link(prog_type: int, attach_type: int, r0: int = 0) -> bool:
    """A link on interface index 0 is refused with ENODEV where the link kind exists."""
    def use(fd: int) -> bool:
        return _link_errno(attrs.LinkCreateAttr(prog_fd=fd, target_fd=0,
                                                attach_type=attach_type)) == errno.ENODEV
    return _with_prog(prog_type, attach_type, use, r0=r0)


def _xdp_link(kernel_btf) -> bool:
    from .btf import format as btf_format

    try:
        has = kernel_btf.find_id("bpf_xdp_link_attach", btf_format.KIND_FUNC) is not None
    except BPFLoadError:
        has = False
    return has and prog_type_supported(ProgType.XDP)


def _iter(kernel_btf) -> bool:
    return _btf_target(kernel_btf, AttachType.TRACE_ITER, "bpf_iter_task")


def attach_kinds(kernel_btf) -> dict[str, bool]:
    from . import features

    kprobe = _kprobe()
    uprobe = _pmu("uprobe")
    return {
        "tracepoint": _tracepoint(),
        "raw_tp": _raw_tp(),
        "tp_btf": _btf_target(kernel_btf, AttachType.TRACE_RAW_TP, "btf_trace_sys_enter"),
        "fentry": _btf_target(kernel_btf, AttachType.TRACE_FENTRY, "bpf_fentry_test1"),
        "fexit": _btf_target(kernel_btf, AttachType.TRACE_FEXIT, "bpf_fentry_test1"),
        "fmod_ret": _btf_target(kernel_btf, AttachType.MODIFY_RETURN,
                                "bpf_modify_return_test"),
        "lsm": _btf_target(kernel_btf, AttachType.LSM_MAC, "bpf_lsm_file_open",
                           ProgType.LSM),
        "iter": _iter(kernel_btf),
        "kprobe": kprobe,
        "kretprobe": kprobe and _pmu("kprobe", "retprobe"),
        "ksyscall": kprobe and features.syscall_wrapper(),
        "kprobe.multi": _kprobe_multi(AttachType.TRACE_KPROBE_MULTI),
        "kprobe.session": _kprobe_multi(AttachType.TRACE_KPROBE_SESSION),
        "uprobe": uprobe,
        "uretprobe": uprobe and _pmu("uprobe", "retprobe"),
        "uprobe.multi": features.uprobe_multi_link(),
        "usdt": uprobe and _pmu("uprobe", "ref_ctr_offset") and features.bpf_cookie(),
        "perf_event link (BPF cookie)": features.bpf_cookie(),
        "cgroup link": _cgroup_link(),
        "xdp link": _xdp_link(kernel_btf),
        "tcx": _netdev_link(ProgType.SCHED_CLS, AttachType.TCX_INGRESS),
        "netkit": _netdev_link(ProgType.SCHED_CLS, AttachType.NETKIT_PRIMARY),
        "struct_ops link": features.struct_ops_link(),
    }


def struct_ops_types(kernel_btf) -> list[str]:
    """The struct_ops types the kernel offers (its struct bpf_struct_ops_NAME)."""
    from .btf import format as btf_format
    from .struct_ops import VALUE_PREFIX

    try:
        spec = kernel_btf.vmlinux
    except BPFLoadError:
        return []
    names = set()
    for tid in spec.ids():
        if spec.kind_of(tid) == btf_format.KIND_STRUCT:
            name = spec[tid].name
            if name.startswith(VALUE_PREFIX) and spec.find_one(
                    name[len(VALUE_PREFIX):], btf_format.KIND_STRUCT):
                names.add(name[len(VALUE_PREFIX):])
    return sorted(names)


def probe(kernel_btf=None) -> dict:
    """Everything `probe` reports, as the JSON document it prints."""
    from .btf.kernel import KernelBTF

    kb = kernel_btf or KernelBTF()
    try:
        try:
            kb.vmlinux  # noqa: B018 - read once: no BTF means our own names
            btf = kb
        except BPFLoadError:
            btf = None
        prog_types = {n: prog_type_supported(v) for n, v in
                      _kernel_enum(btf, "bpf_prog_type", _BPF_PREFIX["prog"],
                                   ProgType.items()).items()}
        map_types = {n: map_type_supported(v) for n, v in
                     _kernel_enum(btf, "bpf_map_type", _BPF_PREFIX["map"],
                                  MapType.items()).items()}
        helper_ids = _kernel_enum(btf, "bpf_func_id", _BPF_PREFIX["func"], {})
        values = _kernel_enum(btf, "bpf_prog_type", _BPF_PREFIX["prog"], ProgType.items())
        helpers = {}
        for name, ok in prog_types.items():
            if ok and values[name] not in _NO_HELPER_PROBE:
                helpers[name] = [f"bpf_{h}" for h, hid in helper_ids.items()
                                 if h not in _NOISY_HELPERS
                                 and helper_supported(values[name], hid)]
        return {"kernel": os.uname().release, "program_types": prog_types,
                "map_types": map_types, "helpers": helpers,
                "attach_kinds": attach_kinds(kb),
                "struct_ops_types": struct_ops_types(kb) if btf is not None else []}
    finally:
        if kernel_btf is None:
            kb.close()


def main(json_output: bool = False) -> int:
    report = probe()
    if json_output:
        import json

        print(json.dumps(report, indent=1))
        return 0
    from .table import print_table

    print(f"kernel {report['kernel']}")
    rows = []
    for section, key in (("prog", "program_types"), ("map", "map_types"),
                         ("attach", "attach_kinds")):
        for name, ok in report[key].items():
            rows.append([section, name, "yes" if ok else "no", "", ""])
    for name, helpers in report["helpers"].items():
        rows.append(["helpers", name, str(len(helpers)), "", " ".join(helpers)])
    rows.append(["struct_ops", "types", str(len(report["struct_ops_types"])), "",
                 " ".join(report["struct_ops_types"])])
    print_table(rows)
    return 0
