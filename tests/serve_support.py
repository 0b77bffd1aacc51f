"""Start ``radcommons serve`` as a process of its own and wait until it answers; run a command the
same way (shared by test folders).

A server is forked from a *fork server*: one process per test process that has imported what a
server imports (``radcommons.cli``, the server app, the indexing pipeline, uvicorn) and nothing
else, and forks a child for each server, which then runs ``radcommons.cli.main()`` with the
server's arguments, environment, folder and output files, as ``python -m radcommons serve`` does.
Each ``python -m radcommons serve`` spent 2 to 8 s importing before it answered, and the suite
starts some 300 servers. The child is still a process of its own, on its own port, killed with a
signal. The tests of the command line itself run ``python -m radcommons`` (``run_cli``).
"""

from __future__ import annotations

import atexit
import gc
import importlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

import httpx
import psutil

#: What ``radcommons serve`` imports before it answers: the fork server imports it once.
PRELOAD = ("radcommons.cli", "radcommons.cli.serve_cmd", "radcommons.server", "radcommons.pipelines.indexing",
           "uvicorn")


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


class ServerProcess:
    """A server forked by the fork server, with the part of :class:`subprocess.Popen` the tests use
    (it is the fork server's child, not this process's: its exit status comes through a file)."""

    def __init__(self, pid: int, exits: Path) -> None:
        self.pid = pid
        self._exit_file = exits / str(pid)

    @property
    def returncode(self) -> int | None:
        return int(self._exit_file.read_text()) if self._exit_file.exists() else None

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"radcommons (pid {self.pid})", timeout or 0)
            time.sleep(0.02)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class _ForkServer:
    """This process's fork server (started on first use; it ends when this process does, as its
    standard input closes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._exits = Path()

    def fork(self, args: list[str], cwd: Path, env: Mapping[str, str], stdout: Path,
             stderr: Path | None = None) -> ServerProcess:
        """``radcommons ARGS`` in ``cwd`` with ``env``, its output appended to ``stdout`` (and its
        errors to ``stderr``, or to ``stdout`` when None)."""
        request = json.dumps({"args": args, "cwd": str(cwd), "env": dict(env), "stdout": str(stdout),
                              "stderr": str(stderr or stdout)})
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._exits = Path(tempfile.mkdtemp(prefix="radcommons-exits-"))
                atexit.register(shutil.rmtree, self._exits, ignore_errors=True)
                code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                        "import serve_support; serve_support.fork_server(sys.argv[1])")
                # Nothing of this process's environment but what Python needs: the child gets its
                # own, and what a module read of it on import (rich reads COLUMNS and NO_COLOR)
                # must not be the first test's.
                env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
                with open(self._exits / "fork-server.log", "ab") as log:
                    self._process = subprocess.Popen([sys.executable, "-c", code, str(self._exits)], text=True,
                                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                                     env=env)
            assert self._process.stdin is not None and self._process.stdout is not None
            self._process.stdin.write(request + "\n")
            self._process.stdin.flush()
            answer = self._process.stdout.readline()
        if not answer.strip().isdigit():
            raise AssertionError(f"the fork server did not fork (it answered {answer!r}): "
                                 f"{(self._exits / 'fork-server.log').read_text()}")
        return ServerProcess(int(answer), self._exits)


_FORK_SERVER = _ForkServer()


def fork_server(exits: str) -> None:
    """The fork server's loop: a JSON request a line on standard input, the forked child's pid a
    line on standard output; each child's exit status goes to the file ``exits``/pid."""
    for name in PRELOAD:
        importlib.import_module(name)
    gc.freeze()  # the children's collections then leave these objects' pages shared with this process

    def reap(_signum: int, _frame: object) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            partial = Path(exits, f"{pid}.partial")
            partial.write_text(str(os.waitstatus_to_exitcode(status)))
            partial.rename(Path(exits, str(pid)))  # whole, or not there

    signal.signal(signal.SIGCHLD, reap)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _serve(request)
        print(pid, flush=True)


def _serve(request: dict[str, object]) -> NoReturn:
    """In the forked child: become ``python -m radcommons ARGS`` (folder, environment, output)."""
    code = 0
    try:  # whatever happens, this child never returns into the fork server's loop
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # the fork server's requests are not the command's to read
        os.close(null)
        for fd, name in ((1, "stdout"), (2, "stderr")):
            out = os.open(str(request[name]), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(out, fd)
            os.close(out)
        os.chdir(str(request["cwd"]))
        os.environ.clear()
        os.environ.update(request["env"])  # type: ignore[arg-type]
        from radcommons.cli import main

        sys.argv = ["radcommons", *request["args"]]  # type: ignore[misc]
        main()
    except SystemExit as exit_:
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
        code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    except BaseException:
        traceback.print_exc()
        code = 1
    # What an exiting interpreter runs that a command can see (atexit handlers, which include
    # logging's and multiprocessing's, and buffered output), then out: tearing down the fork
    # server's modules took 0.7 s a command and changed nothing on disk.
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_radcommons(args: list[str], cwd: Path, env: Mapping[str, str],
                   timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``radcommons ARGS`` run to its end as a process forked by the fork server (what
    ``subprocess.run([sys.executable, "-m", "radcommons", *args], capture_output=True, text=True)``
    answers, without the 1 to 3 s of imports each such process spent)."""
    with tempfile.TemporaryDirectory(prefix="radcommons-run-") as folder:
        stdout, stderr = Path(folder, "stdout"), Path(folder, "stderr")
        process = _FORK_SERVER.fork(args, cwd, env, stdout, stderr)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        return subprocess.CompletedProcess(["radcommons", *args], code, stdout.read_text(), stderr.read_text())


def _listens(process: ServerProcess, port: int) -> bool:
    """Whether ``process`` itself is the one listening on ``port`` (not another test's server)."""
    try:
        connections = psutil.Process(process.pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections)


def start_server(root: Path, port: int, env: Mapping[str, str]) -> ServerProcess:
    """``radcommons serve`` on 127.0.0.1:``port`` with state and log under ``root`` (forked by the
    fork server); waits for health."""
    process = _FORK_SERVER.fork(["serve", "--port", str(port), "--state-dir", str(root / "state"),
                                 "--log-level", "warning"], root, env, root / "server.log")
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
