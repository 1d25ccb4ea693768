"""The prioritized work queue: a file of tickets in, a sorted queue with decisions out.

Predictions come from `urgency.predict` (the one inference path), decisions from
`urgency.scoring` (the pure rules engine). Reading is chunked; the queue is sorted as a whole,
so it is held in memory. The output appears only once it is completely written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from urgency.files import read_chunks, write_table_atomic
from urgency.predict import predict_frame
from urgency.rules import RuleSet
from urgency.scoring import DECISION_COLUMNS, decide_frame, missing_columns, queue_order, surge_active

log = logging.getLogger(__name__)


def score_frame(
    models: dict[str, Any],
    tickets: pd.DataFrame,
    rules: RuleSet,
    *,
    now: datetime,
    surge: bool | None = None,
    subject_column: str | None,
    body_column: str,
    max_text_chars: int,
) -> pd.DataFrame:
    """Predict and decide every ticket: input columns, model columns, then `DECISION_COLUMNS`."""
    predicted = predict_frame(
        models, tickets, subject_column=subject_column, body_column=body_column, max_text_chars=max_text_chars
    )
    return _with_decisions(predicted, rules, now, surge)


def _with_decisions(
    predicted: pd.DataFrame, rules: RuleSet, now: datetime, surge: bool | None
) -> pd.DataFrame:
    decisions = decide_frame(predicted, rules, now, surge=surge)
    replaced = [column for column in DECISION_COLUMNS if column in predicted.columns]
    if replaced:
        log.warning("input columns %s are replaced by the scoring decision's columns of that name", replaced)
    return pd.concat([predicted.drop(columns=replaced), decisions], axis=1)


@dataclass
class ScoreStats:
    rows: int = 0
    rows_with_error: int = 0
    needs_human_triage: int = 0
    surge: bool = False
    by_priority: dict[str, int] = field(default_factory=dict)
    missing_columns: list[str] = field(default_factory=list)


def score_file(
    models: dict[str, Any],
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
    on_chunk: Callable[[int], None] | None = None,
) -> ScoreStats:
    """Score a CSV/Parquet/JSON Lines file into a prioritized queue at `output_path`.

    Sorted by priority, then the nearest deadline, then creation time (first come, first
    served). Surge `auto` counts the whole file. A failure leaves no half-written output.
    """
    chunks = []
    for chunk in read_chunks(input_path, chunk_size):
        chunks.append(
            predict_frame(
                models,
                chunk,
                subject_column=subject_column,
                body_column=body_column,
                max_text_chars=max_text_chars,
            )
        )
        if on_chunk:
            on_chunk(len(chunk))
    predicted = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
    stats = ScoreStats(missing_columns=missing_columns(list(predicted.columns), rules))
    if stats.missing_columns:
        log.warning("input has no column(s) %s: the rules treat those fields as empty", stats.missing_columns)
    if surge is None:
        column = rules.spec.created_at.column
        surge = surge_active(rules, predicted[column].tolist() if column in predicted.columns else [], now)
    queue = queue_order(_with_decisions(predicted, rules, now, surge)) if len(predicted) else predicted

    write_table_atomic(queue, output_path)
    stats.rows = len(queue)
    stats.surge = surge
    if len(queue):
        stats.rows_with_error = int(queue["error"].notna().sum())
        stats.needs_human_triage = int(queue["needs_human_triage"].sum())
        stats.by_priority = {str(k): int(v) for k, v in queue["priority"].value_counts().sort_index().items()}
    return stats
