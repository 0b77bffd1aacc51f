"""Helpers every benchmark in bench/ uses: a warm page cache and the machine's CPU use."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path


def read_all(files: Iterable[Path]) -> float:
    """Read every file once (so each tool starts from the same warm page cache); seconds taken."""
    t0 = time.perf_counter()
    for path in files:
        with open(path, "rb", buffering=0) as fp:
            while fp.read(8 << 20):
                pass
    return time.perf_counter() - t0


def files_under(folder: Path) -> list[Path]:
    """Every file under ``folder``."""
    return [Path(root) / name for root, _dirs, names in os.walk(folder) for name in names]


def cpu_busy_s() -> float | None:
    """CPU-seconds all processes on the machine have used since boot (from /proc/stat)."""
    try:
        with open("/proc/stat") as fp:
            fields = [int(x) for x in fp.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
