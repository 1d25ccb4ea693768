"""A batch's result kept for the next caller: the heads of one model set read the same batch (a
file chunk, a service request, a Dask partition) one after the other, and each would otherwise
clean and count its texts again.

This module is copied into every logged model (`cleaning.write_model_code`), so it imports only
the standard library.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any


class BatchMemo:
    """The results of a pure function of a batch of texts for the last `size` batches, keyed by
    the function's settings and the texts' digest. Thread-safe; a result is shared, never copied,
    so callers must not change it."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Hashable, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.computed = 0  # how many times `compute` ran (what tests count)

    @staticmethod
    def digest(texts: Sequence[str]) -> str:
        hasher = hashlib.sha256()
        for text in texts:
            encoded = text.encode("utf-8", "surrogatepass")
            hasher.update(len(encoded).to_bytes(8, "little"))
            hasher.update(encoded)
        return hasher.hexdigest()

    def get(self, settings: Hashable, texts: Sequence[str], compute: Callable[[Sequence[str]], Any]) -> Any:
        key = (settings, self.digest(texts))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        result = compute(texts)  # outside the lock: other threads' batches go on meanwhile
        with self._lock:
            self.computed += 1
            self._items[key] = result
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return result

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
