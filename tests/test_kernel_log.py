"""tests/kernel_log.py against canned guest consoles: every kind of splat the debug
kernel can print fails the run, a clean debug boot does not."""

from __future__ import annotations

import pytest
from kernel_log import debug_kernel_problems, kernel_log_problems

# the lines of a clean debug-kernel boot (the guest's console) that name locking or lockdep
CLEAN_DEBUG_BOOT = """\
[    0.000000] Linux version 6.12.117 (root@host) #1 SMP PREEMPT
rcu: Preemptible hierarchical RCU implementation.
rcu: 	RCU lockdep checking is enabled.
[    0.190512] Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar
[    0.190740] ... MAX_LOCKDEP_SUBCLASSES:  8
[    0.190934] ... MAX_LOCK_DEPTH:          48
[    0.191121] ... MAX_LOCKDEP_KEYS:        8192
[    0.192087] ... MAX_LOCKDEP_CHAINS:      65536
[    0.192286] ... CHAINHASH_SIZE:          32768
[    0.212345] smp: Brought up 2 nodes, 4 CPUs
heatmap-guest: running command
heatmap-guest: debug_locks: 1
heatmap-guest: command done
"""

SPLATS = {
    "warning": """\
[   31.002101] ------------[ cut here ]------------
[   31.002310] WARNING: CPU: 2 PID: 311 at mm/vmscan.c:3467 walk_pte_range+0x3a1/0x6d0
[   31.002598] Modules linked in:
""",
    "sleep in atomic": """\
[   12.345678] BUG: sleeping function called from invalid context at mm/vmscan.c:3500
[   12.345901] in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 123, name: python3
[   12.346022] preempt_count: 1, expected: 0
""",
    "lockdep": """\
[   20.100001] ======================================================
[   20.100002] WARNING: possible circular locking dependency detected
[   20.100003] 6.12.117 #1 Not tainted
""",
    "rcu": """\
[    8.000001] =============================
[    8.000002] WARNING: suspicious RCU usage
[    8.000003] mm/vmscan.c:3301 suspicious rcu_dereference_check() usage!
""",
    "lockdep off": """\
[   20.100004] DEBUG_LOCKS_WARN_ON(1)
[   20.100005] INFO: lockdep is turned off.
""",
    "oops": """\
[   44.000001] BUG: kernel NULL pointer dereference, address: 0000000000000008
[   44.000002] Oops: Oops: 0000 [#1] PREEMPT SMP NOPTI
""",
}


def test_a_clean_debug_boot_is_clean():
    assert kernel_log_problems(CLEAN_DEBUG_BOOT, "debug") == []


@pytest.mark.parametrize("kind", sorted(SPLATS))
def test_every_splat_fails_the_run(kind):
    problems = kernel_log_problems(CLEAN_DEBUG_BOOT + SPLATS[kind], "default")
    first = next(line for line in SPLATS[kind].splitlines() if "[ cut here ]" not in line
                 and "=====" not in line)
    assert problems and problems[0].startswith(first), problems


def test_lockdep_switched_off_fails_only_the_debug_run():
    log = CLEAN_DEBUG_BOOT.replace("debug_locks: 1", "debug_locks: 0")
    assert kernel_log_problems(log, "default") == []
    [problem] = kernel_log_problems(log, "debug")
    assert "lockdep was off" in problem


def test_the_guests_own_lines_are_not_splats():
    assert kernel_log_problems("heatmap-guest: WARNING: not the kernel's\n", "default") == []


FRAGMENT = "# the debug fragment\nCONFIG_NR_CPUS=4\nCONFIG_PROVE_LOCKING=y\n"


def test_the_debug_kernel_is_what_the_fragment_asks_for():
    config = "CONFIG_NR_CPUS=4\nCONFIG_PROVE_LOCKING=y\nCONFIG_MMU=y\n"
    assert debug_kernel_problems(CLEAN_DEBUG_BOOT, config, FRAGMENT, 4) == []


def test_a_missing_debug_option_or_cpu_fails():
    config = "CONFIG_NR_CPUS=4\n# CONFIG_PROVE_LOCKING is not set\n"
    two = CLEAN_DEBUG_BOOT.replace("4 CPUs", "2 CPUs")
    assert debug_kernel_problems(two, config, FRAGMENT, 4) == [
        "the debug kernel was built without CONFIG_PROVE_LOCKING=y",
        "the debug guest brought up 2 CPUs, not 4"]
    assert debug_kernel_problems("", FRAGMENT, FRAGMENT, 4) == [
        "the debug guest brought up an unknown number of CPUs, not 4"]
