"""CO-RE and kfuncs on the patched kernel: the object was compiled against the *host*
kernel's vmlinux.h, so every task_struct access must be relocated to the guest
kernel's (very different, tinyconfig-based) layout to read the right values."""

from __future__ import annotations

import os

import pytest

import bpfload
from bpfload.btf import format as btf_format
from bpfload.btf.kernel import KernelBTF

pytestmark = pytest.mark.skipif(os.environ.get("HEATMAP_IN_GUEST") != "1",
                                reason="runs inside the test guest only")


def test_core_reads_of_task_struct_return_the_right_pids(bpf_object, no_leaks):
    guest_size = KernelBTF().vmlinux.size_of(KernelBTF().vmlinux.find_one("task_struct",
                                                                          btf_format.KIND_STRUCT))
    with bpfload.load(bpf_object("core_kernel"), set={"target_pid": os.getpid()}) as obj:
        assert obj.program("current_task").test_run(bytes(8)).retval == 0
        assert obj.get("core_tgid") == os.getpid()
        assert obj.get("core_parent_tgid") == os.getppid()
        assert obj.get("task_struct_size") == guest_size
        assert obj.program("task_by_pid").test_run(bytes(8)).retval == 0
        assert (obj.get("kfunc_tgid"), obj.get("kfunc_pid")) == (os.getpid(), os.getpid())


def test_task_struct_layout_really_differs_from_the_host(bpf_object):
    """Guard for the test above: relocation must have had something to do."""
    local = bpfload.read_object(bpf_object("core_kernel")).btf
    host_size = local.size_of(local.find_one("task_struct", btf_format.KIND_STRUCT))
    guest = KernelBTF().vmlinux
    assert guest.size_of(guest.find_one("task_struct", btf_format.KIND_STRUCT)) != host_size
