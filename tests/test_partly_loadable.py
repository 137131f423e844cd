"""An object only part of which can load: `show` still lists everything and
marks what cannot load; `load --program` loads what was asked for, and a program that
cannot load is named in the error, whatever the reason (unknown section, missing kfunc)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bpfload import elf_reader
from bpfload.collection import load
from bpfload.errors import ObjectError, RelocationError


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "bpfload", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_reader_keeps_programs_of_unknown_sections(bpf_object):
    obj = elf_reader.read(bpf_object("partly_loadable"))
    assert set(obj.programs) == {"fine", "odd_section", "needs_missing", "needs_config"}
    assert obj.programs["odd_section"].sdef is None
    assert obj.programs["fine"].sdef.pattern == "syscall"


def test_show_lists_everything_and_marks_what_cannot_load(bpf_object):
    r = _cli("show", bpf_object("partly_loadable"))
    assert r.returncode == 0, r.stderr
    progs = {ln.split()[1]: ln for ln in r.stdout.splitlines() if ln.startswith("prog ")}
    assert set(progs) == {"fine", "odd_section", "needs_missing", "needs_config"}
    assert "unknown" in progs["odd_section"].split()[3]
    assert "unknown section: cannot be loaded" in progs["odd_section"]
    assert "cannot be loaded" not in progs["fine"]


def test_loading_everything_names_the_program_in_the_unknown_section(root, no_leaks,
                                                                     bpf_object):
    with pytest.raises(ObjectError, match="program 'odd_section': unknown program section "
                                          "'bpfload_no_such_section/x'"):
        load(str(bpf_object("partly_loadable")))


def test_program_option_leaves_the_others_out(root, no_leaks, bpf_object):
    with load(str(bpf_object("partly_loadable")), programs=["fine"]) as obj:
        assert list(obj.programs) == ["fine"]
        assert obj.program("fine").test_run().retval == 0
    r = _cli("load", bpf_object("partly_loadable"), "--program", "fine")
    assert r.returncode == 0, r.stderr
    assert [ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("prog")] == ["fine"]


def test_missing_strong_kfunc_fails_only_the_program_using_it(root, no_leaks, bpf_object):
    with pytest.raises(RelocationError) as e:
        load(str(bpf_object("partly_loadable")), programs=["needs_missing"])
    msg = str(e.value)
    assert msg.startswith("program 'needs_missing' (in its function 'helper'): ")
    assert "'bpf_bpfload_missing_strong' is not in the kernel's BTF" in msg
    r = _cli("load", bpf_object("partly_loadable"), "--program", "needs_missing")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "program 'needs_missing'" in r.stderr and "bpf_bpfload_missing_strong" in r.stderr


def test_missing_strong_kconfig_fails_only_the_program_using_it(root, no_leaks, bpf_object):
    with pytest.raises(RelocationError, match="program 'needs_config': __kconfig extern "
                                              "'CONFIG_BPFLOAD_STRONG_MISSING' is not set"):
        load(str(bpf_object("partly_loadable")), programs=["needs_config"])
