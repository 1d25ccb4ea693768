"""Confidence thresholds: below which confidence a head's prediction is not trusted.

For a target precision (the share of trusted predictions that are right), pick the lowest
threshold that reaches it on held-out data, so as many tickets as possible keep their
prediction; the rest (`1 - coverage`) go to human triage. Pure functions, but for
`choose_thresholds`, which reads the configured data and runs the models on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from urgency.config import Params
    from urgency.predict import HeadModel


@dataclass(frozen=True)
class ThresholdChoice:
    head: str
    target_precision: float
    threshold: float | None  # None: no threshold reaches the target
    precision: float  # of the predictions at or above the threshold
    coverage: float  # share of tickets at or above the threshold
    accuracy: float  # of all predictions (no threshold)
    n: int


def choose_threshold(
    head: str, y_true: pd.Series | np.ndarray, probabilities: pd.DataFrame, target_precision: float
) -> ThresholdChoice:
    """The lowest confidence threshold whose accepted predictions reach `target_precision`."""
    if not 0 < target_precision <= 1:
        raise ValueError(f"target precision must be in (0, 1], got {target_precision}")
    truth = np.asarray(y_true, dtype=object)
    proba = probabilities.to_numpy(dtype=float)
    n = len(truth)
    if n == 0:
        return ThresholdChoice(head, target_precision, None, 0.0, 0.0, 0.0, 0)
    predicted = np.asarray(probabilities.columns, dtype=object)[proba.argmax(axis=1)]
    confidence = proba.max(axis=1)
    correct = predicted == truth
    # Most confident first; precision of the top k for every k. Ties share a threshold, so only
    # the last position of each run of equal confidences is a valid cut.
    order = np.argsort(-confidence, kind="stable")
    sorted_confidence = confidence[order]
    precision_at = np.cumsum(correct[order]) / np.arange(1, n + 1)
    cut_ok = np.append(sorted_confidence[1:] < sorted_confidence[:-1], True)
    reaching = np.flatnonzero(cut_ok & (precision_at >= target_precision))
    accuracy = float(correct.mean())
    if len(reaching) == 0:
        return ThresholdChoice(head, target_precision, None, 0.0, 0.0, accuracy, n)
    k = int(reaching[-1])  # the largest accepted set that still reaches the target
    return ThresholdChoice(
        head=head,
        target_precision=target_precision,
        threshold=float(sorted_confidence[k]),
        precision=float(precision_at[k]),
        coverage=(k + 1) / n,
        accuracy=accuracy,
        n=n,
    )


def choose_thresholds(
    models: Mapping[str, HeadModel],
    params: Params,
    heads: Sequence[str],
    *,
    split: str,
    target_precision: float,
) -> dict[str, ThresholdChoice]:
    """Each head's threshold, chosen on its `split` (validation or test) of the configured data."""
    from urgency.data import configured_head_dataset, load_configured
    from urgency.predict import predict_proba

    tickets = load_configured(params.data).tickets
    choices = {}
    for head in heads:
        dataset = configured_head_dataset(tickets, head, params.data, params.splits)
        part = dataset[dataset["split"] == split]
        choices[head] = choose_threshold(
            head, part["label"], predict_proba(models[head], part["text"]), target_precision
        )
    return choices


def rules_thresholds(choices: Mapping[str, ThresholdChoice]) -> dict[str, float]:
    """The rules file's `confidence.thresholds`: where the target is unreachable, 1.0 (no
    prediction is trusted, every ticket goes to human triage)."""
    return {
        head: 1.0 if choice.threshold is None else round(choice.threshold, 3)
        for head, choice in choices.items()
    }
