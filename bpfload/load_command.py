"""`python -m bpfload load OBJ [OBJ ...]`: load objects one after another in this
process, say for each whether it loaded, and with --attach attach them all and print
what their programs send until Ctrl-C (or SIGTERM).

One object is shown in full (its maps and programs) and its failure is the command's
error; several are one line each ("ok"/"FAIL"), a failure does not stop the others,
the exit status is 1 if any failed, and --set sets a variable in each object that has
it. With --json every line is a JSON object:
{"object": ..., "loaded": ...} per object, then, attached, "link", "iter", "event" and
"lost" lines. The objects share one reading of the kernel's BTF.
"""

from __future__ import annotations

import _signal
import sys

from .errors import BPFLoadError, VerifierError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .collection import BPFObject


class _Output:
    """Prints results as text or as JSON lines."""

    def __init__(self, as_json: bool, full: bool):
        self.as_json = as_json
        self.full = full  # one object, shown with its maps and programs

    def line(self, text: str, record: dict) -> None:
        if self.as_json:
            import json

            print(json.dumps(record, separators=(",", ":")))
        else:
            print(text)

    def loaded(self, path: str, obj: BPFObject) -> None:
        from .sys.constants import MapType

        maps = [{"name": n, "type": MapType.name_of(m.type).lower(), "id": m.id,
                 "key_size": m.key_size, "value_size": m.value_size,
                 "max_entries": m.max_entries} for n, m in obj.maps.items()]
        progs = [{"name": n, "section": p.section, "id": p.id, "insns": p.insn_count}
                 for n, p in obj.programs.items()]
        if self.as_json:
            self.line("", {"object": path, "loaded": True, "maps": maps, "programs": progs,
                           "warnings": obj.warnings})
        elif self.full:
            from .table import count, print_table

            rows = [["map", m["name"], m["type"], f"id {m['id']}",
                     f"key {m['key_size']} value {m['value_size']} max_entries "
                     f"{m['max_entries']}"] for m in maps]
            rows += [["prog", p["name"], p["section"], f"id {p['id']}", count(p["insns"], "insn")]
                     for p in progs]
            print_table(rows)
        else:
            print(f"ok    {path}: {len(maps)} maps, {len(progs)} programs")

    def failed(self, path: str, e: Exception) -> None:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        self.line(f"FAIL  {path}: {first}", {"object": path, "loaded": False, "error": str(e)})


def run(args, parse_value, stop_signals) -> int:
    from .btf.kernel import KernelBTF

    out = _Output(args.json, full=len(args.objects) == 1)
    kernel_btf = KernelBTF(args.btf) if args.btf else KernelBTF()
    objects: list[BPFObject] = []
    set_names: set[str] = set()
    failed = 0
    held = None
    try:
        for path in args.objects:
            try:
                obj = _load_one(path, args, parse_value, kernel_btf, set_names)
            except (BPFLoadError, OSError) as e:
                if out.full and not args.json:
                    raise  # the command's own error, with the verifier log on --log
                failed += 1
                out.failed(path, e)
                if args.log and isinstance(e, VerifierError) and e.log:
                    print(e.log, file=sys.stderr)
                continue
            try:
                for w in obj.warnings:
                    where = "" if out.full else f"{path}: "
                    print(f"bpfload: warning: {where}{w}", file=sys.stderr)
                out.loaded(path, obj)
            except BaseException:
                obj.close()
                raise
            if args.attach:
                objects.append(obj)
            else:
                obj.close()
        unused = [i.partition("=")[0] for i in args.set if "=" in i
                  and i.partition("=")[0] not in set_names and failed < len(args.objects)]
        if unused:
            raise BPFLoadError(f"--set {unused[0]}: no object has a global variable "
                               f"'{unused[0]}'")
        if len(args.objects) > 1:
            out.line(f"loaded {len(args.objects) - failed} of {len(args.objects)} objects",
                     {"objects": len(args.objects), "loaded": len(args.objects) - failed,
                      "failed": failed})
        sys.stdout.flush()
        if args.attach and objects:
            # block the signals first so one arriving early is not lost
            held = _signal.pthread_sigmask(_signal.SIG_BLOCK, stop_signals)
            _attach_and_watch(objects, args, out, stop_signals)
    finally:
        for obj in objects:
            obj.close()
        kernel_btf.close()
        if held is not None:  # a signal still pending is delivered now, after close()
            _signal.pthread_sigmask(_signal.SIG_SETMASK, held)
    return 1 if failed else 0


def _load_one(path: str, args, parse_value, kernel_btf, set_names: set[str]) -> BPFObject:
    """Open, configure and load one object. With several objects, --set sets a
    variable in those that have it (`set_names` collects the names some object had)."""
    from .collection import BPFObject

    obj = BPFObject(path, kernel_btf=kernel_btf, struct_ops_links=args.attach,
                    **({"pin_root": args.pin_root} if args.pin_root else {}))
    try:
        for item in args.set:
            name, sep, value = item.partition("=")
            if not sep:
                raise BPFLoadError(f"--set takes VAR=VALUE, got '{item}'")
            if len(args.objects) > 1 and name not in obj.variables:
                continue
            set_names.add(name)
            try:
                obj.set(name, parse_value(value))
            except (ValueError, TypeError) as e:
                raise BPFLoadError(f"--set {name}: {e}") from None
        if args.program:
            obj.select_programs(args.program)
        obj.load()
    except BaseException:
        obj.close()
        raise
    return obj


def _attach_and_watch(objects: list[BPFObject], args, out: _Output, stop_signals) -> None:
    import gc
    import select

    gc.enable()  # (`python -m bpfload` starts with it off, see __main__): this one runs on

    from .sys.syscall import signalfd

    # readers and their epoll before attaching: no sample finds no reader
    readers = _readers(objects, out)
    try:
        with signalfd(stop_signals) as stop, select.epoll() as ep:
            ep.register(stop.fileno(), select.EPOLLIN)
            for r in readers:
                for fd in r.fds():
                    ep.register(fd, select.EPOLLIN)
            _attach(objects, args, out)
            _watch(readers, ep, stop)
    finally:
        for r in readers:
            r.close()
    out.line("detached", {"detached": True})
    sys.stdout.flush()


def _attach(objects: list[BPFObject], args, out: _Output) -> None:
    from .links import IterLink

    links = []
    for obj in objects:
        links += obj.attach(cgroup=args.cgroup, ifname=args.ifname)
    if not links:
        kinds = sorted({p.section.split("/")[0] for o in objects for p in o.programs.values()})
        raise BPFLoadError(f"nothing to attach: no loaded program has an attach point "
                           f"of its own (sections: {', '.join(kinds) or 'none'}; "
                           f"syscall programs are run, socket programs attached by their "
                           f"user; cgroup, xdp and tc ones need --cgroup or --ifname)")
    for link in links:
        name = link.program.name if link.program is not None else link.target
        out.line(f"link  {name:<16} {link.kind:<14} {link.target}",
                 {"link": {"program": name, "kind": link.kind, "target": link.target}})
    for link in links:
        if isinstance(link, IterLink):
            text = link.read().decode("utf-8", "replace")
            if out.as_json:
                out.line("", {"iter": link.program.name, "output": text})
            else:
                for row in text.splitlines():
                    print(f"iter  {link.program.name}: {row}")
    out.line(f"attached {len(links)} program(s); Ctrl-C detaches and exits",
             {"attached": len(links)})
    sys.stdout.flush()


def _readers(objects: list[BPFObject], out: _Output) -> list:
    """A consumer for every ring buffer and perf event array of the objects."""
    from .sys.constants import MapType

    readers: list = []
    try:
        for obj in objects:
            for name, m in obj.maps.items():
                if m.type == MapType.RINGBUF:
                    from .ringbuf import RingBuffer

                    readers.append(RingBuffer(m, _ring_printer(out, name)))
                elif m.type == MapType.PERF_EVENT_ARRAY:
                    from .perfbuf import PerfBuffer

                    readers.append(PerfBuffer(m, _perf_printer(out, name),
                                              lost=_lost_printer(out, name)))
    except BaseException:
        for r in readers:
            r.close()
        raise
    return readers


def _watch(readers: list, ep, stop) -> None:
    """Print what programs send through the readers until a stop signal is pending
    (then what they still hold)."""
    import os

    from .sys.syscall import SIGNALFD_INFO_SIZE

    while True:
        ready = {fd for fd, _ in ep.poll()}
        stopping = stop.fileno() in ready
        for r in readers:  # each drains what it has, in a fixed order
            if stopping or ready.intersection(r.fds()):
                r.consume()
        sys.stdout.flush()
        if stopping:
            os.read(stop.fileno(), SIGNALFD_INFO_SIZE)  # taken: not delivered later
            return


def _ring_printer(out: _Output, name: str):
    def show(data: bytes) -> None:
        out.line(f"event {name}: {data.hex()}", {"event": name, "data": data.hex()})
    return show


def _perf_printer(out: _Output, name: str):
    def show(cpu: int, data: bytes) -> None:
        out.line(f"event {name} cpu {cpu}: {data.hex()}",
                 {"event": name, "cpu": cpu, "data": data.hex()})
    return show


def _lost_printer(out: _Output, name: str):
    def show(cpu: int, count: int) -> None:
        out.line(f"lost  {name} cpu {cpu}: {count} events",
                 {"lost": name, "cpu": cpu, "count": count})
    return show
