"""The one inference path: ticket text into labels and probabilities (models only, no rules).

Evaluation, the CLI, the service and Dask workers all call these functions; `urgency.models`
loads the models. Every head model, whatever its
family, is an MLflow pyfunc model that maps a DataFrame with a `text` column to one probability
per label, with its label order in the model's metadata.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from urgency.cleaning import Cleaning
from urgency.errors import InputError
from urgency.files import AtomicTableWriter, check_not_input, read_chunks
from urgency.models import HeadModel
from urgency.text import ticket_text

log = logging.getLogger(__name__)

EMPTY_TEXT_ERROR = "empty text: subject and body are both empty"


def predict_proba(model: HeadModel, texts: Sequence[str] | pd.Series) -> pd.DataFrame:
    """Class probabilities for each text, one column per label in the model's label order."""
    frame = pd.DataFrame({"text": pd.Series(texts, dtype=object).to_numpy()})
    if frame.empty:
        return pd.DataFrame(columns=list(model.labels), dtype=float)
    probabilities = np.asarray(model.model.predict(frame), dtype=float)
    return pd.DataFrame(probabilities, columns=list(model.labels))


def models_cleaning(models: dict[str, HeadModel]) -> Cleaning | None:
    """The cleaning the models carry in their metadata (every step any of them runs); None when
    none carries any (models saved before cleaning was part of a model)."""
    combined: Cleaning | None = None
    for model in models.values():
        metadata = getattr(getattr(model.model, "metadata", None), "metadata", None) or {}
        own = Cleaning.from_dict(metadata.get("cleaning"))
        if own is not None:
            combined = own.union(combined)
    return combined


def output_columns(models: dict[str, HeadModel]) -> list[str]:
    """Columns `predict_frame` adds, in order (a stable interface for other tools)."""
    columns: list[str] = []
    for head, model in models.items():
        columns += [head, f"{head}_confidence"] + [f"{head}_proba_{label}" for label in model.labels]
    return [*columns, "error"]


def predict_frame(
    models: dict[str, HeadModel],
    tickets: pd.DataFrame,
    *,
    subject_column: str | None,
    body_column: str,
    max_text_chars: int,
) -> pd.DataFrame:
    """Every input column plus, per head, the label, its confidence and each class probability.

    A row whose text is empty gets a message in `error` and no predictions; it never stops the
    other rows. Pandas in, pandas out: the same function serves files, batches and clusters.
    """
    if body_column not in tickets.columns:
        raise InputError(f"input has no body column {body_column!r} (columns: {list(tickets.columns)})")
    clashes = [column for column in output_columns(models) if column in tickets.columns]
    if clashes:
        raise InputError(
            f"input already has column(s) {clashes} that prediction adds; "
            "rename them so nothing is overwritten"
        )
    subject = tickets[subject_column] if subject_column and subject_column in tickets.columns else None
    # Cleaned here, before the length cut (markup must not use up the length), with the models'
    # own settings; each model cleans again, which leaves cleaned text unchanged.
    text = ticket_text(subject, tickets[body_column], max_text_chars, models_cleaning(models))
    usable = (text != "").to_numpy()
    usable_text = text[usable]
    rows = len(tickets)
    # Columns are built as arrays and joined once: per-column pandas assignment costs more than
    # the models themselves for the service's one-ticket calls.
    added: dict[str, Any] = {}
    for head, model in models.items():
        proba = np.full((rows, len(model.labels)), np.nan)
        label = np.full(rows, None, dtype=object)
        if usable.any():
            predicted = predict_proba(model, usable_text).to_numpy()
            proba[usable] = predicted
            label[usable] = np.asarray(model.labels, dtype=object)[predicted.argmax(axis=1)]
        added[head] = pd.array(label, dtype="string")
        added[f"{head}_confidence"] = np.where(usable, np.max(proba, axis=1, initial=-np.inf), np.nan)
        for position, name in enumerate(model.labels):
            added[f"{head}_proba_{name}"] = proba[:, position]
    added["error"] = pd.array(np.where(usable, None, EMPTY_TEXT_ERROR), dtype="string")
    # Joined by position, so a repeated index label cannot misalign rows.
    joined = pd.concat([tickets.reset_index(drop=True), pd.DataFrame(added)], axis=1)
    return joined.set_axis(tickets.index)


# ---------------------------------------------------------------------------------------------
# Files, streamed in chunks


@dataclass
class PredictStats:
    rows: int = 0
    rows_with_error: int = 0


def predict_file(
    models: dict[str, HeadModel],
    input_path: Path,
    output_path: Path,
    *,
    subject_column: str | None,
    body_column: str,
    max_text_chars: int,
    chunk_size: int,
    on_chunk: Callable[[int], None] | None = None,
) -> PredictStats:
    """Score a CSV/Parquet/JSON Lines file chunk by chunk into `output_path`.

    Memory is bounded by `chunk_size`, whatever the file's length. The output appears only when
    every row is written: a failure leaves no half-written file (and an older output intact).
    """
    check_not_input(input_path, output_path)
    stats = PredictStats()
    with AtomicTableWriter(output_path) as writer:
        for chunk in read_chunks(input_path, chunk_size):
            if stats.rows == 0 and subject_column and subject_column not in chunk.columns:
                log.warning("%s has no subject column %r: scoring the body alone", input_path, subject_column)
            scored = predict_frame(
                models,
                chunk,
                subject_column=subject_column,
                body_column=body_column,
                max_text_chars=max_text_chars,
            )
            writer.write(scored)
            stats.rows += len(scored)
            stats.rows_with_error += int(scored["error"].notna().sum())
            if on_chunk:
                on_chunk(len(scored))
    return stats
