"""Guest test harness: every test under tests/guest/ runs inside a QEMU guest booted on
the patched kernel (kernel/build-kernel, kernel/guest.py).

On the host, the selected guest tests are replaced by proxy items. The first proxy
that runs boots ONE guest for the session, which runs
``python -m pytest -p no:cacheprovider <all selected guest node ids> --junitxml=...``
inside; then every proxy reports its own test's guest outcome (pass, fail with the
guest's failure text, skip with the guest's reason). Inside the guest
(HEATMAP_IN_GUEST=1) the tests simply run.

If no guest can be had (no QEMU, no kernel source, failed build) the guest tests are
skipped with the reason, or fail with it when HEATMAP_REQUIRE_GUEST=1 (CI), which
also fails a test the guest itself skipped. A guest
crash or timeout fails every guest test with the console tail.

The guest's kernel log must stay clean: a lockdep report, a WARNING, a BUG or any other
splat in it fails every guest test of the run (tests/kernel_log.py). On the debug
kernel (HEATMAP_GUEST_KERNEL=debug: lockdep, sleep-in-atomic checks, preemption, 4
vCPUs; CI runs the suite on it once) lockdep must also still be on at the end, and
the built config and the CPUs the guest brought up must be the debug kernel's.

Environment knobs: HEATMAP_GUEST_TIMEOUT (seconds, default 1800), HEATMAP_GUEST_MEM
(default 2G), HEATMAP_GUEST_KERNEL (default|debug), HEATMAP_ACCEL (kvm|tcg),
HEATMAP_CACHE (kernel cache directory).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import kernel_scripts
import pytest
from kernel_log import debug_kernel_problems, kernel_log_problems
from required import cannot_run

IN_GUEST = os.environ.get("HEATMAP_IN_GUEST") == "1"
procs = kernel_scripts.procs()
TAIL_LINES = 40  # of the guest's output, under a failure
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def _say(msg: str) -> None:
    # pytest captures sys.stderr; the terminal is still reachable here.
    print(f"[guest] {msg}", file=sys.__stderr__, flush=True)


def _item_path(item) -> Path:
    p = getattr(item, "path", None)
    return Path(str(p if p is not None else item.fspath)).resolve()


def _is_guest_item(item) -> bool:
    try:
        _item_path(item).relative_to(HERE)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- the kernel selftest


def build_selftest(kernel_dir: Path) -> str:
    """Build the series' selftest against the kernel in kernel_dir; "" or the problem,
    which is also left in kselftest.PROBLEM for the guest test to report."""
    import kselftest

    kselftest.BUILD.mkdir(parents=True, exist_ok=True)
    try:
        kselftest.build(kernel_dir, kselftest.BUILD)
    except (kselftest.BuildError, OSError) as e:
        kselftest.PROBLEM.write_text(f"{e}\n")
        return str(e)
    kselftest.PROBLEM.unlink(missing_ok=True)
    return ""


# --------------------------------------------------------------------------- host side


def _junit_address(nodeid: str) -> tuple[str, str]:
    """(classname, name) that pytest's junitxml writes for a node id."""
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]


class _GuestSession:
    """One guest boot running all selected guest tests; results by node id."""

    def __init__(self, config, nodeids: list[str]):
        self.config = config
        self.nodeids = nodeids
        self.unavailable = ""  # no guest on this machine
        self.error = ""  # guest crashed / timed out / produced no report
        self.results: dict[tuple[str, str], tuple[str, str]] = {}
        self.output = ""
        self.ran = False

    def run(self) -> None:
        if self.ran:
            return
        self.ran = True
        try:
            guest = kernel_scripts.guest()
        except Exception as e:  # a broken kernel/guest.py must not crash collection
            self.unavailable = f"cannot load kernel/guest.py: {e}"
            return
        variant = os.environ.get("HEATMAP_GUEST_KERNEL", "default")
        try:
            guest.qemu_binary()
            _say(f"locating the patched test kernel ({variant}; a first build takes "
                 "several minutes)")
            image = guest.kernel_image(build=True, progress=lambda m: _say(f"build-kernel: {m}"),
                                       variant=variant)
        except guest.GuestUnavailable as e:
            self.unavailable = str(e)
            return
        problem = build_selftest(image.parent)
        if problem:
            _say(f"the kernel's BPF selftest could not be built on the host:\n{problem}")
        env = self._selftests_env()
        scratch = Path(tempfile.mkdtemp(prefix="heatmap-guest-tests-"))
        xml_guest = f"{guest.GUEST_SCRATCH}/guest.xml"
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                f"--junitxml={xml_guest}", *self.nodeids]
        timeout = float(os.environ.get("HEATMAP_GUEST_TIMEOUT", "1800"))
        mem = os.environ.get("HEATMAP_GUEST_MEM", "2G")
        _say(f"booting the guest for {len(self.nodeids)} test(s) (scratch: {scratch})")
        start = time.monotonic()
        try:
            res = guest.run(argv, timeout=timeout, mem=mem, cwd=str(self.config.rootpath),
                            scratch=scratch, kernel=image, env=env, variant=variant,
                            console_path=scratch / "console.log")
        except guest.GuestUnavailable as e:
            self.unavailable = str(e)
            shutil.rmtree(scratch, ignore_errors=True)
            return
        except guest.GuestError as e:
            self.error = f"{e}\n--- guest output (tail) ---\n{procs.tail(e.output, TAIL_LINES)}"
            _say(f"guest scratch kept for inspection: {scratch}")
            return
        self.output = res.output
        (scratch / "guest-output.txt").write_text(res.output)
        _say(f"guest finished in {time.monotonic() - start:.0f}s ({res.accel}), "
             f"pytest exit {res.returncode}")
        xml_path = scratch / "guest.xml"
        if not xml_path.exists():
            self.error = (f"the guest pytest wrote no report (exit {res.returncode})\n"
                          f"--- guest output (tail) ---\n{procs.tail(res.output, TAIL_LINES)}")
            return
        self._parse(xml_path)
        problems = kernel_log_problems(res.console, variant)
        if variant == "debug":
            problems += debug_kernel_problems(
                res.console, (image.parent / "config").read_text(),
                (REPO / "kernel" / "config.debug").read_text(), guest.DEBUG_CPUS)
        if problems:
            self.error = (f"the guest kernel ({variant}) logged problems during the run "
                          f"(console: {scratch / 'console.log'}):\n" + "\n".join(problems[:20]))
        if self.error or any(outcome == "failed" for outcome, _ in self.results.values()):
            _say(f"guest scratch kept for inspection: {scratch}")
        else:  # nothing to look at: do not leave a directory per run in /tmp
            shutil.rmtree(scratch, ignore_errors=True)

    def _selftests_env(self) -> dict[str, str]:
        """The BPF selftest corpus, compiled here for test_selftests_guest.py (the guest
        cannot tell which one is for it: the key holds the host's kernel BTF)."""
        if not any("test_selftests_guest.py" in n for n in self.nodeids):
            return {}
        # a guest test that finds no corpus fails instead of skipping, as on the host
        env = {k: os.environ[k] for k in ("HEATMAP_REQUIRE_REFERENCE",) if k in os.environ}
        sys.path.insert(0, str(HERE.parent / "compat"))
        import corpus

        try:
            env[corpus.ENV] = str(corpus.build(progress=_say).root)
        except Exception as e:  # the guest test says what is missing
            _say(f"cannot build the selftest corpus for the guest: {e}")
        return env

    def _parse(self, xml_path: Path) -> None:
        root = ET.parse(xml_path).getroot()
        for case in root.iter("testcase"):
            key = (case.get("classname", ""), case.get("name", ""))
            outcome, text = "passed", ""
            for child in case:
                if child.tag in ("failure", "error"):
                    msg = child.get("message", "")
                    outcome, text = "failed", (child.text or msg or child.tag)
                    break
                if child.tag == "skipped":
                    reason = child.get("message", "") or (child.text or "")
                    if child.get("type") == "pytest.xfail":
                        reason = f"xfail in the guest: {reason}"
                    outcome, text = "skipped", reason
            prev = self.results.get(key)
            if prev is None or prev[0] != "failed":
                self.results[key] = (outcome, text)

    def outcome(self, nodeid: str) -> tuple[str, str]:
        self.run()
        if self.unavailable:
            return "unavailable", self.unavailable
        if self.error:
            return "failed", self.error
        res = self.results.get(_junit_address(nodeid))
        if res is None:
            return "failed", ("the guest run did not report this test\n"
                              f"--- guest output (tail) ---\n{procs.tail(self.output, TAIL_LINES)}")
        return res


class GuestItem(pytest.Item):
    """Host-side stand-in for a guest test: reports the outcome from the guest run."""

    def __init__(self, *, original, session_runner: _GuestSession, **kwargs):
        super().__init__(**kwargs)
        self._original = original
        self._runner = session_runner
        self.own_markers = list(original.own_markers)
        self.keywords.update(original.keywords)

    def runtest(self) -> None:
        outcome, text = self._runner.outcome(self.nodeid)
        if outcome == "passed":
            return
        if outcome == "skipped":  # in the guest: in CI as much a failure as no guest
            cannot_run(f"skipped in the guest: {text}", "HEATMAP_REQUIRE_GUEST")
        if outcome == "unavailable":
            cannot_run(f"no test guest on this machine: {text}", "HEATMAP_REQUIRE_GUEST")
        pytest.fail(f"in the guest:\n{text}", pytrace=False)

    def iter_markers_with_node(self, name=None):
        # skip/skipif/xfail (e.g. a module-level "guest only" skipif) are decided in the
        # guest, where the test really runs; its outcome comes back through runtest().
        for node, mark in super().iter_markers_with_node(name):
            if mark.name not in ("skip", "skipif", "xfail"):
                yield node, mark

    def reportinfo(self):
        return self._original.reportinfo()

    def repr_failure(self, excinfo, style=None):
        return str(excinfo.value)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    guest_items = [it for it in items if _is_guest_item(it)]
    for it in guest_items:
        it.add_marker(pytest.mark.guest)
    if IN_GUEST or not guest_items:
        return
    runner = _GuestSession(config, [it.nodeid for it in guest_items])
    replaced = {}
    for it in guest_items:
        replaced[id(it)] = GuestItem.from_parent(it.parent, name=it.name, original=it,
                                                 session_runner=runner)
    items[:] = [replaced.get(id(it), it) for it in items]
