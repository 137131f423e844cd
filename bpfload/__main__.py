"""python -m bpfload: does this object load on this kernel? what does it support?

    python -m bpfload show OBJ
    python -m bpfload load OBJ [OBJ ...] [--attach] [--json] [--set VAR=VALUE ...]
    python -m bpfload probe [--json]
"""

from __future__ import annotations

import _signal  # signal's C half: built in, so this runs before any import can be hit

if __name__ == "__main__" and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    # Until main() can release what it creates, Ctrl-C just ends the process (there
    # is nothing to release yet) rather than printing a traceback from an import.
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)

import sys

USAGE_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    args = _quick_parse(argv) or _parser().parse_args(argv)
    from .errors import BPFLoadError, VerifierError

    try:
        if _signal.getsignal(_signal.SIGINT) == _signal.SIG_DFL:
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)
        status = args.func(args)
        sys.stdout.flush()  # a full disk or closed pipe is reported here, not at exit
        return status
    except VerifierError as e:
        print(f"bpfload: error: {e}", file=sys.stderr)
        if args.log and e.log:
            print(e.log, file=sys.stderr)
        elif e.log:
            print("bpfload: (--log prints the verifier's whole log)", file=sys.stderr)
        return 1
    except BPFLoadError as e:
        print(f"bpfload: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bpfload: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        from .stdout import silence_stdout

        silence_stdout()
        return 0
    except OSError as e:  # what is left: writing the output (to a full disk, say)
        from .stdout import silence_stdout

        silence_stdout()
        where = e.filename or "the output"
        print(f"bpfload: error: cannot write {where}: {e.strerror or e}", file=sys.stderr)
        return 1


class _Args:
    """What argparse's Namespace would hold for the same command line."""

    def __init__(self, command: str, objects: list[str]):
        self.command = command
        self.func = _show if command == "show" else _load
        self.log = False
        if command == "show":
            self.object = objects[0]
        else:
            self.objects = objects
            self.attach = False
            self.json = False
            self.set: list[str] = []
            self.program: list[str] | None = None
            self.btf: str | None = None
            self.pin_root: str | None = None
            self.cgroup: str | None = None
            self.ifname: str | None = None


_LOAD_FLAGS = {"--attach": "attach", "--log": "log", "--json": "json"}
_LOAD_VALUES = {"--set": "set", "--program": "program", "--btf": "btf",
                "--pin-root": "pin_root", "--cgroup": "cgroup", "--ifname": "ifname"}


def _quick_parse(argv: list[str]) -> _Args | None:
    """Parse the common, well-formed command lines without importing argparse.

    argparse and what it pulls in (re, gettext, locale, shutil) cost about a fifth
    of a warm `load`. Anything unusual (help, abbreviations, `--opt=value`, errors)
    returns None and goes to argparse, which owns usage and error messages.
    """
    if len(argv) < 2 or argv[0] not in ("show", "load") or argv[1].startswith("-"):
        return None
    if argv[0] == "show":
        return _Args("show", argv[1:]) if len(argv) == 2 else None
    objects = []
    rest = iter(argv[1:])
    for a in rest:
        if a.startswith("-"):
            break
        objects.append(a)
    else:
        a = None
    args = _Args("load", objects)
    while a is not None:
        if a in _LOAD_FLAGS:
            setattr(args, _LOAD_FLAGS[a], True)
        elif a in _LOAD_VALUES:
            value = next(rest, None)
            if value is None or value.startswith("-"):
                return None
            dest = _LOAD_VALUES[a]
            if dest in ("set", "program"):
                setattr(args, dest, (getattr(args, dest) or []) + [value])
            else:
                setattr(args, dest, value)
        else:
            return None
        a = next(rest, None)
    return args


def _parser():
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):  # one line, like every other error of ours
            self.exit(USAGE_ERROR, f"bpfload: error: {message} (see {self.prog} --help)\n")

    p = Parser(prog="python -m bpfload",
               description="Load clang-built BPF objects with pure Python.")
    sub = p.add_subparsers(dest="command", required=True)

    show = sub.add_parser("show", help="print what an object contains (no root needed)")
    show.add_argument("object")
    show.set_defaults(func=_show, log=False)

    load = sub.add_parser("load", help="load every map and program into the running kernel")
    load.add_argument("objects", nargs="+", metavar="OBJ",
                      help="one or more objects, loaded one after the other in this process")
    load.add_argument("--attach", action="store_true",
                      help="attach the programs, print what they send through ring and "
                      "perf buffers, and hold them until Ctrl-C")
    load.add_argument("--cgroup", metavar="PATH",
                      help="with --attach: the cgroup (v2 directory) cgroup programs attach to")
    load.add_argument("--ifname", metavar="NAME",
                      help="with --attach: the network interface XDP and tc programs attach "
                      "to")
    load.add_argument("--json", action="store_true",
                      help="print JSON, one object per line, instead of text")
    load.add_argument("--set", action="append", default=[], metavar="VAR=VALUE",
                      help="set a global variable before load (repeatable); VALUE is an "
                      "integer, a float, a JSON list or object for arrays and structs, "
                      "else text")
    load.add_argument("--program", action="append", metavar="NAME",
                      help="load only these programs (repeatable; default: all)")
    load.add_argument("--btf", metavar="PATH",
                      help="kernel BTF to resolve against (default /sys/kernel/btf/vmlinux)")
    load.add_argument("--pin-root", metavar="DIR",
                      help="where maps declared LIBBPF_PIN_BY_NAME are pinned, or found "
                      "pinned and reused (default /sys/fs/bpf)")
    load.add_argument("--log", action="store_true",
                      help="on a verifier rejection print its whole log")
    load.set_defaults(func=_load)

    probe = sub.add_parser("probe", help="what the running kernel supports: program types, "
                           "map types, helpers, attach kinds (like bpftool feature probe)")
    probe.add_argument("--json", action="store_true", help="print one JSON document")
    probe.set_defaults(func=_probe, log=False)
    return p


def _probe(args) -> int:
    from .probe import main

    return main(json_output=args.json)


def _parse_value(text: str):
    """--set's VALUE: an integer (any base), a float, a JSON list or object (arrays and
    structs), else the text itself (char arrays)."""
    if text[:1] in ("[", "{"):
        import json

        try:
            return json.loads(text)
        except ValueError as e:
            raise ValueError(f"'{text}' is not valid JSON ({e})") from None
    for conv in (lambda s: int(s, 0), float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _load(args) -> int:
    from .load_command import run

    if args.btf is not None:
        _check_btf_file(args.btf)
    return run(args, _parse_value, _STOP_SIGNALS)


_STOP_SIGNALS = {_signal.SIGINT, _signal.SIGTERM}


def _check_btf_file(path: str) -> None:
    """--btf is read only if an object needs kernel types: check it up front, so that a
    wrong path is an error every time, not only for some objects."""
    from .errors import BPFLoadError

    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise BPFLoadError(f"--btf {path}: {e.strerror}") from None
    if head[:2] not in (b"\x9f\xeb", b"\xeb\x9f") and head != b"\x7fELF":
        raise BPFLoadError(f"--btf {path}: neither raw BTF nor an ELF file with .BTF")


def _show(args) -> int:
    from .elf_reader import read
    from .sys.constants import MapType, ProgType
    from .table import count as _n
    from .table import print_table as _print_table

    obj = read(args.object)
    btf = obj.btf
    print(f"object {obj.name} ({obj.path})")
    print(f"license {obj.license or '(none)'}")
    if btf is not None:
        print(f"btf {btf.count} types")
    rows = []
    for p in obj.programs.values():
        target = f" -> {p.attach_target}" if p.attach_target else ""
        if p.sdef is None:
            target += " (unknown section: cannot be loaded; --program can leave it out)"
        elif not p.autoload:
            target += " (not loaded unless named with --program)"
        calls = sum(1 for r in p.function.relocs if r.kind == "call")
        kind = ProgType.name_of(p.prog_type).lower() if p.sdef is not None else "unknown"
        rows.append(["prog", p.name, p.section, kind,
                     f"{_n(p.insn_count, 'insn')}, {_n(len(p.function.relocs), 'relocation')} "
                     f"({_n(calls, 'call')}){target}"])
    for f in obj.functions.values():
        if f.name not in obj.programs:
            rows.append(["func", f.name, f.section, "global" if f.is_global else "static",
                         _n(len(f.insns), "insn")])
    for m in obj.maps.values():
        extra = "".join(f" [{i}]={n}" for i, n in sorted(m.init_slots.items()))
        if extra:
            extra = " initial" + extra
        if m.pinning:
            extra += " pinned by name"
        if not m.autocreate:
            extra += " (not created: SEC(\"?...\"))"
        rows.append(["map", m.name, MapType.name_of(m.type).lower(), m.origin,
                     f"key {m.key_size} value {m.value_size} max_entries {m.max_entries} "
                     f"flags {m.flags:#x}{extra}"])
    for v in sorted(obj.variables.values(), key=lambda v: (v.section, v.offset)):
        vtype = btf.describe(v.btf_type) if btf is not None and v.btf_type else "?"
        rows.append(["var", v.name, v.section, vtype,
                     f"offset {v.offset} size {v.size}" + ("" if v.is_global else " (static)")])
    for e in obj.externs.values():
        where = f"offset {e.offset} size {e.size}" if e.kind == "kconfig" else ""
        rows.append(["extern", e.name, e.kind, "weak" if e.weak else "strong", where])
    _print_table(rows)
    core = sum(len(f.core_relos) for f in obj.functions.values())
    if core:
        print(f"core  {core} CO-RE relocations")
    return 0


if __name__ == "__main__":
    import gc
    import os

    # A command's objects (the modules it imports, the object's model) live until it
    # exits, so collecting cycles among them is pure cost: the young collections the
    # imports trigger (~60-90 us each, finding nothing). Off for the command; load
    # --attach turns it back on for its watch, which runs for as long as the user wants.
    gc.disable()
    status = main()
    # Then leave without finalizing the interpreter: tearing down every module (and the
    # full collection that frees them) costs 1-2 ms, more than half a warm load's own
    # work, and nothing is left to run at exit: bpfload registers no atexit handler,
    # the kernel closes the fds it holds, and the output is flushed here.
    try:
        sys.stdout.flush()
    except OSError:
        status = status or 1
    sys.stderr.flush()
    os._exit(status)
