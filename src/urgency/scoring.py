"""Scoring: tickets in, decisions out - the models (`urgency.predict`), then the rules
(`urgency.rules.engine.decide`).

`score_frame` is the one predict-then-decide function: `urgency score` (files, through
`score_file`), the service (one ticket and batches), the demo's simulated agents and Dask workers
all call it. Its result keeps the `Decision` objects (the service answers with them) and gives the
scored-file layout (`Scored.frame`): input columns, model columns, then `DECISION_COLUMNS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from urgency.config import HEADS
from urgency.decision import DECISION_COLUMNS, Decision, HeadOutput
from urgency.errors import InputError
from urgency.files import AtomicTableWriter, check_not_input, read_chunks
from urgency.models import HeadModel
from urgency.predict import predict_frame
from urgency.rules import RuleSet, is_missing
from urgency.rules.engine import decide, surge_active

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    """Scored tickets: `predicted` (input and model columns, as `predict_frame` gives them) and
    one `Decision` per row, in the same order."""

    predicted: pd.DataFrame
    decisions: list[Decision]

    def decision_columns(self) -> pd.DataFrame:
        """`DECISION_COLUMNS` of every row, index aligned with `predicted`."""
        rows = []
        for decision in self.decisions:
            record = decision.to_record()
            rows.append([record[name] for name in DECISION_COLUMNS])
        return pd.DataFrame(rows, index=self.predicted.index, columns=list(DECISION_COLUMNS))

    def frame(self) -> pd.DataFrame:
        """The scored-file layout: input columns, model columns, then `DECISION_COLUMNS`. No input
        column is overwritten: an input column named like a decision column is an InputError."""
        check_no_decision_columns(self.predicted.columns)
        return pd.concat([self.predicted, self.decision_columns()], axis=1)


def check_no_decision_columns(columns: Sequence[str] | pd.Index) -> None:
    """Input columns named like a decision column would be lost in the scored file: refuse them."""
    clashes = [column for column in DECISION_COLUMNS if column in columns]
    if clashes:
        raise InputError(
            f"input already has column(s) {clashes} that scoring adds; rename them so nothing is overwritten"
        )


def score_frame(
    models: Mapping[str, HeadModel],
    tickets: pd.DataFrame,
    rules: RuleSet,
    *,
    now: datetime,
    surge: bool | None = None,
    subject_column: str | None,
    body_column: str,
    max_text_chars: int,
) -> Scored:
    """Predict, then decide, every ticket. `surge` None follows the rules file (`auto` counts
    these tickets' created times)."""
    predicted = predict_frame(
        dict(models),
        tickets,
        subject_column=subject_column,
        body_column=body_column,
        max_text_chars=max_text_chars,
    )
    return decide_predicted(predicted, rules, now, surge=surge)


def decide_predicted(
    predicted: pd.DataFrame, rules: RuleSet, now: datetime, *, surge: bool | None = None
) -> Scored:
    """Decide every row of a predicted frame (model columns as `predict_frame` writes them, plus
    the metadata columns the rules read)."""
    column = rules.spec.created_at.column
    if surge is None:
        surge = surge_active(rules, predicted[column].tolist() if column in predicted.columns else [], now)
    wanted = [
        name
        for name in {
            *HEADS,
            *(f"{head}_confidence" for head in HEADS),
            column,
            *(info.column for info in rules.input_fields),
        }
        if name in predicted.columns
    ]
    decisions = [
        decide(head_outputs(record), record, rules, now, surge=surge)
        for record in frame_records(predicted, sorted(wanted))
    ]
    return Scored(predicted, decisions)


def decide_frame(
    frame: pd.DataFrame, rules: RuleSet, now: datetime, *, surge: bool | None = None
) -> pd.DataFrame:
    """`DECISION_COLUMNS` for every row of a predicted frame, index aligned with `frame`."""
    return decide_predicted(frame, rules, now, surge=surge).decision_columns()


def head_outputs(row: Mapping[str, Any]) -> dict[str, HeadOutput]:
    """A `predict_frame` row's columns (`<head>`, `<head>_confidence`) -> `HeadOutput`s."""
    outputs = {}
    for head in HEADS:
        if head in row:
            label = row[head]
            confidence = row.get(f"{head}_confidence")
            outputs[head] = HeadOutput(
                None if is_missing(label) or label is pd.NA else str(label),
                None
                if confidence is None or confidence is pd.NA or pd.isna(confidence)
                else float(confidence),
            )
    return outputs


def frame_records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of `frame` as dicts with None for every missing value (NaN, NA, NaT)."""
    values = frame[list(columns)].to_numpy(dtype=object)
    return [
        {
            name: None if value is None or value is pd.NA or value is pd.NaT or value != value else value
            for name, value in zip(columns, row, strict=True)
        }
        for row in values
    ]


def queue_order(scored: pd.DataFrame) -> pd.DataFrame:
    """Sort a scored frame into the work queue: priority, then the nearest deadline, then the
    created time (first come, first served), then input order."""
    return scored.sort_values("order_key", kind="stable")


def missing_columns(frame_columns: Sequence[str], rules: RuleSet) -> list[str]:
    """Columns the rules read that a frame lacks (their fields are treated as empty)."""
    wanted = [info.column for info in rules.input_fields] + [rules.spec.created_at.column]
    return [column for column in dict.fromkeys(wanted) if column is not None and column not in frame_columns]


# ---------------------------------------------------------------------------------------------
# Files: the prioritized work queue


@dataclass
class ScoreStats:
    rows: int = 0
    rows_with_error: int = 0
    needs_human_triage: int = 0
    surge: bool = False
    by_priority: dict[str, int] = field(default_factory=dict)
    missing_columns: list[str] = field(default_factory=list)


def score_file(
    models: Mapping[str, HeadModel],
    rules: RuleSet,
    input_path: Path,
    output_path: Path,
    *,
    now: datetime,
    surge: bool | None = None,
    subject_column: str | None,
    body_column: str,
    max_text_chars: int,
    chunk_size: int,
    queue: bool = True,
    on_chunk: Callable[[int], None] | None = None,
) -> ScoreStats:
    """Score a CSV/Parquet/JSON Lines file into `output_path`. A failure leaves no half-written
    output.

    `queue` (`urgency score`): predicted chunk by chunk, decided as a whole - surge `auto` counts
    the whole file - and sorted into the work queue (priority, nearest deadline, creation time:
    first come, first served), so held in memory. Without `queue` (a cluster's part) every chunk
    is decided and written at once, in input order, with the given `surge`.
    """
    check_not_input(input_path, output_path)
    stats = ScoreStats()
    columns = {"subject_column": subject_column, "body_column": body_column, "max_text_chars": max_text_chars}
    with AtomicTableWriter(output_path) as writer:
        if queue:
            chunks = []
            for chunk in read_chunks(input_path, chunk_size):
                check_no_decision_columns(chunk.columns)  # before any model runs
                chunks.append(predict_frame(dict(models), chunk, **columns))
                if on_chunk:
                    on_chunk(len(chunk))
            predicted = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
            stats.missing_columns = missing_columns(list(predicted.columns), rules)
            column = rules.spec.created_at.column
            if surge is None:
                created = predicted[column].tolist() if column in predicted.columns else []
                surge = surge_active(rules, created, now)
            scored = (
                decide_predicted(predicted, rules, now, surge=surge).frame() if len(predicted) else predicted
            )
            _write_counted(stats, queue_order(scored) if len(scored) else scored, writer)
        else:
            if surge is None:
                raise ValueError("scoring a file in input order needs surge decided (on or off)")
            for chunk in read_chunks(input_path, chunk_size):
                if not stats.rows:
                    stats.missing_columns = missing_columns(list(chunk.columns), rules)
                scored = score_frame(models, chunk, rules, now=now, surge=surge, **columns).frame()
                _write_counted(stats, scored, writer)
                if on_chunk:
                    on_chunk(len(chunk))
    if stats.missing_columns:
        log.warning("input has no column(s) %s: the rules treat those fields as empty", stats.missing_columns)
    stats.surge = bool(surge)
    return stats


def _write_counted(stats: ScoreStats, scored: pd.DataFrame, writer: AtomicTableWriter) -> None:
    writer.write(scored)
    stats.rows += len(scored)
    if len(scored):
        stats.rows_with_error += int(scored["error"].notna().sum())
        stats.needs_human_triage += int(scored["needs_human_triage"].sum())
        for level, count in scored["priority"].value_counts().items():
            stats.by_priority[str(level)] = stats.by_priority.get(str(level), 0) + int(count)
    stats.by_priority = dict(sorted(stats.by_priority.items()))


def created_times(path: Path, column: str, chunk_size: int) -> list[Any]:
    """The created-time column of a ticket file (empty when it has none): what surge counts."""
    times: list[Any] = []
    for chunk in read_chunks(path, chunk_size):
        if column in chunk.columns:
            times += chunk[column].tolist()
    return times
