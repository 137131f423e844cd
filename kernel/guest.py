"""Boot the patched test kernel under QEMU and run one command inside.

The guest's root is the host's / over virtio-9p (read-only), with tmpfs on /tmp, /run
and /dev/shm, a writable scratch share (a host directory, mounted at GUEST_SCRATCH),
and proc, sysfs, devtmpfs, debugfs, tracefs, bpffs and cgroup2 mounted. The command runs
as root in the given cwd with exactly the given environment plus HEATMAP_IN_GUEST=1,
PYTHONDONTWRITEBYTECODE=1 and HEATMAP_SCRATCH. Its stdout+stderr come back as the
output; kernel console messages go to a separate log (see GuestResult.console).

    import guest
    rc, out = guest.run(["python3", "-c", "print(1)"], timeout=120)

QEMU is always killed when run() returns or raises (also on Ctrl-C), and dies with
this process (PR_SET_PDEATHSIG). KVM is used only if a bounded probe boot succeeded
(cached per host kernel and QEMU), or when HEATMAP_ACCEL=kvm|tcg says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

# kernel/ is on sys.path wherever this module is used: the directory of the script
# run (kernel/run-guest, python3 kernel/guest.py), or put there by the importer
# (tests/kernel_scripts.py, demo/run, bench/guestbench.py)
import build_kernel
from procs import kill_group, read_text, tail

HERE = Path(__file__).resolve().parent
GUEST_INIT = HERE / "guest-init"
GUEST_SCRATCH = "/run/heatmap"
QEMU = "qemu-system-x86_64"
DEFAULT_MEM = "2G"
#: vCPUs for the debug kernel: its NR_CPUS (kernel/config.debug), so page tables have
#: split locks
DEBUG_CPUS = 4
DEFAULT_TIMEOUT = 600.0
KVM_PROBE_TIMEOUT = 30.0
PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "PYENV_ROOT", "PYENV_VERSION",
                   "PYTHONPATH", "VIRTUAL_ENV")


class GuestError(Exception):
    """The guest could not run the command; .console holds the console log tail."""

    def __init__(self, message: str, console: str = "", output: str = ""):
        super().__init__(message)
        self.console = console
        self.output = output

    def __str__(self) -> str:
        msg = super().__str__()
        if self.console:
            msg += "\n--- guest console (tail) ---\n" + self.console
        return msg


class GuestUnavailable(GuestError):
    """No guest on this machine: QEMU or the kernel image is missing."""


class GuestTimeout(GuestError):
    """The command did not finish in time (QEMU was killed)."""


class GuestCrash(GuestError):
    """QEMU exited without the command's exit status (panic, failed boot, ...)."""


class GuestResult(tuple):
    """(returncode, output) with the console log and timing as attributes."""

    returncode: int
    output: str
    console: str
    seconds: float
    accel: str

    def __new__(cls, returncode: int, output: str, console: str, seconds: float, accel: str):
        self = super().__new__(cls, (returncode, output))
        self.returncode, self.output = returncode, output
        self.console, self.seconds, self.accel = console, seconds, accel
        return self


def parse_mem(mem: str | int) -> int:
    """Memory size in MiB from '2G', '3072M', '3072' (MiB) or an int (MiB)."""
    if isinstance(mem, int):
        return mem
    m = re.fullmatch(r"\s*(\d+)\s*([MmGg]?)i?[Bb]?\s*", str(mem))
    if not m:
        raise GuestError(f"bad memory size {mem!r} (use e.g. 2G or 3072M)")
    n = int(m.group(1))
    return n * 1024 if m.group(2).lower() == "g" else n


def qemu_binary() -> str:
    path = shutil.which(QEMU)
    if not path:
        raise GuestUnavailable(f"{QEMU} not found (Debian: apt-get install qemu-system-x86)")
    return path


def kernel_image(build: bool = True, progress=None, variant: str = "default") -> Path:
    try:
        image = build_kernel.image_path(build=build, progress=progress, variant=variant)
    except build_kernel.BuildError as e:
        raise GuestUnavailable(f"cannot build the test kernel: {e}") from None
    if image is None:
        raise GuestUnavailable(f"the test kernel is not built (run kernel/build-kernel "
                               f"--variant {variant})")
    return image


# --------------------------------------------------------------------------- accel


def _kvm_usable_device() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def _accel_cache_file(qemu: str) -> Path:
    st = os.stat(qemu)
    ident = f"{os.uname().release}:{qemu}:{st.st_size}:{st.st_mtime_ns}"
    key = hashlib.sha256(ident.encode()).hexdigest()[:12]
    return build_kernel.cache_root() / f"accel-{key}.json"


def choose_accel(kernel: Path, qemu: str) -> str:
    """'kvm' if KVM boots our kernel here (probed once, cached), else 'tcg'."""
    forced = os.environ.get("HEATMAP_ACCEL", "").strip().lower()
    if forced in ("kvm", "tcg"):
        return forced
    if forced:
        raise GuestError(f"HEATMAP_ACCEL must be kvm or tcg, not {forced!r}")
    if not _kvm_usable_device():
        return "tcg"
    cache = _accel_cache_file(qemu)
    with contextlib.suppress(OSError, ValueError, KeyError):
        return json.loads(cache.read_text())["accel"]
    verdict = "tcg"
    with contextlib.suppress(GuestError):
        res = _run(["true"], kernel=kernel, accel="kvm", timeout=KVM_PROBE_TIMEOUT,
                   mem="512M", numa_nodes=1, env=None, cwd="/", scratch=None)
        if res.returncode == 0:
            verdict = "kvm"
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"accel": verdict, "probed_at": time.time()}))
    return verdict


# --------------------------------------------------------------------------- run


def _guest_env(env: dict[str, str] | None) -> dict[str, str]:
    out = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
    out.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    out.setdefault("HOME", "/root")
    out.setdefault("LANG", "C.UTF-8")
    out["TERM"] = "dumb"
    out["TMPDIR"] = "/tmp"
    if env:
        out.update({str(k): str(v) for k, v in env.items()})
    out["HEATMAP_IN_GUEST"] = "1"
    out["PYTHONDONTWRITEBYTECODE"] = "1"
    out["HEATMAP_SCRATCH"] = GUEST_SCRATCH
    return out


def _write_command(scratch: Path, argv: list[str], env: dict[str, str], cwd: str) -> None:
    for k in env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise GuestError(f"bad environment variable name {k!r}")
    assigns = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    script = (
        "# written by kernel/guest.py\n"
        f"cd {shlex.quote(cwd)} || exit 127\n"
        f"exec env -i {assigns} {' '.join(shlex.quote(a) for a in argv)}\n"
    )
    (scratch / "cmd.sh").write_text(script)
    # Directories under the host's /tmp that the guest must still see over its tmpfs.
    keep = set()
    for p in (cwd, str(HERE)):
        parts = Path(p).resolve().parts
        if len(parts) > 2 and parts[1] == "tmp":
            keep.add(parts[2])
    (scratch / "keep-tmp").write_text("".join(f"{d}\n" for d in sorted(keep)))


def _numa_args(mem_mib: int, nodes: int, cpus: int = 0) -> list[str]:
    """Memory split evenly over the nodes, and CPUs too (the first nodes get one more
    when they do not divide; nodes beyond the CPUs are memory-only)."""
    if nodes <= 1:
        return []
    args = []
    per = mem_mib // nodes
    first = 0
    for i in range(nodes):
        size = per if i < nodes - 1 else mem_mib - per * (nodes - 1)
        n = cpus // nodes + (i < cpus % nodes)
        node = f"node,nodeid={i},memdev=mem{i}"
        if n:
            node += f",cpus={first}" + (f"-{first + n - 1}" if n > 1 else "")
        first += n
        args += ["-object", f"memory-backend-ram,id=mem{i},size={size}M", "-numa", node]
    return args


def qemu_command(kernel: Path, scratch: Path, console: Path, *, accel: str, mem_mib: int,
                 numa_nodes: int, cpus: int, icount: bool = False) -> list[str]:
    init = GUEST_INIT
    cmdline = " ".join([
        "console=ttyS0", "root=hostroot", "rootfstype=9p",
        "rootflags=trans=virtio,version=9p2000.L,msize=512000,cache=loose", "ro",
        f"init={init}", "panic=-1", "oops=panic", "mitigations=off", "8250.nr_uarts=1",
        "transparent_hugepage=madvise",
    ])
    cmd = [
        qemu_binary(), "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-machine", f"pc,accel={accel}", "-cpu", "host" if accel == "kvm" else "max",
        "-smp", str(cpus), "-m", f"{mem_mib}M",
        *_numa_args(mem_mib, numa_nodes, cpus),
        "-kernel", str(kernel), "-append", cmdline,
        "-chardev", f"file,id=con,path={console}", "-serial", "chardev:con",
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,"
                   "multidevs=remap",
        "-virtfs", f"local,path={scratch},mount_tag=heatmap-scratch,security_model=none",
        "-device", "virtio-rng-pci",
    ]
    if icount:  # the guest's clock counts instructions: timings that host load cannot skew
        cmd += ["-icount", "shift=0,sleep=off"]
    return cmd


def _pdeathsig() -> None:
    # Make QEMU die with the runner even if the runner is SIGKILLed.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run(argv, *, kernel: Path, accel: str, timeout: float, mem, numa_nodes: int, env,
         cwd, scratch, console_path=None, cpus: int | None = None,
         icount: bool = False) -> GuestResult:
    if not argv:
        raise GuestError("no command given")
    if not GUEST_INIT.exists():
        raise GuestUnavailable(f"{GUEST_INIT} is missing")
    mem_mib = parse_mem(mem)
    numa_nodes = max(1, int(numa_nodes))
    cpus = max(cpus or 0, numa_nodes, 1)
    if mem_mib < 256 * numa_nodes:
        raise GuestError(f"{mem_mib} MiB is too little memory for {numa_nodes} node(s)")
    cwd = os.path.abspath(cwd or os.getcwd())
    own_scratch = scratch is None
    scratch = Path(tempfile.mkdtemp(prefix="heatmap-guest-")) if own_scratch else Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    for name in ("out", "rc", "rc.tmp"):
        with contextlib.suppress(FileNotFoundError):
            (scratch / name).unlink()
    console = Path(console_path) if console_path else scratch / "console.log"
    proc = None
    start = time.monotonic()
    try:
        _write_command(scratch, [str(a) for a in argv], _guest_env(env), cwd)
        cmd = qemu_command(kernel, scratch, console, accel=accel, mem_mib=mem_mib,
                           numa_nodes=numa_nodes, cpus=cpus, icount=icount)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_pdeathsig)
        try:
            qemu_out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise GuestTimeout(
                f"guest command did not finish within {timeout:g}s ({accel}); QEMU killed",
                console=tail(read_text(console), 60), output=read_text(scratch / "out"),
            ) from None
        elapsed = time.monotonic() - start
        text = read_text(console)
        rc_text = read_text(scratch / "rc").strip()
        output = read_text(scratch / "out")
        if not rc_text.lstrip("-").isdigit():
            qemu_msg = qemu_out.decode(errors="replace").strip()
            why = f"QEMU exited with {proc.returncode}"
            if qemu_msg:
                why += f": {tail(qemu_msg, 10)}"
            if "Kernel panic" in text:
                why = "the guest kernel panicked; " + why
            raise GuestCrash(f"guest ended without running the command to completion ({why})",
                             console=tail(text, 60), output=output)
        return GuestResult(int(rc_text), output, text, elapsed, accel)
    finally:
        if proc is not None and proc.poll() is None:
            kill_group(proc)
        if own_scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def run(argv, *, timeout: float = DEFAULT_TIMEOUT, mem: str | int = DEFAULT_MEM,
        numa_nodes: int = 2, env: dict[str, str] | None = None, cwd: str | None = None,
        kernel: str | Path | None = None, accel: str | None = None,
        scratch: str | Path | None = None, console_path: str | Path | None = None,
        cpus: int | None = None, build: bool = True, progress=None,
        variant: str = "default", icount: bool = False) -> GuestResult:
    """Run argv in a fresh guest; return (returncode, output) (a GuestResult).

    Raises GuestUnavailable (no QEMU/kernel), GuestTimeout or GuestCrash. scratch is a
    host directory shared read-write with the guest at GUEST_SCRATCH (a temporary one
    is made and removed if not given). build=False never builds the kernel. variant
    picks the kernel (build_kernel.VARIANTS) when kernel is not given; the debug one
    boots with DEBUG_CPUS vCPUs unless cpus says otherwise. icount=True runs TCG with
    -icount: the guest's clock then advances with the instructions it executes, so
    time measured in the guest is a deterministic measure of work, whatever the host's
    load (benchmarks comparing kernels use it).
    """
    qemu = qemu_binary()
    image = Path(kernel) if kernel else kernel_image(build=build, progress=progress,
                                                     variant=variant)
    if cpus is None and variant == "debug":
        cpus = DEBUG_CPUS
    if not image.exists():
        raise GuestUnavailable(f"kernel image {image} does not exist")
    accel = "tcg" if icount else accel or choose_accel(image, qemu)
    return _run(argv, kernel=image, accel=accel, timeout=timeout, mem=mem,
                numa_nodes=numa_nodes, env=env, cwd=cwd, scratch=scratch,
                console_path=console_path, cpus=cpus, icount=icount)


def _positive(kind):
    def parse(text: str):
        import argparse

        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    ap = argparse.ArgumentParser(
        prog="run-guest",
        description="Run a command as root in a QEMU guest booted on the patched test kernel "
        "(host / read-only over 9p, debugfs/tracefs/bpffs/cgroup2 mounted). Prints the "
        "command's output and exits with its status (124 on timeout, 125 if the guest "
        "could not run it).",
    )
    ap.add_argument("--kernel", help="bzImage to boot (default: the one kernel/build-kernel "
                    "builds; built first if missing)")
    ap.add_argument("--variant", choices=sorted(build_kernel.VARIANTS), default="default",
                    help="which kernel build-kernel builds: default, debug (lockdep etc., "
                    f"{DEBUG_CPUS} vCPUs) or pristine (without the series)")
    ap.add_argument("--timeout", type=_positive(float), default=DEFAULT_TIMEOUT,
                    help="seconds for the whole run, the guest's boot included (7-15 s "
                    "under TCG; default 600)")
    ap.add_argument("--mem", default=DEFAULT_MEM, help="guest memory, e.g. 2G or 3072M")
    ap.add_argument("--numa-nodes", type=_positive(int), default=2,
                    help="NUMA nodes (default 2)")
    ap.add_argument("--cpus", type=_positive(int),
                    help="vCPUs (default: one per NUMA node; the test kernel is built with "
                    "CONFIG_NR_CPUS=2 and brings up at most 2, the debug one 4; CPUs are shared "
                    "out over the nodes, further nodes are memory-only)")
    ap.add_argument("--scratch", metavar="DIR",
                    help=f"host directory shared read-write with the guest at {GUEST_SCRATCH} "
                    f"($HEATMAP_SCRATCH there) and kept after the run, to get files out; "
                    f"the runner's own cmd.sh, out, rc and console.log live there too "
                    f"(default: a temporary one, removed)")
    ap.add_argument("--cwd", help="working directory in the guest (default: current)")
    ap.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE",
                    help="environment variable for the command (repeatable)")
    ap.add_argument("--accel", choices=["kvm", "tcg"], help="override the KVM probe")
    ap.add_argument("--console", help="also save the guest console log to this file")
    ap.add_argument("--show-console", action="store_true",
                    help="print the guest console log to stderr after the run")
    ap.add_argument("--time", action="store_true", help="print the wall time to stderr")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="command to run (after --)")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("no command given")
    env = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--env wants NAME=VALUE, not {item!r}")
        env[name] = value

    def progress(msg: str) -> None:
        print(f"[build-kernel] {msg}", file=sys.stderr, flush=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        res = run(command, timeout=args.timeout, mem=args.mem, numa_nodes=args.numa_nodes,
                  env=env, cwd=args.cwd, kernel=args.kernel, accel=args.accel,
                  scratch=args.scratch, console_path=args.console, cpus=args.cpus,
                  progress=progress, variant=args.variant)
    except GuestTimeout as e:
        if e.output:
            sys.stdout.write(e.output)
        # the console tail says why a boot hung, and only --show-console asks for it
        print(f"run-guest: {e if args.show_console else e.args[0]}", file=sys.stderr)
        return 124
    except GuestError as e:
        if e.output:
            sys.stdout.write(e.output)
        print(f"run-guest: {e}", file=sys.stderr)
        return 125
    except KeyboardInterrupt:
        print("run-guest: interrupted; QEMU killed", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"run-guest: error: {e}", file=sys.stderr)
        return 125
    sys.stdout.write(res.output)
    sys.stdout.flush()
    if args.show_console:
        print(res.console, file=sys.stderr)
    if args.time:
        print(f"run-guest: {res.seconds:.1f}s ({res.accel})", file=sys.stderr)
    return res.returncode
