"""Run the command line as a real subprocess, in a temporary folder, with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment without the caller's RADCOMMONS_* settings, and a wide, plain terminal."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "COLUMNS": "250",
        "NO_COLOR": "1",
        "TERM": "dumb",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(extra)
    return env


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_cli("config", "show", env={...})`` runs ``python -m radcommons config show`` in ``tmp_path``."""

    def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
        return subprocess.run(
            [sys.executable, "-m", "radcommons", *args],
            cwd=cwd or tmp_path,
            env=clean_env(tmp_path, **(env or {})),
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run
