"""bpfload against libbpf 1.5 on every BPF selftest object of Linux 6.12, on the host
kernel: each object must load with both loaders or with neither, and so must each
program of an object neither loads whole; differences only as known_differences.txt
lists them, with their reasons. (The guest half is tests/guest/test_selftests_guest.py,
for the program types this kernel refuses before verifying: fentry, fexit, lsm, ...)

The objects are compiled once and cached (corpus.py; about two minutes on two cores);
the comparison takes about three minutes.
"""

from __future__ import annotations

import corpus
import kernel_source
import pytest
import reference_libbpf
import verdict
from required import cannot_run


@pytest.fixture(scope="module")
def built():
    try:
        _, libbpf = reference_libbpf.build()
        return corpus.build(progress=print), str(libbpf)
    except (corpus.Unavailable, kernel_source.Unavailable, reference_libbpf.Unavailable) as e:
        cannot_run(f"no selftest corpus: {e}", "HEATMAP_REQUIRE_REFERENCE")


def test_known_differences_are_well_formed():
    known = verdict.read_known()
    assert known and all(k.why and k.says for k in known)
    assert len({(k.object, k.program, k.where) for k in known}) == len(known)


def test_selftests_load_as_with_libbpf(root, no_leaks, bpffs, built, tmp_path, capsys):
    objs, libbpf = built
    names = objs.names()
    assert len(names) > 700, f"only {len(names)} selftest objects compiled"
    results = verdict.run(libbpf, [objs.objects / n for n in names], tmp_path / "host.json",
                          timeout=3600)
    with capsys.disabled():
        print(f"\nselftests on the host: {verdict.summary(results)} "
              f"({objs.sources - len(names)} of {objs.sources} sources do not compile "
              f"with this clang)")
    unexplained, stale = verdict.judge(results, "host", verdict.read_known())
    assert not unexplained and not stale, "\n".join(unexplained + stale)


def test_judging_sees_every_kind_of_difference(tmp_path):
    known_file = tmp_path / "known.txt"
    known_file.write_text("# comment\n"
                          "a.bpf.o | any | bpfload | not found | reason a\n"
                          "b.bpf.o:p | host | libbpf | EACCES | reason b\n"
                          "c.bpf.o | guest | bpfload | x | reason c\n"
                          "d.bpf.o | any | bpfload | gone | reason d\n")
    ok = verdict.OK
    results = {
        "a.bpf.o": {"libbpf": "load: extern not found", "bpfload": ok, "programs": {}},
        "b.bpf.o": {"libbpf": "load: x", "bpfload": "load: y",
                    "programs": {"p": [ok, "load: EACCES"], "q": ["load: z", ok]}},
        "c.bpf.o": {"libbpf": "load: x", "bpfload": ok, "programs": {}},
        "d.bpf.o": {"libbpf": ok, "bpfload": ok, "programs": {}},
        "e.bpf.o": {"libbpf": ok, "bpfload": "load: EPERM", "programs": {}},
    }
    unexplained, stale = verdict.judge(results, "host", verdict.read_known(known_file))
    assert unexplained == [
        "b.bpf.o:q: only bpfload loads it; the other says: load: z",
        "c.bpf.o: only bpfload loads it; the other says: load: x",  # listed for the guest
        "e.bpf.o: only libbpf loads it; the other says: load: EPERM"]
    assert stale == ["known.txt:5: d.bpf.o no longer differs here"]
    bad = tmp_path / "bad.txt"
    bad.write_text("a.bpf.o | everywhere | bpfload | x | y\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        verdict.read_known(bad)
