"""The command line's text tables: rows of (kind, name, a, b, rest), the first four
columns aligned ("prog  name  section  id 7  12 insns")."""

from __future__ import annotations


def print_table(rows: list[list[str]]) -> None:
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(4)]
    widths[0] = max(widths[0], 5)  # "prog  name"
    for r in rows:
        print((" ".join(c.ljust(w) for c, w in zip(r, widths)) + " " + r[4]).rstrip())


def count(n: int, noun: str) -> str:
    """'1 insn', '3 insns'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
