"""New ticket history and the agents' corrections, made ready for `urgency retrain`.

History format: the export a source of params `data.sources` describes (`--source NAME`, or
the only source): its columns, meta fields, constants and label value maps (`urgency.tickets`),
with a created_at column. With several sources and none named: the columns id, subject, body,
language, created_at, urgency, category, sentiment; body, created_at and at least one label
column required, label values the heads' labels as written in params. The agents' final
values in the service's store relabel the same tickets (by id, else by text); the latest
decision wins.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from urgency.cleaning import Cleaning, clean_texts
from urgency.config import HEADS, Columns, LabelSource, Params, Source
from urgency.data import LoadResult, dedup_key, read_source_table, validate_source
from urgency.errors import DataValidationError
from urgency.language import normalise_languages
from urgency.text import ticket_text
from urgency.tickets import source_for_file

log = logging.getLogger(__name__)

HISTORY_FIELDS: tuple[str, ...] = ("id", "subject", "body", "language", "created_at", *HEADS)
REQUIRED_FIELDS: tuple[str, ...] = ("body", "created_at")
CORRECTIONS = "corrections"  # the `source` of tickets that only the store knows


# ---------------------------------------------------------------------------------------------
# The new history


def history_source(path: Path, header: Sequence[str], params: Params, name: str) -> Source:
    """The `Source` that reads a history file in the canonical layout (no source described it):
    its columns found by their canonical names, labels kept as written (they must be the heads'
    labels)."""
    present = set(header)

    def column(field_name: str) -> str | None:
        return field_name if field_name in present else None

    missing = [f for f in REQUIRED_FIELDS if column(f) is None]
    labels = {
        head: LabelSource(column=head, mapping={label: label for label in params.heads.get(head).labels})
        for head in HEADS
        if column(head) is not None
    }
    if not labels:
        missing.append("a label column (" + ", ".join(HEADS) + ")")
    if missing:
        raise DataValidationError(
            f"{path}: missing column(s) {', '.join(missing)}; a history file has the columns "
            f"{', '.join(HISTORY_FIELDS)}, or is described by a source in params data.sources "
            "(`urgency retrain --source NAME`: its columns and label maps)"
        )
    columns = Columns(
        id=column("id"),
        subject=column("subject"),
        body=column("body") or "body",
        language=column("language"),
        created_at=column("created_at"),
    )
    return Source(
        name=name,
        path=path,
        columns=columns,
        labels=labels,
        invalid_rows="error",
        # Cleaned as the models clean (what the configured sources' text is compared with).
        cleaning=params.data.cleaning,
    )


def _source_name(path: Path, taken: set[str]) -> str:
    stem = path.name.split(".")[0] or "history"
    base = "history-" + re.sub(r"[^A-Za-z0-9_.-]", "_", stem)
    name, number = base, 2
    while name in taken:
        name, number = f"{base}-{number}", number + 1
    taken.add(name)
    return name


def described_history(source: Source, path: Path, name: str) -> Source:
    """`source` (params data.sources) reading the history file `path` under the name `name`:
    its columns, constants and label value maps; every row must be valid."""
    if not source.columns.created_at:
        raise DataValidationError(
            f"{path}: source {source.name!r} names no created_at column; a history needs one "
            "(the held-out slice is chosen by date)"
        )
    if not source.labels:
        raise DataValidationError(f"{path}: source {source.name!r} has no labels: nothing to retrain on")
    described = source_for_file(source, path)
    return described.model_copy(update={"name": name, "invalid_rows": "error"})


def load_history(
    paths: Sequence[Path], params: Params, source: Source | None = None
) -> tuple[LoadResult, list[Source]]:
    """Read and validate every history file; all problems of all files are reported at once
    (DataValidationError naming file, column and example rows). Every row must be valid: a
    history file is new evidence, so nothing is dropped silently. With `source` (params
    data.sources) each file is read through it, labels mapped by its value maps; without, in
    the canonical layout. Returns the tickets and the sources that read them (for params
    data.sources, once a retrain has used them)."""
    taken = {source.name for source in params.data.sources}
    frames: list[pd.DataFrame] = []
    reports = []
    sources: list[Source] = []
    failures: list[str] = []
    for given in paths:
        path = Path(given).resolve()  # the source printed for params must not depend on the cwd
        name = _source_name(path, taken)
        try:
            if source is None:
                file_format = Source(name=name, path=path, columns=Columns(body="body")).file_format
                raw = read_source_table(path, file_format)
                reader = history_source(path, list(raw.columns), params, name)
            else:
                reader = described_history(source, path, name)
                raw = read_source_table(path, reader.file_format, reader.encoding)
        except DataValidationError as error:
            failures.append(str(error))
            continue
        frame, report = validate_source(raw, reader)
        problems = report.describe_problems()
        undated = frame.index[frame["created_at"].isna()]
        if len(undated):
            rows = ", ".join(str(row + 1) for row in undated[:5])
            problems.append(
                f"  - {reader.columns.created_at} (created_at): missing value: {len(undated)} row(s), "
                f"e.g. rows {rows} (the held-out slice is chosen by date)"
            )
        if problems:
            text = "\n".join(problems)
            # In the canonical layout a history has no mappings: name the heads' labels instead.
            for head in reader.labels if source is None else ():
                text = text.replace(
                    f"labels.{head}.mapping", f"heads.{head}.labels {params.heads.get(head).labels}"
                )
            failures.append(
                f"{path}: {len(problems)} problem(s) (rows count from 1 after the header)\n{text}"
            )
            continue
        raw_ids = frame["id"].str.removeprefix(f"{name}:")
        frame["ticket_id"] = raw_ids if reader.columns.id else pd.NA
        frames.append(frame)
        reports.append(report)
        sources.append(reader)
    if failures:
        raise DataValidationError("new history is not valid:\n" + "\n".join(failures))
    return LoadResult(tickets=pd.concat(frames, ignore_index=True), reports=reports), sources


# ---------------------------------------------------------------------------------------------
# Agents' corrections


def read_decisions(database_url: str) -> pd.DataFrame:
    """`Store.decisions()` of the store at `database_url` (one row per decided ticket)."""
    from urgency.store import Store, check_schema, make_engine

    engine = make_engine(database_url)
    try:
        check_schema(engine)
        return Store(engine).decisions()
    finally:
        engine.dispose()


def corrections_frame(decisions: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, int]:
    """Store decisions -> canonical tickets whose labels are the agents' final values.

    Returns the frame and how many agent values were ignored because they are not one of the
    head's labels (an agent's free-text category, say)."""
    columns = ["id", "ticket_id", "source", "subject", "body", "language", "created_at", *HEADS, "decided_at"]
    if decisions.empty:
        return pd.DataFrame(columns=columns), 0
    cleaning = Cleaning(**params.data.cleaning.model_dump())
    fields = decisions["fields"].map(
        lambda value: json.loads(value) if isinstance(value, str) else value or {}
    )
    frame = pd.DataFrame(
        {
            "id": CORRECTIONS + ":" + decisions["ticket_id"].astype(str),
            "ticket_id": decisions["ticket_id"].astype(str),
            "source": CORRECTIONS,
            # The service stored the text as sent (HTML, quotes): cleaned like the history it is
            # matched with by text, and like any training text.
            "subject": clean_texts(decisions["subject"], cleaning).to_numpy(),
            "body": clean_texts(decisions["body"], cleaning).to_numpy(),
            "language": normalise_languages(fields.map(lambda f: f.get("language"))),
            "created_at": pd.to_datetime(decisions["created_at"], utc=True, errors="coerce"),
            "decided_at": pd.to_datetime(decisions["decided_at"], utc=True, errors="coerce"),
        }
    )
    ignored = 0
    for head in HEADS:
        values = decisions.get(f"agent_{head}", pd.Series(pd.NA, index=decisions.index)).astype("string")
        known = values.isin(params.heads.get(head).labels)
        ignored += int((values.notna() & ~known).sum())
        frame[head] = values.where(known).astype("string")
    has_text = (frame["subject"].str.strip() != "") | (frame["body"].str.strip() != "")
    frame = frame[frame[list(HEADS)].notna().any(axis=1) & has_text]
    return frame.reset_index(drop=True)[columns], ignored


@dataclass
class Merged:
    previous: pd.DataFrame  # the configured training data, corrections applied
    history: pd.DataFrame  # the new history, corrections applied
    extra: pd.DataFrame  # corrections of tickets found in neither: new training rows
    relabelled: dict[str, int]  # labels a correction changed, per head
    matched: int  # corrections that found their ticket


def text_keys(tickets: pd.DataFrame, max_text_chars: int) -> pd.Series:
    return dedup_key(ticket_text(tickets["subject"], tickets["body"], max_text_chars))


def apply_corrections(
    previous: pd.DataFrame, history: pd.DataFrame, corrections: pd.DataFrame, *, max_text_chars: int
) -> Merged:
    """The agent's final value replaces a ticket's label, head by head (a correction without a
    value for a head leaves that label alone). A correction finds its ticket in the new history
    by ticket id (when the file has ids) or else by text, in the configured data by text (their
    ids are not the service's). Corrections that find no ticket become training rows of their
    own. `Store.decisions` already made the latest decision win; among corrections sharing a
    text, the latest decided wins."""
    corrections = corrections.sort_values("decided_at", kind="stable", na_position="first")
    corrections = corrections.reset_index(drop=True)
    # dict() keeps the last pair per key: the latest decided correction.
    by_id = dict(zip(corrections["ticket_id"], corrections.index, strict=True))
    by_text = dict(zip(text_keys(corrections, max_text_chars), corrections.index, strict=True))
    relabelled = dict.fromkeys(HEADS, 0)
    used: set[int] = set()

    def relabel(tickets: pd.DataFrame, use_ids: bool) -> pd.DataFrame:
        if tickets.empty or corrections.empty:
            return tickets
        match = text_keys(tickets, max_text_chars).map(by_text).astype("Int64")
        if use_ids:
            match = tickets["ticket_id"].map(by_id).astype("Int64").fillna(match)
        found = match.notna()
        used.update(int(i) for i in match[found])
        tickets = tickets.copy()
        for head in HEADS:
            values = pd.Series(pd.NA, index=tickets.index, dtype="string")
            values[found] = corrections[head].to_numpy()[match[found].to_numpy(dtype=int)]
            replace = values.notna()
            before = tickets[head].astype("string")
            relabelled[head] += int((replace & (before.fillna("") != values.fillna(""))).sum())
            tickets[head] = before.where(~replace, values)
        return tickets

    history = relabel(history, use_ids=True)
    previous = relabel(previous, use_ids=False)
    extra = corrections.drop(index=list(used)).drop(columns=["decided_at"])
    return Merged(previous, history, extra.reset_index(drop=True), relabelled, len(used))
