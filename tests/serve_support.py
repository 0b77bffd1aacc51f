"""Start ``radcommons serve`` as a real subprocess and wait until it answers (shared by test folders)."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import psutil


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a server a test starts).

    Under pytest-xdist each worker tries only ports congruent to its number, so two workers
    can never be handed the same free port before either server has bound it. (Ports are
    chosen here, not by ``bind(0)``: Linux hands those out with one parity only.)
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index, count = int(worker.removeprefix("gw") or 0), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    low, high = 20000, 30000  # below Linux's default ephemeral range, where clients' ports come from
    while True:
        port = random.randrange(low + index, high, count)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def _listens(process: subprocess.Popen[bytes], port: int) -> bool:
    """Whether ``process`` itself is the one listening on ``port`` (not another test's server)."""
    try:
        connections = psutil.Process(process.pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections)


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
            if httpx.get(url, timeout=1).status_code == 200 and _listens(process, port):
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not start in 30 s")
