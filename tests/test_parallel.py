"""radcommons.parallel.map_unordered: every item once; the caller's process is one of the local
workers, so a small input is done before the others have started; a larger one is shared."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

import radcommons.parallel as parallel
from radcommons.parallel import map_unordered


def where(item: int) -> tuple[int, int]:
    return item, os.getpid()


def slow_where(item: int) -> tuple[int, int]:
    time.sleep(0.02)
    return item, os.getpid()


def workers() -> list[psutil.Process]:
    """This process's pool workers (multiprocessing's resource tracker is not one)."""
    found = []
    for child in psutil.Process().children():
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass  # gone between the listing and the look
    return found


def sleepy(item: int) -> int:
    time.sleep(0.4)
    return item


def divide(item: int) -> float:
    return 1 / item


def test_a_small_input_is_done_before_the_workers_start_and_they_are_stopped():
    started = time.monotonic()
    results = list(map_unordered(where, range(100), workers=2))
    assert sorted(item for item, _ in results) == list(range(100))
    assert {pid for _, pid in results} == {os.getpid()}
    assert time.monotonic() - started < 0.3  # a spawned worker alone takes longer to start
    deadline = time.monotonic() + 10
    while workers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not workers()


def test_a_larger_input_is_shared_with_the_helpers_once_they_are_ready():
    results = list(map_unordered(slow_where, range(150), workers=3, chunk_size=3))
    assert sorted(item for item, _ in results) == list(range(150))
    pids = [pid for _, pid in results]
    assert pids[:3] == [os.getpid()] * 3  # the first chunk ran here while the helpers started
    helpers = set(pids) - {os.getpid()}
    assert len(helpers) == 2  # workers=3: the caller and two spawned processes
    assert all(pids.count(pid) >= 15 for pid in helpers) and pids.count(os.getpid()) >= 15


@pytest.mark.parametrize("caller_works", [True, False])
def test_an_error_in_a_job_stops_the_map(monkeypatch, caller_works):
    monkeypatch.setattr(parallel, "CALLER_WORKS", caller_works)
    with pytest.raises(ZeroDivisionError):
        list(map_unordered(divide, [1, 0], workers=2))


def test_the_caller_sleeps_while_it_waits_for_the_helpers(monkeypatch):
    """Waiting on the last chunks costs the caller no CPU (no polling loop)."""
    monkeypatch.setattr(parallel, "CALLER_WORKS", False)
    started = time.process_time()
    assert sorted(map_unordered(sleepy, range(6), workers=2, chunk_size=1)) == list(range(6))
    assert time.process_time() - started < 0.5  # the helpers sleep 1.2 s each in all


def test_helpers_started_early_are_the_ones_the_map_uses():
    with parallel.helpers_started_early(3, __name__):
        deadline = time.monotonic() + 20
        while len(workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        early = {process.pid for process in workers()}
        assert len(early) == 2
        results = list(map_unordered(slow_where, range(150), workers=3, chunk_size=3))
    assert sorted(item for item, _ in results) == list(range(150))
    assert {pid for _, pid in results} - {os.getpid()} == early  # no other process was started
    assert not parallel._early


def test_helpers_started_early_and_never_used_are_stopped():
    with parallel.helpers_started_early(2, __name__):
        assert len(parallel._early) == 1
    deadline = time.monotonic() + 10
    while workers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not workers() and not parallel._early
    with parallel.helpers_started_early(1, __name__), parallel.helpers_started_early(4, __name__, scheduler="tcp://x:1"):
        assert not parallel._early  # one worker runs inline; a cluster has its own workers


_STOPPED_WHILE_MAPPING = """
import importlib, sys, time
import typer
sys.path.insert(0, sys.argv[1])
cli = importlib.import_module("radcommons.cli.app")
from radcommons.parallel import map_unordered
from test_parallel import slow_where

command = typer.Typer()


@command.command()
def work() -> None:
    for item, _ in map_unordered(slow_where, range(100_000), workers=2, chunk_size=1):
        if item == 0:
            print("working", flush=True)
            time.sleep(60)  # meanwhile the helper has started, done what it had, and waits for more


cli.app = command  # the real entry point, running this command
sys.argv = ["radcommons"]
cli.main()
"""


def _stop_while_mapping(signal_name: str, code: int, *, after: float, env: dict[str, str] | None = None) -> None:
    """Run a command mapping on two workers, send ``signal_name`` to its process group ``after``
    seconds into the map (as a terminal (SIGINT) or a service manager does), and expect it to
    end with ``code`` and one line of its own on stderr."""
    import signal
    import subprocess
    import sys

    def interruptible() -> None:  # a test run started as a background job inherits SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    process = subprocess.Popen([sys.executable, "-c", _STOPPED_WHILE_MAPPING, str(Path(__file__).parent)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env=env, preexec_fn=interruptible)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "working"
        time.sleep(after)
        os.killpg(process.pid, getattr(signal, signal_name))
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == code, err
    assert "Traceback" not in err and "leaked" not in err, err
    assert err.strip() == {130: "interrupted", 143: "terminated"}[code], err


@pytest.mark.parametrize("signal_name, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_ctrl_c_or_a_kill_stops_the_helpers_without_a_word_from_them(signal_name: str, code: int) -> None:
    """Ctrl-C reaches the whole process group: each helper printed a traceback of its own
    KeyboardInterrupt; after SIGTERM (Python's default: gone at once) the helpers' resource
    tracker warned of leaked semaphores."""
    _stop_while_mapping(signal_name, code, after=1.5)  # the helper is at work by now


def test_ctrl_c_while_a_helper_starts_up_stops_it_without_a_word(tmp_path: pytest.TempPathFactory) -> None:
    """Ctrl-C in the half second (seconds, on a loaded machine) before a spawned helper has made
    itself deaf to it: the helper printed a KeyboardInterrupt traceback from the middle of its
    interpreter's start-up. Here every helper's start-up takes 3 s (a ``sitecustomize`` that the
    spawned interpreters run), so the signal always comes then."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys, time\nif '--multiprocessing-fork' in sys.argv:\n    time.sleep(3)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    _stop_while_mapping("SIGINT", 130, after=0.2, env=env)
