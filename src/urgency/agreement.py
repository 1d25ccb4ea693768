"""Do the models agree with the agents? The figures of the agreement report, for managers.

The input is a closed-tickets frame: one row per decided ticket, the model's columns (`urgency`,
`urgency_confidence`, ..., `priority`, `team`, `needs_human_triage`, the deadlines) next to the
agents' final values (`agent_<field>`), the response times and slice columns (plan, language,
channel, ...). It comes from the service's store (`closed_tickets_from_store` over
`Store.decisions`) or from a CSV export (`read_closed_tickets`); docs/reports.md describes the
format. Everything after reading is pure: a frame in, plain JSON-ready values out.

The agent's final value is taken as the truth. A ticket without an agent value for a field is
left out of that field's figures (each figure says how many tickets it used).

Over 400 lines on purpose: reading the closed tickets and every figure of the one report live
together, so the figures and the columns they read cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from urgency.config import HEADS, Source
from urgency.decision import AGENT_FIELDS, PREDICTION_FIELDS, is_no_deadline
from urgency.errors import DataValidationError, EmptyReport, InputError
from urgency.files import read_table
from urgency.rules import FALSE_WORDS, TRUE_WORDS
from urgency.tickets import map_tickets, source_for_file

# The fields compared with the agents' final values.
FIELDS = AGENT_FIELDS
# Ordinal fields get quadratic-weighted kappa: high vs low is a worse miss than high vs medium.
ORDINAL: frozenset[str] = frozenset({"urgency", "priority"})
TIME_COLUMNS: tuple[str, ...] = (
    "created_at",
    "scored_at",
    "first_response_due",
    "resolution_due",
    "first_response_at",
    "resolved_at",
)
# The closed-tickets CSV, in its documented order (docs/reports.md): the ticket, the fields of the
# decided-ticket record (`urgency.decision.RECORD_FIELDS`), the agents' final values and times.
CLOSED_TICKET_COLUMNS: tuple[str, ...] = (
    "ticket_id",
    "created_at",
    "subject",
    "body",
    *PREDICTION_FIELDS,
    "priority",
    "team",
    "needs_human_triage",
    "first_response_due",
    "resolution_due",
    *(f"agent_{name}" for name in FIELDS),
    "first_response_at",
    "resolved_at",
)
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "scored_at",
    "subject",
    "body",
    "first_response_due",
    "resolution_due",
    "first_response_at",
    "resolved_at",
)
REQUIRED_COLUMNS: tuple[str, ...] = tuple(
    name for name in CLOSED_TICKET_COLUMNS if name not in OPTIONAL_COLUMNS
)
DEFAULT_SLICES: tuple[str, ...] = ("team", "category", "plan", "language", "channel", "week")
MISSING = "(none)"


# ---------------------------------------------------------------------------------------------
# Reading: the store's decisions or a CSV export -> one closed-tickets frame


def closed_tickets_from_store(decisions: pd.DataFrame) -> pd.DataFrame:
    """`Store.decisions()` -> a closed-tickets frame: the ticket's `fields` (plan, channel,
    language, ...) become columns (never over a column of the store), times become UTC."""
    frame = decisions.copy()
    if frame.empty:
        return frame
    if "fields" in frame.columns:
        extra = pd.DataFrame(
            [f if isinstance(f, Mapping) else {} for f in frame["fields"]], index=frame.index
        )
        for column in extra.columns:
            if column not in frame.columns:
                frame[column] = extra[column]
        frame = frame.drop(columns=["fields"])
    return _with_types(frame)


def _with_types(frame: pd.DataFrame) -> pd.DataFrame:
    for column in TIME_COLUMNS:
        if column in frame.columns:
            frame[column] = _times(frame[column])
    for head in HEADS:
        if f"{head}_confidence" in frame.columns:
            frame[f"{head}_confidence"] = pd.to_numeric(frame[f"{head}_confidence"], errors="coerce")
    for name in FIELDS:
        for column in (name, f"agent_{name}"):
            if column in frame.columns:
                frame[column] = _text_or_none(frame[column])
    if "needs_human_triage" in frame.columns:
        frame["needs_human_triage"] = frame["needs_human_triage"].map(_as_bool).fillna(False).astype(bool)
    return frame


def _text_or_none(values: pd.Series) -> pd.Series:
    """Labels as text, missing ones as None (object dtype: pandas' string dtype would turn
    None into NaN, and NaN == NaN is False while None is simply absent)."""
    cleaned = [None if _blank(value) else str(value) for value in values]
    return pd.Series(cleaned, index=values.index, dtype=object)


def _blank(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and pd.isna(value)) or str(value).strip() == ""


def _times(values: pd.Series) -> pd.Series:
    """ISO 8601 text or datetimes -> UTC timestamps (no offset: UTC); the scoring layer's
    "no deadline" (year 9999) becomes missing."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    cleaned = [None if _blank(value) or is_no_deadline(str(value)) else value for value in values]
    return pd.to_datetime(
        pd.Series(cleaned, index=values.index, dtype=object), utc=True, errors="coerce", format="ISO8601"
    )


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip().lower()
    return True if text in TRUE_WORDS else False if text in FALSE_WORDS else None


def read_closed_tickets(
    path: Path,
    *,
    labels: Mapping[str, Sequence[str]] | None = None,
    levels: Sequence[str] | None = None,
    max_problems: int = 20,
) -> pd.DataFrame:
    """Read and check a closed-tickets CSV (docs/reports.md). Every problem names the file, the
    row (data rows count from 1) and the column; all are reported at once (DataValidationError).

    `labels`: the allowed values per head (model and agent columns); `levels`: the rules'
    priority levels. Empty cells are allowed everywhere except ticket_id, created_at and
    needs_human_triage."""
    if not path.is_file():
        raise InputError(f"closed-tickets file {path} does not exist")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise InputError(f"{path}: not a readable CSV file: {error}") from None
    return check_closed_tickets(raw, path, labels=labels, levels=levels, max_problems=max_problems)


def closed_tickets_from_export(raw: pd.DataFrame, source: Source, prefix: str = "") -> pd.DataFrame:
    """A scored export in the closed-tickets layout (text cells): `urgency score` run on a file
    of `source`'s export (the added columns after `prefix`), whose label columns hold the
    agents' final values. Mapped through the source (`urgency.tickets.map_tickets`): the agent's
    value of each head is the source's label mapped by its value map, the ticket id is the
    source's id column, and its meta fields and language are slices. An agent priority or team
    is read from `agent_priority` / `agent_team` when the file has them."""
    mapped = map_tickets(raw, source, keep_input=False)
    text = raw.astype("string").fillna("")
    blank = pd.Series("", index=raw.index, dtype="string")
    frame = pd.DataFrame(index=raw.index)
    frame["ticket_id"] = mapped["id"].str.removeprefix(f"{source.name}:")
    frame["created_at"] = mapped["created_at"].fillna("")
    frame["subject"], frame["body"] = mapped["subject"], mapped["body"]
    decided = [
        name for name in CLOSED_TICKET_COLUMNS if name not in frame.columns and not name.startswith("agent_")
    ]
    for name in ("scored_at", *decided):
        frame[name] = text[prefix + name] if prefix + name in raw.columns else blank
    for name in FIELDS:
        agent = mapped[name] if name in HEADS and name in source.labels else None
        frame[f"agent_{name}"] = agent.fillna("") if agent is not None else text.get(f"agent_{name}", blank)
    for name in ("language", *source.columns.meta):
        frame[name] = mapped[name].astype("string").fillna("")
    return frame.reset_index(drop=True)


def read_closed_export(
    path: Path,
    source: Source,
    prefix: str = "",
    *,
    labels: Mapping[str, Sequence[str]] | None = None,
    levels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """A scored export (CSV, Parquet or JSON Lines; `closed_tickets_from_export`) read and
    checked like a closed-tickets CSV."""
    raw = read_table(path, source_for_file(source, path).file_format, source.encoding)
    return check_closed_tickets(
        closed_tickets_from_export(raw, source, prefix), path, labels=labels, levels=levels
    )


def check_closed_tickets(
    raw: pd.DataFrame,
    path: Path,
    *,
    labels: Mapping[str, Sequence[str]] | None = None,
    levels: Sequence[str] | None = None,
    max_problems: int = 20,
) -> pd.DataFrame:
    """Check closed tickets as read (text cells, "" for empty) and give them their types; every
    problem names `path`, the row and the column (DataValidationError)."""
    # A head with no model (a helpdesk without its labels, whose `urgency score` output has no
    # such columns) may leave out its columns altogether; they read as empty.
    for head in HEADS:
        group = (head, f"{head}_confidence", f"agent_{head}")
        if head not in raw.columns and f"{head}_confidence" not in raw.columns:
            for column in group:
                if column not in raw.columns:
                    raw[column] = ""
    missing = [column for column in REQUIRED_COLUMNS if column not in raw.columns]
    if missing:
        raise DataValidationError(
            f"{path}: missing column(s) {', '.join(missing)} (the format is in docs/reports.md)"
        )
    problems: list[str] = []

    def check(column: str, bad: pd.Series, message: str) -> None:
        for position in np.flatnonzero(bad.to_numpy()):
            problems.append(f"row {position + 1}, column {column}: {message(raw[column].iloc[position])}")

    empty = raw["ticket_id"].str.strip() == ""
    check("ticket_id", empty, lambda _: "empty ticket id")
    repeated = raw["ticket_id"].duplicated() & ~empty
    check("ticket_id", repeated, lambda v: f"{v!r} appears more than once")
    for column in TIME_COLUMNS:
        if column not in raw.columns:
            continue
        blank = raw[column].str.strip() == ""
        parsed = _times(raw[column])
        deadline_none = raw[column].map(is_no_deadline).astype(bool)
        if column == "created_at":
            check(column, blank, lambda _: "empty (every ticket needs its created time)")
        check(
            column,
            parsed.isna() & ~blank & ~deadline_none,
            lambda v: f"{v!r} is not an ISO 8601 timestamp",
        )
    for head in HEADS:
        column = f"{head}_confidence"
        number = pd.to_numeric(raw[column], errors="coerce")
        blank = raw[column].str.strip() == ""
        check(column, ~blank & ~number.between(0, 1), lambda v: f"{v!r} is not a number from 0 to 1")
    flags = raw["needs_human_triage"].map(_as_bool)
    check("needs_human_triage", flags.isna(), lambda v: f"{v!r} is not true or false")
    allowed: dict[str, Sequence[str]] = dict(labels or {})
    if levels is not None:
        allowed["priority"] = levels
    for name, values in allowed.items():
        known = set(values)
        for column in (name, f"agent_{name}"):
            unknown = (raw[column] != "") & ~raw[column].isin(known)
            check(column, unknown, lambda v, vs=values: f"{v!r} is not one of {list(vs)}")
    if problems:
        shown = "\n".join(f"  - {problem}" for problem in problems[:max_problems])
        more = f"\n  ... and {len(problems) - max_problems} more" if len(problems) > max_problems else ""
        raise DataValidationError(f"{path}: {len(problems)} problem(s):\n{shown}{more}")
    frame = raw.replace({"": None})
    return _with_types(frame)


def in_period(
    frame: pd.DataFrame, since: datetime | None, until: datetime | None, column: str | None = None
) -> pd.DataFrame:
    """Rows whose `column` (default: scored_at when the frame has it, else created_at) lies in
    [since, until)."""
    if frame.empty:
        return frame
    column = column or ("scored_at" if "scored_at" in frame.columns else "created_at")
    moment = frame[column]
    keep = pd.Series(True, index=frame.index)
    if since is not None:
        keep &= moment >= pd.Timestamp(since)
    if until is not None:
        keep &= moment < pd.Timestamp(until)
    return frame[keep].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# The figures


def confusion_matrix(model: Sequence[Any], agent: Sequence[Any], labels: Sequence[str]) -> np.ndarray:
    """Counts: rows are the agents' values, columns the model's, both in `labels` order."""
    position = {label: index for index, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for predicted, truth in zip(model, agent, strict=True):
        matrix[position[truth], position[predicted]] += 1
    return matrix


def cohen_kappa(
    model: Sequence[Any],
    agent: Sequence[Any],
    labels: Sequence[str],
    weights: Literal["quadratic"] | None = None,
) -> float | None:
    """Cohen's kappa: agreement beyond what the two sides' label shares give by chance.

    kappa = 1 - sum(w * observed) / sum(w * expected), with observed the confusion shares,
    expected the product of the two sides' label shares, and w the cost of a pair: 1 off the
    diagonal (unweighted), or ((i - j) / (k - 1))^2 for ordered labels (quadratic). None when
    it is undefined (no tickets, or both sides always give one and the same label)."""
    matrix = confusion_matrix(model, agent, labels).astype(float)
    total = matrix.sum()
    k = len(labels)
    if total == 0 or k < 2:
        return None
    observed = matrix / total
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    i, j = np.indices((k, k))
    cost = ((i - j) / (k - 1)) ** 2 if weights == "quadratic" else (i != j).astype(float)
    chance = float((cost * expected).sum())
    if chance == 0:
        return None
    return float(1 - (cost * observed).sum() / chance)


def _label_order(known: Sequence[str], *columns: pd.Series) -> list[str]:
    """The configured labels in their order, then any other value seen (sorted), so that no
    ticket is dropped from a matrix because its label was renamed since."""
    seen = {value for column in columns for value in column}
    return [*known, *sorted(seen - set(known))]


def _decided_alone(frame: pd.DataFrame, name: str, threshold: float | None) -> pd.Series:
    """Tickets where the model's value stood without a person: a head's confidence at or above
    its threshold; for priority and team, tickets not sent to human triage."""
    if name in HEADS:
        confidence = frame[f"{name}_confidence"]
        return confidence.notna() & (confidence >= (threshold or 0.0))
    return ~frame["needs_human_triage"].astype(bool)


def compare_field(
    frame: pd.DataFrame, name: str, labels: Sequence[str], threshold: float | None = None
) -> dict[str, Any]:
    """Agreement rate, kappa, confusion matrix, precision and coverage of one field."""
    has_agent = frame[f"agent_{name}"].notna()
    has_model = frame[name].notna()
    used = frame[has_agent & has_model]
    model, agent = used[name], used[f"agent_{name}"]
    order = _label_order(labels, model, agent)
    right = model == agent
    alone = _decided_alone(used, name, threshold)
    weights = "quadratic" if name in ORDINAL else None
    return {
        "tickets": len(frame),
        "used": len(used),
        "without_agent_value": int((~has_agent).sum()),
        "without_model_value": int((has_agent & ~has_model).sum()),
        "agreement": _share(right),
        "kappa": cohen_kappa(model, agent, order, weights) if len(used) else None,
        "kappa_weights": weights or "unweighted",
        "labels": order,
        "confusion": confusion_matrix(model, agent, order).tolist(),
        "threshold": threshold if name in HEADS else None,
        "decided_alone": int(alone.sum()),
        "coverage": _share(alone),
        "precision": _share(right[alone]),
    }


def _share(flags: pd.Series) -> float | None:
    return float(flags.mean()) if len(flags) else None


def week_start(moments: pd.Series) -> pd.Series:
    """The Monday (UTC) of each moment's week, as YYYY-MM-DD text (sorts in time order)."""
    days = moments.dt.tz_convert("UTC").dt.tz_localize(None).dt.normalize()
    monday = days - pd.to_timedelta(days.dt.weekday, unit="D")
    return monday.dt.strftime("%Y-%m-%d").where(moments.notna(), MISSING)


def slice_values(frame: pd.DataFrame, name: str, week_of: str = "created_at") -> pd.Series | None:
    """What each ticket is sliced by. team and category: the agent's final value, else the
    model's; week: the week of `week_of` (else scored_at); others: the column. None when the
    frame has no such column."""
    if name == "week":
        moment = frame[week_of] if week_of in frame.columns else None
        if moment is None:
            return None
        if "scored_at" in frame.columns and week_of != "scored_at":
            moment = moment.fillna(frame["scored_at"])
        return week_start(moment)
    if name in FIELDS:
        return frame[f"agent_{name}"].fillna(frame[name]).fillna(MISSING).astype(str)
    if name not in frame.columns:
        return None
    values = frame[name].astype(object)
    return values.where(values.notna() & (values.astype(str) != ""), MISSING).astype(str)


def _rates(part: pd.DataFrame, fields: Sequence[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"tickets": len(part)}
    for name in fields:
        used = part[part[f"agent_{name}"].notna() & part[name].notna()]
        row[f"{name}_used"] = len(used)
        row[f"{name}_agreement"] = _share(used[name] == used[f"agent_{name}"])
    row["coverage"] = _share(~part["needs_human_triage"].astype(bool))
    return row


def by_slice(frame: pd.DataFrame, name: str, week_of: str = "created_at") -> list[dict[str, Any]] | None:
    """Per value of a slice: tickets, agreement and tickets used per field, coverage (share
    not sent to human triage). Largest slices first (weeks: in time order)."""
    values = slice_values(frame, name, week_of)
    if values is None:
        return None
    rows = [{"value": value, **_rates(part, FIELDS)} for value, part in frame.groupby(values, sort=True)]
    if name == "week":
        rows.sort(key=lambda row: (row["value"] == MISSING, row["value"]))
    else:
        rows.sort(key=lambda row: (-row["tickets"], row["value"]))
    return rows


def trend(frame: pd.DataFrame, week_of: str = "created_at") -> list[dict[str, Any]]:
    """Per week (in time order): agreement per field and coverage; is the model getting better?"""
    return by_slice(frame, "week", week_of) or []


def sla_attainment(frame: pd.DataFrame, levels: Sequence[str]) -> list[dict[str, Any]]:
    """Per priority the rules decided (the one whose deadlines the ticket was held to): how many
    tickets have the times to judge, and the share answered / resolved by the deadline."""
    rows = []
    priorities = frame["priority"].fillna(MISSING)
    for level in _label_order(levels, priorities):
        part = frame[priorities == level]
        row: dict[str, Any] = {"priority": level, "tickets": len(part)}
        for target, due, done in (
            ("first_response", "first_response_due", "first_response_at"),
            ("resolution", "resolution_due", "resolved_at"),
        ):
            if due not in part.columns or done not in part.columns:
                judged = pd.Series(False, index=part.index)
                met = judged
            else:
                judged = part[due].notna() & part[done].notna()
                met = judged & (part[done] <= part[due])
            row[f"{target}_with_times"] = int(judged.sum())
            row[f"{target}_share_with_times"] = _share(judged)
            row[f"{target}_met"] = int(met.sum())
            row[f"{target}_attainment"] = float(met.sum() / judged.sum()) if judged.sum() else None
        if len(part) or level in levels:
            rows.append(row)
    return rows


def top_disagreements(frame: pd.DataFrame, top: int = 20, text_chars: int = 160) -> list[dict[str, Any]]:
    """The tickets where a head's label differs from the agent's, most confident first: where
    the model is surest and still wrong (or the agent is) is what to review first."""
    found = []
    for head in [head for head in HEADS if head in frame.columns]:
        wrong = frame[
            frame[f"agent_{head}"].notna() & frame[head].notna() & (frame[head] != frame[f"agent_{head}"])
        ]
        for row in wrong.itertuples(index=False):
            record = row._asdict()
            found.append(
                {
                    "ticket_id": str(record["ticket_id"]),
                    "head": head,
                    "model": record[head],
                    "confidence": _number(record[f"{head}_confidence"]),
                    "agent": record[f"agent_{head}"],
                    "priority": record.get("priority"),
                    "agent_priority": record.get("agent_priority"),
                    "text": _snippet(record, text_chars),
                }
            )
    found.sort(key=lambda item: (-(item["confidence"] or 0.0), item["ticket_id"], item["head"]))
    return found[:top]


def _number(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _snippet(record: Mapping[str, Any], chars: int) -> str:
    parts = [str(record[name]) for name in ("subject", "body") if isinstance(record.get(name), str)]
    text = " | ".join(part.strip() for part in parts if part.strip())
    return text if len(text) <= chars else text[: chars - 1] + "…"


def agreement_figures(
    frame: pd.DataFrame,
    *,
    labels: Mapping[str, Sequence[str]],
    levels: Sequence[str],
    thresholds: Mapping[str, float],
    slices: Sequence[str] = DEFAULT_SLICES,
    week_of: Literal["created_at", "scored_at"] = "created_at",
    top: int = 20,
) -> dict[str, Any]:
    """Every figure of the report, as plain JSON-ready values.

    `labels`: per head, the label order (from the params); `levels`: the rules' priority
    levels, most urgent first; `thresholds`: per head, the rules' confidence thresholds."""
    if frame.empty:
        raise EmptyReport("no decided tickets: nothing to report")
    known = {**labels, "priority": levels, "team": []}
    # Only the heads that had a model: a head no ticket has a model value for (the helpdesk has
    # no labels for it, so no model) is left out, rather than reported as 0 of 0.
    present = [
        name for name in FIELDS if name not in HEADS or (name in frame.columns and frame[name].notna().any())
    ]
    fields = {
        name: compare_field(frame, name, known.get(name, []), thresholds.get(name) if name in HEADS else None)
        for name in present
    }
    sliced = {name: by_slice(frame, name, week_of) for name in slices}
    return {
        "tickets": len(frame),
        "week_of": week_of,
        "first_ticket": _iso(frame[week_of].min()) if week_of in frame.columns else None,
        "last_ticket": _iso(frame[week_of].max()) if week_of in frame.columns else None,
        "fields": fields,
        "slices": {name: rows for name, rows in sliced.items() if rows is not None},
        "slices_missing": [name for name, rows in sliced.items() if rows is None],
        "trend": trend(frame, week_of),
        "sla": sla_attainment(frame, levels),
        "disagreements": top_disagreements(frame, top),
    }


def _iso(moment: Any) -> str | None:
    return None if moment is None or pd.isna(moment) else pd.Timestamp(moment).isoformat()
