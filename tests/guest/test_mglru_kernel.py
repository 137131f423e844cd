"""The patched kernel, seen from inside the guest (tests/guest/conftest.py boots it).

Checks the MGLRU BPF hook API (shared/notes/hook-api.md) without the project's own
loader: BTF of the hooks and the kfunc, the page-table-walk bit, two NUMA nodes, the
debugfs aging fallback, and, through the libbpf driver tests/guest/bpf/hooktest.c,
that the hooks fire with the right tgid/addr/nr_pages, that the fmod_ret filter
skips other processes and that the kfunc ages every node. The accuracy tests at the
end check that an observer sees every access: the fmod_ret TLB flush hook against
stale TLB entries of a sleeping process, and forced aging waiting for the mmap lock
of a process that keeps it busy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("HEATMAP_IN_GUEST") != "1", reason="runs inside the test guest only"
)

BTF_PATH = "/sys/kernel/btf/vmlinux"
LRU_GEN_DEBUGFS = "/sys/kernel/debug/lru_gen"
YOUNG_ARGS = ["mm", "tgid", "nid", "addr", "nr_pages", "anon"]
HOOK_PTE, HOOK_PMD, HOOK_LOOK_AROUND = 0, 1, 2
STAT_SKIP_CALLS, STAT_SKIPPED, STAT_MAX_RUN, STAT_BAD_CALLS = range(4)
REGION = 2 << 20


# --------------------------------------------------------------------------- BTF


def read_btf_funcs(path: str = BTF_PATH) -> dict[str, tuple[int, list[str]]]:
    """FUNC name -> (linkage, parameter names), from a raw BTF blob."""
    data = Path(path).read_bytes()
    magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
        "<HBBIIIII", data)
    assert magic == 0xEB9F, "not a BTF blob"
    types = data[hdr_len + type_off: hdr_len + type_off + type_len]
    strs = data[hdr_len + str_off: hdr_len + str_off + str_len]

    def name(off: int) -> str:
        return strs[off: strs.index(b"\0", off)].decode()

    extra = {1: lambda v: 4, 3: lambda v: 12, 4: lambda v: 12 * v, 5: lambda v: 12 * v,
             6: lambda v: 8 * v, 13: lambda v: 8 * v, 14: lambda v: 4, 15: lambda v: 12 * v,
             17: lambda v: 4, 19: lambda v: 12 * v}
    entries = [None]  # type id 0 is void
    pos = 0
    while pos < len(types):
        name_off, info, size_type = struct.unpack_from("<III", types, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        start = pos + 12
        pos = start + extra.get(kind, lambda v: 0)(vlen)
        entries.append((kind, name_off, vlen, size_type, start))
    funcs = {}
    for entry in entries[1:]:
        kind, name_off, vlen, size_type, _ = entry
        if kind != 12:  # BTF_KIND_FUNC; vlen is the linkage
            continue
        proto = entries[size_type]
        params = []
        if proto and proto[0] == 13:
            for i in range(proto[2]):
                p_name, _p_type = struct.unpack_from("<II", types, proto[4] + 8 * i)
                params.append(name(p_name))
        funcs[name(name_off)] = (vlen, params)
    return funcs


@pytest.fixture(scope="module")
def btf_funcs():
    if not os.path.exists(BTF_PATH):
        pytest.fail(f"{BTF_PATH} missing: kernel built without CONFIG_DEBUG_INFO_BTF")
    return read_btf_funcs()


@pytest.mark.parametrize("func, params", [
    ("lru_gen_bpf_young_pte", YOUNG_ARGS),
    ("lru_gen_bpf_young_pmd", YOUNG_ARGS),
    ("lru_gen_bpf_young_look_around", YOUNG_ARGS),
    ("lru_gen_bpf_skip_mm", ["mm", "tgid"]),
    ("lru_gen_bpf_flush_tlb", ["mm", "tgid"]),
    ("bpf_lru_gen_age_cgroup", ["cgroup_id", "can_swap", "force_scan"]),
])
def test_hook_api_in_vmlinux_btf(btf_funcs, func, params):
    assert func in btf_funcs, f"{func} is not in {BTF_PATH}"
    assert btf_funcs[func][1] == params


# --------------------------------------------------------------------------- sysfs, NUMA


def test_page_table_walk_enabled():
    value = int(Path("/sys/kernel/mm/lru_gen/enabled").read_text(), 16)
    assert value & 0x0001, "MGLRU is off"
    assert value & 0x0002, f"the page table walk bit 0x0002 is off ({value:#06x})"


def test_two_numa_nodes_with_memory():
    assert Path("/sys/devices/system/node/online").read_text().strip() == "0-1"
    assert Path("/sys/devices/system/node/has_memory").read_text().strip() == "0-1"


# --------------------------------------------------------------------------- helpers


def lru_gen_state() -> dict[tuple[str, int], dict]:
    """(memcg path, node) -> {"memcg_id": id, "max_seq": n} from debugfs lru_gen."""
    state: dict[tuple[str, int], dict] = {}
    memcg_id, path, node = None, None, None
    for line in Path(LRU_GEN_DEBUGFS).read_text().splitlines():
        m = re.match(r"memcg\s+(\d+)\s+(.*)$", line)
        if m:
            memcg_id, path = int(m.group(1)), m.group(2).strip()
            continue
        m = re.match(r"\s+node\s+(\d+)", line)
        if m:
            node = int(m.group(1))
            state[(path, node)] = {"memcg_id": memcg_id, "max_seq": None}
            continue
        m = re.match(r"\s+(\d+)\s+\d+", line)
        if m and node is not None:
            state[(path, node)]["max_seq"] = int(m.group(1))
    return state


def age_debugfs(memcg_path: str = "/") -> dict[int, int]:
    """Age every node of a memcg through debugfs; return node -> max_seq before."""
    before = {}
    cmds = []
    for (path, node), st in lru_gen_state().items():
        if path == memcg_path:
            before[node] = st["max_seq"]
            cmds.append(f"+ {st['memcg_id']} {node} {st['max_seq']} 1 1")
    assert cmds, f"memcg {memcg_path!r} not in {LRU_GEN_DEBUGFS}"
    with open(LRU_GEN_DEBUGFS, "w") as f:
        f.write(";".join(cmds))
    return before


def max_seqs(memcg_path: str = "/") -> dict[int, int]:
    return {node: st["max_seq"] for (path, node), st in lru_gen_state().items()
            if path == memcg_path}


WORKLOAD = textwrap.dedent(r"""
    import ctypes, json, mmap, sys
    libc = ctypes.CDLL(None, use_errno=True)
    PAGE, REGION = 4096, 2 << 20
    MADV_HUGEPAGE, MADV_NOHUGEPAGE = 14, 15

    def area(nregions, huge):
        m = mmap.mmap(-1, (nregions + 1) * REGION,
                      flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        base = ctypes.addressof(ctypes.c_char.from_buffer(m))
        start = (base + REGION - 1) & ~(REGION - 1)
        advice = MADV_HUGEPAGE if huge else MADV_NOHUGEPAGE
        libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(nregions * REGION), advice)
        return m, start - base, start

    def touch(a, nregions, step):
        m, off, _ = a
        for i in range(0, nregions * REGION, step * PAGE):
            m[off + i] = 1  # write only: a read first would map the huge zero page

    huge = "huge" in sys.argv
    areas = {"all": area(2, False), "quarter": area(2, False), "none": area(1, False)}
    if huge:
        areas["huge"] = area(1, True)
    pattern = {"all": (2, 1), "quarter": (2, 4), "none": (1, 1), "huge": (1, 1)}
    for name, a in areas.items():
        touch(a, pattern[name][0], 1)          # populate every page
    print(json.dumps({k: a[2] for k, a in areas.items()}), flush=True)
    for line in sys.stdin:
        if line.strip() == "touch":
            for name, a in areas.items():
                if name != "none":
                    touch(a, *pattern[name])
        print("done", flush=True)
""")


class Workload:
    """A child process with 2 MiB-aligned anon areas touched in known patterns."""

    def __init__(self, huge: bool = False):
        args = [sys.executable, "-c", WORKLOAD] + (["huge"] if huge else [])
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.areas = json.loads(self.proc.stdout.readline())
        self.pid = self.proc.pid

    def touch(self) -> None:
        self.proc.stdin.write("touch\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "done"

    def regions(self, name: str, n: int) -> list[int]:
        return [(self.areas[name] >> 21) + i for i in range(n)]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def bpf_objects():
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        from conftest import BPF_BUILD, build_bpf_objects
    finally:
        sys.path.pop(0)
    built, problem = build_bpf_objects(BPF_BUILD)
    if problem:  # not built on the host (read-only here): build into /tmp
        built, problem = build_bpf_objects(Path(tempfile.mkdtemp(prefix="guest-bpf-")))
    if problem:
        pytest.skip(f"cannot build the BPF test objects: {problem}")
    return built


def hooktest(objs, *args) -> str:
    r = subprocess.run([str(objs["hooktest"]), *map(str, args)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"hooktest {' '.join(map(str, args))} failed:\n{r.stderr}"
    return r.stdout


class Attached:
    """lru_gen_hooks.bpf.o loaded and attached, pinned under /sys/fs/bpf."""

    def __init__(self, objs, name: str, target: int | None = None):
        self.objs = objs
        self.dir = Path("/sys/fs/bpf") / name
        self.dir.mkdir()
        extra = [target] if target is not None else []
        out = hooktest(objs, "attach", objs["lru_gen_hooks.bpf.o"], self.dir, *extra)
        assert "attached young_pte" in out

    def dump(self):
        young, stats = {}, {}
        for line in hooktest(self.objs, "dump", self.dir).splitlines():
            f = line.split()
            if f[0] == "young":
                tgid, hook, region, pages, calls, anon, nids = map(int, f[1:])
                young[(tgid, hook, region)] = (pages, calls, anon, nids)
            elif f[0] == "stat":
                stats[int(f[1])] = int(f[2])
        return young, stats

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def delta(after: dict, before: dict) -> dict:
    """Per-key (pages, calls, anon_pages) added since before, with the final node mask."""
    out = {}
    for k, v in after.items():
        b = before.get(k, (0,) * len(v))
        d = tuple(x - y for x, y in zip(v[:3], b[:3])) + (v[3],)
        if d[0]:
            out[k] = d
    return out


# --------------------------------------------------------------------------- aging


def test_debugfs_aging_advances_max_seq():
    w = Workload()
    try:
        before = age_debugfs("/")
        after = max_seqs("/")
    finally:
        w.close()
    assert set(before) == {0, 1}
    for node, seq in before.items():
        assert after[node] == seq + 1, f"node {node}: max_seq {seq} -> {after[node]}"


def test_young_pte_hook_reports_runs_of_touched_pages(bpf_objects):
    w = Workload()
    hooks = Attached(bpf_objects, "hm-pte")
    try:
        age_debugfs("/")  # reports the population; the next aging only the touches
        before, _ = hooks.dump()
        w.touch()
        age_debugfs("/")
        after, stats = hooks.dump()
    finally:
        hooks.close()
        w.close()
    got = delta(after, before)
    mine = {(hook, region): v for (tgid, hook, region), v in got.items() if tgid == w.pid}
    for region in w.regions("all", 2):
        pages, calls, anon, nids = mine.get((HOOK_PTE, region), (0, 0, 0, 0))
        assert pages == 512, f"fully touched region {region:#x}: {pages} young pages"
        assert calls <= 2, f"512 contiguous young pages took {calls} calls (no batching?)"
        assert anon == 512 and nids in (1, 2)
    for region in w.regions("quarter", 2):
        pages, calls, _, _ = mine.get((HOOK_PTE, region), (0, 0, 0, 0))
        assert (pages, calls) == (128, 128), f"every 4th page: {pages} pages in {calls} calls"
    for region in w.regions("none", 1):
        assert (HOOK_PTE, region) not in mine, "an untouched region was reported young"
    assert stats[STAT_BAD_CALLS] == 0
    assert stats[STAT_MAX_RUN] == 512


def test_young_pmd_hook_reports_thp(bpf_objects):
    if not Path("/sys/kernel/mm/transparent_hugepage/enabled").exists():
        pytest.skip("no THP")
    w = Workload(huge=True)
    hooks = Attached(bpf_objects, "hm-pmd")
    try:
        smaps = Path(f"/proc/{w.pid}/smaps_rollup").read_text()
        thp_kb = int(re.search(r"AnonHugePages:\s+(\d+)", smaps).group(1))
        if thp_kb < 2048:
            pytest.skip("the kernel did not back the MADV_HUGEPAGE area with a THP")
        age_debugfs("/")
        before, _ = hooks.dump()
        w.touch()
        age_debugfs("/")
        after, stats = hooks.dump()
    finally:
        hooks.close()
        w.close()
    got = delta(after, before)
    region = w.regions("huge", 1)[0]
    pages, calls, anon, _ = got.get((w.pid, HOOK_PMD, region), (0, 0, 0, 0))
    assert (pages, calls, anon) == (512, 1, 512)
    assert stats[STAT_BAD_CALLS] == 0


def test_skip_mm_fmod_ret_limits_the_walk_to_one_process(bpf_objects):
    watched, other = Workload(), Workload()
    hooks = Attached(bpf_objects, "hm-skip", target=watched.pid)
    try:
        watched.touch()
        other.touch()
        age_debugfs("/")
        young, stats = hooks.dump()
    finally:
        hooks.close()
        watched.close()
        other.close()
    pids = {tgid for (tgid, hook, _), _v in young.items() if hook == HOOK_PTE}
    assert watched.pid in pids
    assert pids == {watched.pid}, f"mms of other processes were walked: {pids}"
    assert stats[STAT_SKIP_CALLS] > 0 and stats[STAT_SKIPPED] > 0


def test_aging_kfunc_from_syscall_program(bpf_objects):
    obj = bpf_objects["lru_gen_age.bpf.o"]
    before = max_seqs("/")
    out = hooktest(bpf_objects, "age", obj, 0)
    after = max_seqs("/")
    assert out.split() == ["ret", "2"], out
    for node in (0, 1):
        assert after[node] == before[node] + 1
    # an unknown cgroup id
    assert hooktest(bpf_objects, "age", obj, 1 << 40).split() == ["ret", "-2"]


def test_aging_kfunc_on_a_child_cgroup(bpf_objects):
    root = Path("/sys/fs/cgroup")
    if "memory" not in (root / "cgroup.controllers").read_text().split():
        pytest.skip("no memory controller")
    (root / "cgroup.subtree_control").write_text("+memory")
    cg = root / "heatmap-kfunc-test"
    cg.mkdir(exist_ok=True)
    try:
        before = max_seqs("/heatmap-kfunc-test")
        out = hooktest(bpf_objects, "age", bpf_objects["lru_gen_age.bpf.o"], cg.stat().st_ino)
        after = max_seqs("/heatmap-kfunc-test")
    finally:
        cg.rmdir()
    assert out.split() == ["ret", "2"], out
    assert all(after[n] == before[n] + 1 for n in (0, 1)), (before, after)


FILE_READER = textwrap.dedent(r"""
    import mmap, sys
    f = open(sys.argv[1], "rb")
    m = mmap.mmap(f.fileno(), int(sys.argv[2]), prot=mmap.PROT_READ)
    total = sum(m[i] for i in range(0, len(m), 4096))  # fault in: young PTEs
    print("ready", total, flush=True)
    sys.stdin.readline()
""")


def _big_file(size: int) -> str | None:
    for path in ("/usr/src/linux-source-6.12.tar.xz", "/usr/lib/x86_64-linux-gnu/libLLVM-14.so.1",
                 "/usr/lib/x86_64-linux-gnu/libLLVM-14.so", sys.executable):
        with contextlib.suppress(OSError):
            if os.stat(path).st_size >= size:
                return path
    return None


def test_look_around_hook_reports_accesses_found_by_eviction(bpf_objects):
    size = 8 << 20
    path = _big_file(size)
    if path is None:
        pytest.skip("no file of 8 MiB on the host root to map")
    reader = subprocess.Popen([sys.executable, "-c", FILE_READER, path, str(size)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    # The walk skips every mm but PID 1's, so the reader's PTEs stay young until the
    # eviction finds them through the rmap and lru_gen_look_around() clears them.
    hooks = Attached(bpf_objects, "hm-look-around", target=1)
    try:
        assert reader.stdout.readline().startswith("ready")
        age_debugfs("/")
        age_debugfs("/")
        cmds = [f"- {st['memcg_id']} {node} {st['max_seq'] - 2} 0"
                for (p, node), st in lru_gen_state().items() if p == "/"]
        with open(LRU_GEN_DEBUGFS, "w") as f:
            f.write(";".join(cmds))
        young, stats = hooks.dump()
    finally:
        hooks.close()
        reader.kill()
        reader.wait()
    found = {k: v for k, v in young.items() if k[0] == reader.pid and k[1] == HOOK_LOOK_AROUND}
    assert found, "look-around reported nothing for the reader's young file pages"
    assert all(anon == 0 for _pages, _calls, anon, _nids in found.values())
    assert max(pages for pages, *_ in found.values()) > 1, "look-around never batched a run"
    assert stats[STAT_BAD_CALLS] == 0
    assert not any(k[0] == reader.pid and k[1] == HOOK_PTE for k in young), \
        "the walk reached a skipped mm"


# --------------------------------------------------------------------------- accuracy


STAT_FLUSH_CALLS, STAT_FLUSH_TARGET = range(2)  # lru_gen_flush.bpf.c
AGING_PATHS = ["kfunc", "debugfs"]


class Ager:
    """Forced agings (can_swap=1, force_scan=1) of the root memcg on every node, through
    the kfunc or debugfs. The kfunc's syscall program is loaded once and run for each
    aging, as a monitor does: loading a program between agings changes JIT memory
    permissions, which flushes TLBs as a side effect and would hide stale entries."""

    def __init__(self, objs, how: str):
        self.proc = None
        if how == "kfunc":
            self.proc = subprocess.Popen(
                [str(objs["hooktest"]), "age-loop", str(objs["lru_gen_age.bpf.o"]), "0", "1", "1"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __call__(self) -> None:
        if self.proc is None:
            age_debugfs("/")
            return
        self.proc.stdin.write("age\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        assert reply.split() == ["ret", "2"], reply

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


@contextlib.contextmanager
def on_cpu(cpu: int):
    """Run this process (and the children it starts) on one CPU only."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


# One 2 MiB-aligned anon region (PTE-mapped), populated, then written page by page on
# every "touch" line; pinned to the CPU given in argv[1], it sleeps in read() between
# touches, so that CPU has nothing else to run and keeps the process's translations.
HOT_REGION = textwrap.dedent(r"""
    import ctypes, json, mmap, sys
    libc = ctypes.CDLL(None, use_errno=True)
    PAGE, REGION, MADV_NOHUGEPAGE = 4096, 2 << 20, 15
    m = mmap.mmap(-1, 2 * REGION, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    start = (base + REGION - 1) & ~(REGION - 1)
    libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(REGION), MADV_NOHUGEPAGE)
    off = start - base

    def touch():
        for i in range(0, REGION, PAGE):
            m[off + i] = 1
""")

PINNED_WORKER = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\n" + HOT_REGION + \
    textwrap.dedent(r"""
    touch()
    print(json.dumps({"hot": start}), flush=True)
    for line in sys.stdin:
        touch()
        print("done", flush=True)
""")


# The same hot region, touched on command, while a second thread keeps the mmap lock
# taken for write most of the time: mprotect() of a populated 32 MiB area back and
# forth (change_protection() runs under the write lock) plus an mmap()/munmap() per
# round. Plain mmap()/munmap() alone hold the write lock too briefly (munmap()
# downgrades it before zapping) for a test to hit it reliably.
BUSY_WORKER = HOT_REGION + textwrap.dedent(r"""
    import threading, time
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    PROT_R, PROT_RW, MAP_ANON_PRIVATE = 1, 3, 0x22

    rounds = [0]

    def busy():
        size = 32 << 20
        area = libc.mmap(None, size, PROT_RW, MAP_ANON_PRIVATE, -1, 0)
        ctypes.memset(area, 1, size)
        while True:
            libc.mprotect(area, size, PROT_R)
            libc.mprotect(area, size, PROT_RW)
            small = libc.mmap(None, 1 << 16, PROT_RW, MAP_ANON_PRIVATE, -1, 0)
            libc.munmap(small, 1 << 16)
            rounds[0] += 1

    touch()
    threading.Thread(target=busy, daemon=True).start()
    for _ in range(6000):  # measure a process that is busy already, not one starting
        if rounds[0]:
            break
        time.sleep(0.01)
    print(json.dumps({"hot": start}), flush=True)
    for line in sys.stdin:
        touch()
        print("done", rounds[0], flush=True)
""")


def _threads(pid: int) -> str:
    """Each thread's state and wait channel: what a stuck thread is waiting for."""
    out = []
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        stat = (task / "stat").read_text()
        state = stat[stat.rindex(")") + 2]
        wchan = (task / "wchan").read_text() if (task / "wchan").exists() else "?"
        out.append(f"{task.name}:{state}:{wchan or '-'}")
    return " ".join(out)


class HotRange:
    """A worker process with one hot 2 MiB region, touched on command."""

    def __init__(self, script: str, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-c", script, *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        self.region = json.loads(self.proc.stdout.readline())["hot"] >> 21

    def touch(self) -> list[str]:
        self.proc.stdin.write("touch\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline().split()
        assert reply[:1] == ["done"], reply
        return reply[1:]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def hot_pages_per_aging(hooks: Attached, worker: HotRange, age: Ager,
                        rounds: int) -> list[int]:
    """Touch, age, and count the young pages of the hot region, `rounds` times."""
    counts = []
    for _ in range(rounds):
        before, _ = hooks.dump()
        worker.touch()
        age()
        after, stats = hooks.dump()
        assert stats[STAT_BAD_CALLS] == 0
        got = delta(after, before).get((worker.pid, HOOK_PTE, worker.region), (0,))
        counts.append(got[0])
    return counts


@pytest.mark.parametrize("how", AGING_PATHS)
def test_flush_tlb_hook_lets_aging_see_every_access_of_a_sleeping_process(bpf_objects, how):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs: one for the worker alone")
    flush_dir = Path("/sys/fs/bpf/hm-flush")
    with on_cpu(0):  # everything but the worker runs on CPU 0, the worker alone on 1
        worker = HotRange(PINNED_WORKER, "1")
        hooks = Attached(bpf_objects, "hm-tlb", target=worker.pid)
        age = Ager(bpf_objects, how)
        try:
            age()  # the population; from here on only the touches
            # Without the hook: the worker's CPU keeps the translations the aging
            # did not flush, so its writes do not set the accessed bits again.
            without = hot_pages_per_aging(hooks, worker, age, 3)
            flush_dir.mkdir()
            hooktest(bpf_objects, "attach", bpf_objects["lru_gen_flush.bpf.o"], flush_dir,
                     worker.pid)
            age()  # clears the accessed bits and, now, flushes
            with_flush = hot_pages_per_aging(hooks, worker, age, 4)
            flush_stats = {}
            for line in hooktest(bpf_objects, "dump", flush_dir).splitlines():
                f = line.split()
                if f[0] == "stat":
                    flush_stats[int(f[1])] = int(f[2])
        finally:
            shutil.rmtree(flush_dir, ignore_errors=True)
            age.close()
            hooks.close()
            worker.close()
    print(f"hot region, 512 pages written between agings ({how}): "
          f"without the flush hook {without}, with it {with_flush}")
    assert with_flush == [512] * 4, (without, with_flush)
    # once per walked mm and node (the walk skips every mm but the worker's); 5 agings
    assert flush_stats[STAT_FLUSH_TARGET] >= 5 * 2, flush_stats
    # Not asserted: without the hook, most runs here (TCG) report 35-76 of the 512
    # pages from the second aging on, but some report all 512, presumably because
    # something unrelated flushed every CPU's TLB in between (a kernel-wide flush,
    # e.g. a lazy vmap purge after processes exited): real, but not on demand.


@pytest.mark.parametrize("how", AGING_PATHS)
def test_forced_aging_waits_for_the_mmap_lock_of_a_busy_process(bpf_objects, how):
    worker = HotRange(BUSY_WORKER)
    hooks = Attached(bpf_objects, "hm-busy", target=worker.pid)
    age = Ager(bpf_objects, how)
    try:
        age()
        first = int(worker.touch()[0])
        counts = hot_pages_per_aging(hooks, worker, age, 6)
        last = int(worker.touch()[0])
        threads = _threads(worker.pid)
        meminfo = Path("/proc/meminfo").read_text().split("\n")[:3]
    finally:
        age.close()
        hooks.close()
        worker.close()
    print(f"hot region of a process busy in mprotect/mmap/munmap ({how}): {counts}, "
          f"{last - first} busy rounds meanwhile")
    assert last > first, f"the busy thread did not run ({first} rounds before the " \
        f"agings; threads {threads}; {meminfo})"
    # a kernel that skips the mm on a failed mmap_read_trylock() reports 0 most times
    assert counts == [512] * 6, counts
