"""bpfload against libbpf 1.5 on the BPF selftests in the guest, on the patched 6.12
kernel: the objects with programs the host kernel refuses before verifying them
(fentry, fexit, fmod_ret, lsm). Same rules as tests/compat/test_selftests.py; the
corpus is the one the host compiled (it says where in HEATMAP_SELFTESTS)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "compat"))

import corpus  # noqa: E402
import reference_libbpf  # noqa: E402
import verdict  # noqa: E402
from required import cannot_run  # noqa: E402


def test_selftests_load_as_with_libbpf_in_the_guest(tmp_path, capsys):
    objs = corpus.find()
    if objs is None:
        cannot_run("the host built no selftest corpus for the guest",
                   "HEATMAP_REQUIRE_REFERENCE")
    _, libbpf = reference_libbpf.build()
    names = verdict.guest_objects(objs)
    assert len(names) > 100, f"only {len(names)} selftest objects for the guest"
    results = verdict.run(str(libbpf), [objs.objects / n for n in names],
                          tmp_path / "guest.json", timeout=3000)
    with capsys.disabled():
        print(f"\nselftests in the guest: {verdict.summary(results)}")
    unexplained, stale = verdict.judge(results, "guest", verdict.read_known())
    assert not unexplained and not stale, "\n".join(unexplained + stale)
