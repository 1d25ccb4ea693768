"""Chunks of a file scored side by side on every core, in input order, with flat memory.

`ordered_map(task, chunks, jobs)` runs `task` on each chunk in `jobs` forked worker processes.
Forked, the workers inherit the models already loaded in the parent (nothing is pickled but the
chunks and their results), and each runs one thread: the processes are the parallelism. At most
two chunks per worker are in flight, so memory stays that of a few chunks whatever the file's
length. One chunk (a small file) is scored in the calling process: no pool to start.

`prepare_worker_process` sets a Dask worker process up the same way (one thread per pool) and
undoes a Dask nanny's malloc setting, so a worker scores as a plain process does.
"""

from __future__ import annotations

import ctypes
import itertools
import multiprocessing
import os
import platform
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


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc's own dynamic rule reaches on 64-bit Linux
# (DEFAULT_MMAP_THRESHOLD_MAX); it then trims the heap's free top past twice that.
REUSED_BLOCK_BYTES = 32 * 2**20
# What a BLAS / OpenMP library reads, as it loads, for its number of threads.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def prepare_worker_process() -> list[str]:
    """Set this Dask worker process up to score as a plain scoring process does
    (`urgency.distributed` runs it once in every worker); returns what it changed.

    - Freed memory is reused. A Dask nanny starts its worker with `MALLOC_TRIM_THRESHOLD_` set
      (dask's `distributed.nanny.pre-spawn-environ`, to hand memory back to the system), and
      setting it switches glibc's dynamic thresholds off: every block over 128 KiB then gets a
      fresh mmap, so each chunk's arrays and sparse matrices are mapped, faulted in page by page
      and unmapped again. Measured on 200,000 tickets: 5x the page faults of a plain process and
      about a quarter more CPU per ticket. The thresholds are set to where glibc's own rule ends
      up in a plain process (blocks up to 32 MiB reused; at most 64 MiB of free heap kept).
    - One thread per BLAS / OpenMP pool: the worker's processes are the parallelism. The pools
      loaded already are limited now (`one_thread`), those the models load later (scipy's
      OpenBLAS, scikit-learn's OpenMP) read the variables set here as they load. A nanny sets
      them already with dask's defaults; a worker started without one (`--no-nanny`), or with
      other values, would otherwise run a pool as wide as the machine in every process.
    """
    changed = []
    if "MALLOC_TRIM_THRESHOLD_" in os.environ and platform.libc_ver()[0] == "glibc":
        libc = ctypes.CDLL("libc.so.6")
        if libc.mallopt(_M_MMAP_THRESHOLD, REUSED_BLOCK_BYTES) and libc.mallopt(
            _M_TRIM_THRESHOLD, 2 * REUSED_BLOCK_BYTES
        ):
            changed.append(f"glibc malloc reuses blocks up to {REUSED_BLOCK_BYTES >> 20} MiB")
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))
    one_thread()
    changed.append("one thread per BLAS/OpenMP pool")
    return changed


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
