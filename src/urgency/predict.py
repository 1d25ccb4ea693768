"""The one inference path: ticket text into labels and probabilities (models only, no rules).

Evaluation, the CLI, the service and Dask workers all call these functions; `urgency.models`
loads the models. Every head model, whatever its
family, is an MLflow pyfunc model that maps a DataFrame with a `text` column to one probability
per label, with its label order in the model's metadata.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from urgency.cleaning import Cleaning
from urgency.config import OTHER_SIGNAL, SIGNALS_MODEL, Source, signal_column
from urgency.errors import InputError
from urgency.files import AtomicTableWriter, check_not_input, read_chunks
from urgency.models import HeadModel
from urgency.parallel import ordered_map
from urgency.text import ticket_text
from urgency.tickets import map_tickets, missing_source_columns

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


def signal_names(model: HeadModel) -> list[str]:
    """The text signals a signals model reads (its labels but `other`)."""
    return [label for label in model.labels if label != OTHER_SIGNAL]


def signal_confidences(proba: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Per text signal P(signal vs other), rows x signals (`signal_names` order), from the signals
    model's softmax over [signals..., other]. A softmax's ratios are those of its exponentials, so
    p_s / (p_s + p_other) is exactly the binary softmax of the two cosines over the temperature:
    every signal on its own (an outage can also be many users)."""
    other = proba[:, list(labels).index(OTHER_SIGNAL)][:, None]
    signals = proba[:, [i for i, label in enumerate(labels) if label != OTHER_SIGNAL]]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(signals / (signals + other), nan=0.0)


def output_columns(models: dict[str, HeadModel]) -> list[str]:
    """Columns `predict_frame` adds, in order (a stable interface for other tools): per head its
    label, confidence and class probabilities; per text signal its confidence (`text_<signal>`)."""
    columns: list[str] = []
    for head, model in models.items():
        if head == SIGNALS_MODEL:
            columns += [signal_column(name) for name in signal_names(model)]
        else:
            columns += [head, f"{head}_confidence"] + [f"{head}_proba_{label}" for label in model.labels]
    return [*columns, "error"]


def check_no_clashes(input_columns: Sequence[str] | pd.Index, added: Sequence[str], prefix: str) -> None:
    """No input column is ever overwritten: an input column named like one the output adds
    (`prefix` + name) is an InputError naming the clashes and the way out (--output-prefix)."""
    present = set(input_columns)
    clashes = [prefix + name for name in added if prefix + name in present]
    if clashes:
        hint = (
            f"choose another --output-prefix than {prefix!r}"
            if prefix
            else "add --output-prefix PREFIX (e.g. model_) to write every added column as PREFIX<name>"
        )
        raise InputError(
            f"input already has column(s) {clashes} that would be overwritten by the output; {hint}, "
            "or rename them in the input"
        )


def model_input(
    tickets: pd.DataFrame,
    *,
    subject_column: str | None,
    body_column: str,
    max_text_chars: int,
    source: Source | None = None,
    cleaning: Cleaning | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """The tickets as the rules read them, and the text the models read: subject and body
    cleaned with `cleaning` (the models' own settings, `models_cleaning`) before the length cut,
    so markup does not use up the length; each model cleans again, which changes nothing.

    With a `source` (params data.sources), the tickets mapped through it (`urgency.tickets`:
    canonical fields, meta fields under the source's names, every other input column); without,
    the frame itself, its text in `subject_column` and `body_column`."""
    if source is not None:
        view = map_tickets(tickets, source)
        return view, ticket_text(view["subject"], view["body"], max_text_chars, cleaning)
    if body_column not in tickets.columns:
        raise InputError(
            f"input has no body column {body_column!r} (columns: {list(tickets.columns)}); "
            "describe the file as a source in params data.sources and pass --source NAME"
        )
    subject = tickets[subject_column] if subject_column and subject_column in tickets.columns else None
    return tickets, ticket_text(subject, tickets[body_column], max_text_chars, cleaning)


def model_columns(models: dict[str, HeadModel], text: pd.Series) -> pd.DataFrame:
    """Per head the label, its confidence and each class probability, per text signal its
    confidence (the signals model, `SIGNALS_MODEL`), then `error` (a row whose
    text is empty gets a message there and no predictions), in `output_columns` order, one row
    per text (positional index)."""
    usable = (text != "").to_numpy()
    usable_text = text[usable]
    rows = len(text)
    # Columns are built as arrays and joined once: per-column pandas assignment costs more than
    # the models themselves for the service's one-ticket calls.
    added: dict[str, Any] = {}
    for head, model in models.items():
        if head == SIGNALS_MODEL:
            confidences = np.full((rows, len(signal_names(model))), np.nan)
            if usable.any():
                predicted = predict_proba(model, usable_text).to_numpy()
                confidences[usable] = signal_confidences(predicted, model.labels)
            for position, name in enumerate(signal_names(model)):
                added[signal_column(name)] = confidences[:, position]
            continue
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
    return pd.DataFrame(added)


def join_columns(frame: pd.DataFrame, added: pd.DataFrame) -> pd.DataFrame:
    """`frame` with `added` (a positional frame of the same length) after its columns, on
    `frame`'s index: joined by position, so a repeated index label cannot misalign rows."""
    return pd.concat([frame.reset_index(drop=True), added.reset_index(drop=True)], axis=1).set_axis(
        frame.index
    )


def predict_frame(
    models: dict[str, HeadModel],
    tickets: pd.DataFrame,
    *,
    subject_column: str | None = "subject",
    body_column: str = "body",
    max_text_chars: int,
    source: Source | None = None,
    prefix: str = "",
) -> pd.DataFrame:
    """Every input column, unchanged and in order, plus (each name after `prefix`) per head the
    label, its confidence and each class probability, then `error`.

    The text is read through `source` when given (`model_input`), else from `subject_column`
    and `body_column`. An input column named like an added one is refused (`check_no_clashes`).
    A row whose text is empty gets a message in `error` and no predictions; it never stops the
    other rows. Pandas in, pandas out: the same function serves files, batches and clusters.
    """
    _, text = model_input(
        tickets,
        subject_column=subject_column,
        body_column=body_column,
        max_text_chars=max_text_chars,
        source=source,
        cleaning=models_cleaning(models),
    )
    check_no_clashes(tickets.columns, output_columns(models), prefix)
    added = model_columns(models, text)
    return join_columns(tickets, added.add_prefix(prefix) if prefix else added)


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
    subject_column: str | None = "subject",
    body_column: str = "body",
    max_text_chars: int,
    chunk_size: int,
    source: Source | None = None,
    prefix: str = "",
    on_chunk: Callable[[int], None] | None = None,
    jobs: int = 1,
) -> PredictStats:
    """Score a CSV/Parquet/JSON Lines file chunk by chunk into `output_path`, the chunks in
    `jobs` processes side by side (`urgency.parallel`), written in input order.

    Memory is bounded by `chunk_size` (times a few per job), whatever the file's length. The
    output appears only when every row is written: a failure leaves no half-written file (and an
    older output intact).
    """
    check_not_input(input_path, output_path)
    stats = PredictStats()
    chunks = read_chunks(input_path, chunk_size, source.encoding if source else "utf-8")
    score_chunk = partial(
        predict_frame,
        models,
        subject_column=subject_column,
        body_column=body_column,
        max_text_chars=max_text_chars,
        source=source,
        prefix=prefix,
    )
    with AtomicTableWriter(output_path) as writer:
        for scored in ordered_map(
            score_chunk, warned_chunks(chunks, input_path, subject_column, source), jobs
        ):
            writer.write(scored)
            stats.rows += len(scored)
            stats.rows_with_error += int(scored[prefix + "error"].notna().sum())
            if on_chunk:
                on_chunk(len(scored))
    return stats


def warned_chunks(
    chunks: Iterator[pd.DataFrame], path: Path, subject_column: str | None, source: Source | None
) -> Iterator[pd.DataFrame]:
    """The chunks, the missing columns warned about when the first is read."""
    for number, chunk in enumerate(chunks):
        if number == 0:
            warn_missing_columns(path, list(chunk.columns), subject_column, source)
        yield chunk


def warn_missing_columns(
    path: Path, header: Sequence[str], subject_column: str | None, source: Source | None
) -> None:
    """Say which described columns a file lacks (their fields are read as empty); the body's
    absence is an error of its own, raised when the text is read."""
    if source is not None:
        missing = [name for name in missing_source_columns(header, source) if not name.endswith("(body)")]
        if missing:
            log.warning("%s has no column(s) %s of source %r: read as empty", path, missing, source.name)
    elif subject_column and subject_column not in header:
        log.warning("%s has no subject column %r: scoring the body alone", path, subject_column)
