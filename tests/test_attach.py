"""Attaching to hooks of the running kernel (root): raw_tp, tp_btf and tracepoint
programs count events the test triggers, and stop counting once detached.

fentry/fexit and kprobes are refused by this host's kernel; tests/guest runs them in
the QEMU guest on the patched kernel. Here they only check that the refusal is a
clear error.
"""

from __future__ import annotations

import errno
import os

import pytest

import bpfload
from bpfload import links

pytestmark = pytest.mark.usefixtures("no_leaks", "tracefs")
CALLS = 50


def _trigger(n: int = CALLS) -> None:
    for _ in range(n):
        os.getppid()


@pytest.mark.parametrize("prog,counter", [
    ("count_raw_tp", "raw_tp_hits"), ("count_tp_btf", "tp_btf_hits"),
    ("count_tracepoint", "tracepoint_hits")])
def test_attach_counts_and_detaches(bpf_object, prog, counter):
    with bpfload.load(bpf_object("attach"), set={"target_tgid": os.getpid()},
                      programs=[prog]) as obj:
        (link,) = obj.attach()
        _trigger()
        assert obj.get(counter) == CALLS
        link.close()
        _trigger()
        assert obj.get(counter) == CALLS


def test_links_close_with_the_object(bpf_object):
    with bpfload.load(bpf_object("attach"), set={"target_tgid": os.getpid()}) as obj:
        assert len(obj.attach()) == 3
        _trigger(5)
        assert obj.get("raw_tp_hits") == obj.get("tp_btf_hits") == 5
    # no_leaks checks that the three links are gone


def test_missing_tracepoint_is_a_clear_error(bpf_object):
    with bpfload.load(bpf_object("attach"), programs=["count_raw_tp"]) as obj:
        prog = obj.program("count_raw_tp")
        with pytest.raises(bpfload.AttachError, match="no raw tracepoint 'no_such_tp'") as e:
            links.attach_raw_tracepoint(prog, "no_such_tp")
        assert (e.value.errno, e.value.errname) == (errno.ENOENT, "ENOENT")
        with pytest.raises(bpfload.AttachError, match="no tracepoint nope/nothing"):
            links.tracepoint_id("nope", "nothing")


def test_attach_errors_keep_the_errno(bpf_object):
    """A refused attach says which errno, on the exception and in its cause."""
    with bpfload.load(bpf_object("attach"), programs=["count_raw_tp"]) as obj:
        prog = obj.program("count_raw_tp")
        with pytest.raises(bpfload.AttachError) as e:
            links.attach_tracing(prog, "x")  # a raw_tp program has no BTF target
        assert e.value.errno is not None and e.value.errname in str(e.value)
        assert isinstance(e.value.__cause__, bpfload.SyscallError)
        assert e.value.__cause__.errno == e.value.errno


def test_host_refusal_of_fentry_is_not_blamed_on_root(bpf_object):
    """This host refuses fentry/fexit before the verifier (EPERM), even to root: the
    error must say the kernel does not allow it, not send root to get root.  (The
    guest, where they load, runs them: tests/guest/test_attach_guest.py.)"""
    obj = bpfload.BPFObject(bpf_object("trace_kinds"))
    obj.set_autoload("count_kprobe", False)
    obj.set_autoload("count_kretprobe", False)
    try:
        obj.load()
    except bpfload.VerifierError as e:
        err = e
    else:
        pytest.skip("this kernel loads fentry/fexit programs: no refusal to check")
    finally:
        obj.close()
    assert err.errname == "EPERM" and "needs root" not in str(err)
    assert "refused although this process has CAP_SYS_ADMIN" in str(err)


def test_bad_kprobe_offset_is_an_attach_error():
    from types import SimpleNamespace

    prog = SimpleNamespace(name="p", section="kprobe/do_sys_open+abc")
    with pytest.raises(bpfload.AttachError, match="'abc' in 'do_sys_open\\+abc' is not an "
                                                  "offset"):
        links.attach_kprobe(prog, "do_sys_open+abc")


@pytest.mark.parametrize("kind,target,says", [
    ("uprobe", "", "does not name what to attach to"),
    ("usdt", "x:y:z", "attached through its object"),
    ("freplace", "f", "bpfload does not attach them"),
    ("none", "x", "does not say where to attach"),
    ("run", "", "programs are not attached; run them"),
])
def test_attach_kinds_that_attach_elsewhere_or_not_say_so(kind, target, says):
    from types import SimpleNamespace

    prog = SimpleNamespace(name="p", attach_kind=kind, attach_target=target, section="s/x",
                           type=2, attach_type=0)
    with pytest.raises(bpfload.AttachError, match=says):
        links.attach(prog)
