"""`python -m bpfload probe` against `bpftool feature probe` (bpftool 7.5 with libbpf
1.5, tests/reference_libbpf.py) on the same kernel: the same program types, map types
and helpers per program type are supported, for every type both know; the attach
kinds agree with what the rest of this suite finds on this kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import reference_libbpf
from required import cannot_run

from bpfload.probe import probe

pytestmark = pytest.mark.usefixtures("no_leaks")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def report():
    from kernelstate import bpf_unavailable

    if bpf_unavailable():
        cannot_run(bpf_unavailable(), "HEATMAP_REQUIRE_HOST_BPF")
    return probe()


@pytest.fixture(scope="module")
def bpftool_report(report):
    try:
        bpftool, _ = reference_libbpf.build()
    except reference_libbpf.Unavailable as e:
        cannot_run(f"no reference bpftool: {e}", "HEATMAP_REQUIRE_REFERENCE")
    r = subprocess.run([str(bpftool), "feature", "probe", "kernel", "-j"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _theirs(section: dict, suffix: str) -> dict[str, bool]:
    return {k[len("have_"):-len(suffix)]: v for k, v in section.items()
            if k.startswith("have_") and k.endswith(suffix)}


def test_program_types_agree_with_bpftool(report, bpftool_report):
    theirs = _theirs(bpftool_report["program_types"], "_prog_type")
    common = set(theirs) & set(report["program_types"])
    assert len(common) >= 30
    assert {t: report["program_types"][t] for t in common} == {t: theirs[t] for t in common}


def test_map_types_agree_with_bpftool(report, bpftool_report):
    theirs = _theirs(bpftool_report["map_types"], "_map_type")
    theirs["cgroup_storage"] = theirs.pop("cgroup_storage", theirs.get("cgroup_storage_"
                                                                         "deprecated"))
    common = set(theirs) & set(report["map_types"])
    assert len(common) >= 30
    assert {t: report["map_types"][t] for t in common} == {t: theirs[t] for t in common}


def test_helpers_agree_with_bpftool(report, bpftool_report):
    theirs = {k[:-len("_available_helpers")]: set(v)
              for k, v in bpftool_report["helpers"].items()}
    assert set(theirs) & set(report["helpers"])
    for prog_type in set(theirs) & set(report["helpers"]):
        ours = set(report["helpers"][prog_type])
        assert ours == theirs[prog_type], prog_type


def test_attach_kinds_are_what_this_kernel_does(report):
    """The kinds the host tests attach must say yes; the host refuses fentry (EPERM)
    and has no kprobes (tests/test_attach.py), so those say no here."""
    kinds = report["attach_kinds"]
    for kind in ("tracepoint", "raw_tp", "tp_btf", "uprobe", "uretprobe", "usdt",
                 "cgroup link", "xdp link", "tcx", "struct_ops link", "iter"):
        assert kinds[kind] is True, kind
    kprobe_pmu = os.path.exists("/sys/bus/event_source/devices/kprobe")
    assert kinds["kprobe"] == kprobe_pmu
    assert "tcp_congestion_ops" in report["struct_ops_types"]


def test_probe_command_table_and_json():
    r = subprocess.run([sys.executable, "-m", "bpfload", "probe", "--json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["program_types"]["socket_filter"] is True and doc["map_types"]["hash"]
    r = subprocess.run([sys.executable, "-m", "bpfload", "probe"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("kernel ")
    assert any(line.split()[:3] == ["prog", "socket_filter", "yes"]
               for line in r.stdout.splitlines())
