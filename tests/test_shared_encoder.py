"""One encoder per process and one pass per ticket at inference; training's embedding cache.

The encoder passes are counted by a forward hook on the real (tiny, random) BERT: every row a
`BertModel` encodes, in whichever head, is counted."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.conftest import CALM, CATEGORIES, NORMAL, URGENT
from tests.test_label_free import DESCRIPTIONS
from tests.test_transformer import make_tiny_checkpoint
from urgency.config import EmbeddingParams, LabelFreeParams, load_params
from urgency.label_free import fit_label_free
from urgency.models import load_model_dir
from urgency.predict import predict_frame
from urgency.transformer import EmbeddingCache, Split, fit_embedding, save_head_model
from urgency.transformer_model import SHARING_VARIABLE, VECTORS, VectorMemo

TICKETS = pd.DataFrame(
    {
        "subject": ["Server down", "Invoice", "", "Server down", "Thanks", "New laptop", ""],
        "body": [
            "production outage, nobody can log in",
            "question about my invoice",
            "password reset please",
            "production outage, nobody can log in",  # the first ticket again
            "great support, thank you",
            "my screen is broken",
            "",  # empty: no prediction, nothing encoded
        ],
    }
)
DISTINCT_TEXTS = 5  # of the 6 tickets with text


@contextmanager
def encoded_rows() -> Iterator[list[int]]:
    """The rows of every BertModel forward pass while inside (one entry per batch)."""
    import torch
    from transformers import BertModel

    rows: list[int] = []

    def count(module: Any, args: Any, output: Any) -> None:
        if isinstance(module, BertModel):
            rows.append(int(output.last_hidden_state.shape[0]))

    handle = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        yield rows
    finally:
        handle.remove()


def _frame(groups: dict[str, list[str]], copies: int = 2) -> pd.DataFrame:
    rows = [
        (f"{phrase} {i}", label)
        for label, phrases in groups.items()
        for phrase in phrases
        for i in range(copies)
    ]
    return pd.DataFrame({"text": [text for text, _ in rows], "label": [label for _, label in rows]})


def _splits() -> dict[str, Split]:
    urgency = _frame({"P1": URGENT, "P2": NORMAL, "P3": CALM})
    category = _frame(CATEGORIES)
    return {
        "urgency": Split(train=urgency, validation=urgency.iloc[::2]),
        "category": Split(train=category, validation=category.iloc[::2]),
    }


def _save_heads(folder: Path, embedding_checkpoint: Path, label_free_checkpoint: Path) -> Path:
    """Two embedding heads and a label-free sentiment head saved as model folders, as
    `--model-dir` reads them. The embedding heads are refitted from the embedding cache, so their
    tokenizer never encodes a training text, unlike the label-free head's: the saved encoder
    files must be equal all the same."""
    params = EmbeddingParams(checkpoint=embedding_checkpoint)
    cache = folder / "embedding-cache"
    fit_embedding(_splits(), params, full_run=True, seed=0, embedding_cache=cache)
    fitted = fit_embedding(_splits(), params, full_run=True, seed=0, embedding_cache=cache)
    fitted |= fit_label_free(
        {"sentiment": DESCRIPTIONS}, {}, LabelFreeParams(checkpoint=label_free_checkpoint), seed=0
    )
    example = pd.DataFrame({"text": ["server down"]})
    for head, head_fitted in fitted.items():
        save_head_model(head_fitted, folder / head, example)
    return folder


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shared-encoder")
    one = make_tiny_checkpoint(root / "tiny-bert")
    other = make_tiny_checkpoint(root / "tiny-bert-other", seed=1)
    return {
        "same": _save_heads(root / "same", one, one),
        "different": _save_heads(root / "different", one, other),
    }


def _encoder(model: Any) -> Any:
    return model.model.unwrap_python_model().encoder


def _predict(models: dict[str, Any]) -> tuple[pd.DataFrame, int]:
    VECTORS.clear()  # other tests' vectors must not save passes here
    with encoded_rows() as rows:
        scored = predict_frame(models, TICKETS, max_text_chars=2000)
    return scored, sum(rows)


def test_heads_with_equal_encoders_share_one_encoder_and_one_pass_per_text(
    saved: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    models = load_model_dir(saved["same"])
    assert set(models) == {"urgency", "category", "sentiment"}
    assert len({id(_encoder(model)) for model in models.values()}) == 1
    shared, passes = _predict(models)
    assert passes == DISTINCT_TEXTS

    # The behaviour before sharing: three copies, every head encodes every ticket.
    monkeypatch.setenv(SHARING_VARIABLE, "0")
    unshared_models = load_model_dir(saved["same"])
    assert len({id(_encoder(model)) for model in unshared_models.values()}) == 3
    unshared, unshared_passes = _predict(unshared_models)
    assert unshared_passes == 3 * 6
    probabilities = [column for column in shared.columns if "_proba_" in column]
    assert len(probabilities) == 3 + 3 + 3
    assert np.allclose(
        shared[probabilities].to_numpy(dtype=float),
        unshared[probabilities].to_numpy(dtype=float),
        atol=1e-6,
        equal_nan=True,
    )
    assert shared[["urgency", "category", "sentiment"]].equals(unshared[["urgency", "category", "sentiment"]])


def test_heads_with_different_encoders_do_not_share(saved: dict[str, Path]) -> None:
    models = load_model_dir(saved["different"])
    assert _encoder(models["urgency"]) is _encoder(models["category"])
    assert _encoder(models["sentiment"]) is not _encoder(models["urgency"])
    _, passes = _predict(models)
    assert passes == 2 * DISTINCT_TEXTS
    # The same heads read alone give the same figures as beside another encoder's head.
    alone, _ = _predict({"sentiment": models["sentiment"]})
    together, _ = _predict(models)
    columns = [column for column in alone.columns if column.startswith("sentiment_proba_")]
    assert np.allclose(
        alone[columns].to_numpy(dtype=float), together[columns].to_numpy(dtype=float), equal_nan=True
    )


def test_the_vector_memo_keeps_the_most_recent_vectors() -> None:
    memo = VectorMemo(capacity=3)
    memo.put_many("scope", ["a", "b", "c"], np.eye(3, dtype=np.float32))
    assert set(memo.get_many("scope", ["a"])) == {"a"}  # "a" is now the most recent
    memo.put_many("scope", ["d"], np.ones((1, 3), dtype=np.float32))
    assert len(memo) == 3
    assert set(memo.get_many("scope", ["a", "b", "c", "d"])) == {"a", "c", "d"}
    assert memo.get_many("other scope", ["a"]) == {}


# ---------------------------------------------------------------------------------------------
# Training: the embedding cache


def _distinct_training_texts(splits: dict[str, Split]) -> int:
    return len(
        {text for split in splits.values() for text in [*split.train["text"], *split.validation["text"]]}
    )


def test_a_second_fit_with_the_cache_embeds_no_old_text(tmp_path: Path) -> None:
    checkpoint = make_tiny_checkpoint(tmp_path / "tiny-bert")
    params = EmbeddingParams(checkpoint=checkpoint)
    cache = tmp_path / "cache"
    splits = _splits()
    with encoded_rows() as first_rows:
        first = fit_embedding(splits, params, full_run=True, seed=0, embedding_cache=cache)
    # Each distinct text once, though validation rows repeat training rows.
    assert sum(first_rows) == _distinct_training_texts(splits)
    with encoded_rows() as second_rows:
        second = fit_embedding(splits, params, full_run=True, seed=0, embedding_cache=cache)
    assert sum(second_rows) == 0
    for head in splits:
        assert np.allclose(first[head].weight, second[head].weight)
        assert first[head].temperature == pytest.approx(second[head].temperature)

    # New rows: only they are embedded.
    new = pd.DataFrame({"text": ["a brand new outage", "a brand new question"], "label": ["P1", "P3"]})
    grown = {
        **splits,
        "urgency": Split(pd.concat([splits["urgency"].train, new]), splits["urgency"].validation),
    }
    with encoded_rows() as third_rows:
        fit_embedding(grown, params, full_run=True, seed=0, embedding_cache=cache)
    assert sum(third_rows) == 2

    # Without the cache every text is embedded again, to the same figures.
    with encoded_rows() as uncached_rows:
        uncached = fit_embedding(splits, params, full_run=True, seed=0)
    assert sum(uncached_rows) == _distinct_training_texts(splits)
    assert np.allclose(first["urgency"].weight, uncached["urgency"].weight, atol=1e-5)


def test_a_damaged_cache_part_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint = make_tiny_checkpoint(tmp_path / "tiny-bert")
    params = EmbeddingParams(checkpoint=checkpoint)
    cache = tmp_path / "cache"
    splits = {"urgency": _splits()["urgency"]}
    fit_embedding(splits, params, full_run=True, seed=0, embedding_cache=cache)
    parts = sorted(cache.rglob("part-*.npz"))
    assert len(parts) == 1
    with np.load(parts[0]) as data:
        texts_in_part = len(data["digests"])
    parts[0].write_bytes(parts[0].read_bytes()[:100])  # a truncated part
    (parts[0].parent / "part-crashed.npz.partial").write_bytes(b"half a part")  # a crash mid-write
    with caplog.at_level(logging.WARNING, logger="urgency.transformer"), encoded_rows() as rows:
        fit_embedding(splits, params, full_run=True, seed=0, embedding_cache=cache)
    assert sum(rows) == texts_in_part
    assert "does not read, ignored" in caplog.text
    assert str(parts[0]) in caplog.text


def test_the_cache_keeps_encoders_and_settings_apart(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    cache.put_many("encoder-a-128-normalised", ["d1"], np.ones((1, 4)))
    assert cache.get_many("encoder-b-128-normalised", ["d1"]) == {}
    reread = EmbeddingCache(tmp_path / "cache")
    assert np.array_equal(reread.get_many("encoder-a-128-normalised", ["d1"])["d1"], np.ones(4))
    assert reread.get_many("encoder-a-128-normalised", ["d1"])["d1"].dtype == np.float32


def test_label_free_calibration_rows_come_from_the_cache(tmp_path: Path) -> None:
    checkpoint = make_tiny_checkpoint(tmp_path / "tiny-bert")
    params = LabelFreeParams(checkpoint=checkpoint)
    labelled = {
        "sentiment": _frame({"negative": ["awful delay"], "neutral": ["a question"], "positive": ["thanks"]})
    }
    cache = tmp_path / "cache"
    with encoded_rows() as first_rows:
        first = fit_label_free({"sentiment": DESCRIPTIONS}, labelled, params, seed=0, embedding_cache=cache)
    with encoded_rows() as second_rows:
        second = fit_label_free({"sentiment": DESCRIPTIONS}, labelled, params, seed=0, embedding_cache=cache)
    descriptions = sum(len(sentences) for sentences in DESCRIPTIONS.values())
    assert sum(first_rows) == descriptions + len(labelled["sentiment"])
    assert sum(second_rows) == descriptions  # the descriptions, never the rows again
    assert first["sentiment"].temperature == pytest.approx(second["sentiment"].temperature)


def test_params_resolve_the_embedding_cache_beside_the_params_file(tmp_path: Path) -> None:
    from tests.conftest import params_dict, write_params, write_sources

    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    data["training"] = {"embedding_cache": "data/cache/embeddings"}
    assert (
        load_params(write_params(tmp_path, data)).training.embedding_cache
        == (tmp_path / "data" / "cache" / "embeddings").resolve()
    )
    data["training"] = {"embedding_cache": None}
    assert load_params(write_params(tmp_path, data)).training.embedding_cache is None
