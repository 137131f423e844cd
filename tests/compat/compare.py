"""Load objects with the reference libbpf and with bpfload in the running kernel, and
record what each loader made of each one.

    python3 tests/compat/compare.py LIBBPF.so OUT.json OBJECT.bpf.o ...

An object is loaded whole (every program libbpf would load, as `bpftool prog loadall`
does). If neither loader can load it whole (many selftests hold a program the verifier
must refuse), each program is then loaded on its own by both, so one refused program
does not hide what the others do. Objects with struct_ops maps are compared whole only:
libbpf loads the programs their maps use whatever autoload says.

It runs in a process of its own (a crash in libbpf must not take the test with it), on
the host and in the guest; results are JSON: {object: {"libbpf": outcome, "bpfload":
outcome, "programs": {name: [libbpf, bpfload]}}}, an outcome being "ok" or the error.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from libbpf_ctypes import LibBPF  # noqa: E402

from bpfload.btf.kernel import KernelBTF  # noqa: E402
from bpfload.collection import BPFObject  # noqa: E402
from bpfload.errors import BPFLoadError  # noqa: E402

OK = "ok"
BPFFS = "/sys/fs/bpf"
STRUCT_OPS_MAP = 26  # BPF_MAP_TYPE_STRUCT_OPS


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or ["(no message)"])[0][:300]


class Loaders:
    def __init__(self, libbpf_path: str):
        self.libbpf = LibBPF(libbpf_path)
        self.kernel_btf = KernelBTF()
        self.pin_root = os.path.join(BPFFS, f"bpfload-compat-{os.getpid()}")

    def _pins(self) -> str:
        """A pin root of its own for each load (LIBBPF_PIN_BY_NAME maps land there)."""
        shutil.rmtree(self.pin_root, ignore_errors=True)
        os.makedirs(self.pin_root)
        return self.pin_root

    def libbpf_load(self, path: str, only: str | None = None) -> str:
        lib = self.libbpf
        try:
            obj = lib.open(path, self._pins())
        except OSError as e:
            return f"open: {os.strerror(e.errno)}: {e.strerror}"
        try:
            if only is not None:
                for name, prog in lib.programs(obj):
                    lib.lib.bpf_program__set_autoload(prog, name == only)
            lib.load(obj)
            return OK
        except OSError as e:
            return f"load: {os.strerror(e.errno)}: {e.strerror}"
        finally:
            lib.close(obj)
            shutil.rmtree(self.pin_root, ignore_errors=True)

    def libbpf_facts(self, path: str) -> tuple[list[str], bool]:
        """The object's programs as libbpf names them, and whether it has struct_ops."""
        lib = self.libbpf
        obj = lib.open(path)
        try:
            progs = [name for name, _ in lib.programs(obj)]
            struct_ops = any(lib.lib.bpf_map__type(m) == STRUCT_OPS_MAP
                             for m in lib.maps(obj))
            return progs, struct_ops
        finally:
            lib.close(obj)

    def bpfload_load(self, path: str, only: str | None = None) -> str:
        try:
            obj = BPFObject(path, kernel_btf=self.kernel_btf, pin_root=self._pins())
        except BPFLoadError as e:
            return f"open: {_first_line(str(e))}"
        try:
            if only is not None:
                obj.select_programs([only])
            obj.load()
            return OK
        except BPFLoadError as e:
            return f"load: {_first_line(str(e))}"
        except Exception as e:  # a bug: say so loudly, it must fail the comparison
            return f"CRASH {type(e).__name__}: {_first_line(str(e))}"
        finally:
            obj.close()
            shutil.rmtree(self.pin_root, ignore_errors=True)


def compare(loaders: Loaders, path: str) -> dict:
    t0 = time.monotonic()
    theirs = loaders.libbpf_load(path)
    t1 = time.monotonic()
    ours = loaders.bpfload_load(path)
    t2 = time.monotonic()
    out = {"libbpf": theirs, "bpfload": ours, "programs": {},
           "seconds": [round(t1 - t0, 3), round(t2 - t1, 3)]}
    if theirs == OK or ours == OK or theirs.startswith("open") or ours.startswith("open"):
        return out
    progs, struct_ops = loaders.libbpf_facts(path)
    if struct_ops:
        return out
    for name in progs:
        out["programs"][name] = [loaders.libbpf_load(path, name),
                                 loaders.bpfload_load(path, name)]
    out["seconds"].append(round(time.monotonic() - t2, 3))
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    libbpf, out_path, objects = argv[0], argv[1], argv[2:]
    loaders = Loaders(libbpf)
    results = {}
    try:
        for path in objects:
            results[os.path.basename(path)] = compare(loaders, path)
    finally:
        loaders.kernel_btf.close()
        Path(out_path).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
