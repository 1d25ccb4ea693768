"""Label-free heads: a head defined by a few sentences describing each label, not labelled rows.

Each description sentence is embedded once with the frozen MiniLM (mean pooled, normalised, as
`urgency.transformer_model.embed` does). A label's weight row is the mean of its sentences'
vectors, so for a ticket's normalised vector `v` the label's logit `v @ w` is the ticket's mean
cosine similarity to that label's sentences. The probabilities are a softmax of those logits
divided by a temperature, fitted on whatever labelled rows the head has
(`transformer.fit_temperature`), else `training.label_free.default_temperature`.

The result is an ordinary `transformer.FittedHead` (family `label-free`, bias 0): it is saved,
registered, digest-checked and served as the same `TransformerHead` pyfunc as the other MiniLM
heads, with the description vectors as its weights, so prediction embeds only the ticket.

`fit_signals` builds the text signals' model the same way (params `signals`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from urgency.config import OTHER_SIGNAL, SIGNALS_MODEL, LabelFreeParams, SignalsParams
from urgency.transformer import (
    FittedHead,
    checkpoint_folder,
    fit_temperature,
    frozen_encoder,
    sample,
)
from urgency.transformer_model import embed, runtime_model

log = logging.getLogger(__name__)

FAMILY = "label-free"
# Where the fitted temperature is searched: cosine similarities live in [-1, 1].
TEMPERATURE_BOUNDS = (0.001, 2.0)


def description_weights(
    descriptions: Mapping[str, Sequence[str]],
    labels: Sequence[str],
    encoder: object,
    tokenizer: object,
    *,
    max_length: int,
    batch_size: int,
) -> np.ndarray:
    """labels x hidden: each label's mean normalised description vector."""
    rows = []
    for label in labels:
        vectors = embed(
            encoder,
            tokenizer,
            list(descriptions[label]),
            max_length=max_length,
            batch_size=batch_size,
            normalize=True,
        )
        rows.append(vectors.mean(axis=0))
    return np.vstack(rows)


def fit_label_free(
    descriptions: Mapping[str, Mapping[str, Sequence[str]]],
    labelled: Mapping[str, pd.DataFrame],
    params: LabelFreeParams,
    *,
    seed: int,
    embedding_cache: Path | None = None,
) -> dict[str, FittedHead]:
    """One label-free head per entry of `descriptions` (head -> label -> sentences), its
    temperature fitted on `labelled[head]` (rows with `text` and `label`) when it has rows,
    their vectors read from `embedding_cache` when there (`transformer.frozen_vectors`)."""
    encoder, tokenizer, embed_texts = frozen_encoder(
        params.checkpoint,
        max_length=params.max_length,
        batch_size=params.batch_size,
        runtime=params.runtime,
        cache=embedding_cache,
    )
    fitted = {}
    for head, described in descriptions.items():
        started = time.perf_counter()
        labels = list(described)
        weight = description_weights(
            described,
            labels,
            runtime_model(encoder, params.runtime),
            tokenizer,
            max_length=params.max_length,
            batch_size=params.batch_size,
        )
        bias = np.zeros(len(labels))
        rows = labelled.get(head)
        rows = rows[rows["label"].isin(labels)] if rows is not None else pd.DataFrame()
        rows = sample(rows, params.calibration_sample, seed)
        temperature = params.default_temperature
        if len(rows) > 0:
            vectors = embed_texts(rows["text"].tolist())
            codes = rows["label"].map({label: i for i, label in enumerate(labels)}).to_numpy(dtype=np.int64)
            # Cosine logits differ by hundredths: the usual lower bound (0.05) would clip the fit.
            temperature = fit_temperature(vectors @ weight.T, codes, bounds=TEMPERATURE_BOUNDS)
        fitted[head] = FittedHead(
            head=head,
            family=FAMILY,
            labels=labels,
            encoder=encoder,
            tokenizer=tokenizer,
            weight=weight,
            bias=bias,
            temperature=temperature,
            normalize=True,
            max_length=params.max_length,
            batch_size=params.batch_size,
            train_rows=len(rows),
            train_seconds=time.perf_counter() - started,
            runtime=params.runtime,
            params={
                **{f"label_free.{key}": value for key, value in params.model_dump(mode="json").items()},
                "label_free.checkpoint": str(checkpoint_folder(params.checkpoint)),
                "label_free.descriptions": sum(len(s) for s in described.values()),
                "label_free.temperature_fitted_on": len(rows),
            },
        )
        log.info(
            "%s: label-free head from %d descriptions, temperature %.3f (%s)",
            head,
            sum(len(s) for s in described.values()),
            temperature,
            f"fitted on {len(rows)} labelled rows" if len(rows) else "the default: no labelled rows",
        )
    return fitted


def fit_signals(signals: SignalsParams, params: LabelFreeParams) -> FittedHead:
    """The text signals' model (params `signals`): one label-free head over the labels
    [<signal>..., other], at the signals' temperature. Its softmax over all of them holds every
    signal's own binary confidence, P(signal vs other) = p_signal / (p_signal + p_other)
    (`urgency.predict.signal_confidences`), so one pyfunc, one encoder pass, serves them all."""
    described = {**signals.descriptions, OTHER_SIGNAL: signals.other}
    settings = params.model_copy(update={"default_temperature": signals.temperature})
    return fit_label_free({SIGNALS_MODEL: described}, {}, settings, seed=0)[SIGNALS_MODEL]
