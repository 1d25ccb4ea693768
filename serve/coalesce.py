"""Concurrent one-ticket requests of a worker scored together, in one pass of the models.

Scoring one ticket costs nearly as much as scoring eight (the encoder pass, the pipelines'
per-call overhead, the store's commit), so under load one call for every waiting request answers
more requests per second. No request waits for a timer: the first request of an idle worker is
scored at once, alone; requests that arrive meanwhile queue, and when a call ends the oldest
waiting request scores everything queued by then (its own ticket with the others'). Each request's
answer is only given once the call that scored it has stored it, as when scored alone.

When a combined call fails (one ticket's bad field, a store error), each of its requests is
scored again alone, so the error reaches only the request it belongs to.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(eq=False)
class _Request(Generic[Item, Result]):
    item: Item
    # Requests are only combined with others of the same key, the same object (the models they
    # were served with: a reload between two requests must not score the first with the new ones).
    key: object
    done: threading.Event = field(default_factory=threading.Event)
    # Set with `done`: the result, the error, or the turn to score what is queued.
    result: Result | None = None
    error: BaseException | None = None
    leads: bool = False


class Coalescer(Generic[Item, Result]):
    """Calls `score(key, items)` (one result per item, in order) for concurrent `submit`s."""

    def __init__(self, score: Callable[[object, list[Item]], list[Result]], max_items: int) -> None:
        self._score = score
        self._max_items = max_items
        self._lock = threading.Lock()
        self._queued: list[_Request[Item, Result]] = []
        self._busy = False

    def submit(self, item: Item, key: object) -> Result:
        request: _Request[Item, Result] = _Request(item, key)
        with self._lock:
            self._queued.append(request)
            request.leads = not self._busy
            self._busy = True
        if not request.leads:
            request.done.wait()
        if request.leads:
            self._score_queued()
        if request.error is not None:
            raise request.error
        return request.result  # type: ignore[return-value]

    def _score_queued(self) -> None:
        """Score the queued requests of the oldest one's key (this thread's own among them), then
        hand the turn to the oldest request still queued, or go idle."""
        with self._lock:
            key = self._queued[0].key
            batch = [request for request in self._queued if request.key is key][: self._max_items]
            taken = set(map(id, batch))
            self._queued = [request for request in self._queued if id(request) not in taken]
        try:
            self._score_batch(key, batch)
        finally:
            with self._lock:
                following = self._queued[0] if self._queued else None
                self._busy = following is not None
            if following is not None:
                following.leads = True
                following.done.set()
            for request in batch:
                request.leads = False
                request.done.set()

    def _score_batch(self, key: object, batch: list[_Request[Item, Result]]) -> None:
        try:
            results = self._score(key, [request.item for request in batch])
        except BaseException as error:
            if len(batch) == 1:
                batch[0].error = error
                return
            # Who caused it is not known: each alone, so only its own request sees its error.
            for request in batch:
                self._score_batch(key, [request])
            return
        for request, result in zip(batch, results, strict=True):
            request.result = result
