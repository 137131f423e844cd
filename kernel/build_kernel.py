"""Build the patched test kernel (bzImage) and cache it.

Logic behind kernel/build-kernel; importable so tests can ask for the image:

    import build_kernel
    image = build_kernel.image_path(build=False)   # None if not built yet
    image = build_kernel.ensure_built(progress=print)

The cache key is a hash of the kernel source identity, the patch series, the config
fragment and this build script, so changing any of them builds a new kernel while a
second run with the same inputs returns at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import procs

HERE = Path(__file__).resolve().parent
PATCH_DIR = HERE / "patches"
FRAGMENT = HERE / "config.fragment"
#: Kernel variants: the config fragments of kernel/ merged after FRAGMENT, and whether
#: kernel/patches is applied.
VARIANTS = {
    "default": ((), True),
    # lockdep, might_sleep() checks, preemption and split page table locks (4 CPUs)
    "debug": (("config.debug",), True),
    # the same kernel without the series: what the series' cost is measured against
    "pristine": ((), False),
}
DEFAULT_SOURCE = Path("/usr/src/linux-source-6.12.tar.xz")
ARCH = "x86_64"

Progress = Callable[[str], None]

#: The objects the series changes, whose sizes a build records in sizes.txt.
SIZED_OBJECTS = ("mm/vmscan.o", "mm/rmap.o")


class BuildError(Exception):
    """A failure with a message meant for the user (no traceback)."""


def cache_root() -> Path:
    env = os.environ.get("HEATMAP_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "heatmap"


def _stderr_progress(msg: str) -> None:
    print(f"[build-kernel] {msg}", file=sys.__stderr__, flush=True)


def _quiet(msg: str) -> None:
    pass


# --------------------------------------------------------------------------- inputs


def patches() -> list[Path]:
    """The series in order, without its cover letter (0000-cover-letter.patch)."""
    return sorted(p for p in PATCH_DIR.glob("*.patch") if not p.name.startswith("0000-"))


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tarball_hash(path: Path) -> str:
    """Content hash of a tarball, memoised by (path, size, mtime) to stay instant."""
    st = path.stat()
    memo_file = cache_root() / "source-hashes.json"
    ident = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    if ident in memo:
        return memo[ident]
    digest = _sha256_file(path)
    memo[ident] = digest
    try:
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(memo, indent=1))
        tmp.replace(memo_file)
    except OSError:
        pass
    return digest


def kernel_version_of_dir(src: Path) -> str:
    try:
        text = (src / "Makefile").read_text(errors="replace")
    except OSError as e:
        raise BuildError(f"{src} is not a kernel source tree: {e}") from None
    fields = {}
    for key in ("VERSION", "PATCHLEVEL", "SUBLEVEL", "EXTRAVERSION"):
        m = re.search(rf"^{key}[ \t]*=[ \t]*(\S*)", text, re.M)
        fields[key] = m.group(1) if m else ""
    if not fields["VERSION"]:
        raise BuildError(f"{src}/Makefile has no VERSION: not a kernel source tree")
    return "{VERSION}.{PATCHLEVEL}.{SUBLEVEL}{EXTRAVERSION}".format(**fields)


def _tree_hash(tree: Path) -> str:
    """Every file's path, size and mtime below `tree` (not .git): what the build copies.

    Contents are not read (a kernel tree is 1.5 GB); an edit changes the mtime. A git
    HEAD and diff would miss untracked files, and a tree that is not a checkout has
    nothing else to go by."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(files):
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            rel = os.path.relpath(path, tree)
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _source_identity(source: Path) -> str:
    if source.is_dir():
        return (f"dir:{source.resolve()}:{kernel_version_of_dir(source)}:"
                f"{_tree_hash(source)}")
    return f"tar:{_tarball_hash(source)}"


def check_source(source: Path) -> None:
    """Fail at once, in one line, on a source that cannot be a kernel."""
    if not source.exists():
        raise BuildError(f"{source} does not exist")
    if source.is_dir():
        kernel_version_of_dir(source)  # raises unless it has a kernel Makefile
    elif not tarfile.is_tarfile(source):
        raise BuildError(f"{source} is neither a kernel source directory nor a tarball")


def fragments(variant: str) -> tuple[Path, ...]:
    try:
        return (FRAGMENT, *(HERE / name for name in VARIANTS[variant][0]))
    except KeyError:
        raise BuildError(f"unknown kernel variant {variant!r} (one of "
                         f"{', '.join(VARIANTS)})") from None


def variant_patches(variant: str) -> list[Path]:
    fragments(variant)
    return patches() if VARIANTS[variant][1] else []


#: What a patch can change without changing the kernel image: the cache key leaves these
#: files out, so that editing the series' documentation, selftests or commit messages
#: rebuilds nothing.
NOT_IN_IMAGE = ("Documentation/", "tools/testing/", "MAINTAINERS")


def image_diffs(patch_text: str) -> str:
    """The diffs of a format-patch that the kernel image depends on (those of files
    outside NOT_IN_IMAGE), without the commit message."""
    diffs = re.split(r"^(?=diff --git )", patch_text, flags=re.M)[1:]
    return "".join(d for d in diffs if not d.startswith(
        tuple(f"diff --git a/{prefix}" for prefix in NOT_IN_IMAGE)))


def build_key(source: Path, variant: str = "default") -> str:
    check_source(source)
    h = hashlib.sha256()
    h.update(_source_identity(source).encode())
    for p in variant_patches(variant):
        h.update(image_diffs(p.read_text()).encode() + b"\0")
    if not VARIANTS[variant][1]:
        h.update(b"unpatched\0")
    for frag in fragments(variant):  # the default variant hashes as it always did
        h.update(b"fragment\0" + frag.read_bytes())
    for script in (Path(__file__), HERE / "build-kernel"):
        if script.exists():
            h.update(script.name.encode() + b"\0" + script.read_bytes())
    return h.hexdigest()[:16]


def build_dir(source: Path, variant: str = "default") -> Path:
    return cache_root() / f"kernel-{build_key(source, variant)}"


def pristine_tree(source: Path = DEFAULT_SOURCE) -> Path:
    """The tarball extracted once under the cache (pristine-<hash>/), never modified:
    for reading the unpatched sources (tests apply patches to copies of its files)."""
    root = cache_root() / f"pristine-{_tarball_hash(source)[:16]}"
    done = root / ".complete"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            tree = extract(source, root, progress=_quiet)
            done.write_text(tree.name)
    return root / done.read_text()


# --------------------------------------------------------------------------- deps


def _deps():
    """tools/deps.py, the one list of what the project installs (a script, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("heatmap_deps",
                                                  HERE.parent / "tools" / "deps.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ensure_deps(source: Path | None, progress: Progress) -> Path:
    """Install missing build tools (and the default source package); return the source."""
    deps = _deps()
    wanted = deps.missing_apt(["kernel"])
    if source is not None:  # a tree or tarball of the caller's: no linux-source package
        wanted = [a for a in wanted if a.probe != str(DEFAULT_SOURCE)]
    try:
        deps.apt_install(wanted, progress)
    except deps.DepsError as e:
        raise BuildError(str(e)) from None
    source = DEFAULT_SOURCE if source is None else source
    if not source.exists():
        raise BuildError(f"kernel source {source} does not exist")
    return source


# --------------------------------------------------------------------------- steps


def _run(cmd: list[str], *, cwd: Path | None = None, log: Path | None = None,
         what: str) -> str:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    out = r.stdout + r.stderr
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{out}\n")
    if r.returncode != 0:
        tail = "\n".join(out.strip().splitlines()[-15:])
        raise BuildError(f"{what} failed (exit {r.returncode}):\n{tail}")
    return out


def extract(source: Path, dest: Path, progress: Progress) -> Path:
    """Unpack a tarball (or copy a tree) into dest; return the kernel tree inside."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if source.is_dir():
        progress(f"copying {source}")
        tree = dest / "linux"
        _run(["cp", "-a", f"{source}/.", str(tree)], what=f"copying {source}")
        return tree
    if not tarfile.is_tarfile(source):
        raise BuildError(f"{source} is neither a directory nor a tarball")
    progress(f"extracting {source.name}")
    _run(["tar", "-xf", str(source), "-C", str(dest)], what=f"extracting {source}")
    trees = [p for p in dest.iterdir() if (p / "Makefile").is_file() and (p / "mm").is_dir()]
    if len(trees) != 1:
        raise BuildError(f"{source} does not contain exactly one kernel tree")
    return trees[0]


def apply_patches(tree: Path, progress: Progress, log: Path | None = None,
                  source: Path | None = None, variant: str = "default") -> None:
    """Apply the series in order; a patch that does not apply is named in the error."""
    for p in variant_patches(variant):
        base = ["patch", "-p1", "--batch", "--forward", "-s", "-d", str(tree), "-i", str(p)]
        dry = subprocess.run([*base, "--dry-run"], capture_output=True, text=True)
        if dry.returncode != 0:
            rev = subprocess.run(
                ["patch", "-p1", "--batch", "-R", "-s", "--dry-run", "-d", str(tree), "-i", str(p)],
                capture_output=True, text=True,
            )
            if rev.returncode == 0:
                progress(f"{p.name}: already applied, skipping")
                continue
            raise BuildError(
                f"patch {p.name} does not apply to {source or tree}: "
                f"{_patch_failure(dry.stdout + dry.stderr)} (the series is made "
                "against Linux 6.12; see kernel/patches/)"
            )
        progress(f"applying {p.name}")
        _run(base, log=log, what=f"applying {p.name}")


def _patch_failure(output: str) -> str:
    """What went wrong, from patch(1)'s output, without the patch text it quotes
    (it prints the whole commit message when it cannot find a file to patch)."""
    wanted = re.compile(r"can't find file to patch|No file to patch|Hunk #\d+ FAILED|"
                        r"malformed patch|Only garbage|No such file|Reversed")
    lines = [ln.strip() for ln in output.splitlines() if wanted.search(ln)]
    missing = re.findall(r"^\|?\+\+\+ b/(\S+)", output, re.M)  # patch quotes with '|'
    if lines and lines[0].startswith(("can't find file", "No file to patch")) and missing:
        return f"it patches {missing[0]}, which the tree does not have"
    return "; ".join(dict.fromkeys(lines)) or (output.strip().splitlines() or ["?"])[-1]


def parse_fragment(path: Path = FRAGMENT) -> dict[str, str | None]:
    """CONFIG_X -> value ('y', 'm', '"str"', number) or None for '# CONFIG_X is not set'."""
    opts: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        m = re.fullmatch(r"(CONFIG_\w+)=(.*)", line)
        if m:
            opts[m.group(1)] = m.group(2)
            continue
        m = re.fullmatch(r"# (CONFIG_\w+) is not set", line)
        if m:
            opts[m.group(1)] = None
    return opts


def verify_config(config: Path, fragment: Path | tuple[Path, ...] = FRAGMENT) -> list[str]:
    """Options of the fragment(s) that did not survive olddefconfig, as messages."""
    have: dict[str, str] = {}
    for line in config.read_text().splitlines():
        m = re.fullmatch(r"(CONFIG_\w+)=(.*)", line.strip())
        if m:
            have[m.group(1)] = m.group(2)
    wanted: dict[str, str | None] = {}
    for frag in (fragment,) if isinstance(fragment, Path) else fragment:
        wanted.update(parse_fragment(frag))  # a later fragment overrides
    problems = []
    for opt, want in wanted.items():
        got = have.get(opt)
        if want is None and got is not None:
            problems.append(f"{opt} should be off but is {got}")
        elif want is not None and got != want:
            problems.append(f"{opt}={want} wanted, got {got if got is not None else 'not set'}")
    return problems


def configure(tree: Path, out: Path, progress: Progress, log: Path,
              variant: str = "default") -> None:
    frags = fragments(variant)
    names = " + ".join(f"kernel/{f.name}" for f in frags)
    progress(f"configuring: tinyconfig + {names}")
    make = ["make", "-C", str(tree), f"O={out}", f"ARCH={ARCH}", "-s"]
    _run([*make, "tinyconfig"], log=log, what="make tinyconfig")
    _run(
        [str(tree / "scripts/kconfig/merge_config.sh"), "-m", "-O", str(out),
         str(out / ".config"), *map(str, frags)],
        cwd=tree, log=log, what="merge_config.sh",
    )
    _run([*make, "olddefconfig"], log=log, what="make olddefconfig")
    problems = verify_config(out / ".config", frags)
    if problems:
        raise BuildError(
            f"config options from {names} did not survive olddefconfig "
            "(a dependency is missing or the option does not exist):\n  " + "\n  ".join(problems)
        )


def make_bzimage(tree: Path, out: Path, jobs: int, progress: Progress, log: Path) -> Path:
    cmd = ["make", "-C", str(tree), f"O={out}", f"ARCH={ARCH}", f"-j{jobs}", "bzImage"]
    progress(f"building bzImage with {jobs} jobs (several minutes; log: {log})")
    start = time.monotonic()
    last_report = start
    last_line = ""
    with open(log, "a") as logf:
        logf.write(f"$ {' '.join(cmd)}\n")
        logf.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", start_new_session=True)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                logf.write(line)
                if line.startswith("  ") and line.strip():
                    last_line = line.strip()
                now = time.monotonic()
                if now - last_report >= 30:
                    last_report = now
                    progress(f"{_fmt(now - start)} elapsed, at: {last_line}")
            rc = proc.wait()
        except BaseException:
            procs.kill_group(proc)
            raise
    if rc != 0:
        tail = procs.tail(procs.read_text(log), 25)
        raise BuildError(f"kernel build failed (exit {rc}); full log: {log}\n{tail}")
    image = out / "arch" / "x86" / "boot" / "bzImage"
    if not image.exists():
        raise BuildError(f"build finished but {image} is missing; log: {log}")
    progress(f"built in {_fmt(time.monotonic() - start)}")
    return image


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"


# --------------------------------------------------------------------------- API


def image_path(source: Path | str | None = None, *, build: bool = False,
               progress: Progress | None = None, jobs: int | None = None,
               keep_tree: bool = False, variant: str = "default") -> Path | None:
    """The cached bzImage for these inputs; built first if build=True, else None if absent."""
    if progress is None:
        progress = _stderr_progress
    src = Path(source) if source is not None else None
    if not build:
        if src is not None and not src.exists():
            raise BuildError(f"kernel source {src} does not exist")
        src = src or DEFAULT_SOURCE
        if not src.exists():
            return None  # the default source is not installed: nothing can be built
        image = build_dir(src, variant) / "bzImage"
        return image if image.exists() else None
    return ensure_built(src, progress=progress, jobs=jobs, keep_tree=keep_tree,
                        variant=variant)


def ensure_built(source: Path | str | None = None, *, progress: Progress | None = None,
                 jobs: int | None = None, keep_tree: bool = False,
                 variant: str = "default") -> Path:
    if progress is None:
        progress = _stderr_progress
    src = Path(source) if source is not None else None
    if not patches():
        raise BuildError(f"no patches found in {PATCH_DIR}")
    fragments(variant)  # an unknown variant fails before anything is installed
    src = ensure_deps(src, progress)
    bdir = build_dir(src, variant)
    image = bdir / "bzImage"
    if image.exists():
        return image
    cache_root().mkdir(parents=True, exist_ok=True)
    lock_path = bdir.with_suffix(".lock")
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            progress(f"another build of this kernel is running; waiting for {lock_path}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if image.exists():
            return image
        return _build(src, bdir, jobs or os.cpu_count() or 1, progress, keep_tree, variant)


def _build(src: Path, bdir: Path, jobs: int, progress: Progress, keep_tree: bool,
           variant: str) -> Path:
    start = time.monotonic()
    work = bdir.with_name(bdir.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    # The log lives beside the work tree so it survives a failed build's cleanup.
    log = bdir.with_name(bdir.name + ".build.log")
    log.write_text("")
    progress(f"building the patched kernel ({variant}) from {src} into {bdir}")
    try:
        tree = extract(src, work / "src", progress)
        apply_patches(tree, progress, log, source=src, variant=variant)
        out = work / "out"
        out.mkdir(exist_ok=True)
        configure(tree, out, progress, log, variant)
        built = make_bzimage(tree, out, jobs, progress, log)
    except BaseException:
        # A failed or interrupted build leaves no 2 GB tree behind (unless asked to).
        if keep_tree:
            progress(f"kept the build tree in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        raise
    tmp = bdir.with_name(bdir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    shutil.copy2(built, tmp / "bzImage")
    shutil.copy2(out / ".config", tmp / "config")
    shutil.copy2(out / "System.map", tmp / "System.map")
    # the kernel's BTF, for BPF programs built against it (vmlinux.h) off the guest
    _run(["objcopy", "-O", "binary", "--only-section=.BTF", str(out / "vmlinux"),
          str(tmp / "vmlinux.btf")], what="extracting the BTF")
    # code sizes, for comparing variants (bench/series_cost.py)
    sizes = _run(["size", str(out / "vmlinux"), *(str(out / o) for o in SIZED_OBJECTS)],
                 what="size")
    (tmp / "sizes.txt").write_text(sizes.replace(str(out) + "/", ""))
    shutil.move(str(log), str(tmp / "build.log"))
    (tmp / "meta.json").write_text(json.dumps({
        "source": str(src),
        "version": kernel_version_of_dir(tree),
        "patches": [p.name for p in variant_patches(variant)],
        "variant": variant,
        "build_seconds": round(time.monotonic() - start, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }, indent=1))
    if bdir.exists():
        shutil.rmtree(bdir)
    tmp.rename(bdir)
    if keep_tree:
        progress(f"kept the build tree in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return bdir / "bzImage"


def _jobs(text: str) -> int:
    import argparse

    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of jobs")
    return n


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="build-kernel",
        description="Build the heatmap test kernel (Linux 6.12 + kernel/patches, tinyconfig + "
        "kernel/config.fragment) and cache it under ${HEATMAP_CACHE:-~/.cache/heatmap}.",
    )
    ap.add_argument("source", nargs="?", help=f"kernel source tarball or directory "
                    f"(default: {DEFAULT_SOURCE}, installed with apt if missing)")
    ap.add_argument("--print-path", action="store_true",
                    help="print only the image path on stdout (building first if needed)")
    ap.add_argument("--cached-only", action="store_true",
                    help="never build: print the image path, or exit 3 if it is not built")
    ap.add_argument("-j", "--jobs", type=_jobs, help="parallel make jobs (default: all cores)")
    ap.add_argument("--keep-tree", action="store_true", help="keep the build tree after success")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="default",
                    help="debug: also kernel/config.debug (lockdep, sleep-in-atomic checks, "
                    "preemption, 4 CPUs)")
    args = ap.parse_args(argv)
    progress = _quiet if args.quiet else _stderr_progress
    try:
        if args.cached_only:
            image = image_path(args.source, build=False, variant=args.variant)
            if image is None:
                print("build-kernel: the kernel for the current patches/config is not built "
                      "(run kernel/build-kernel)", file=sys.stderr)
                return 3
        else:
            image = ensure_built(args.source, progress=progress, jobs=args.jobs,
                                 keep_tree=args.keep_tree, variant=args.variant)
    except BuildError as e:
        print(f"build-kernel: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("build-kernel: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"build-kernel: error: {e}", file=sys.stderr)
        return 1
    if args.print_path or args.cached_only:
        print(image)
    else:
        progress(f"kernel image: {image}")
        print(image)
    return 0
