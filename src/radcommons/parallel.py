"""Parallel map over many small jobs (files), through Dask.

One worker runs inline (no cluster, no pickling), which is also what tests and small runs
want. More workers start a local Dask cluster of processes, or connect to an existing
scheduler by address (``tcp://host:8786``) so the same code runs on a cluster.
Jobs are sent in chunks, because a Dask task costs about a millisecond of overhead and a
header-only job on one file costs about the same.
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
    """Yield ``func(item)`` for every item, in completion order.

    ``func`` must be a module-level function (it is pickled to the workers) and should
    return small, plain results; errors it wants reported should be part of its result,
    since an exception stops the whole map.
    """
    count = worker_count(workers)
    if count == 1 and not scheduler:
        yield from map(func, items)
        return
    from dask.distributed import Client, LocalCluster, as_completed

    if scheduler:
        client = Client(scheduler)
        cluster = None
    else:
        cluster = LocalCluster(
            n_workers=count,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        )
        client = Client(cluster)
    try:
        limit = max(count, len(client.scheduler_info().get("workers", {})) or count) * TASKS_PER_WORKER
        chunks = _chunks(items, chunk_size)
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
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
