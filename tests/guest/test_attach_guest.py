"""bpfload's attach kinds in the QEMU guest on the patched kernel, which (unlike the
host) allows fentry/fexit and has kprobes: each program counts nanosleep calls the test
makes, and stops counting once detached."""

from __future__ import annotations

import os
import time

import pytest

import bpfload

CALLS = 20


def _sleep(n: int = CALLS) -> None:
    for _ in range(n):
        time.sleep(0.0001)


LONG_SLEEP_NS = 200_000_000


def _entry_or_exit(obj, kind: str) -> str:
    """When the program ran in one long sleep: "entry" (before it), "exit" (after)."""
    t0 = time.monotonic_ns()  # CLOCK_MONOTONIC, bpf_ktime_get_ns()'s clock
    time.sleep(LONG_SLEEP_NS / 1e9)
    ran = obj.get(f"{kind}_ns")
    assert ran >= t0, f"{kind} did not run in the long sleep"
    return "entry" if ran < t0 + LONG_SLEEP_NS else "exit"


@pytest.mark.parametrize("kind,when", [
    ("fentry", "entry"), ("fexit", "exit"), ("kprobe", "entry"), ("kretprobe", "exit")])
def test_trace_kinds_count_and_detach(bpf_object, no_leaks, kind, when):
    """Counts prove the program is attached; the time it ran proves it is attached at
    the function's entry or at its return, as its section asks."""
    counter = f"{kind}_hits"
    with bpfload.load(bpf_object("trace_kinds"), set={"target_tgid": os.getpid()},
                      programs=[f"count_{kind}"]) as obj:
        (link,) = obj.attach()
        _sleep()
        assert obj.get(counter) == CALLS
        assert _entry_or_exit(obj, kind) == when
        link.close()
        _sleep()
        assert obj.get(counter) == CALLS + 1


@pytest.mark.parametrize("prog,counter", [
    ("count_raw_tp", "raw_tp_hits"), ("count_tp_btf", "tp_btf_hits"),
    ("count_tracepoint", "tracepoint_hits")])
def test_tracepoint_kinds_in_the_guest(bpf_object, no_leaks, tracefs, prog, counter):
    with bpfload.load(bpf_object("attach"), set={"target_tgid": os.getpid()},
                      programs=[prog]) as obj:
        obj.attach()
        for _ in range(CALLS):
            os.getppid()
        assert obj.get(counter) == CALLS


def test_all_kinds_attach_together_and_release(bpf_object, no_leaks):
    with bpfload.load(bpf_object("trace_kinds"), set={"target_tgid": os.getpid()}) as obj:
        assert {link.kind for link in obj.attach()} == {"tracing", "kprobe", "kretprobe"}
        _sleep(3)
        assert [obj.get(c) for c in ("fentry_hits", "fexit_hits", "kprobe_hits",
                                     "kretprobe_hits")] == [3, 3, 3, 3]
