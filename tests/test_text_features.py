"""The baseline's hashed TF-IDF: the same geometry as scikit-learn's TF-IDF, counted once per batch."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer

from urgency.config import BaselineParams
from urgency.text_features import COUNTS, HASH_SPACE, HashedTfidf, _char_wb_counts
from urgency.train import build_pipeline

TEXTS = [
    "the printer is broken again",
    "printer broken, please send a technician",
    "cannot log in to the portal",
    "the portal login page is broken",
    "please reset my password for the portal",
    "thank you, the printer works again",
]


def test_same_geometry_as_scikit_learn_tfidf() -> None:
    # Row similarities do not depend on which column a term lands in: equal to scikit-learn's
    # sublinear TF-IDF with the same n-grams and min_df (no hash collision among so few terms).
    ours = HashedTfidf(word_ngram_max=2, min_df=2).fit(TEXTS).transform(TEXTS)
    theirs = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(TEXTS).transform(TEXTS)
    assert ours.shape[1] == theirs.shape[1]
    np.testing.assert_allclose((ours @ ours.T).toarray(), (theirs @ theirs.T).toarray(), atol=1e-6)


def test_max_features_keeps_the_most_frequent_columns() -> None:
    every = HashedTfidf(min_df=1).fit(TEXTS)
    two = HashedTfidf(min_df=1, max_features=2).fit(TEXTS)
    assert len(two.columns_) == 2 < len(every.columns_)
    # The two kept are among the n-grams in three texts (the, printer, broken, portal, the portal).
    frequent = HashedTfidf(min_df=3).fit(TEXTS)
    assert len(frequent.columns_) == 5 and set(two.columns_) <= set(frequent.columns_)


def test_character_ngrams_add_their_own_block() -> None:
    words = HashedTfidf(min_df=1).fit(TEXTS)
    both = HashedTfidf(min_df=1, char_ngrams=True, char_ngram_min=3, char_ngram_max=4).fit(TEXTS)
    assert both.transform(["printr brokn"]).nnz > 0 == words.transform(["printr brokn"]).nnz


def test_heads_with_equal_settings_count_each_batch_once() -> None:
    labels = {"a": ["x", "y"] * 3, "b": ["y", "y", "x", "x", "y", "x"], "c": ["x", "x", "x", "y", "y", "y"]}
    frame = pd.DataFrame({"text": TEXTS})
    heads = {
        name: build_pipeline(BaselineParams(min_df=1)).fit(frame.iloc[i : i + 4], y[i : i + 4])
        for i, (name, y) in enumerate(labels.items())
    }
    batch = pd.DataFrame({"text": ["my printer is broken", "portal login fails"]})
    before = COUNTS.computed
    probabilities = [head.predict_proba(batch) for head in heads.values()]
    assert COUNTS.computed == before + 1
    assert all(p.shape == (2, 2) for p in probabilities)
    # Another batch is counted anew; other settings count for themselves.
    heads["a"].predict_proba(pd.DataFrame({"text": ["another ticket"]}))
    HashedTfidf(word_ngram_max=1, min_df=1).fit(TEXTS)
    assert COUNTS.computed == before + 3


def test_a_pickled_featurizer_transforms_the_same() -> None:
    fitted = HashedTfidf(min_df=1).fit(TEXTS)
    expected = fitted.transform(TEXTS).toarray()
    copy = pickle.loads(pickle.dumps(fitted))
    assert "_position" not in copy.__dict__ or copy.__dict__["_position"] is None
    np.testing.assert_array_equal(copy.transform(TEXTS).toarray(), expected)
    # What is saved is the kept columns and their weights, not a 2^20 lookup table.
    assert len(pickle.dumps(fitted)) < 20_000


def test_a_head_with_character_ngrams_reuses_the_word_counts() -> None:
    words = HashedTfidf(min_df=1).fit(TEXTS)
    both = HashedTfidf(min_df=1, char_ngrams=True).fit(TEXTS)
    batch = ["the printer stopped", "portal is down"]
    before = COUNTS.computed
    words.transform(batch)
    both.transform(batch)
    assert COUNTS.computed == before + 2  # the word block once, the character block once


def test_character_counts_equal_scikit_learns_char_wb() -> None:
    # Counted word by word, they must be exactly HashingVectorizer's char_wb counts: repeated
    # words, tabs and runs of spaces, case, accents, non-breaking spaces, short and empty texts.
    texts = [
        *TEXTS,
        "Printer  printer\tPRINTER\n\nbroken",
        "Straße İstanbul ÄÖÜ café\u00a0crème\u2003ok",
        "",
        "   ",
        "a",
        "x" * 40,
    ]
    options = {"n_features": HASH_SPACE, "alternate_sign": False, "norm": None, "dtype": np.float32}
    options |= {"analyzer": "char_wb", "ngram_range": (2, 5)}
    expected = HashingVectorizer(**options).transform(texts)
    counted = _char_wb_counts(options, texts)
    assert counted.shape == expected.shape and counted.nnz == expected.nnz
    assert (counted != expected).nnz == 0


@pytest.mark.parametrize("limit", [5, 1000])
def test_character_counts_stay_exact_across_batches(limit: int) -> None:
    # Words cut in an earlier batch are reused, new ones added, and the table restarts past its
    # limit (5 words: nearly every batch): every batch still gets exactly scikit-learn's counts.
    options = {"n_features": HASH_SPACE, "alternate_sign": False, "norm": None, "dtype": np.float32}
    options |= {"analyzer": "char_wb", "ngram_range": (3, 5)}
    batches = [TEXTS[:2], TEXTS[1:4], ["brand new words here"], TEXTS, [""], TEXTS[::-1]]
    for batch in batches:
        expected = HashingVectorizer(**options).transform(batch)
        counted = _char_wb_counts(options, batch, limit=limit)
        assert counted.shape == expected.shape and (counted != expected).nnz == 0
