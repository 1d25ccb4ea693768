"""The baseline family's features: hashed TF-IDF n-grams, counted once per batch for every head.

Counting n-grams is nearly all the baseline's cost (the linear model after it is a sparse product),
so it is done by a stateless `HashingVectorizer` whose counts depend only on the n-gram settings,
never on a head's training data: every head with the same settings reads the same counts, and
`COUNTS` keeps the last few batches' counts, so a batch scored by three heads (a file chunk, a
service request, a Dask partition) is tokenised once. What a head learns is only which hashed
columns it keeps (`min_df`, `max_features`) and their IDF weights.

This module is copied into every logged baseline model (`cleaning.write_model_code`), so it
imports nothing from urgency: only the standard library, numpy, scipy and scikit-learn.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize

# Hashed columns per analyzer. With the demo's 20k-120k kept n-grams per head, 2^20 buckets make
# collisions rare; changing it changes every model's columns, so it is not a setting.
HASH_SPACE = 2**20


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


COUNTS = BatchMemo()


def _hashed_counts(options: dict[str, Any], texts: Sequence[str]) -> sp.csr_matrix:
    if options.get("analyzer") == "char_wb":
        return _char_wb_counts(options, texts)
    counts = HashingVectorizer(**options).transform(texts)
    counts.sort_indices()
    return counts


def _char_wb_counts(options: dict[str, Any], texts: Sequence[str]) -> sp.csr_matrix:
    """`HashingVectorizer(analyzer="char_wb")` counts, the same numbers, several times faster.

    `char_wb` cuts n-grams inside each whitespace-separated word of the lowercased text, so a
    text's counts are the sum of its words' counts. Words repeat (4,000 support tickets have
    about 320,000 words, 23,000 of them distinct), so each distinct word is cut once and
    a text's counts are a (text x word) count matrix times the (word x n-gram) one."""
    distinct: dict[str, int] = {}
    word_ids: list[int] = []
    ends = [0]
    for text in texts:
        word_ids.extend(distinct.setdefault(word, len(distinct)) for word in text.lower().split())
        ends.append(len(word_ids))
    words_per_text = sp.csr_matrix(
        (np.ones(len(word_ids), dtype=np.float32), word_ids, ends), shape=(len(texts), len(distinct))
    )
    words_per_text.sum_duplicates()
    ngrams_per_word = HashingVectorizer(**options).transform(list(distinct))
    counts = (words_per_text @ ngrams_per_word).tocsr()
    counts.sort_indices()
    return counts


def texts_of(data: Any) -> list[str]:
    """The texts of a DataFrame's `text` column (what the pipeline passes) or of a sequence."""
    column = data["text"] if isinstance(data, pd.DataFrame) else data
    return [str(text) for text in column]


class HashedTfidf(TransformerMixin, BaseEstimator):
    """TF-IDF of hashed word n-grams (1..`word_ngram_max`) and, with `char_ngrams`, character
    n-grams within word boundaries (`char_ngram_min`..`char_ngram_max`), one block after the
    other, each row of unit length. `fit` keeps the hashed columns seen in at least `min_df`
    texts, at most `max_features` of them (the most frequent), and learns their IDF."""

    def __init__(
        self,
        word_ngram_max: int = 2,
        char_ngrams: bool = False,
        char_ngram_min: int = 3,
        char_ngram_max: int = 5,
        min_df: int = 2,
        max_features: int | None = None,
    ) -> None:
        self.word_ngram_max = word_ngram_max
        self.char_ngrams = char_ngrams
        self.char_ngram_min = char_ngram_min
        self.char_ngram_max = char_ngram_max
        self.min_df = min_df
        self.max_features = max_features

    def counts(self, data: Any) -> sp.csr_matrix:
        """The hashed n-gram counts of the texts: the word block, then (with `char_ngrams`) the
        character block. Each block is shared through `COUNTS` by every head with the same
        block settings, so a head with character n-grams still reuses the others' word counts."""
        texts = texts_of(data)
        options = {"n_features": HASH_SPACE, "alternate_sign": False, "norm": None, "dtype": np.float32}
        blocks = [(("words", HASH_SPACE, self.word_ngram_max), {"ngram_range": (1, self.word_ngram_max)})]
        if self.char_ngrams:
            ngrams = (self.char_ngram_min, self.char_ngram_max)
            blocks.append((("chars", HASH_SPACE, ngrams), {"analyzer": "char_wb", "ngram_range": ngrams}))
        counted = [
            COUNTS.get(settings, texts, partial(_hashed_counts, {**options, **analyzer}))
            for settings, analyzer in blocks
        ]
        return counted[0] if len(counted) == 1 else sp.hstack(counted, format="csr")

    def fit(self, data: Any, y: Any = None) -> HashedTfidf:
        counts = self.counts(data)
        frequency = np.bincount(counts.indices, minlength=counts.shape[1])
        columns = np.flatnonzero(frequency >= self.min_df)
        if self.max_features is not None and len(columns) > self.max_features:
            # The most frequent, ties by column: the same data always keeps the same columns.
            order = np.argsort(-frequency[columns], kind="stable")[: self.max_features]
            columns = np.sort(columns[order])
        self.columns_ = columns.astype(np.int64)
        self.idf_ = (np.log((1 + counts.shape[0]) / (1 + frequency[columns])) + 1).astype(np.float32)
        self._position: np.ndarray | None = None
        return self

    def _positions(self) -> np.ndarray:
        """Hashed column -> kept column (-1: dropped); rebuilt after unpickling, not saved."""
        position = getattr(self, "_position", None)
        if position is None:
            position = np.full(self._hash_width(), -1, dtype=np.int64)
            position[self.columns_] = np.arange(len(self.columns_))
            self._position = position
        return position

    def _hash_width(self) -> int:
        return HASH_SPACE * (2 if self.char_ngrams else 1)

    def transform(self, data: Any) -> sp.csr_matrix:
        counts = self.counts(data)
        position = self._positions()[counts.indices]
        kept = position >= 0
        # Kept columns keep their order (columns_ is sorted), so rows stay index-sorted.
        indptr = np.concatenate([[0], np.cumsum(kept)])[counts.indptr]
        values = (np.log(counts.data[kept]) + 1) * self.idf_[position[kept]]  # sublinear tf x idf
        tfidf = sp.csr_matrix((values, position[kept], indptr), shape=(counts.shape[0], len(self.columns_)))
        return normalize(tfidf, copy=False)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_position", None)
        return state
