"""One description of an export, applied: a raw ticket frame mapped through a `Source` (params
`data.sources`) onto the canonical ticket columns.

Every command that reads tickets maps them here: `validate-data` and `train` (through
`urgency.data`), `predict` and `score` (the model text and the fields the rules read), `retrain
--history` (labels through the source's value maps), `evaluate --input` and the demo's agents
(through `urgency.data`). So a helpdesk describes its export once, in params, and no command has
column options of its own.

Imports only `config`, `errors`, `text` and pandas: `predict`, `scoring` and the service use it,
and must not load the training-data code (pandera lives in `urgency.data`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from urgency.config import HEADS, Source
from urgency.errors import InputError, ParamsError
from urgency.language import detect_languages, normalise_languages, normalise_tag
from urgency.text import as_text

log = logging.getLogger(__name__)

# Canonical fields every mapped frame has (meta fields and labels follow them).
TICKET_FIELDS: tuple[str, ...] = ("id", "source", "subject", "body", "language", "created_at")


def label_text(values: pd.Series) -> pd.Series:
    """Raw label values as text, so `0`, `0.0` and "0" all match a mapping key "0"."""

    def as_label(value: object) -> object:
        if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
            return pd.NA
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value).strip()

    return values.map(as_label).astype("string")


def source_columns(source: Source) -> dict[str, str]:
    """Canonical field -> the export's column, for every field the source reads from a column
    (meta fields under their canonical names; the id's columns joined as `a+b`)."""
    columns = source.columns
    named: dict[str, str] = {}
    if columns.id is not None:
        named["id"] = "+".join(columns.id) if isinstance(columns.id, list) else columns.id
    for field in ("subject", "body", "language", "created_at"):
        column = getattr(columns, field)
        if column:
            named[field] = column
    named.update(columns.meta)
    named.update({head: label.column for head, label in source.labels.items()})
    return named


def map_tickets(raw: pd.DataFrame, source: Source, *, keep_input: bool = True) -> pd.DataFrame:
    """`raw` (an export's rows, as read) mapped through `source` onto the canonical ticket:
    `TICKET_FIELDS`, the meta fields under the names the source gives them, and one column per
    head with the label mapped by the source's value map (missing where the source has no label
    for the head, or the raw value is not in the map). `raw` itself is never changed.

    - id: the source's id column(s) (several joined with "-") prefixed with the source's name,
      else `<source>:<row number>`; subject and body as stripped text (no subject: "");
      language normalised (`en-US` -> `en`), else the source's constant, else (no column, or a
      blank or unknown cell) detected from the text (`urgency.language`); created_at as written
      (the caller parses it: training as UTC, the rules with their own time zone).
    - A column the export lacks leaves its field empty, except the body: an InputError naming it.
    - keep_input: every input column follows the canonical ones, except one named like a
      canonical field (the source's description of that field wins in this frame; files written
      by predict and score keep the input columns as read).
    """
    columns = source.columns
    if columns.body not in raw.columns:
        raise InputError(
            f"input has no body column {columns.body!r} (source {source.name!r}; "
            f"columns: {list(raw.columns)})"
        )
    index = raw.index

    def text_of(column: str | None) -> pd.Series | str:
        return as_text(raw[column]) if column and column in raw.columns else ""

    frame = pd.DataFrame(index=index)
    id_columns = [columns.id] if isinstance(columns.id, str) else list(columns.id or [])
    if id_columns and all(column in raw.columns for column in id_columns):
        joined = label_text(raw[id_columns[0]])
        for column in id_columns[1:]:
            joined = joined + "-" + label_text(raw[column])
        frame["id"] = (source.name + ":" + joined).astype("string")
    else:
        # Row numbers of the file where the index holds them (a sample keeps its rows' numbers).
        rows = index if pd.api.types.is_integer_dtype(index) else range(len(raw))
        frame["id"] = pd.array([f"{source.name}:{row + 1}" for row in rows], dtype="string")
    frame["source"] = source.name
    frame["subject"] = text_of(columns.subject)
    frame["body"] = as_text(raw[columns.body])
    if columns.language and columns.language in raw.columns:
        frame["language"] = normalise_languages(raw[columns.language])
    elif "language" in source.constants:
        frame["language"] = pd.Series(
            normalise_tag(source.constants["language"]), index=index, dtype="string"
        )
    else:
        frame["language"] = pd.Series(pd.NA, index=index, dtype="string")
    unknown = frame["language"].isna().to_numpy()
    if unknown.any():
        # No language in the export, or a blank or unreadable cell: detected offline (on the text
        # as cleaned by default, so HTML markup does not pass for English), so rules, reports and
        # drift can slice by it.
        from urgency.cleaning import Cleaning, clean_texts

        text = frame["subject"] + "\n" + frame["body"] if columns.subject else frame["body"]
        frame.loc[unknown, "language"] = detect_languages(clean_texts(text[unknown], Cleaning()))
    if columns.created_at and columns.created_at in raw.columns:
        frame["created_at"] = raw[columns.created_at].astype("string").str.strip().replace("", pd.NA)
    else:
        frame["created_at"] = pd.Series(pd.NA, index=index, dtype="string")
    for name, column in columns.meta.items():
        frame[name] = raw[column] if column in raw.columns else pd.Series(pd.NA, index=index, dtype="object")
    for head in HEADS:
        label_source = source.labels.get(head)
        if label_source is None or label_source.column not in raw.columns:
            frame[head] = pd.Series(pd.NA, index=index, dtype="string")
        else:
            frame[head] = label_text(raw[label_source.column]).map(label_source.mapping).astype("string")
    if keep_input:
        rest = raw[[column for column in raw.columns if column not in frame.columns]]
        frame = pd.concat([frame, rest], axis=1)
    return frame


def missing_source_columns(header: Sequence[str], source: Source) -> list[str]:
    """The source's columns a file lacks (fields it would read as empty), for a warning."""
    present = set(header)
    missing = []
    for field, column in source_columns(source).items():
        wanted = column.split("+") if field == "id" else [column]
        missing += [f"{name} ({field})" for name in wanted if name not in present]
    return missing


def choose_source(sources: Sequence[Source], name: str | None) -> Source | None:
    """The source a command reads a file through: the one named (`--source NAME`), else the
    only one in params, else None - several sources and none named: the file is read in the
    canonical layout (subject, body, language, created_at and meta fields under their own
    names), as before sources described every command's input."""
    if name is not None:
        for source in sources:
            if source.name == name:
                return source
        known = ", ".join(source.name for source in sources)
        raise ParamsError(f"no source {name!r} in params data.sources (sources: {known})")
    if len(sources) == 1:
        return sources[0]
    return None


def source_for_file(source: Source, path: Path) -> Source:
    """`source` pointed at another file of the same export (a new history, a labelled test
    file): its columns, label maps, constants and encoding, the file's own format."""
    from urgency.files import file_format

    return source.model_copy(update={"path": path, "format": file_format(path, default=source.file_format)})
