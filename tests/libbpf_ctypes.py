"""The reference libbpf (tests/reference_libbpf.py builds it) driven through ctypes: open
an object, choose which programs load, load it, and read back what libbpf made, with
libbpf's own warnings captured instead of printed."""

from __future__ import annotations

import ctypes
import os

_VOIDP = ctypes.c_void_p

# enum libbpf_print_level
LIBBPF_WARN = 0


class _OpenOpts(ctypes.Structure):
    """struct bpf_object_open_opts of libbpf 1.5 (sz says which fields we know)."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("object_name", ctypes.c_char_p),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", ctypes.c_char_p),
        ("_attach_prog_fd", ctypes.c_uint32),
        ("kconfig", ctypes.c_char_p),
        ("btf_custom_path", ctypes.c_char_p),
        ("kernel_log_buf", ctypes.c_char_p),
        ("kernel_log_size", ctypes.c_size_t),
        ("kernel_log_level", ctypes.c_uint32),
        ("bpf_token_path", ctypes.c_char_p),
    ]


_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, _VOIDP)


class LibBPF:
    """One loaded libbpf.so; warnings of the last operation are in `warnings`."""

    def __init__(self, path: str):
        lib = self.lib = ctypes.CDLL(path, use_errno=True)
        self._sig("bpf_object__open_file", _VOIDP, ctypes.c_char_p, _VOIDP)
        self._sig("bpf_object__next_program", _VOIDP, _VOIDP, _VOIDP)
        self._sig("bpf_object__next_map", _VOIDP, _VOIDP, _VOIDP)
        self._sig("bpf_program__name", ctypes.c_char_p, _VOIDP)
        self._sig("bpf_program__set_autoload", ctypes.c_int, _VOIDP, ctypes.c_bool)
        self._sig("bpf_program__autoload", ctypes.c_bool, _VOIDP)
        self._sig("bpf_program__fd", ctypes.c_int, _VOIDP)
        self._sig("bpf_map__fd", ctypes.c_int, _VOIDP)
        self._sig("bpf_map__autocreate", ctypes.c_bool, _VOIDP)
        self._sig("bpf_map__type", ctypes.c_int, _VOIDP)
        self._sig("bpf_object__load", ctypes.c_int, _VOIDP)
        self._sig("bpf_object__close", None, _VOIDP)
        self._sig("libbpf_set_print", _VOIDP, _PRINT_FN)
        libc = ctypes.CDLL(None)
        self._vsnprintf = libc.vsnprintf
        self._vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, _VOIDP]
        self.warnings: list[str] = []

        def on_print(level, fmt, args):  # libbpf's printf-style callback, with a va_list
            if level == LIBBPF_WARN:
                buf = ctypes.create_string_buffer(1024)
                self._vsnprintf(buf, len(buf), fmt, args)
                self.warnings.append(buf.value.decode(errors="replace").strip())
            return 0

        self._printer = _PRINT_FN(on_print)  # (kept alive for as long as libbpf may call)
        lib.libbpf_set_print(self._printer)

    def _sig(self, name: str, restype, *argtypes) -> None:
        fn = getattr(self.lib, name)
        fn.restype = restype
        fn.argtypes = list(argtypes)

    def open(self, path: str, pin_root: str | None = None):
        """A bpf_object pointer, or raises OSError with libbpf's last warning."""
        self.warnings = []
        opts = _OpenOpts(sz=ctypes.sizeof(_OpenOpts),
                         pin_root_path=pin_root.encode() if pin_root else None)
        obj = self.lib.bpf_object__open_file(os.fsencode(path), ctypes.byref(opts))
        if not obj:
            raise OSError(ctypes.get_errno(), self.last_warning())
        return obj

    def programs(self, obj) -> list[tuple[str, int]]:
        out = []
        p = self.lib.bpf_object__next_program(obj, None)
        while p:
            out.append((self.lib.bpf_program__name(p).decode(), p))
            p = self.lib.bpf_object__next_program(obj, p)
        return out

    def maps(self, obj) -> list[int]:
        out = []
        m = self.lib.bpf_object__next_map(obj, None)
        while m:
            out.append(m)
            m = self.lib.bpf_object__next_map(obj, m)
        return out

    def load(self, obj) -> None:
        """bpf_object__load, or raises OSError with libbpf's last warning."""
        self.warnings = []
        err = self.lib.bpf_object__load(obj)
        if err:
            raise OSError(-err, self.last_warning())

    def close(self, obj) -> None:
        self.lib.bpf_object__close(obj)

    def last_warning(self) -> str:
        """libbpf's explanation: its first warning that is not the closing summary."""
        useful = [w for w in self.warnings
                  if not w.startswith(("failed to load object", "Error: failed"))]
        return (useful or self.warnings or [""])[0]
