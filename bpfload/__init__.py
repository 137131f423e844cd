"""bpfload: load clang-built BPF ELF objects into the kernel with nothing but Python.

    import bpfload
    with bpfload.load("prog.bpf.o", set={"target_pid": 42}) as obj:
        obj.attach()
        print(obj.map("counts").items_batch())

Imports are lazy so that `python -m bpfload` starts quickly.
"""

from __future__ import annotations

__all__ = ["BPFObject", "load", "read_object", "BPFLoadError", "ObjectError", "BTFError",
           "SyscallError", "VerifierError", "AttachError", "RelocationError", "Map", "Program",
           "Link", "KernelBTF"]

_WHERE = {
    "BPFObject": ".collection", "load": ".collection",
    "read_object": ".elf_reader:read",
    "BPFLoadError": ".errors", "ObjectError": ".errors", "BTFError": ".errors",
    "SyscallError": ".errors", "VerifierError": ".errors", "AttachError": ".errors",
    "RelocationError": ".errors",
    "Map": ".maps", "Program": ".programs", "Link": ".links", "KernelBTF": ".btf.kernel",
}


def __getattr__(name: str):
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'bpfload' has no attribute {name!r}")
    import importlib

    module, _, attr = where.partition(":")
    value = getattr(importlib.import_module(module, __name__), attr or name)
    globals()[name] = value
    return value
