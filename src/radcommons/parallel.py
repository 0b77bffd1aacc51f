"""Parallel map over many small jobs (files): local processes, or a Dask cluster.

One worker runs inline (no pool, no pickling), which is also what tests and small runs
want. More workers run on a local pool of spawned processes, or on a Dask cluster by
scheduler address (``tcp://host:8786``) so the same code scales out. Jobs are sent in
chunks, because a task costs about a millisecond of overhead and a header-only job on one
file costs about the same. Either way a bounded window of tasks stays in flight and results
are yielded as each task completes, so the workers keep working while the caller consumes
results (for example writes them to the index).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Jobs per Dask task.
CHUNK_SIZE = 32
#: Tasks in flight per worker, so a huge input never sits whole in the scheduler.
TASKS_PER_WORKER = 4


def worker_count(requested: int) -> int:
    """``requested`` workers, or one per core when it is 0."""
    return requested if requested > 0 else (os.cpu_count() or 1)


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
    """Yield ``func(item)`` for every item, in completion order (input order when local).

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
    """A pool of ``count`` fresh (spawned) processes, ``count * TASKS_PER_WORKER`` tasks in flight.

    Spawned, not forked: a fork of a process holding SQLite or network connections is unsafe.
    A new task is submitted as soon as one completes, before its results are handed to the
    caller, so no worker waits for the slowest task of a group nor for the caller.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    limit = count * TASKS_PER_WORKER
    with ProcessPoolExecutor(max_workers=count, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: set[Future[list[R]]] = set()
        exhausted = False
        while True:
            while not exhausted and len(pending) < limit:
                chunk = next(chunks, None)
                if chunk is None:
                    exhausted = True
                else:
                    pending.add(pool.submit(_run_chunk, func, chunk))
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            refill = [next(chunks, None) for _ in range(len(done))] if not exhausted else []
            for chunk in refill:
                if chunk is None:
                    exhausted = True
                else:
                    pending.add(pool.submit(_run_chunk, func, chunk))
            for future in done:
                yield from future.result()


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
