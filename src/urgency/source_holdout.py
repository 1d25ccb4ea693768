"""Leave-one-source-out: how a head does on a helpdesk whose tickets it never saw.

For a head labelled by several sources, its family is fitted once per source on every *other*
source (their train split; their validation split calibrates) and tested on **every labelled
row** of the held-out source: none of them was seen, so all are out-of-distribution, and more rows
make the figure steadier than the source's test split alone. Beside it stands the in-split figure:
one fit on every source's train split, tested on the held-out source's own test split (the rows
`urgency train` reports, restricted to that source). `urgency evaluate --leave-one-source-out`
prints the table and logs it to MLflow (docs/model_comparison.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from urgency.errors import DataValidationError
from urgency.evaluate import classification_report

if TYPE_CHECKING:
    from urgency.config import Params

# (train rows, validation rows) -> a fitted estimator with `classes_` and `predict_proba` over a
# frame with a `text` column (what `urgency.train.fit_baseline` returns, or a `HeadModel`).
Fitter = Callable[[pd.DataFrame, pd.DataFrame], Any]

COLUMNS = (
    "head",
    "family",
    "held-out source",
    "train rows",
    "held-out rows",
    "held-out macro-F1",
    "held-out accuracy",
    "held-out majority macro-F1",
    "in-split rows",
    "in-split macro-F1",
    "in-split accuracy",
)


def head_sources(dataset: pd.DataFrame) -> list[str]:
    """The sources that label a head's rows, in name order."""
    return sorted(dataset["source"].unique())


def _report(model: Any, rows: pd.DataFrame, labels: list[str], majority: str) -> dict[str, Any]:
    probabilities = pd.DataFrame(
        np.asarray(model.predict_proba(rows[["text"]]), dtype=float), columns=[str(c) for c in model.classes_]
    )
    # A label the fit never saw has probability 0 (its class cannot be predicted).
    for label in labels:
        if label not in probabilities.columns:
            probabilities[label] = 0.0
    return classification_report(rows["label"], probabilities, labels, majority)


def leave_one_source_out(
    dataset: pd.DataFrame, head: str, labels: Sequence[str], fit: Fitter, *, family: str = "baseline"
) -> pd.DataFrame:
    """One row per source of `dataset` (a head's rows with `source`, `text`, `label`, `split`, as
    `urgency.data.head_dataset` builds them): the family fitted without that source and tested
    on all its labelled rows, next to the in-split figure. Fewer than two sources: a
    DataValidationError (there is nothing to hold out)."""
    sources = head_sources(dataset)
    if len(sources) < 2:
        raise DataValidationError(
            f"the {head} head is labelled by {len(sources)} source(s) ({', '.join(sources) or 'none'}): "
            "leave-one-source-out needs at least two"
        )
    labels = list(labels)
    seen = dataset[dataset["split"] != "test"]
    everyone = fit(seen[seen["split"] == "train"], seen[seen["split"] == "validation"])
    rows: list[dict[str, Any]] = []
    for source in sources:
        others = dataset[dataset["source"] != source]
        train, validation = others[others["split"] == "train"], others[others["split"] == "validation"]
        held_out = dataset[dataset["source"] == source]
        if train["label"].nunique() < 2:
            raise DataValidationError(
                f"{head} without {source}: the other sources' train rows carry fewer than 2 labels"
            )
        model = fit(train, validation)
        majority = train["label"].mode().iloc[0]
        outside = _report(model, held_out, labels, majority)
        in_split_rows = held_out[held_out["split"] == "test"]
        inside = _report(everyone, in_split_rows, labels, majority) if not in_split_rows.empty else None
        rows.append(
            {
                "head": head,
                "family": family,
                "held-out source": source,
                "train rows": len(train),
                "held-out rows": len(held_out),
                "held-out macro-F1": outside["macro_f1"],
                "held-out accuracy": outside["accuracy"],
                "held-out majority macro-F1": outside["majority_macro_f1"],
                "in-split rows": len(in_split_rows),
                "in-split macro-F1": inside["macro_f1"] if inside else float("nan"),
                "in-split accuracy": inside["accuracy"] if inside else float("nan"),
                "report": outside,
            }
        )
    return pd.DataFrame(rows, columns=[*COLUMNS, "report"])


def baseline_fitter(params: Params, head: str) -> Fitter:
    """`urgency.train.fit_baseline` with the head's baseline settings and the params' cleaning."""
    from urgency.train import fit_baseline, model_cleaning

    settings = params.heads.get(head).baseline
    cleaning = model_cleaning(params.data.cleaning)
    return lambda train, validation: fit_baseline(train, validation, settings, cleaning)


class HeadModel:
    """A `transformer.FittedHead` as `_report` reads a model: `classes_` and `predict_proba` of a
    frame with a `text` column, its sentence vectors through the embedding cache (`embed`), so a
    held-out source's rows are embedded once across the fits."""

    def __init__(self, head: Any, embed: Callable[[Sequence[str]], np.ndarray]) -> None:
        self.head, self.embed = head, embed
        self.classes_ = head.labels

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        texts = frame["text"].tolist()
        return self.head.predict_proba(texts, vectors=self.embed(texts))


def _cached_vectors(fitted: Any, checkpoint: Path | None, cache: Path | None) -> Callable[..., np.ndarray]:
    from urgency.transformer import frozen_vectors

    return frozen_vectors(
        fitted.encoder,
        fitted.tokenizer,
        checkpoint,
        max_length=fitted.max_length,
        batch_size=fitted.batch_size,
        runtime=fitted.runtime,
        cache=cache,
    )


def hybrid_fitter(params: Params, head: str) -> Fitter:
    """`urgency.hybrid.fit_hybrid` for the head, as `urgency train --family hybrid` fits it."""
    from urgency.hybrid import fit_hybrid
    from urgency.transformer import Split

    training = params.training

    def fit(train: pd.DataFrame, validation: pd.DataFrame) -> HeadModel:
        fitted = fit_hybrid(
            {head: Split(train=train, validation=validation)},
            {head: params.heads.get(head).baseline},
            training.hybrid,
            full_run=training.full_run,
            seed=training.seed,
            embedding_cache=training.embedding_cache,
        )[head]
        embed = _cached_vectors(fitted, training.hybrid.checkpoint, training.embedding_cache)
        return HeadModel(fitted, embed)

    return fit


def embedding_fitter(params: Params, head: str) -> Fitter:
    """`urgency.transformer.fit_embedding` for the head (with its label-free prior, when set), as
    `urgency train --family embedding` fits it."""
    from urgency.train import priors
    from urgency.transformer import Split, fit_embedding

    training = params.training

    def fit(train: pd.DataFrame, validation: pd.DataFrame) -> HeadModel:
        fitted = fit_embedding(
            {head: Split(train=train, validation=validation)},
            training.embedding,
            full_run=training.full_run,
            seed=training.seed,
            priors=priors(params, [head]),
            embedding_cache=training.embedding_cache,
        )[head]
        return HeadModel(
            fitted, _cached_vectors(fitted, training.embedding.checkpoint, training.embedding_cache)
        )

    return fit


FITTERS: dict[str, Callable[[Params, str], Fitter]] = {
    "baseline": baseline_fitter,
    "embedding": embedding_fitter,
    "hybrid": hybrid_fitter,
}


def multi_source_heads(tickets: pd.DataFrame, heads: Sequence[str]) -> list[str]:
    """The heads whose labels come from two or more sources."""
    return [
        head
        for head in heads
        if head in tickets.columns and tickets.loc[tickets[head].notna(), "source"].nunique() >= 2
    ]


def leave_one_source_out_heads(
    params: Params,
    heads: Sequence[str] | None = None,
    *,
    family: str = "baseline",
    tickets: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """`leave_one_source_out` for each head of `heads` (default: every head labelled by several
    sources) on the configured data (`tickets`: already loaded canonical tickets), fitting
    `family` (a key of FITTERS); another family is a DataValidationError."""
    from urgency.config import HEADS
    from urgency.data import configured_head_dataset, load_configured

    if family not in FITTERS:
        raise DataValidationError(
            f"leave-one-source-out fits the {', '.join(FITTERS)} families only (asked: {family})"
        )
    if tickets is None:
        tickets = load_configured(params.data).tickets
    chosen = list(heads) if heads is not None else multi_source_heads(tickets, HEADS)
    if not chosen:
        raise DataValidationError("no head is labelled by two or more sources: nothing to hold out")
    tables = []
    for head in chosen:
        dataset = configured_head_dataset(tickets, head, params.data, params.splits)
        fit = FITTERS[family](params, head)
        tables.append(leave_one_source_out(dataset, head, params.heads.get(head).labels, fit, family=family))
    return pd.concat(tables, ignore_index=True)


def holdout_markdown(table: pd.DataFrame) -> str:
    """The table as markdown, figures rounded for reading."""
    shown = table[list(COLUMNS)].copy()
    for column in COLUMNS:
        if "F1" in column or "accuracy" in column:
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    return shown.to_markdown(index=False) + "\n"


def log_holdout(table: pd.DataFrame, params: Params, *, sample: int | None = None) -> str:
    """One MLflow run (`leave-one-source-out`) with a child run per head and held-out source:
    params head, family, held_out_source (and the sample per source, when sampled); metrics
    the held-out and in-split figures and per-class F1. The table is an artifact of the parent.
    Returns the parent run id."""
    import mlflow

    from urgency.tracking import use_tracking

    settings = params.mlflow
    experiment_id = use_tracking(settings.tracking_uri, settings.experiment, settings.artifact_location)
    mlflow.set_experiment(experiment_id=experiment_id)
    with mlflow.start_run(experiment_id=experiment_id, run_name="leave-one-source-out") as parent:
        mlflow.set_tags({"heads": ",".join(table["head"].unique()), "check": "leave-one-source-out"})
        if sample is not None:
            mlflow.log_param("sample_per_source", sample)
        for row in table.to_dict(orient="records"):
            with mlflow.start_run(run_name=f"{row['head']}-without-{row['held-out source']}", nested=True):
                mlflow.log_params(
                    {"head": row["head"], "family": row["family"], "held_out_source": row["held-out source"]}
                )
                if sample is not None:
                    mlflow.log_param("sample_per_source", sample)
                metrics = {
                    "train_rows": row["train rows"],
                    "held_out_rows": row["held-out rows"],
                    "held_out_macro_f1": row["held-out macro-F1"],
                    "held_out_accuracy": row["held-out accuracy"],
                    "held_out_majority_macro_f1": row["held-out majority macro-F1"],
                    "in_split_rows": row["in-split rows"],
                }
                if pd.notna(row["in-split macro-F1"]):
                    metrics["in_split_macro_f1"] = row["in-split macro-F1"]
                    metrics["in_split_accuracy"] = row["in-split accuracy"]
                for label, scores in row["report"]["per_class"].items():
                    safe = "".join(ch if ch.isalnum() else "_" for ch in label)
                    metrics[f"held_out_f1_{safe}"] = scores["f1"]
                mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
                mlflow.log_text(json.dumps(row["report"], indent=2), "held_out_report.json")
        mlflow.log_text(holdout_markdown(table), "leave_one_source_out.md")
    return str(parent.info.run_id)
