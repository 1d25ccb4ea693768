"""Quality of a head's predictions: the figures every model family reports the same way.

`evaluate_models` reports loaded models on a split of the configured data (`urgency evaluate`,
no --input); `evaluate_file` on any labelled file a source in the params describes
(`urgency evaluate --input`); `log_evaluation` puts either into an MLflow run. Only heads that
have both a model and labels are reported: a head without one is left out, never an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from urgency.errors import DataValidationError, InputError

if TYPE_CHECKING:
    from urgency.config import Params, Source


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


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> list[dict[str, Any]]:
    """The reliability diagram's figures: per equal-width confidence bin that holds rows, its
    bounds, row count, mean confidence and accuracy (a calibrated model has them equal)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    found = []
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            found.append(
                {
                    "lower": float(edges[b]),
                    "upper": float(edges[b + 1]),
                    "n": int(in_bin.sum()),
                    "confidence": float(confidence[in_bin].mean()),
                    "accuracy": float(correct[in_bin].mean()),
                }
            )
    return found


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
        "reliability": reliability_bins(confidence, y_pred == y_true),
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
    `urgency.predict` exactly as the CLI and the service do. A head whose data carries no label
    (e.g. a model folder with a head the sources do not label) is left out."""
    from urgency.data import configured_head_dataset, load_configured
    from urgency.predict import predict_proba

    tickets = load_configured(params.data).tickets
    reports = {}
    for head, model in models.items():
        dataset = configured_head_dataset(tickets, head, params.data, params.splits)
        part = dataset[dataset["split"] == split]
        train_labels = dataset.loc[dataset["split"] == "train", "label"]
        if part.empty or train_labels.empty:
            continue  # no labelled row for this head: nothing to report
        majority = train_labels.mode().iloc[0]
        probabilities = predict_proba(model, part["text"])
        reports[head] = classification_report(
            part["label"], probabilities, list(params.heads.get(head).labels), majority
        )
    return reports


def labelled_source(params: Params, path: Path, source_name: str | None) -> Source:
    """The source describing a labelled file (its columns, label maps and checks), pointed at
    `path`: the one named, else the params' only source (`urgency.tickets.choose_source`).
    Several sources and no name: an InputError listing them (labels cannot be read from the
    canonical layout)."""
    from urgency.tickets import choose_source, source_for_file

    chosen = choose_source(params.data.sources, source_name)
    if chosen is None:
        names = ", ".join(source.name for source in params.data.sources)
        raise InputError(
            f"the params describe {len(params.data.sources)} sources ({names}): pass --source NAME "
            "to say which one describes the file's columns and labels"
        )
    return source_for_file(chosen, path)


def evaluate_file(
    models: dict[str, Any], params: Params, path: Path, source_name: str | None = None
) -> dict[str, dict[str, Any]]:
    """Report each model on every labelled row of the file at `path`, read, validated and
    mapped as the source (`labelled_source`) says - the same loading as training. Only heads
    with both a model and labels in the file are reported; none: a DataValidationError. The
    majority baseline is the file's most common label (there is no training split here)."""
    from urgency.data import configured_head_dataset, load_tickets
    from urgency.predict import predict_proba

    if not path.exists():
        raise InputError(f"{path}: file not found")
    source = labelled_source(params, path, source_name)
    tickets = load_tickets([source]).tickets
    reports = {}
    for head, model in models.items():
        # The head's labelled rows with their model text, exactly as training builds them.
        rows = configured_head_dataset(tickets, head, params.data, params.splits)
        if rows.empty:
            continue
        probabilities = predict_proba(model, rows["text"])
        reports[head] = classification_report(
            rows["label"], probabilities, list(params.heads.get(head).labels), rows["label"].mode().iloc[0]
        )
    if not reports:
        raise DataValidationError(
            f"{path}: no row carries a label of a head that has a model ({', '.join(models)}); "
            f"the source {source.name!r} maps labels for: {', '.join(source.labels) or 'no head'}"
        )
    return reports


def log_evaluation(reports: dict[str, dict[str, Any]], params: Params, *, what: str) -> str:
    """One MLflow run (`evaluate`) with each head's figures as metrics (`<head>_eval_...`), the
    full report as JSON and a confusion matrix per head; `what` (the split or the file) is a
    tag. Returns the run id."""
    import json

    import mlflow

    from urgency.tracking import use_tracking

    settings = params.mlflow
    experiment_id = use_tracking(settings.tracking_uri, settings.experiment, settings.artifact_location)
    with mlflow.start_run(experiment_id=experiment_id, run_name="evaluate") as run:
        mlflow.set_tags({"evaluated_on": what, "heads": ",".join(reports)})
        for head, report in reports.items():
            mlflow.log_metrics(flat_metrics(report, f"{head}_eval"))
            mlflow.log_text(confusion_frame(report).to_csv(), f"confusion_{head}.csv")
        mlflow.log_text(json.dumps(reports, indent=2), "evaluation.json")
    return str(run.info.run_id)
