"""What the test guest's kernel log says went wrong, and whether the debug kernel was
the one it claims to be. tests/guest/conftest.py fails every guest test of a run on
any of it; tests/test_kernel_log.py checks the reading against canned logs."""

from __future__ import annotations

import re

#: Kernel log lines that mean something went wrong in the kernel. Every lockdep report
#: has a "WARNING:" or "BUG:" line; the bare word "lockdep" is no sign (a debug kernel
#: boots with "RCU lockdep checking is enabled.").
SPLATS = re.compile(r"WARNING:|BUG:|Oops|Call Trace:|INFO: task .* blocked|"
                    r"possible (recursive|circular) locking|inconsistent lock state|"
                    r"suspicious RCU usage|sleeping function called from invalid context|"
                    r"lockdep is turned off|DEBUG_LOCKS_WARN_ON|"
                    r"locking correctness validator|list_(add|del) corruption")
#: What kernel/guest-init prints at the end of the run on a kernel with lockdep.
LOCKDEP_ON = "debug_locks: 1"
#: The kernel's own count of the CPUs it brought up (kernel/smp.c).
BROUGHT_UP = re.compile(r"smp: Brought up \d+ nodes?, (\d+) CPUs?")


def kernel_log_problems(console: str, variant: str) -> list[str]:
    """Splat lines (with a little context), and on the debug kernel a lockdep that
    switched itself off or never ran."""
    lines = console.splitlines()
    problems = [" | ".join(lines[i:i + 3]) for i, line in enumerate(lines)
                if SPLATS.search(line) and "heatmap-guest:" not in line]
    if variant == "debug" and not any(LOCKDEP_ON in line for line in lines):
        problems.append("lockdep was off at the end of the run (no 'debug_locks: 1' from "
                        "/proc/lockdep_stats): a report switched it off, or the kernel "
                        "lacks CONFIG_PROVE_LOCKING")
    return problems


def debug_kernel_problems(console: str, config: str, fragment: str, cpus: int) -> list[str]:
    """What makes a run not a debug-kernel run: an option of the debug fragment missing
    from the built config, or fewer CPUs up than split page table locks need."""
    built = set(config.splitlines())
    problems = [f"the debug kernel was built without {line}"
                for line in fragment.splitlines()
                if line.startswith("CONFIG_") and line not in built]
    up = [int(m.group(1)) for m in BROUGHT_UP.finditer(console)]
    if up != [cpus]:
        problems.append(f"the debug guest brought up {up[0] if up else 'an unknown number of'}"
                        f" CPUs, not {cpus}")
    return problems
