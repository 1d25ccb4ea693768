"""Concurrent requests scored together (`serve.coalesce.Coalescer`): real threads."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from serve.coalesce import Coalescer


class Recorder:
    """A scoring function that records its calls and takes `seconds` per call."""

    def __init__(self, seconds: float = 0.05, fails_on: str | None = None) -> None:
        self.seconds = seconds
        self.fails_on = fails_on
        self.calls: list[tuple[object, list[str]]] = []
        self._lock = threading.Lock()

    def __call__(self, key: object, items: list[str]) -> list[str]:
        with self._lock:
            self.calls.append((key, list(items)))
        time.sleep(self.seconds)
        if self.fails_on in items:
            raise ValueError(f"bad item {self.fails_on}")
        return [f"{key}:{item}" for item in items]


def test_one_request_alone_is_scored_at_once_alone() -> None:
    score = Recorder(seconds=0)
    coalescer = Coalescer(score, max_items=10)
    assert coalescer.submit("a", "k") == "k:a"
    assert coalescer.submit("b", "k") == "k:b"
    assert score.calls == [("k", ["a"]), ("k", ["b"])]


def test_requests_arriving_during_a_call_are_scored_together_each_getting_its_own_answer() -> None:
    score = Recorder(seconds=0.2)
    coalescer = Coalescer(score, max_items=100)
    items = [f"t{n}" for n in range(12)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        first = pool.submit(coalescer.submit, items[0], "k")
        time.sleep(0.05)  # the first call is running: the others queue behind it
        rest = [pool.submit(coalescer.submit, item, "k") for item in items[1:]]
        answers = [first.result(), *(future.result() for future in rest)]
    assert answers == [f"k:{item}" for item in items]
    assert score.calls[0] == ("k", ["t0"])
    assert len(score.calls) == 2 and sorted(score.calls[1][1]) == sorted(items[1:])


def test_at_most_max_items_per_call_and_none_left_waiting() -> None:
    score = Recorder(seconds=0.05)
    coalescer = Coalescer(score, max_items=3)
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda n: coalescer.submit(str(n), "k"), range(10)))
    assert answers == [f"k:{n}" for n in range(10)]
    assert all(len(items) <= 3 for _key, items in score.calls)
    assert sum(len(items) for _key, items in score.calls) == 10


def test_requests_of_other_models_are_not_mixed() -> None:
    old, new = object(), object()
    seen: list[tuple[object, list[str]]] = []

    def score(key: object, items: list[str]) -> list[str]:
        seen.append((key, items))
        time.sleep(0.1)
        return [f"{'old' if key is old else 'new'}:{item}" for item in items]

    coalescer = Coalescer(score, max_items=100)
    with ThreadPoolExecutor(max_workers=8) as pool:
        first = pool.submit(coalescer.submit, "x", old)
        time.sleep(0.03)
        futures = {item: pool.submit(coalescer.submit, item, old if item < "c" else new) for item in "abcd"}
        assert first.result() == "old:x"
        assert {item: f.result() for item, f in futures.items()} == {
            "a": "old:a",
            "b": "old:b",
            "c": "new:c",
            "d": "new:d",
        }
    assert all(key is old for key, items in seen if set(items) & {"a", "b", "x"})


def test_a_failing_call_is_retried_alone_so_only_the_bad_request_fails() -> None:
    score = Recorder(seconds=0.1, fails_on="bad")
    coalescer = Coalescer(score, max_items=100)
    with ThreadPoolExecutor(max_workers=6) as pool:
        first = pool.submit(coalescer.submit, "t0", "k")
        time.sleep(0.03)
        futures = {item: pool.submit(coalescer.submit, item, "k") for item in ("t1", "bad", "t2")}
        assert first.result() == "k:t0"
        assert futures["t1"].result() == "k:t1" and futures["t2"].result() == "k:t2"
        with pytest.raises(ValueError, match="bad item bad"):
            futures["bad"].result()
    # The combined call failed, then each was scored alone.
    assert sorted(items for _key, items in score.calls[-3:]) == [["bad"], ["t1"], ["t2"]]
    assert sorted(score.calls[1][1]) == ["bad", "t1", "t2"]
    # The coalescer is idle again: a later request is scored at once.
    score.seconds = 0
    assert coalescer.submit("later", "k") == "k:later"
