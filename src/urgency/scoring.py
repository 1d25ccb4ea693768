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
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from urgency.config import HEADS, Source, signal_column
from urgency.decision import DECISION_COLUMNS, Decision, HeadOutput
from urgency.files import AtomicTableWriter, check_not_input, read_chunks
from urgency.models import HeadModel
from urgency.parallel import ordered_map
from urgency.predict import (
    check_no_clashes,
    join_columns,
    model_columns,
    model_input,
    models_cleaning,
    output_columns,
    warn_missing_columns,
    warned_chunks,
)
from urgency.rules import RuleSet, is_missing
from urgency.rules.engine import DUPLICATE_COLUMNS, decide, surge_active
from urgency.tickets import map_tickets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    """Scored tickets: `predicted` (every input column unchanged, then the model columns under
    `prefix`, as `predict_frame` gives them) and one `Decision` per row, in the same order."""

    predicted: pd.DataFrame
    decisions: list[Decision]
    prefix: str = ""

    def decision_columns(self) -> pd.DataFrame:
        """`DECISION_COLUMNS` of every row (without the prefix), index aligned with `predicted`."""
        rows = []
        for decision in self.decisions:
            record = decision.to_record()
            rows.append([record[name] for name in DECISION_COLUMNS])
        return pd.DataFrame(rows, index=self.predicted.index, columns=list(DECISION_COLUMNS))

    def frame(self) -> pd.DataFrame:
        """The scored-file layout: input columns, model columns, then `DECISION_COLUMNS`, the added
        ones under `prefix`. No input column is overwritten: a clash is an InputError."""
        check_no_decision_columns(self.predicted.columns, self.prefix)
        decisions = self.decision_columns()
        return pd.concat(
            [self.predicted, decisions.add_prefix(self.prefix) if self.prefix else decisions], axis=1
        )


def check_no_decision_columns(columns: Sequence[str] | pd.Index, prefix: str = "") -> None:
    """Input columns named like a decision column would be lost in the scored file: refuse them
    (the message names them and suggests --output-prefix)."""
    check_no_clashes(columns, DECISION_COLUMNS, prefix)


def predict_for_rules(
    models: Mapping[str, HeadModel],
    tickets: pd.DataFrame,
    *,
    subject_column: str | None = "subject",
    body_column: str = "body",
    max_text_chars: int,
    source: Source | None = None,
    prefix: str = "",
    signals: Sequence[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The models' columns two ways: the output layout (every input column unchanged, the
    model columns under `prefix`) and the frame the rules read (the tickets as `model_input`
    maps them - with a source, meta fields under the source's names - and the model columns
    under their own names, which the rules use whatever the prefix). Clashes with the input are
    refused before any model runs. `signals`: the text signals the rules read, whose columns
    come only from the signals model, never from the input."""
    view, text = model_input(
        tickets,
        subject_column=subject_column,
        body_column=body_column,
        max_text_chars=max_text_chars,
        source=source,
        cleaning=models_cleaning(dict(models)),
    )
    check_no_clashes(tickets.columns, [*output_columns(dict(models)), *DECISION_COLUMNS], prefix)
    added = model_columns(dict(models), text)
    # The rules read model outputs only from the models: a mapped label (the agents' value) or an
    # input column of the same name must not pass for a prediction of a head without a model.
    model_names = {
        *added.columns,
        *HEADS,
        *(f"{head}_confidence" for head in HEADS),
        *(signal_column(name) for name in signals),
    }
    dropped = [column for column in view.columns if column in model_names]
    for_rules = join_columns(view.drop(columns=dropped), added)
    if source is None and not prefix and not dropped:
        return for_rules, for_rules  # the same frame: one concat less for the service's calls
    return join_columns(tickets, added.add_prefix(prefix) if prefix else added), for_rules


def score_frame(
    models: Mapping[str, HeadModel],
    tickets: pd.DataFrame,
    rules: RuleSet,
    *,
    now: datetime,
    surge: bool | None = None,
    subject_column: str | None = "subject",
    body_column: str = "body",
    max_text_chars: int,
    source: Source | None = None,
    prefix: str = "",
    before_decide: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> Scored:
    """Predict, then decide, every ticket. `surge` None follows the rules file (`auto` counts
    these tickets' created times). With a `source`, the text and the fields the rules read are
    the tickets mapped through it (`urgency.tickets`); `prefix` goes before every added column.
    `before_decide` gets the frame the rules read and returns it with columns added between
    the models and the rules (the service's duplicate check: `rules.engine.DUPLICATE_COLUMNS`)."""
    predicted, for_rules = predict_for_rules(
        models,
        tickets,
        subject_column=subject_column,
        body_column=body_column,
        max_text_chars=max_text_chars,
        source=source,
        prefix=prefix,
        signals=list(rules.spec.text_signals),
    )
    if before_decide is not None:
        for_rules = before_decide(for_rules)
    decided = decide_predicted(for_rules, rules, now, surge=surge)
    return Scored(predicted, decided.decisions, prefix)


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
            *(signal_column(name) for name in rules.spec.text_signals),
            *DUPLICATE_COLUMNS,
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


def queue_order(scored: pd.DataFrame, prefix: str = "") -> pd.DataFrame:
    """Sort a scored frame into the work queue: priority, then the nearest deadline, then the
    created time (first come, first served), then input order (`prefix`: of the added columns)."""
    return scored.sort_values(prefix + "order_key", kind="stable")


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
    subject_column: str | None = "subject",
    body_column: str = "body",
    max_text_chars: int,
    chunk_size: int,
    source: Source | None = None,
    prefix: str = "",
    queue: bool = True,
    on_chunk: Callable[[int], None] | None = None,
    jobs: int = 1,
) -> ScoreStats:
    """Score a CSV/Parquet/JSON Lines file into `output_path`. A failure leaves no half-written
    output. With a `source`, the file is read through it (`urgency.tickets`); every input column
    is written unchanged, the added ones under `prefix`.

    `queue` (`urgency score`): predicted chunk by chunk, decided as a whole - surge `auto` counts
    the whole file - and sorted into the work queue (priority, nearest deadline, creation time:
    first come, first served), so held in memory. Without `queue` (a cluster's part) every chunk
    is decided and written at once, in input order, with the given `surge`. `jobs`: processes
    that predict the queue's chunks side by side (`urgency.parallel`).
    """
    check_not_input(input_path, output_path)
    encoding = source.encoding if source is not None else "utf-8"
    stats = ScoreStats()
    columns: dict[str, Any] = {
        "subject_column": subject_column,
        "body_column": body_column,
        "max_text_chars": max_text_chars,
        "source": source,
        "prefix": prefix,
    }
    with AtomicTableWriter(output_path) as writer:
        if queue:
            outputs, views = [], []
            chunks = warned_chunks(
                read_chunks(input_path, chunk_size, encoding), input_path, subject_column, source
            )
            predict_chunk = partial(
                predict_for_rules, models, **columns, signals=list(rules.spec.text_signals)
            )
            for output, for_rules in ordered_map(predict_chunk, chunks, jobs):
                outputs.append(output)
                views.append(for_rules)
                if on_chunk:
                    on_chunk(len(output))
            predicted = pd.concat(outputs, ignore_index=True) if outputs else pd.DataFrame()
            for_rules = pd.concat(views, ignore_index=True) if views else pd.DataFrame()
            stats.missing_columns = missing_columns(list(for_rules.columns), rules)
            column = rules.spec.created_at.column
            if surge is None:
                created = for_rules[column].tolist() if column in for_rules.columns else []
                surge = surge_active(rules, created, now)
            if len(predicted):
                decided = decide_predicted(for_rules, rules, now, surge=surge)
                scored = Scored(predicted, decided.decisions, prefix).frame()
                scored = queue_order(scored, prefix)
            else:
                scored = predicted
            _write_counted(stats, scored, writer, prefix)
        else:
            if surge is None:
                raise ValueError("scoring a file in input order needs surge decided (on or off)")
            for chunk in read_chunks(input_path, chunk_size, encoding):
                if not stats.rows:
                    warn_missing_columns(input_path, list(chunk.columns), subject_column, source)
                    view, _ = model_input(
                        chunk.head(0),
                        subject_column=subject_column,
                        body_column=body_column,
                        max_text_chars=max_text_chars,
                        source=source,
                    )
                    stats.missing_columns = missing_columns(list(view.columns), rules)
                scored = score_frame(models, chunk, rules, now=now, surge=surge, **columns).frame()
                _write_counted(stats, scored, writer, prefix)
                if on_chunk:
                    on_chunk(len(chunk))
    if stats.missing_columns:
        log.warning("input has no column(s) %s: the rules treat those fields as empty", stats.missing_columns)
    stats.surge = bool(surge)
    return stats


def _write_counted(
    stats: ScoreStats, scored: pd.DataFrame, writer: AtomicTableWriter, prefix: str = ""
) -> None:
    writer.write(scored)
    stats.rows += len(scored)
    if len(scored):
        stats.rows_with_error += int(scored[prefix + "error"].notna().sum())
        stats.needs_human_triage += int(scored[prefix + "needs_human_triage"].sum())
        for level, count in scored[prefix + "priority"].value_counts().items():
            stats.by_priority[str(level)] = stats.by_priority.get(str(level), 0) + int(count)
    stats.by_priority = dict(sorted(stats.by_priority.items()))


def created_times(path: Path, column: str, chunk_size: int, source: Source | None = None) -> list[Any]:
    """The created-time column of a ticket file (empty when it has none), as the rules read it
    (through `source` when given): what surge counts."""
    times: list[Any] = []
    for chunk in read_chunks(path, chunk_size, source.encoding if source else "utf-8"):
        frame = map_tickets(chunk, source) if source is not None else chunk
        if column in frame.columns:
            times += frame[column].tolist()
    return times
