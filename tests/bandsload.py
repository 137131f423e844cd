"""bench/bands.py as a test workload: start it, know its bands, stop it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BANDS = REPO / "bench" / "bands.py"


class Bands:
    """A running bands workload: bands by name, each with start, end, thp, share and
    regions ([[address, true share], ...])."""

    def __init__(self, regions: int = 8, seconds: float = 600, python: str = sys.executable):
        self.proc = subprocess.Popen([python, str(BANDS), "--regions", str(regions),
                                      "--seconds", str(seconds)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        layout = json.loads(self.proc.stdout.readline())
        self.pid = self.proc.pid
        self.bands = {b["name"]: b for b in layout["bands"]}

    def truth(self) -> dict[int, float]:
        """True share per 2 MiB region start, every band."""
        return {addr: share for b in self.bands.values() for addr, share in b["regions"]}

    def thp_backed(self) -> bool:
        """Whether the THP bands really got huge pages (smaps AnonHugePages)."""
        text = Path(f"/proc/{self.pid}/smaps").read_text()
        want = {b["start"] for b in self.bands.values() if b["thp"]}
        got, start = 0, None
        for line in text.splitlines():
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                start = int(head.split("-")[0], 16)
            elif head == "AnonHugePages:" and start in want:
                got += int(line.split()[1])
        return got >= sum(b["end"] - b["start"] for b in self.bands.values()
                          if b["thp"]) // 1024

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            f.close()

    def __enter__(self) -> Bands:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
