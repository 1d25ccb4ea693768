"""Confidence thresholds: below which confidence a head's prediction is not trusted.

For a target precision (the share of trusted predictions that are right), pick the lowest
threshold that reaches it on held-out data, so as many tickets as possible keep their
prediction; the rest (`1 - coverage`) go to human triage. Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


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
