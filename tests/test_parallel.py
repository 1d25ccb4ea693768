"""Chunks scored side by side: in input order, in other processes, errors raised for their chunk."""

from __future__ import annotations

import os

import pytest

from urgency.parallel import ordered_map


def _square_with_pid(number: int) -> tuple[int, int]:
    return number * number, os.getpid()


def _fail_on_three(number: int) -> int:
    if number == 3:
        raise ValueError("chunk 3 is bad")
    return number


def test_results_come_in_input_order_from_worker_processes() -> None:
    results = list(ordered_map(_square_with_pid, range(9), jobs=2))
    assert [square for square, _ in results] == [n * n for n in range(9)]
    assert os.getpid() not in {pid for _, pid in results}


def test_one_item_or_one_job_runs_here() -> None:
    assert [pid for _, pid in ordered_map(_square_with_pid, [1], jobs=2)] == [os.getpid()]
    assert {pid for _, pid in ordered_map(_square_with_pid, range(4), jobs=1)} == {os.getpid()}


def test_a_workers_error_is_raised_for_its_item() -> None:
    seen = []
    with pytest.raises(ValueError, match="chunk 3 is bad"):
        for number in ordered_map(_fail_on_three, range(8), jobs=2):
            seen.append(number)
    assert seen == [0, 1, 2]


def test_a_closure_over_loaded_state_needs_no_pickling() -> None:
    # Forked workers inherit the task: a lambda over a lock (unpicklable) works.
    import threading

    lock = threading.Lock()
    assert list(ordered_map(lambda n: (n, lock.locked()), range(3), jobs=2)) == [
        (0, False),
        (1, False),
        (2, False),
    ]
