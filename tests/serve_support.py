"""Start ``radcommons serve`` as a process of its own and wait until it answers; run a command the
same way (shared by test folders).

A server is forked from a *fork server*: one process per test process that has imported what a
server imports (``radcommons.cli``, the server app, the indexing pipeline, uvicorn) and nothing
else, and forks a child for each server, which then runs ``radcommons.cli.main()`` with the
server's arguments, environment, folder and output files, as ``python -m radcommons serve`` does.
Each ``python -m radcommons serve`` spent 2 to 8 s importing before it answered, and the suite
starts some 300 servers. The child is still a process of its own, on its own port, killed with a
signal. The tests of the command line itself run ``python -m radcommons`` (``run_cli``).

What a fresh interpreter does at start-up is not done again in the child: the ``PYTHON*``
variables (``PYTHONPATH``, ``PYTHONWARNINGS``, ...), the locale from ``LANG``/``LC_*`` and
anything read on import (the preloaded modules are imported once, with the fork server's own
environment; an import that fails lazily in a real process has already succeeded or failed here).
``TZ`` is applied (``time.tzset()``). Tests about any of these use ``run_cli``.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import itertools
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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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
    (it is the fork server's child, not this process's: its exit status comes through a file named
    by the request, not by the pid, which a later child may be given again once this one is reaped)."""

    def __init__(self, pid: int, exit_file: Path) -> None:
        self.pid = pid
        self._exit_file = exit_file

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
    standard input closes, and kills the children it still has)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._exits = Path()
        self._ids = itertools.count()

    def fork(self, args: list[str], cwd: Path, env: Mapping[str, str], stdout: Path,
             stderr: Path | None = None) -> ServerProcess:
        """``radcommons ARGS`` in ``cwd`` with ``env``, its output appended to ``stdout`` (and its
        errors to ``stderr``, or to ``stdout`` when None)."""
        with self._lock:
            request_id = f"request-{next(self._ids)}"  # never a pid: a stale pid-named file cannot match
            request = json.dumps({"id": request_id, "args": args, "cwd": str(cwd), "env": dict(env),
                                  "stdout": str(stdout), "stderr": str(stderr or stdout)})
            if self._process is None or self._process.poll() is not None:
                self._exits = Path(tempfile.mkdtemp(prefix="radcommons-exits-"))
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
                atexit.register(_close, self._process, self._exits)
            assert self._process.stdin is not None and self._process.stdout is not None
            self._process.stdin.write(request + "\n")
            self._process.stdin.flush()
            answer = self._process.stdout.readline()
        if not answer.strip().isdigit():
            raise AssertionError(f"the fork server did not fork (it answered {answer!r}): "
                                 f"{(self._exits / 'fork-server.log').read_text()}")
        return ServerProcess(int(answer), self._exits / request_id)

    def close(self) -> None:
        """End the fork server now (it kills the children it still has); the next fork starts another."""
        with self._lock:
            if self._process is not None:
                _close(self._process, self._exits)


def _close(process: subprocess.Popen[str], exits: Path) -> None:
    """End a fork server, then delete its exits folder: it writes there until it has exited."""
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            pipe.close()
    try:
        process.wait(30)  # it SIGKILLs its children and waits up to 10 s for them
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    shutil.rmtree(exits, ignore_errors=True)


_FORK_SERVER = _ForkServer()


def fork_server(exits: str) -> None:
    """The fork server's loop: a JSON request a line on standard input, the forked child's pid a
    line on standard output; each child's exit status goes to the file ``exits``/request id.

    The children are ``radcommons`` run in an interpreter that has already started: see this
    module's docstring for the start-up state (``PYTHON*`` variables, locale, imports) they do not
    get afresh. At end of input (the test process has ended or closed it) the children still
    running are killed: a server left running would hold its port, its files and its database.
    """
    for name in PRELOAD:
        importlib.import_module(name)
    gc.freeze()  # the children's collections then leave these objects' pages shared with this process
    live: dict[int, str] = {}  # pid -> request id, of the children not yet reaped

    def reap(_signum: int = 0, _frame: object = None) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            request_id = live.pop(pid, None)
            if request_id is None:  # not one this loop forked (a helper a preloaded module started)
                continue
            partial = Path(exits, f"{request_id}.partial")
            partial.write_text(str(os.waitstatus_to_exitcode(status)))
            partial.rename(Path(exits, request_id))  # whole, or not there

    signal.signal(signal.SIGCHLD, reap)
    for line in sys.stdin:
        request = json.loads(line)
        with _sigchld_blocked():  # reap runs only once the child's id is in live
            pid = os.fork()
            if pid == 0:
                _serve(request)
            live[pid] = str(request["id"])
        print(pid, flush=True)
    with _sigchld_blocked():
        for pid in live:
            os.kill(pid, signal.SIGKILL)  # not reaped yet, so the pid is still this child's
        deadline = time.monotonic() + 10
        while live and time.monotonic() < deadline:
            reap()
            time.sleep(0.02)


@contextmanager
def _sigchld_blocked() -> Iterator[None]:
    """SIGCHLD held back (delivered when the block ends)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})


def _serve(request: dict[str, object]) -> NoReturn:
    """In the forked child: become ``python -m radcommons ARGS`` (folder, environment, output)."""
    code = 0
    try:  # whatever happens, this child never returns into the fork server's loop
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})  # the fork server forked with it blocked
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
        time.tzset()  # TZ as a new process would read it (localtime, logging's timestamps)
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
    # What an exiting interpreter runs that a command can see (waiting for non-daemon threads and
    # concurrent.futures executors, e.g. a server's pending spool writes after SIGTERM; atexit
    # handlers, which include logging's and multiprocessing's; buffered output), then out:
    # tearing down the fork server's modules took 0.7 s a command and changed nothing on disk.
    if hasattr(threading, "_shutdown"):
        threading._shutdown()  # type: ignore[attr-defined]
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
        with _killed_on_error(process):
            code = process.wait(timeout)
        return subprocess.CompletedProcess(["radcommons", *args], code, stdout.read_text(), stderr.read_text())


@contextmanager
def _killed_on_error(process: ServerProcess) -> Iterator[None]:
    """SIGKILL ``process`` if the block raises anything (a timeout, a failed check, Ctrl-C), as
    ``subprocess.run`` does: a test that fails must not leave it running."""
    try:
        yield
    except BaseException:
        process.kill()
        raise


def _listens(process: ServerProcess, port: int) -> bool:
    """Whether ``process`` itself is the one listening on ``port`` (not another test's server)."""
    try:
        connections = psutil.Process(process.pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections)


def start_server(root: Path, port: int, env: Mapping[str, str], via: _ForkServer = _FORK_SERVER) -> ServerProcess:
    """``radcommons serve`` on 127.0.0.1:``port`` with state and log under ``root`` (forked by the
    fork server ``via``, this process's own unless a test of the fork server passes another); waits
    for health."""
    process = via.fork(["serve", "--port", str(port), "--state-dir", str(root / "state"),
                                 "--log-level", "warning"], root, env, root / "server.log")
    url = f"http://127.0.0.1:{port}/api/v1/health"
    deadline = time.monotonic() + 30
    with _killed_on_error(process):
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"server exited: {(root / 'server.log').read_text()}")
            try:
                if httpx.get(url, timeout=1).status_code == 200 and _listens(process, port):
                    return process
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server did not start in 30 s: {(root / 'server.log').read_text()}")
