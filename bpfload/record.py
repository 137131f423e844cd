"""Small value classes declared as data: fields with defaults in one tuple.

What dataclasses would give, without their import cost (dataclasses pulls in inspect:
about 10 ms of a command that should take a few tens).
"""

from __future__ import annotations

REQUIRED = object()


class Record:
    """Positional or keyword construction from `_fields`, repr and equality.

    A default of ``list`` or ``dict`` makes a fresh empty one per instance.
    """

    _fields: tuple = ()  # ((name, default or REQUIRED), ...)

    def __init__(self, *args, **kwargs):
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__}() takes {len(fields)} arguments")
        for (name, _), value in zip(fields, args):
            setattr(self, name, value)
        for name, default in fields[len(args):]:
            if name in kwargs:
                value = kwargs.pop(name)
            elif default is REQUIRED:
                raise TypeError(f"{type(self).__name__}() missing argument {name!r}")
            elif default is list or default is dict:
                value = default()
            else:
                value = default
            setattr(self, name, value)
        if kwargs:
            raise TypeError(f"{type(self).__name__}() got unexpected {sorted(kwargs)[0]!r}")

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name, _ in self._fields)

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other._values() == self._values()

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name, _ in self._fields)
        return f"{type(self).__name__}({args})"
