"""Start ``radcommons serve`` as a real subprocess and wait until it answers (shared by test folders)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(root: Path, port: int, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """``radcommons serve`` on 127.0.0.1:``port`` with state and log under ``root``; waits for health."""
    log = open(root / "server.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "radcommons", "serve", "--port", str(port),
         "--state-dir", str(root / "state"), "--log-level", "warning"],
        cwd=root, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api/v1/health"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {(root / 'server.log').read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not start in 30 s")
