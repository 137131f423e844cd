"""The parts of heatmap.py's BPF side that need no kernel: what it reads from
/sys/kernel/debug/lru_gen and /proc, and the '+' commands of the fallback aging."""

from __future__ import annotations

import os
import subprocess

import pytest

import heatmap

LRU_GEN = """\
memcg     1 /
 node     0
          3      10340         25         933
          4       1200          0          12
 node     1
          5      10340       5232        3016
          6        700          4           1
memcg     7 /system.slice/app.service
 node     0
          2      10000          0           1
          3         20          0           2
 node     1
          2      10000          0           3
"""


def test_generations_are_parsed_per_memcg_and_node():
    gens = heatmap.lru_gen_generations(LRU_GEN)
    assert gens == {"/": (1, {0: 4, 1: 6}),
                    "/system.slice/app.service": (7, {0: 3, 1: 2})}


@pytest.fixture
def debugfs(tmp_path, monkeypatch):
    path = tmp_path / "lru_gen"
    monkeypatch.setattr(heatmap, "LRU_GEN_DEBUGFS", str(path))
    return path


def test_fallback_ages_every_node_of_the_targets_memcg(debugfs):
    debugfs.write_text(LRU_GEN)
    heatmap.age_by_debugfs("/system.slice/app.service")
    # max_gen_nr must be the current max seq; can_swap=1 (anon) and force_scan=1
    assert debugfs.read_text() == "+ 7 0 3 1 1\n+ 7 1 2 1 1\n"


def test_fallback_without_memcgs_uses_the_only_one(debugfs):
    debugfs.write_text("memcg     0\n node     0\n          9  1  1  1\n")
    heatmap.age_by_debugfs("/user.slice")
    assert debugfs.read_text() == "+ 0 0 9 1 1\n"


def test_fallback_refuses_a_memcg_it_cannot_find(debugfs):
    debugfs.write_text(LRU_GEN)
    with pytest.raises(heatmap.HeatmapError, match="/other is not listed"):
        heatmap.age_by_debugfs("/other")


def test_fallback_needs_debugfs(debugfs):
    with pytest.raises(heatmap.HeatmapError, match="cannot read"):
        heatmap.age_by_debugfs("/")


def _cgroup2_mount() -> str | None:
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] == "cgroup2":
                return fields[1]
    return None


def test_memory_cgroup_is_the_v2_cgroup_and_its_directory_inode(root):
    """The kfunc takes the cgroup v2 id, which is the inode number of the cgroup's
    directory: a process moved into a new cgroup must report exactly that."""
    mount = _cgroup2_mount()
    if mount is None:
        pytest.skip("no cgroup2 hierarchy mounted")
    cg = os.path.join(mount, f"heatmap-test-{os.getpid()}")
    os.mkdir(cg)
    child = subprocess.Popen(["sleep", "60"])
    try:
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write(str(child.pid))
        assert heatmap.memory_cgroup(child.pid) == (cg[len(mount):], os.stat(cg).st_ino)
    finally:
        child.kill()
        child.wait()
        os.rmdir(cg)


def test_memory_cgroup_of_a_process_gone_is_the_root():
    assert heatmap.memory_cgroup(999_999_999) == ("/", 0)


def test_node_lists():
    assert heatmap._node_list("has_memory")  # this machine's own list
    assert heatmap._node_list("no_such_state") == [0]
