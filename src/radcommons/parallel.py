"""Parallel map over many small jobs (files): local processes, or a Dask cluster.

One worker runs inline (no pool, no pickling), which is also what tests and small runs
want. More workers run on a local pool of spawned processes, or on a Dask cluster by
scheduler address (``tcp://host:8786``) so the same code scales out. Locally the caller's
own process is one of the workers: it works through the input from the start, while the
others start (each is a fresh interpreter that imports pydicom and the rest again, about
half a second), so a small input is done before they are ready and they are stopped unused,
and on a two-core machine ``workers=2`` means the caller and one helper, not three
processes on two cores. A command can start its helpers before it imports its pipeline
(:func:`helpers_started_early`), so that they start up while it does. Locally this is a
plain process pool, not Dask's: Dask's local ``processes`` scheduler computes a group of
tasks at a time (results could not stream to the index while the input is read) and a
``LocalCluster`` takes seconds to start, longer than a contribution of a few hundred files
takes to de-identify; a cluster address runs the same chunks on ``dask.distributed``. Jobs
are sent in chunks, because a task costs about a millisecond of overhead and a header-only
job on one file costs about the same. Either way a bounded window of tasks stays in flight and results
are yielded as each task completes, so the workers keep working while the caller consumes
results (for example writes them to the index).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

T = TypeVar("T")
R = TypeVar("R")

#: Jobs per Dask task.
CHUNK_SIZE = 32
#: Tasks in flight per worker, so a huge input never sits whole in the scheduler.
TASKS_PER_WORKER = 4
#: The most workers a command or the ``workers`` setting may ask for: each local worker is a
#: process, and 100,000 of them never start on one machine (the command hung).
MAX_WORKERS = 256
#: Whether the caller's process is one of the local workers (tests turn it off to be sure
#: that spawned workers do the work).
CALLER_WORKS = True


def worker_count(requested: int) -> int:
    """``requested`` workers, or one per core when it is 0."""
    return requested if requested > 0 else (os.cpu_count() or 1)


class _Helpers(NamedTuple):
    """A local pool of spawned helper processes and each one's warm-up import (done once it has started)."""

    pool: ProcessPoolExecutor
    starting: list[Future[None]]

    @property
    def count(self) -> int:
        return len(self.starting)


#: Helpers started ahead of the map that will use them (:func:`helpers_started_early`).
_early: list[_Helpers] = []


def _helper_count(count: int) -> int:
    return count - 1 if CALLER_WORKS else count


def _start_helpers(helpers: int, module: str) -> _Helpers:
    """``helpers`` spawned processes, each importing ``module`` as its first task.

    Spawned, not forked: a fork of a process holding SQLite or network connections is unsafe.
    """
    import multiprocessing
    import signal
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=helpers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_leave_interrupts_to_the_caller)
    # Each helper is spawned as its submit needs it. Until its initializer runs (half a second of
    # interpreter start-up, seconds on a loaded machine) Ctrl-C would interrupt it with a traceback
    # and break the pool: a helper inherits this thread's signal mask, so it starts with SIGINT
    # blocked and the initializer discards one that came meanwhile.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return _Helpers(pool, [pool.submit(_import, module) for _ in range(helpers)])  # one process each
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _leave_interrupts_to_the_caller() -> None:
    """A helper ignores Ctrl-C (the terminal sends it to the whole process group): the caller stops
    the helpers itself. Each helper printed a traceback of its KeyboardInterrupt on the user's terminal."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # discards one that came while it was blocked
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # see _start_helpers


@contextlib.contextmanager
def helpers_started_early(workers: int, module: str, *, scheduler: str = "") -> Iterator[None]:
    """Start the local helper processes of a coming :func:`map_unordered` now, importing ``module``.

    A command enters this before it imports its pipeline (pydicom, SQLAlchemy and the rest take
    most of a second), so its helpers start up while it does instead of after: the map inside
    the block takes them and they work from its first chunk. Helpers no map took are stopped
    when the block ends. Nothing is started for one worker or a cluster.
    """
    count = worker_count(workers)
    if scheduler or _helper_count(count) < 1:
        yield
        return
    helpers = _start_helpers(_helper_count(count), module)
    _early.append(helpers)
    try:
        yield
    finally:
        if helpers in _early:  # never taken by a map
            _early.remove(helpers)
            _stop(helpers.pool)


def _take_early(helpers: int) -> _Helpers | None:
    """Helpers started early for a map with ``helpers`` helpers, now owned by the caller."""
    for early in _early:
        if early.count == helpers:
            _early.remove(early)
            return early
    return None


def _module_of(func: Callable[..., object]) -> str:
    while isinstance(func, functools.partial):
        func = func.func
    return getattr(func, "__module__", None) or __name__


def _import(module: str) -> None:
    """A worker's first task: import what the jobs need, so that the worker is ready for them."""
    importlib.import_module(module)


def _run_chunk(func: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    return [func(item) for item in chunk]


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def map_unordered(
    func: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int = 0,
    scheduler: str = "",
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[R]:
    """Yield ``func(item)`` for every item, in completion order (input order when ``workers`` is 1).

    ``func`` must be a module-level function (it is pickled to the workers) and should
    return small, plain results; errors it wants reported should be part of its result,
    since an exception stops the whole map.
    """
    count = worker_count(workers)
    if count == 1 and not scheduler:
        yield from map(func, items)
        return
    chunks = _chunks(items, chunk_size)
    if scheduler:
        yield from _map_on_cluster(func, chunks, scheduler, count)
    else:
        yield from _map_on_processes(func, chunks, count)


def _map_on_processes(func: Callable[[T], R], chunks: Iterator[list[T]], count: int) -> Iterator[R]:
    """The caller's process and ``count - 1`` fresh (spawned) processes work through ``chunks``.

    The helpers are the ones started early for this map (:func:`helpers_started_early`), else
    started now. They get chunks once the first of them has started, ``TASKS_PER_WORKER`` each
    in flight, refilled as they complete; between refills the caller runs a chunk itself, and
    at the end it takes back the chunks no helper has started, so nobody waits on a long queue.
    """
    from concurrent.futures import FIRST_COMPLETED, wait

    caller_works = CALLER_WORKS
    helpers = _helper_count(count)
    started = _take_early(helpers)
    pool, starting = started if started is not None else _start_helpers(helpers, _module_of(func))
    pending: dict[Future[list[R]], list[T]] = {}  # the chunk, to take it back if never started
    completed = False
    try:
        exhausted = False
        while True:
            if any(future.done() for future in starting):
                while not exhausted and len(pending) < helpers * TASKS_PER_WORKER:
                    chunk = next(chunks, None)
                    if chunk is None:
                        exhausted = True
                    else:
                        pending[pool.submit(_run_chunk, func, chunk)] = chunk
            for future in [future for future in pending if future.done()]:
                del pending[future]
                yield from future.result()
            if caller_works:
                chunk = None if exhausted else next(chunks, None)
                if chunk is None:
                    exhausted = True
                    chunk = _take_back(pending)
                if chunk is not None:
                    yield from _run_chunk(func, chunk)
                    continue
            if exhausted and not pending:
                completed = True
                return
            # only what can still change: a started helper's future is done for good, and
            # waiting on it would return at once and spin this loop while the helpers work
            wait([*pending, *(future for future in starting if not future.done())], return_when=FIRST_COMPLETED)
    finally:
        if completed and all(future.done() for future in starting):
            pool.shutdown(wait=True)
        else:  # failed, abandoned, or done before the helpers had even started
            _stop(pool)


def _take_back(pending: dict[Future[list[R]], list[T]]) -> list[T] | None:
    """The newest submitted chunk that no helper has started, withdrawn from the pool."""
    for future in reversed(list(pending)):
        if future.cancel():
            return pending.pop(future)
    return None


def _stop(pool: ProcessPoolExecutor) -> None:
    """Shut ``pool`` down without waiting for its workers to finish starting or working (the
    input ended before they were needed, or the caller stopped early or failed)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
    else:  # the pool's own record of its processes (cleared by shutdown, so read first)
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
    manager = getattr(pool, "_executor_manager_thread", None)  # cleared by shutdown: read first
    pool.shutdown(wait=False, cancel_futures=True)
    # Let the pool's manager thread end (at once: its processes are gone). It closes its wake-up pipe
    # as it ends; a command that exits meanwhile (a bad argument found right after the helpers were
    # started) has Python's exit hook write to that pipe, and before 3.12 that races: "Exception
    # ignored ... Bad file descriptor" and a traceback on the user's terminal.
    if manager is not None:
        manager.join(timeout=10)


def _map_on_cluster(func: Callable[[T], R], chunks: Iterator[list[T]], scheduler: str, count: int) -> Iterator[R]:
    """A running Dask cluster, by scheduler address, with a bounded number of tasks in flight."""
    from dask.distributed import Client, as_completed

    with Client(scheduler) as client:
        limit = max(count, len(client.scheduler_info().get("workers", {}))) * TASKS_PER_WORKER
        pending = as_completed()
        for chunk in chunks:
            pending.add(client.submit(_run_chunk, func, chunk, pure=False))
            if pending.count() >= limit:
                break
        for future in pending:
            yield from future.result()
            next_chunk = next(chunks, None)
            if next_chunk is not None:
                pending.add(client.submit(_run_chunk, func, next_chunk, pure=False))
