"""Ticket data: read configured sources, validate them, map them onto the canonical ticket record,
and split each head's rows into train/validation/test.

The canonical record has one row per ticket with the columns in `CANONICAL_COLUMNS` plus any
configured meta fields; each label column may be empty (a row carries any subset of labels).

Just over 400 lines: reading, validating and mapping a source onto the canonical ticket, and
splitting it per head, are the one data stage (file formats live in `urgency.files`).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from urgency.cleaning import Cleaning, clean_texts
from urgency.config import HEADS, DataParams, Source, SplitParams
from urgency.errors import DataValidationError, InputError
from urgency.files import NotTextError, read_table
from urgency.text import ticket_text
from urgency.tickets import label_text, map_tickets, source_for_file

log = logging.getLogger(__name__)

CANONICAL_COLUMNS: tuple[str, ...] = (
    "id",
    "source",
    "subject",
    "body",
    "language",
    "created_at",
    *HEADS,
)
SPLITS: tuple[str, ...] = ("train", "validation", "test")
EXAMPLE_ROWS = 5


def dedup_key(text: pd.Series) -> pd.Series:
    """Texts that differ only in case and white space share a key (and so a split)."""
    normalised = text.str.lower().str.split().str.join(" ")
    return normalised.map(lambda value: hashlib.blake2b(value.encode(), digest_size=8).hexdigest())


# ---------------------------------------------------------------------------------------------
# Reading


def read_source_table(path: Path, kind: str, encoding: str = "utf-8") -> pd.DataFrame:
    """A whole source file (`urgency.files.read_table`). A file that cannot be read is invalid
    ticket data: DataValidationError (exit code 4), not the scoring input's InputError."""
    try:
        return read_table(path, kind, encoding)
    except NotTextError as error:
        raise DataValidationError(f"{error}; set `encoding:` for this source") from None
    except InputError as error:
        raise DataValidationError(str(error)) from None


# ---------------------------------------------------------------------------------------------
# Validation


@dataclass
class SourceReport:
    """What validation found in one source file."""

    name: str
    path: Path
    rows_read: int = 0
    rows_kept: int = 0
    # "column: problem" -> (count, example row numbers, example values)
    problems: dict[str, tuple[int, list[int], list[str]]] = field(default_factory=dict)
    labelled: dict[str, int] = field(default_factory=dict)

    @property
    def rows_dropped(self) -> int:
        return self.rows_read - self.rows_kept

    def describe_problems(self) -> list[str]:
        lines = []
        for what, (count, rows, values) in self.problems.items():
            if not rows:  # a whole-file problem, such as a missing column
                lines.append(f"  - {what}")
                continue
            examples = ", ".join(str(row) for row in rows)
            shown = f"; values {values}" if values else ""
            lines.append(f"  - {what}: {count} row(s), e.g. rows {examples}{shown}")
        return lines


def _required_columns(source: Source) -> list[str]:
    columns = source.columns
    wanted: list[str] = []
    if isinstance(columns.id, list):
        wanted += columns.id
    elif columns.id:
        wanted.append(columns.id)
    wanted += [c for c in (columns.subject, columns.body, columns.language, columns.created_at) if c]
    wanted += list(columns.meta.values())
    wanted += [label.column for label in source.labels.values()]
    return list(dict.fromkeys(wanted))


def _canonical_frame(raw: pd.DataFrame, source: Source) -> pd.DataFrame:
    """Map raw columns onto the canonical record (`urgency.tickets.map_tickets`, the one mapping
    every command uses); raw label and date values are kept for checking."""
    frame = map_tickets(raw, source, keep_input=False)
    frame["created_at_raw"] = frame["created_at"]
    # Cleaned when read, with the source's own settings: everything downstream (splits, dedup,
    # the models' input examples, drift's text length) sees the text a model reads.
    cleaning = Cleaning(**source.cleaning.model_dump())
    frame["subject"] = clean_texts(frame["subject"], cleaning)
    frame["body"] = clean_texts(frame["body"], cleaning)
    frame["created_at"] = (
        pd.to_datetime(frame["created_at_raw"], errors="coerce", utc=True, format="mixed")
        if source.columns.created_at
        else pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    )
    for head, label_source in source.labels.items():
        frame[f"{head}_raw"] = label_text(raw[label_source.column])
    return frame


def _parses_as_datetime(values: pd.Series) -> pd.Series:
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    return values.isna() | parsed.notna()


def _schema(source: Source) -> pa.DataFrameSchema:
    columns: dict[str, pa.Column] = {
        "id": pa.Column("string", nullable=False, unique=True),
        "created_at_raw": pa.Column(
            checks=pa.Check(_parses_as_datetime, error="not a date-time"), nullable=True, required=False
        ),
    }
    for head, label_source in source.labels.items():
        columns[f"{head}_raw"] = pa.Column(
            "string",
            pa.Check.isin(sorted(label_source.mapping), error=f"value not in labels.{head}.mapping"),
            nullable=True,
        )
    # The one frame-wide check: a ticket needs some text in its subject or its body.
    has_text = pa.Check(
        lambda df: (df["subject"] != "") | (df["body"] != ""),
        error="empty text (subject and body both empty, after cleaning)",
    )
    return pa.DataFrameSchema(columns, checks=[has_text], strict=False)


def _source_column(check_column: object, source: Source) -> str:
    """Name a failing check by the source file's column, which is what the user can fix."""
    columns = source.columns
    if check_column == "id":
        return f"id ({columns.id})" if columns.id else "id"
    if isinstance(check_column, str) and check_column.endswith("_raw") and check_column[:-4] in source.labels:
        head = check_column[:-4]
        return f"{source.labels[head].column} ({head} label)"
    if check_column == "created_at_raw":
        return f"{columns.created_at} (created_at)"
    # Frame-wide checks are about the text.
    text_columns = "/".join(c for c in (columns.subject, columns.body) if c)
    return f"{text_columns} (text)"


def validate_source(raw: pd.DataFrame, source: Source) -> tuple[pd.DataFrame, SourceReport]:
    """Validate one source; return its canonical frame (invalid rows dropped) and a report.

    Row numbers in the report count data rows from 1 (a CSV header is not a row).
    """
    report = SourceReport(name=source.name, path=source.path, rows_read=len(raw))
    missing = [column for column in _required_columns(source) if column not in raw.columns]
    if missing:
        report.problems["missing column(s) " + ", ".join(missing)] = (len(raw), [], [])
        return raw.iloc[0:0], report

    frame = _canonical_frame(raw, source)
    invalid = pd.Series(False, index=frame.index)
    try:
        _schema(source).validate(frame, lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
        cases = cases[cases["index"].notna()].copy()
        # A frame-wide check fails once per column of the row: count each row once.
        frame_wide = cases["schema_context"] == "DataFrameSchema"
        cases.loc[frame_wide, ["column", "failure_case"]] = ["text", "True"]
        cases = cases.drop_duplicates(["column", "check", "index"])
        for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
            rows = sorted({int(i) for i in group["index"]})
            if "uniqueness" in str(check):
                # Every repeat after the first is invalid; the first occurrence is kept.
                repeats = frame["id"].duplicated(keep="first")
                rows = sorted(int(i) for i in frame.index[repeats])
            what = f"{_source_column(column, source)}: {_check_name(check)}"
            values = sorted({str(v) for v in group["failure_case"] if str(v) not in ("True", "False")})
            if column == "id":  # show the id as written in the file
                values = [v.removeprefix(f"{source.name}:") for v in values]
            report.problems[what] = (len(rows), [r + 1 for r in rows[:EXAMPLE_ROWS]], values[:EXAMPLE_ROWS])
            invalid.loc[rows] = True

    kept = frame.loc[~invalid].drop(columns=[c for c in frame.columns if c.endswith("_raw")])
    report.rows_kept = len(kept)
    report.labelled = {head: int(kept[head].notna().sum()) for head in source.labels}
    return kept, report


def _check_name(check: object) -> str:
    text = str(check)
    if text.startswith("field_uniqueness"):
        return "repeated id"
    if text.startswith("not_nullable"):
        return "missing value"
    return text


@dataclass
class LoadResult:
    tickets: pd.DataFrame
    reports: list[SourceReport]


def load_tickets(
    sources: list[Source], *, sample_per_source: int | None = None, sample_seed: int = 0
) -> LoadResult:
    """Read and validate every source; all problems of all files are reported at once.

    A source with policy `error` and any invalid row stops the run (DataValidationError); with
    policy `drop` its invalid rows are dropped and counted in the report. With
    `sample_per_source`, a seeded random sample of each file is read (row numbers stay those of
    the file).
    """
    frames: list[pd.DataFrame] = []
    reports: list[SourceReport] = []
    failures: list[str] = []
    for source in sources:
        try:
            raw = read_source_table(source.path, source.file_format, source.encoding)
        except DataValidationError as error:
            failures.append(f"{source.name}: {error}")
            continue
        if sample_per_source is not None and len(raw) > sample_per_source:
            raw = raw.sample(n=sample_per_source, random_state=sample_seed).sort_index()
        frame, report = validate_source(raw, source)
        reports.append(report)
        fatal = any(what.startswith("missing column") for what in report.problems)
        if report.problems and (fatal or source.invalid_rows == "error"):
            failures.append(
                f"{source.name} ({source.path}): {len(report.problems)} problem(s)\n"
                + "\n".join(report.describe_problems())
            )
        elif report.problems:
            log.warning(
                "%s: dropped %d of %d rows (invalid_rows: drop)\n%s",
                source.name,
                report.rows_dropped,
                report.rows_read,
                "\n".join(report.describe_problems()),
            )
        frames.append(frame)
    if failures:
        raise DataValidationError("ticket data is not valid:\n" + "\n".join(failures))
    tickets = pd.concat(frames, ignore_index=True)
    return LoadResult(tickets=tickets, reports=reports)


# ---------------------------------------------------------------------------------------------
# Splits


def assign_splits(
    labels: pd.Series,
    group_keys: pd.Series,
    *,
    seed: int,
    validation_fraction: float,
    test_fraction: float,
) -> pd.Series:
    """Deterministic, stratified and grouped split of labelled rows.

    Rows sharing a group key (the same text) always land in the same split. Groups are
    stratified by their most common label; within each label they are ordered by a hash of
    `seed` and their key, and the first ones go to test, the next to validation, the rest to
    train. The result does not depend on the order of the rows, and new data moves only the few
    groups at the cut points: a ticket that was in train stays (almost always) in train.
    """
    frame = pd.DataFrame({"label": labels.astype(str), "group": group_keys})
    counts = frame.groupby(["group", "label"]).size().reset_index(name="n")
    # Most common label per group; ties go to the alphabetically first label.
    counts = counts.sort_values(["group", "n", "label"], ascending=[True, False, True])
    group_label = counts.drop_duplicates("group").set_index("group")["label"]
    split_of_group: dict[str, str] = {}
    for label in sorted(group_label.unique()):
        groups = sorted(group_label.index[group_label == label], key=lambda key: _seeded_hash(seed, key))
        n_test = round(len(groups) * test_fraction)
        n_validation = round(len(groups) * validation_fraction)
        if len(groups) < 3:  # too few to hold any out
            n_test = n_validation = 0
        for position, group in enumerate(groups):
            if position < n_test:
                split_of_group[group] = "test"
            elif position < n_test + n_validation:
                split_of_group[group] = "validation"
            else:
                split_of_group[group] = "train"
    return frame["group"].map(split_of_group).rename("split")


def _seeded_hash(seed: int, key: str) -> bytes:
    return hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()


def check_head_dataset(dataset: pd.DataFrame, head: str) -> None:
    """A head can be trained only with 2+ labels and rows in every split; say what is short."""
    labels = dataset["label"].value_counts()
    splits = dataset["split"].value_counts()
    problems = []
    if len(labels) < 2:
        problems.append(f"it needs at least 2 labels, the data has {labels.to_dict()}")
    empty = [name for name in SPLITS if splits.get(name, 0) == 0]
    if empty:
        problems.append(
            f"split(s) {', '.join(empty)} would be empty (rows per label: {labels.to_dict()}; "
            "a label needs 3+ distinct texts to be held out)"
        )
    if problems:
        raise DataValidationError(f"cannot train the {head} head: " + "; ".join(problems))


def head_dataset(
    tickets: pd.DataFrame,
    head: str,
    *,
    max_text_chars: int,
    seed: int,
    validation_fraction: float,
    test_fraction: float,
) -> pd.DataFrame:
    """The rows that carry `head`'s label, with model text, label and split."""
    rows = tickets[tickets[head].notna()]
    text = ticket_text(rows["subject"], rows["body"], max_text_chars)
    dataset = pd.DataFrame(
        {"id": rows["id"], "source": rows["source"], "text": text, "label": rows[head].astype(str)},
        index=rows.index,
    )
    dataset["split"] = assign_splits(
        dataset["label"],
        dedup_key(dataset["text"]),
        seed=seed,
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
    )
    return dataset.reset_index(drop=True)


def load_export(path: Path, source: Source) -> LoadResult:
    """Another file of the export `source` describes (a labelled test file for `evaluate
    --input`, say), read, validated and mapped exactly as the source's own file: its columns,
    constants and label value maps (`urgency.tickets.source_for_file`; pick the source with
    `urgency.tickets.choose_source`)."""
    return load_tickets([source_for_file(source, path)])


def load_configured(data: DataParams) -> LoadResult:
    """`load_tickets` with the params' sources and sample settings."""
    return load_tickets(data.sources, sample_per_source=data.sample_per_source, sample_seed=data.sample_seed)


def configured_head_dataset(
    tickets: pd.DataFrame, head: str, data: DataParams, splits: SplitParams
) -> pd.DataFrame:
    """`head_dataset` with the params' text length and split settings."""
    return head_dataset(
        tickets,
        head,
        max_text_chars=data.max_text_chars,
        seed=splits.seed,
        validation_fraction=splits.validation_fraction,
        test_fraction=splits.test_fraction,
    )
