"""Quality of a head's predictions: the figures every model family reports the same way."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: the gap between confidence and accuracy, averaged over equal-width bins."""
    if len(confidence) == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            error += in_bin.mean() * abs(confidence[in_bin].mean() - correct[in_bin].mean())
    return float(error)


def classification_report(
    y_true: pd.Series | np.ndarray,
    probabilities: pd.DataFrame,
    labels: list[str],
    majority_label: str,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1, confusion matrix and calibration error,
    next to the majority-class baseline (always predicting `majority_label`).

    `probabilities` has one column per label (as `predict` returns them).
    """
    y_true = np.asarray(y_true, dtype=object)
    columns = list(probabilities.columns)
    proba = probabilities.to_numpy(dtype=float)
    y_pred = np.asarray(columns, dtype=object)[proba.argmax(axis=1)]
    confidence = proba.max(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    majority = np.full(len(y_true), majority_label, dtype=object)
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "ece": expected_calibration_error(confidence, y_pred == y_true),
        "majority_label": majority_label,
        "majority_accuracy": float(accuracy_score(y_true, majority)),
        "majority_macro_f1": float(
            f1_score(y_true, majority, labels=labels, average="macro", zero_division=0)
        ),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "labels": labels,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def flat_metrics(report: dict[str, Any], prefix: str) -> dict[str, float]:
    """The report's numbers as MLflow metric names, e.g. `test_macro_f1`, `test_recall_high`."""
    metrics = {
        f"{prefix}_{name}": report[name]
        for name in ("accuracy", "macro_f1", "ece", "majority_accuracy", "majority_macro_f1")
    }
    for label, scores in report["per_class"].items():
        safe = "".join(ch if ch.isalnum() else "_" for ch in label)
        for name in ("precision", "recall", "f1"):
            metrics[f"{prefix}_{name}_{safe}"] = scores[name]
    return metrics


def confusion_frame(report: dict[str, Any]) -> pd.DataFrame:
    labels = report["labels"]
    return pd.DataFrame(
        report["confusion_matrix"],
        index=pd.Index(labels, name="true"),
        columns=pd.Index(labels, name="predicted"),
    )


def quality_table(reports: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per head: the figures the README's quality table shows."""
    rows = []
    for head, report in reports.items():
        rows.append(
            {
                "head": head,
                "test rows": report["n"],
                "accuracy": round(report["accuracy"], 3),
                "macro-F1": round(report["macro_f1"], 3),
                "ECE": round(report["ece"], 3),
                "majority accuracy": round(report["majority_accuracy"], 3),
                "majority macro-F1": round(report["majority_macro_f1"], 3),
            }
        )
    return pd.DataFrame(rows)


def evaluate_models(models: dict[str, Any], params: Any, split: str = "test") -> dict[str, dict[str, Any]]:
    """Report each model on its head's `split` of the configured data, predicting through
    `urgency.predict` exactly as the CLI and the service do."""
    from urgency.data import configured_head_dataset, load_configured
    from urgency.predict import predict_proba

    tickets = load_configured(params.data).tickets
    reports = {}
    for head, model in models.items():
        dataset = configured_head_dataset(tickets, head, params.data, params.splits)
        part = dataset[dataset["split"] == split]
        majority = dataset.loc[dataset["split"] == "train", "label"].mode().iloc[0]
        probabilities = predict_proba(model, part["text"])
        reports[head] = classification_report(
            part["label"], probabilities, list(params.heads.get(head).labels), majority
        )
    return reports
