"""Chunks of a file scored side by side on every core, in input order, with flat memory.

`ordered_map(task, chunks, jobs)` runs `task` on each chunk in `jobs` forked worker processes.
Forked, the workers inherit the models already loaded in the parent (nothing is pickled but the
chunks and their results), and each runs one thread: the processes are the parallelism. At most
two chunks per worker are in flight, so memory stays that of a few chunks whatever the file's
length. One chunk (a small file) is scored in the calling process: no pool to start.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# The task of the pool being run: set before the workers fork, so they inherit it.
_task: Callable[[Any], Any] | None = None


def default_jobs() -> int:
    """Every core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def one_thread() -> None:
    """One thread in this process's BLAS / OpenMP pools (and torch's): its process is the unit
    of parallelism (a forked worker here, a Dask worker process in `urgency.distributed`)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _run(item: Any) -> Any:
    assert _task is not None
    return _task(item)


def ordered_map(task: Callable[[Item], Result], items: Iterable[Item], jobs: int) -> Iterator[Result]:
    """`task(item)` for each item, in order; with `jobs` > 1 and more than one item, in `jobs`
    forked processes. An exception in a worker is raised here, for its item."""
    global _task
    items = iter(items)
    first = list(itertools.islice(items, 2))
    if jobs <= 1 or len(first) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        yield from map(task, itertools.chain(first, items))
        return
    _task = task
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"), initializer=one_thread)
    pending: deque[Future[Result]] = deque()
    try:
        for item in itertools.chain(first, items):
            pending.append(pool.submit(_run, item))
            if len(pending) >= 2 * jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _task = None
