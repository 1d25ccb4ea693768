"""The hybrid family: the baseline's TF-IDF features and the MiniLM sentence embedding in one
calibrated linear model per head.

Per head, the features of a ticket are [the baseline's TF-IDF word and character n-grams
(`urgency.train.build_features` with the head's `heads.<head>.baseline` settings), the frozen
MiniLM sentence vector (mean pooled, normalised) times `training.hybrid.embedding_weight`]; one
logistic regression (the baseline's `C` and `class_weight`) reads them, and its temperature is
fitted on validation rows (`transformer.fit_temperature`). Keywords (TF-IDF) and meaning (the
sentence vector) are weighed against each other by one model.

The TF-IDF vocabulary and IDF are learnt from every train row (cheap); the classifier is fitted
on `training.hybrid.train_sample` rows per head and calibrated on `validation_sample` rows (every
row with `training.full_run`), because each row it reads must be embedded (~8 ms a ticket on a
2-core CPU).

The result is a `transformer.FittedHead` (family `hybrid`) whose `sparse` part holds the fitted
featurizer and its weights: it is saved as the same `TransformerHead` pyfunc as the other MiniLM
heads, with the TF-IDF part as one more artifact, so loading, digest checks and `predict` are
unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from urgency.config import BaselineParams, HybridParams, TrainingParams
from urgency.transformer import (
    FittedHead,
    Split,
    checkpoint_folder,
    fit_temperature,
    frozen_encoder,
    sample,
)
from urgency.transformer_model import SparsePart

log = logging.getLogger(__name__)

FAMILY = "hybrid"


def fit_hybrid(
    splits: Mapping[str, Split],
    baseline: Mapping[str, BaselineParams],
    params: HybridParams,
    *,
    full_run: bool,
    seed: int,
    embedding_cache: Path | None = None,
) -> dict[str, FittedHead]:
    """One hybrid head per entry of `splits` (train and validation rows with `text` and
    `label`), its TF-IDF features built from `baseline[head]`; sentence vectors read from the
    `embedding_cache` folder when it holds them (params `training.embedding_cache`)."""
    from scipy import sparse as sp
    from sklearn.linear_model import LogisticRegression

    from urgency.train import build_features

    encoder, tokenizer, embed_texts = frozen_encoder(
        params.checkpoint,
        max_length=params.max_length,
        batch_size=params.batch_size,
        runtime=params.runtime,
        cache=embedding_cache,
    )
    fitted = {}
    for head, split in splits.items():
        started = time.perf_counter()
        train = sample(split.train, None if full_run else params.train_sample, seed)
        validation = sample(split.validation, None if full_run else params.validation_sample, seed)
        labels = sorted(train["label"].unique())
        codes = {label: i for i, label in enumerate(labels)}
        featurizer = build_features(baseline[head]).fit(split.train[["text"]])

        def vectors(frame: pd.DataFrame) -> np.ndarray:
            return embed_texts(frame["text"].tolist())

        features = sp.hstack(
            [featurizer.transform(train[["text"]]), sp.csr_matrix(params.embedding_weight * vectors(train))],
            format="csr",
        )
        classifier = LogisticRegression(
            C=baseline[head].C, class_weight=baseline[head].class_weight, max_iter=2000
        )
        classifier.fit(features, train["label"].map(codes).to_numpy(dtype=np.int64))
        # Two classes give one coefficient row; softmax needs one row per class.
        weight, bias = classifier.coef_, classifier.intercept_
        if len(labels) == 2:
            weight, bias = np.vstack([np.zeros_like(weight[0]), weight[0]]), np.array([0.0, bias[0]])
        sparse_columns = weight.shape[1] - encoder.config.hidden_size
        # The embedding's scale is folded into its weights: the saved model embeds as usual.
        sparse = SparsePart(featurizer, weight[:, :sparse_columns])
        dense_weight = params.embedding_weight * weight[:, sparse_columns:]
        validation = validation[validation["label"].isin(labels)]
        logits = vectors(validation) @ dense_weight.T + bias + sparse.logits(validation["text"].tolist())
        temperature = fit_temperature(logits, validation["label"].map(codes).to_numpy(dtype=np.int64))
        fitted[head] = FittedHead(
            head=head,
            family=FAMILY,
            labels=labels,
            encoder=encoder,
            tokenizer=tokenizer,
            weight=dense_weight,
            bias=bias,
            temperature=temperature,
            normalize=True,
            max_length=params.max_length,
            batch_size=params.batch_size,
            train_rows=len(train),
            train_seconds=time.perf_counter() - started,
            runtime=params.runtime,
            params={
                **{f"hybrid.{key}": value for key, value in params.model_dump(mode="json").items()},
                "hybrid.checkpoint": str(checkpoint_folder(params.checkpoint)),
                "hybrid.tfidf_features": sparse_columns,
                "hybrid.vocabulary_rows": len(split.train),
                **{f"baseline.{key}": value for key, value in baseline[head].model_dump().items()},
                "training.full_run": full_run,
                "training.seed": seed,
            },
            sparse=sparse,
        )
        log.info(
            "%s: hybrid head (%d TF-IDF features + the sentence vector) fitted on %d rows in %.0fs",
            head,
            sparse_columns,
            len(train),
            fitted[head].train_seconds,
        )
    return fitted


def fit_hybrid_family(
    datasets: Mapping[str, pd.DataFrame], baseline: Mapping[str, BaselineParams], params: TrainingParams
) -> dict[str, FittedHead]:
    """`fit_hybrid` for every head in `datasets` (head_dataset frames with a `split` column)
    inside a nested MLflow run `hybrid-fit`, as `transformer.fit_family` does for its families."""
    import mlflow

    splits = {
        head: Split(train=frame[frame["split"] == "train"], validation=frame[frame["split"] == "validation"])
        for head, frame in datasets.items()
    }
    started = time.perf_counter()
    with mlflow.start_run(run_name=f"{FAMILY}-fit", nested=True):
        mlflow.set_tags({"family": FAMILY, "heads": ",".join(splits)})
        fitted = fit_hybrid(
            splits,
            baseline,
            params.hybrid,
            full_run=params.full_run,
            seed=params.seed,
            embedding_cache=params.embedding_cache,
        )
        mlflow.log_metric("train_seconds", time.perf_counter() - started)
    return fitted
