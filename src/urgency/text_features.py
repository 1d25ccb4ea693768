"""The baseline family's features: hashed TF-IDF n-grams, counted once per batch for every head.

Counting n-grams is nearly all the baseline's cost (the linear model after it is a sparse product),
so it is done by a stateless `HashingVectorizer` whose counts depend only on the n-gram settings,
never on a head's training data: every head with the same settings reads the same counts, and
`COUNTS` keeps the last few batches' counts, so a batch scored by three heads (a file chunk, a
service request, a Dask partition) is tokenised once. What a head learns is only which hashed
columns it keeps (`min_df`, `max_features`) and their IDF weights.

This module is copied into every logged baseline model (`cleaning.write_model_code`), so it
imports nothing from urgency but `urgency.memo` (copied beside it): only the standard library,
numpy, scipy and scikit-learn.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize

from urgency.memo import BatchMemo

# Hashed columns per analyzer. With the demo's 20k-120k kept n-grams per head, 2^20 buckets make
# collisions rare; changing it changes every model's columns, so it is not a setting.
HASH_SPACE = 2**20


COUNTS = BatchMemo()


def _hashed_counts(options: dict[str, Any], texts: Sequence[str]) -> sp.csr_matrix:
    if options.get("analyzer") == "char_wb":
        return _char_wb_counts(options, texts)
    counts = HashingVectorizer(**options).transform(texts)
    counts.sort_indices()
    return counts


# Distinct words whose character n-grams are kept between batches (about 40 MB): a file's
# chunks and a service's requests mostly repeat words already cut. Past it, the table restarts,
# so memory stays flat however many rows pass.
WORD_TABLE_LIMIT = 150_000


class _WordNgrams:
    """Each distinct word's `char_wb` n-gram counts (one row per word, in the order first seen),
    for one n-gram setting, kept across batches up to `limit` words. Thread-safe."""

    def __init__(self, options: dict[str, Any], limit: int) -> None:
        self.vectorizer = HashingVectorizer(**options)
        self.limit = limit
        self.width = options["n_features"]
        self._lock = threading.Lock()
        self._restart()

    def _restart(self) -> None:
        self.ids: dict[str, int] = {}
        self.rows = sp.csr_matrix((0, self.width), dtype=np.float32)

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        words: list[str] = []
        ends = [0]
        for text in texts:
            words.extend(text.lower().split())
            ends.append(len(words))
        # Each distinct word of the batch looked up once (pandas hashes the repeats in C).
        codes, distinct = pd.factorize(np.asarray(words, dtype=object), use_na_sentinel=False)
        with self._lock:
            if len(self.ids) > self.limit:
                self._restart()
            ids, new = self.ids, []
            distinct_ids = np.empty(len(distinct), dtype=np.int64)
            for position, word in enumerate(distinct):
                word_id = ids.get(word)
                if word_id is None:
                    word_id = ids[word] = len(ids)
                    new.append(word)
                distinct_ids[position] = word_id
            if new:
                self.rows = sp.vstack([self.rows, self.vectorizer.transform(new)], format="csr")
            rows = self.rows  # replaced, never changed: safe to use outside the lock
        word_ids = distinct_ids[codes]
        words_per_text = sp.csr_matrix(
            (np.ones(len(word_ids), dtype=np.float32), word_ids, ends), shape=(len(texts), rows.shape[0])
        )
        counts = (words_per_text @ rows).tocsr()  # a repeated word's entries add up here
        counts.sort_indices()
        return counts


_WORD_TABLES: dict[tuple[Any, ...], _WordNgrams] = {}
_WORD_TABLES_LOCK = threading.Lock()


def _char_wb_counts(
    options: dict[str, Any], texts: Sequence[str], limit: int = WORD_TABLE_LIMIT
) -> sp.csr_matrix:
    """`HashingVectorizer(analyzer="char_wb")` counts, the same numbers, several times faster.

    `char_wb` cuts n-grams inside each whitespace-separated word of the lowercased text, so a
    text's counts are the sum of its words' counts. Words repeat (4,000 support tickets have
    about 320,000 words, 23,000 of them distinct; the next 4,000 bring far fewer new ones), so
    each distinct word is cut once (`_WordNgrams`, kept across batches) and a text's counts are a
    (text x word) count matrix times the (word x n-gram) one."""
    key = (tuple(sorted((name, repr(value)) for name, value in options.items())), limit)
    with _WORD_TABLES_LOCK:
        table = _WORD_TABLES.get(key)
        if table is None:
            table = _WORD_TABLES[key] = _WordNgrams(options, limit)
    return table.counts(texts)


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
