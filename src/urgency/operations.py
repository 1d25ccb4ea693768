"""How is the support operation doing? The figures of the operations report, for the support lead.

Pure, like `urgency.agreement`: frames in, plain JSON-ready values out. The inputs:
- closed tickets: the closed-tickets CSV of docs/reports.md (`agreement.check_closed_tickets`),
  extended with optional columns `agent` (who had it last), `csat` (the customer's satisfaction,
  0..1 as the store keeps it), `reassignments` (how many times it moved), `status` and
  `model_versions` (head -> version that scored it: a JSON object or `urgency=3;category=2`), or
  the same frame from the store;
- the open backlog: one row per open ticket with `BACKLOG_COLUMNS` (what `urgency.backlog`
  gives; `backlog_stand_in` computes hours left and the rules-based risk through
  `urgency.backlog.build_backlog` when the frame has none);
- assignments: the store's `assignments` rows (`ASSIGNMENT_COLUMNS`), reassignments included;
- promotions: the registry's alias moves (`promote.alias_moves`: at, head, alias, from, to,
  action);
- cluster alerts: the store's alert episodes (`Store.cluster_alerts`, `CLUSTER_ALERT_COLUMNS`):
  the period's repeat-issue bursts and the parent incidents they proposed.

Every weekly trend is per week (Monday, UTC) of `created_at`; a week the period covers only in
part (the data starts on a Wednesday, `--until` ends it on a Tuesday) is flagged `partial`, and
each week names the model versions that scored its tickets and the promotions made in it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from urgency.agreement import MISSING, check_closed_tickets
from urgency.backlog import build_backlog
from urgency.errors import DataValidationError, EmptyReport, InputError
from urgency.rules import FALSE_WORDS, TRUE_WORDS
from urgency.store import normalise_csat

# The open backlog as `urgency.backlog` gives it (and the report reads it).
BACKLOG_COLUMNS: tuple[str, ...] = (
    "ticket_id",
    "priority",
    "team",
    "assignee",
    "created_at",
    "first_response_due",
    "resolution_due",
    "hours_left",
    "breach_risk",
)
# The store's `assignments` columns the report reads (an assignments CSV has these).
ASSIGNMENT_COLUMNS: tuple[str, ...] = (
    "ticket_id",
    "assigned_at",
    "agent",
    "team",
    "reassignment",
    "previous_agent",
    "previous_team",
)
# A cluster alert episode as the report reads it (the store's `cluster_alerts` columns).
CLUSTER_ALERT_COLUMNS: tuple[str, ...] = (
    "id",
    "raised_at",
    "title",
    "size",
    "count",
    "burst_hours",
    "baseline_per_hour",
    "p_value",
    "explanation",
    "ticket_ids",
    "reports",
    "helpdesk",
    "incident_id",
    "incident_url",
)
# The closed-tickets CSV's optional operations columns (docs/operations.md).
EXTENSION_COLUMNS: tuple[str, ...] = ("agent", "csat", "reassignments", "status", "model_versions")
# Open tickets in the helpdesks' words (the store's `OPEN_STATUSES`, kept equal by a test).
OPEN_STATUSES: tuple[str, ...] = ("new", "open", "pending", "on_hold")
# Hours, the histograms' bin edges: a working day splits into hours, a week into days.
HOUR_BINS: tuple[float, ...] = (0, 1, 2, 4, 8, 16, 24, 48, 72, 120, 168, math.inf)
PERCENTILES: tuple[int, ...] = (50, 75, 90, 95)
WEEK = pd.Timedelta(days=7)


@dataclass(frozen=True)
class OperationsSettings:
    """What the figures need besides the data: the rules' priority levels (most urgent first),
    the risk from which an open ticket counts as at risk, the CSAT score from which a customer
    counts as satisfied (0..1, as the store keeps it), how many rows the top lists keep."""

    levels: Sequence[str]
    at_risk: float = 0.5
    satisfied: float = 0.75  # the store's 0..1 scale: a 4 or 5 of 5, "good"
    top: int = 20
    top_categories: int = 8


# ---------------------------------------------------------------------------------------------
# Reading: CSV files -> typed frames (every problem names the file, the row and the column)


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{what} file {path} does not exist")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise InputError(f"{path}: not a readable CSV file: {error}") from None


def _raise(path: Path, problems: list[str], limit: int = 20) -> None:
    if problems:
        shown = "\n".join(f"  - {problem}" for problem in problems[:limit])
        more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
        raise DataValidationError(f"{path}: {len(problems)} problem(s):\n{shown}{more}")


def _bad_rows(raw: pd.DataFrame, column: str, bad: pd.Series, message: str) -> list[str]:
    return [
        f"row {position + 1}, column {column}: {raw[column].iloc[position]!r} {message}"
        for position in np.flatnonzero(bad.to_numpy())
    ]


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    text = "" if _empty(value) else str(value).strip().lower()
    return True if text in TRUE_WORDS else False if text in FALSE_WORDS else None


def _times(values: pd.Series) -> pd.Series:
    text = values.astype(object).where(values.astype(str).str.strip() != "", None)
    text = text.where(~text.astype(str).str.startswith("9999"), None)  # "no deadline"
    return pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")


def _check_times(raw: pd.DataFrame, columns: Sequence[str], required: Sequence[str] = ()) -> list[str]:
    problems = []
    for column in columns:
        if column not in raw.columns:
            continue
        blank = raw[column].str.strip() == ""
        if column in required:
            problems += _bad_rows(raw, column, blank, "is empty (required)")
        unreadable = _times(raw[column]).isna() & ~blank & ~raw[column].str.startswith("9999")
        problems += _bad_rows(raw, column, unreadable, "is not an ISO 8601 timestamp")
    return problems


def _check_number(raw: pd.DataFrame, column: str, low: float, high: float) -> list[str]:
    if column not in raw.columns:
        return []
    blank = raw[column].str.strip() == ""
    number = pd.to_numeric(raw[column], errors="coerce")
    return _bad_rows(
        raw, column, ~blank & ~number.between(low, high), f"is not a number from {low:g} to {high:g}"
    )


def csat_value(cell: Any) -> float | None:
    """A CSAT cell on the store's scale (`store.normalise_csat`: 0..1; a 1-5 score written
    `4/5`, good / bad); None: blank or not a CSAT."""
    if _empty(cell):
        return None
    try:
        number = float(cell)
    except (TypeError, ValueError):
        number = None
    try:
        return normalise_csat(number if number is not None else str(cell))
    except ValueError:
        return None


def parse_versions(value: Any) -> dict[str, str]:
    """A ticket's model versions: a mapping (the store), a JSON object or `head=version;...`
    text (a CSV); empty: none known. ValueError on anything else."""
    if isinstance(value, Mapping):
        return {str(head): str(version) for head, version in value.items()}
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return {}
    text = str(value).strip()
    if text.startswith("{"):
        parsed = json.loads(text)
        if not isinstance(parsed, dict):
            raise ValueError("not an object")
        return {str(head): str(version) for head, version in parsed.items()}
    pairs = [part.split("=", 1) for part in text.split(";") if part.strip()]
    if any(len(pair) != 2 or not pair[0].strip() or not pair[1].strip() for pair in pairs):
        raise ValueError("not head=version;...")
    return {head.strip(): version.strip() for head, version in pairs}


def versions_text(versions: Mapping[str, str]) -> str:
    """The versions as one label, heads in name order: `category=2;urgency=3` ("" for none)."""
    return ";".join(f"{head}={versions[head]}" for head in sorted(versions))


def _readable_versions(value: str) -> bool:
    try:
        parse_versions(value)
    except (ValueError, json.JSONDecodeError):
        return False
    return True


def check_extension(raw: pd.DataFrame) -> list[str]:
    """Problems of the operations columns of a closed-tickets frame as read (text cells)."""
    problems = []
    if "csat" in raw.columns:
        bad = raw["csat"].map(lambda cell: not _empty(cell) and csat_value(cell) is None).astype(bool)
        what = 'is not a CSAT: a number 0..1, a 1-5 score as "4/5", or good / bad'
        problems += _bad_rows(raw, "csat", bad, what)
    if "reassignments" in raw.columns:
        blank = raw["reassignments"].str.strip() == ""
        count = pd.to_numeric(raw["reassignments"], errors="coerce")
        bad = ~blank & ~(count.ge(0) & (count == count.round()))
        problems += _bad_rows(raw, "reassignments", bad, "is not a whole number from 0")
    if "model_versions" in raw.columns:
        bad = ~raw["model_versions"].map(_readable_versions).astype(bool)
        problems += _bad_rows(raw, "model_versions", bad, "is not a JSON object or head=version;...")
    return problems


def type_extension(frame: pd.DataFrame) -> pd.DataFrame:
    """The operations columns typed (missing ones added empty): csat a number, reassignments a
    count (NaN: not known), model_versions a `versions_text` label."""
    frame = frame.copy()
    for column in EXTENSION_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    frame["csat"] = pd.to_numeric(frame["csat"].map(csat_value), errors="coerce")
    frame["reassignments"] = pd.to_numeric(frame["reassignments"], errors="coerce")
    frame["model_versions"] = [versions_text(parse_versions(value)) for value in frame["model_versions"]]
    for column in ("agent", "status"):
        frame[column] = [None if _empty(value) else str(value) for value in frame[column]]
    return frame


def _empty(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and pd.isna(value)) or str(value).strip() == ""


def read_operations_closed(
    path: Path,
    *,
    labels: Mapping[str, Sequence[str]] | None = None,
    levels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """A closed-tickets CSV with the operations columns, checked (DataValidationError naming
    file, row and column) and typed."""
    raw = _read_csv(path, "closed-tickets")
    _raise(path, check_extension(raw))
    return type_extension(check_closed_tickets(raw, path, labels=labels, levels=levels))


def read_open_tickets(path: Path, levels: Sequence[str] | None = None) -> pd.DataFrame:
    """The open backlog as a CSV: `ticket_id`, `created_at`, `priority`, `team` required;
    `assignee`, the deadlines, `first_response_at`, `category`, `status`, `hours_left` and
    `breach_risk` optional (without the last two the report computes them)."""
    raw = _read_csv(path, "open-tickets")
    missing = [name for name in ("ticket_id", "created_at", "priority", "team") if name not in raw.columns]
    if missing:
        raise DataValidationError(f"{path}: missing column(s) {', '.join(missing)} (see docs/operations.md)")
    problems = _bad_rows(raw, "ticket_id", raw["ticket_id"].str.strip() == "", "is empty (required)")
    problems += _bad_rows(raw, "ticket_id", raw["ticket_id"].duplicated(), "appears more than once")
    times = ("created_at", "first_response_due", "resolution_due", "first_response_at")
    problems += _check_times(raw, times, required=("created_at",))
    if levels is not None:
        known = set(levels)
        bad = ~raw["priority"].isin(known)
        problems += _bad_rows(raw, "priority", bad, f"is not one of {list(levels)}")
    problems += _check_number(raw, "breach_risk", 0, 1)
    problems += _check_number(raw, "hours_left", -1e9, 1e9)
    _raise(path, problems)
    frame = raw.replace({"": None})
    for column in times:
        if column in frame.columns:
            frame[column] = _times(raw[column])
    for column in ("hours_left", "breach_risk"):
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def read_assignments(path: Path) -> pd.DataFrame:
    """Assignments as a CSV (the store's `assignments` columns, `ASSIGNMENT_COLUMNS`)."""
    raw = _read_csv(path, "assignments")
    missing = [name for name in ("ticket_id", "assigned_at", "team") if name not in raw.columns]
    if missing:
        raise DataValidationError(f"{path}: missing column(s) {', '.join(missing)} (see docs/operations.md)")
    problems = _check_times(raw, ("assigned_at",), required=("assigned_at",))
    problems += _bad_rows(raw, "team", raw["team"].str.strip() == "", "is empty (required)")
    if "reassignment" in raw.columns:
        bad = raw["reassignment"].map(_as_bool).isna() & (raw["reassignment"].str.strip() != "")
        problems += _bad_rows(raw, "reassignment", bad, "is not true or false")
    _raise(path, problems)
    return typed_assignments(raw.replace({"": None}))


def typed_assignments(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in ASSIGNMENT_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    frame["assigned_at"] = _times(frame["assigned_at"].astype(object).fillna(""))
    frame["reassignment"] = frame["reassignment"].map(_as_bool).fillna(False).astype(bool)
    return frame


def read_promotions(path: Path) -> pd.DataFrame:
    """Alias moves as a CSV (`promote.alias_moves`' columns; `at` and `to` required)."""
    raw = _read_csv(path, "promotions")
    missing = [name for name in ("at", "to") if name not in raw.columns]
    if missing:
        raise DataValidationError(f"{path}: missing column(s) {', '.join(missing)} (see docs/operations.md)")
    _raise(path, _check_times(raw, ("at",), required=("at",)))
    return raw.replace({"": None})


# ---------------------------------------------------------------------------------------------
# The backlog of an export (the store's comes from `urgency.backlog.read_backlog`)


def backlog_stand_in(
    open_tickets: pd.DataFrame,
    closed: pd.DataFrame,
    now: datetime,
    levels: Sequence[str],
    *,
    window_days: int = 30,
    default_handling_hours: float = 8.0,
) -> pd.DataFrame:
    """The open tickets with the backlog's hours left and rules-based risk where they have none:
    `urgency.backlog.build_backlog` (the one definition of both), with the closed tickets as
    the recent history (each team's median handling time) and the agents named in them per
    team. A frame that already has both (the store's, from `urgency.backlog`) is kept as is."""
    frame = open_tickets.copy().reset_index(drop=True)
    for column in BACKLOG_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    if frame.empty or (frame["hours_left"].notna().all() and frame["breach_risk"].notna().all()):
        return frame
    times = ("ticket_id", "created_at", "first_response_at", "resolved_at")
    recent = pd.DataFrame(
        {name: closed[name] if name in closed.columns else None for name in times},
        index=closed.index,
        columns=[*times, "team"],
    )
    if len(closed):
        recent["team"] = _team(closed)
    source = frame.drop(columns=["hours_left", "breach_risk"]).assign(
        status=frame["status"].fillna("open") if "status" in frame.columns else "open"
    )
    built = build_backlog(
        source,
        recent,
        levels=levels,
        now=now,
        agents=_agents_per_team(closed),
        window_days=window_days,
        default_handling_hours=default_handling_hours,
    )
    computed = built.set_index("ticket_id")
    ids = frame["ticket_id"]
    frame["hours_left"] = pd.to_numeric(frame["hours_left"], errors="coerce").fillna(
        ids.map(computed["hours_left"]).astype(float)
    )
    frame["breach_risk"] = pd.to_numeric(frame["breach_risk"], errors="coerce").fillna(
        ids.map(computed["breach_risk"]).astype(float)
    )
    return frame


def _agents_per_team(closed: pd.DataFrame) -> dict[str, int]:
    if closed.empty or "agent" not in closed.columns:
        return {}
    known = closed["agent"].notna()
    return {
        str(team): int(part.nunique()) for team, part in closed["agent"][known].groupby(_team(closed)[known])
    }


# ---------------------------------------------------------------------------------------------
# Weeks: partial ones, model versions, promotions


def _team(frame: pd.DataFrame) -> pd.Series:
    """The team a ticket ended with: the agent's final team, else the rules'."""
    team = frame["team"] if "team" in frame.columns else pd.Series(None, index=frame.index, dtype=object)
    if "agent_team" in frame.columns:
        team = frame["agent_team"].where(frame["agent_team"].notna(), team)
    return team.fillna(MISSING).astype(str)


def _category(frame: pd.DataFrame) -> pd.Series:
    category = frame["category"] if "category" in frame.columns else pd.Series(None, index=frame.index)
    if "agent_category" in frame.columns:
        category = frame["agent_category"].where(frame["agent_category"].notna(), category)
    return category.fillna(MISSING).astype(str)


def _monday(moments: pd.Series) -> pd.Series:
    days = moments.dt.tz_convert("UTC").dt.floor("D")
    return days - pd.to_timedelta(days.dt.weekday, unit="D")


def week_of(moments: pd.Series) -> pd.Series:
    """The Monday (UTC) of each moment's week, YYYY-MM-DD."""
    return _monday(moments).dt.strftime("%Y-%m-%d")


def coverage(
    created: pd.Series,
    since: datetime | None,
    until: datetime | None,
    now: datetime | None = None,
    later: pd.Series | None = None,
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The period the data covers: from `since` (else the day of the first ticket) to `until`
    (else the end of the day of the last ticket, `later` ones too: the open tickets), never
    past `now`."""
    last = created.max() if later is None or later.dropna().empty else max(created.max(), later.max())
    start = pd.Timestamp(since) if since is not None else created.min().floor("D")
    end = pd.Timestamp(until) if until is not None else last.floor("D") + pd.Timedelta(days=1)
    if now is not None:
        end = min(end, pd.Timestamp(now))
    return start, end


def promotion_marks(promotions: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Alias moves as marks: when, which head (or model), which alias, from and to which version."""
    if promotions is None or promotions.empty:
        return []
    marks = []
    at = _times(promotions["at"].astype(object).fillna(""))
    for (_, row), moment in zip(promotions.iterrows(), at, strict=True):
        if pd.isna(moment):
            continue
        head = row.get("head") or row.get("model") or "model"
        marks.append(
            {
                "at": moment.isoformat(),
                "week": week_of(pd.Series([moment])).iloc[0],
                "head": str(head),
                "alias": None if _empty(row.get("alias")) else str(row.get("alias")),
                "from": None
                if _empty(row.get("from")) or row.get("from") == "none"
                else str(row.get("from")),
                "to": str(row["to"]),
                "action": str(row.get("action") or "promote"),
                "label": f"{head} v{row['to']}",
                "source": "audit trail",
            }
        )
    return sorted(marks, key=lambda mark: mark["at"])


def version_changes(closed: pd.DataFrame) -> list[dict[str, Any]]:
    """Where no audit trail is given: the first ticket each head's new version scored (after the
    first version seen), as a mark."""
    if closed.empty or not closed["model_versions"].astype(bool).any():
        return []
    when = closed["scored_at"] if "scored_at" in closed.columns else closed["created_at"]
    when = when.fillna(closed["created_at"])
    order = when.sort_values(kind="stable").index
    seen: dict[str, str] = {}
    marks = []
    for index in order:
        for head, version in parse_versions(closed.at[index, "model_versions"]).items():
            if head in seen and seen[head] != version:
                moment = when[index]
                marks.append(
                    {
                        "at": moment.isoformat(),
                        "week": week_of(pd.Series([moment])).iloc[0],
                        "head": head,
                        "alias": None,
                        "from": seen[head],
                        "to": version,
                        "action": "first scored",
                        "label": f"{head} v{version}",
                        "source": "tickets",
                    }
                )
            seen[head] = version
    return marks


def weeks_of(
    closed: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    marks: Sequence[Mapping[str, Any]],
    opened: pd.Series | None = None,
) -> list[dict[str, Any]]:
    """Every week from the one holding `start` to the one holding `end`: its days covered, the
    `partial` flag, the closed tickets created in it and those still open (`opened`: the open
    tickets' created times), the model versions that scored them and the marks in it."""
    first = _monday(pd.Series([start])).iloc[0]
    weeks = []
    monday = first
    week_tickets = week_of(closed["created_at"]) if not closed.empty else pd.Series(dtype=str)
    open_weeks = week_of(opened.dropna()) if opened is not None and len(opened) else pd.Series(dtype=str)
    while monday < end:
        label = monday.strftime("%Y-%m-%d")
        covered = (min(monday + WEEK, end) - max(monday, start)) / pd.Timedelta(days=1)
        part = closed[week_tickets == label] if not closed.empty else closed
        versions = part["model_versions"].value_counts() if "model_versions" in part.columns else pd.Series()
        weeks.append(
            {
                "week": label,
                "start": max(monday, start).isoformat(),
                "end": min(monday + WEEK, end).isoformat(),
                "days_covered": round(float(covered), 2),
                # A period that misses a minute of the week or less still covers it.
                "partial": bool(covered < 7 - 1 / (24 * 60)),
                "tickets": len(part),
                "still_open": int((open_weeks == label).sum()),
                "model_versions": {str(name): int(count) for name, count in versions.items() if name},
                "promotions": [mark for mark in marks if mark["week"] == label],
            }
        )
        monday += WEEK
    return weeks


# ---------------------------------------------------------------------------------------------
# The figures


def _share(flags: pd.Series) -> float | None:
    return float(flags.mean()) if len(flags) else None


def _hours(end: pd.Series, start: pd.Series) -> pd.Series:
    return (end - start).dt.total_seconds() / 3600


def backlog_figures(
    backlog: pd.DataFrame, levels: Sequence[str], settings: OperationsSettings
) -> dict[str, Any]:
    """Open tickets by priority and team; breach risk: breached, at risk, the top at-risk ones."""
    if backlog.empty:
        return {
            "open": 0,
            "empty_reason": "no open tickets in the input (give --open, or the store has none)",
        }
    priority = backlog["priority"].fillna(MISSING).astype(str)
    team = backlog["team"].fillna(MISSING).astype(str)
    order = [*levels, *sorted(set(priority) - set(levels))]
    teams = team.value_counts()
    table = [
        {
            "team": name,
            "open": int(total),
            **{level: int(((team == name) & (priority == level)).sum()) for level in order},
        }
        for name, total in teams.items()
    ]
    risk = pd.to_numeric(backlog["breach_risk"], errors="coerce")
    left = pd.to_numeric(backlog["hours_left"], errors="coerce")
    breached = left <= 0
    at_risk = ~breached & (risk >= settings.at_risk)
    by_priority = [
        {
            "priority": level,
            "open": int((priority == level).sum()),
            "breached": int((breached & (priority == level)).sum()),
            "at_risk": int((at_risk & (priority == level)).sum()),
        }
        for level in order
        if (priority == level).any() or level in levels
    ]
    ranked = backlog.assign(_risk=risk, _left=left).sort_values(
        ["_risk", "_left"], ascending=[False, True], na_position="last", kind="stable"
    )
    top = [
        {
            "ticket_id": str(row["ticket_id"]),
            "priority": row["priority"],
            "team": row["team"],
            "assignee": None if _empty(row["assignee"]) else row["assignee"],
            "created_at": _iso(row["created_at"]),
            "first_response_due": _iso(row["first_response_due"]),
            "resolution_due": _iso(row["resolution_due"]),
            "hours_left": None if pd.isna(row["_left"]) else round(float(row["_left"]), 2),
            "breach_risk": None if pd.isna(row["_risk"]) else round(float(row["_risk"]), 4),
        }
        for _, row in ranked.head(settings.top).iterrows()
    ]
    return {
        "open": len(backlog),
        "priorities": order,
        "by_team": table,
        "by_priority": by_priority,
        "breached": int(breached.sum()),
        "at_risk": int(at_risk.sum()),
        "at_risk_threshold": settings.at_risk,
        "without_deadline": int(left.isna().sum()),
        "top_at_risk": top,
        "empty_reason": None,
    }


def _iso(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).isoformat()


def _weekly(closed: pd.DataFrame, weeks: Sequence[Mapping[str, Any]], row: Any) -> list[dict[str, Any]]:
    """One row per week (every week, empty ones too): `row(part)` plus the week's flags."""
    labels = week_of(closed["created_at"])
    return [
        {"week": week["week"], "partial": week["partial"], **row(closed[labels == week["week"]])}
        for week in weeks
    ]


def _attainment(part: pd.DataFrame) -> dict[str, Any]:
    row: dict[str, Any] = {"tickets": len(part)}
    for target, due, done in (
        ("first_response", "first_response_due", "first_response_at"),
        ("resolution", "resolution_due", "resolved_at"),
    ):
        if due in part.columns and done in part.columns:
            judged = part[due].notna() & part[done].notna()
            met = judged & (part[done] <= part[due])
        else:
            judged = met = pd.Series(False, index=part.index)
        row[f"{target}_judged"] = int(judged.sum())
        row[f"{target}_met"] = int(met.sum())
        row[f"{target}_attainment"] = float(met.sum() / judged.sum()) if judged.sum() else None
    return row


def distribution(hours: pd.Series) -> dict[str, Any]:
    """Count, mean, percentiles and a histogram (`HOUR_BINS`) of durations in hours."""
    known = hours.dropna()
    known = known[known >= 0]
    counts, _ = np.histogram(known.to_numpy(), bins=np.array(HOUR_BINS))
    return {
        "count": len(known),
        "mean": float(known.mean()) if len(known) else None,
        **{f"p{p}": float(np.percentile(known, p)) if len(known) else None for p in PERCENTILES},
        "histogram": [int(count) for count in counts],
    }


def time_figures(closed: pd.DataFrame, levels: Sequence[str]) -> dict[str, Any]:
    """First-response and resolution times (hours from creation) per priority the rules decided."""
    priority = closed["priority"].fillna(MISSING).astype(str)
    order = [level for level in [*levels, *sorted(set(priority) - set(levels))] if (priority == level).any()]
    figures: dict[str, Any] = {"bins": [b if math.isfinite(b) else None for b in HOUR_BINS]}
    for target, done in (("first_response", "first_response_at"), ("resolution", "resolved_at")):
        hours = (
            _hours(closed[done], closed["created_at"]) if done in closed.columns else pd.Series(dtype=float)
        )
        rows = (
            [{"priority": level, **distribution(hours[priority == level])} for level in order]
            if len(hours)
            else []
        )
        figures[target] = {"all": distribution(hours), "by_priority": rows}
    known = figures["first_response"]["all"]["count"] + figures["resolution"]["all"]["count"]
    figures["empty_reason"] = None if known else "no first-response or resolution times in the input"
    return figures


def workload_figures(
    closed: pd.DataFrame, backlog: pd.DataFrame, weeks: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Per agent and per team: tickets closed, open now, closed per week (of creation)."""
    team = _team(closed)
    open_team = backlog["team"].fillna(MISSING).astype(str) if not backlog.empty else pd.Series(dtype=str)
    open_agent = backlog["assignee"] if not backlog.empty else pd.Series(dtype=object)
    labels = week_of(closed["created_at"])
    teams = sorted(set(team) | set(open_team))
    per_team = [
        {
            "team": name,
            "closed": int((team == name).sum()),
            "open": int((open_team == name).sum()),
            "agents": int(closed.loc[team == name, "agent"].nunique()),
            "weekly": [int(((team == name) & (labels == week["week"])).sum()) for week in weeks],
        }
        for name in teams
    ]
    per_team.sort(key=lambda row: (-(row["closed"] + row["open"]), row["team"]))
    agents = closed["agent"].dropna().astype(str)
    names = sorted(set(agents) | set(open_agent.dropna().astype(str)))
    per_agent = []
    for name in names:
        mine = closed["agent"] == name
        per_agent.append(
            {
                "agent": name,
                "team": team[mine].mode().iloc[0]
                if mine.any()
                else str(open_team[open_agent == name].iloc[0]),
                "closed": int(mine.sum()),
                "open": int((open_agent == name).sum()),
                "weekly": [int((mine & (labels == week["week"])).sum()) for week in weeks],
            }
        )
    per_agent.sort(key=lambda row: (-(row["closed"] + row["open"]), row["agent"]))
    return {
        "weeks": [week["week"] for week in weeks],
        "partial": [week["partial"] for week in weeks],
        "teams": per_team,
        "agents": per_agent,
        "empty_reason": None
        if names
        else "no agent column in the closed tickets and no assignee in the backlog",
    }


def reassignment_figures(
    closed: pd.DataFrame, assignments: pd.DataFrame | None, weeks: Sequence[Mapping[str, Any]], top: int
) -> dict[str, Any]:
    """Of the closed tickets, the share moved after their first assignment (to another agent or
    team), per week; and where tickets bounce: counts of moves from one team to another."""
    moves = pd.DataFrame(columns=list(ASSIGNMENT_COLUMNS))
    if assignments is not None and not assignments.empty:
        ours = assignments[assignments["ticket_id"].isin(set(closed["ticket_id"]))]
        moves = ours[ours["reassignment"]]
        counted = moves.groupby("ticket_id").size()
        seen = closed["ticket_id"].isin(set(ours["ticket_id"]))
        count = closed["ticket_id"].map(counted).fillna(0).where(seen)
        source = "assignments"
    elif closed["reassignments"].notna().any():
        count = closed["reassignments"]
        source = "reassignments column"
    else:
        return {"empty_reason": "no assignments and no reassignments column in the input", "source": None}
    known = count.notna()
    labels = week_of(closed["created_at"])
    moved_team = moves[moves["previous_team"].notna() & (moves["previous_team"] != moves["team"])]
    bounces = moved_team.groupby(["previous_team", "team"]).size().sort_values(ascending=False, kind="stable")
    return {
        "source": source,
        "tickets": int(known.sum()),
        "reassigned": int((count[known] > 0).sum()),
        "rate": _share(count[known] > 0),
        "moves": int(count[known].sum()),
        "twice_or_more": int((count[known] >= 2).sum()),
        "distribution": {str(int(n)): int(c) for n, c in count[known].value_counts().sort_index().items()},
        "team_moves": len(moved_team),
        "agent_moves": len(moves) - len(moved_team),
        "bounces": [
            {"from": str(a), "to": str(b), "moves": int(n)} for (a, b), n in bounces.head(top).items()
        ],
        "weekly": [
            {
                "week": week["week"],
                "partial": week["partial"],
                "tickets": int((known & (labels == week["week"])).sum()),
                "rate": _share(count[known & (labels == week["week"])] > 0),
            }
            for week in weeks
        ],
        "empty_reason": None,
    }


def request_figures(closed: pd.DataFrame, weeks: Sequence[Mapping[str, Any]], top: int) -> dict[str, Any]:
    """The most common categories (the agent's final category, else the model's) and their
    tickets per week."""
    category = _category(closed)
    counts = category.value_counts()
    if counts.empty or set(counts.index) == {MISSING}:
        return {"empty_reason": "no category in the closed tickets"}
    chosen = [name for name in counts.index if name != MISSING][:top]
    labels = week_of(closed["created_at"])
    return {
        "top": [
            {"category": name, "tickets": int(counts[name]), "share": float(counts[name] / len(closed))}
            for name in chosen
        ],
        "other": int(len(closed) - sum(int(counts[name]) for name in chosen)),
        "weeks": [week["week"] for week in weeks],
        "partial": [week["partial"] for week in weeks],
        "weekly": {
            name: [int(((category == name) & (labels == w["week"])).sum()) for w in weeks] for name in chosen
        },
        "empty_reason": None,
    }


def csat_figures(
    closed: pd.DataFrame, weeks: Sequence[Mapping[str, Any]], satisfied: float
) -> dict[str, Any]:
    """Customer satisfaction where the helpdesk sends it: responses, share satisfied (score at
    or above `satisfied`), mean; per week and per team."""
    scored = closed[closed["csat"].notna()]
    if scored.empty:
        return {
            "empty_reason": "no CSAT in the input: the helpdesk sent no satisfaction scores",
            "responses": 0,
        }
    happy = scored["csat"] >= satisfied
    labels = week_of(scored["created_at"])
    team = _team(scored)

    def row(mask: pd.Series) -> dict[str, Any]:
        return {
            "responses": int(mask.sum()),
            "satisfied": _share(happy[mask]),
            "mean": float(scored.loc[mask, "csat"].mean()) if mask.any() else None,
        }

    teams = [{"team": name, **row(team == name)} for name in team.value_counts().index]
    return {
        "responses": len(scored),
        "response_rate": float(len(scored) / len(closed)),
        "satisfied_from": satisfied,
        "satisfied": _share(happy),
        "mean": float(scored["csat"].mean()),
        "weekly": [{"week": w["week"], "partial": w["partial"], **row(labels == w["week"])} for w in weeks],
        "teams": teams,
        "empty_reason": None,
    }


def cluster_figures(
    alerts: pd.DataFrame | Sequence[Mapping[str, Any]] | None,
    start: datetime | pd.Timestamp | None,
    end: datetime | pd.Timestamp | None,
) -> dict[str, Any]:
    """The period's repeat-issue cluster alerts (`CLUSTER_ALERT_COLUMNS`, one per episode),
    raised in [start, end), oldest first: when, the proposed parent incident's title, its
    member tickets, the explanation and the parent incident created in the helpdesk (if any)."""
    frame = alerts if isinstance(alerts, pd.DataFrame) else pd.DataFrame(list(alerts or []))
    if frame.empty:
        return {
            "alerts": [],
            "episodes": 0,
            "with_incident": 0,
            "empty_reason": "no cluster alert in the period",
        }
    for column in CLUSTER_ALERT_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    raised = pd.to_datetime(frame["raised_at"], utc=True)
    keep = raised.notna()
    if start is not None:
        keep &= raised >= pd.Timestamp(start)
    if end is not None:
        keep &= raised < pd.Timestamp(end)
    chosen = frame[keep].assign(raised_at=raised[keep]).sort_values(["raised_at", "id"], kind="stable")
    rows = [
        {
            "raised_at": row["raised_at"],
            "title": str(row["title"]),
            "size": int(row["size"]) if not _empty(row["size"]) else len(row["ticket_ids"] or []),
            "count": None if _empty(row["count"]) else int(row["count"]),
            "baseline_per_hour": None
            if _empty(row["baseline_per_hour"])
            else float(row["baseline_per_hour"]),
            "p_value": None if _empty(row["p_value"]) else float(row["p_value"]),
            "explanation": str(row["explanation"] or ""),
            "ticket_ids": [str(ticket_id) for ticket_id in (row["ticket_ids"] or [])],
            "reports": None if _empty(row["reports"]) else int(row["reports"]),
            "helpdesk": None if _empty(row["helpdesk"]) else str(row["helpdesk"]),
            "incident_id": None if _empty(row["incident_id"]) else str(row["incident_id"]),
            # Only a web link is shown as one (the page never links another scheme).
            "incident_url": str(row["incident_url"])
            if not _empty(row["incident_url"])
            and str(row["incident_url"]).startswith(("https://", "http://"))
            else None,
        }
        for _, row in chosen.iterrows()
    ]
    return {
        "alerts": rows,
        "episodes": len(rows),
        "with_incident": sum(1 for row in rows if row["incident_id"]),
        "empty_reason": None if rows else "no cluster alert in the period",
    }


def json_ready(value: Any) -> Any:
    """Figures as plain JSON values: NaN and missing values None, numpy numbers Python's, times
    ISO 8601 (the JSON file is written with NaN refused, and a backlog's cells can be missing)."""
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, pd.Timestamp | datetime):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def operations_figures(
    closed: pd.DataFrame,
    backlog: pd.DataFrame,
    *,
    settings: OperationsSettings,
    assignments: pd.DataFrame | None = None,
    promotions: pd.DataFrame | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    cluster_alerts: pd.DataFrame | Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Every figure of the operations report, JSON-ready. `closed`: typed closed tickets
    (`type_extension` applied) of the period; `backlog`: `BACKLOG_COLUMNS` (risk filled in);
    `cluster_alerts`: alert episodes (`CLUSTER_ALERT_COLUMNS`), those raised in the period kept."""
    if closed.empty and backlog.empty:
        raise EmptyReport("no closed and no open tickets: nothing to report")
    closed = type_extension(closed) if "model_versions" not in closed.columns or closed.empty else closed
    if closed.empty:
        closed = closed.assign(created_at=pd.Series(dtype="datetime64[ns, UTC]"))
    levels = list(settings.levels)
    marks = promotion_marks(promotions)
    if not marks:
        marks = version_changes(closed)
    opened = pd.to_datetime(backlog["created_at"], utc=True) if not backlog.empty else None
    first = closed["created_at"] if not closed.empty else opened
    if first is None or first.dropna().empty:
        start = end = None
        weeks: list[dict[str, Any]] = []
    else:
        start, end = coverage(first.dropna(), since, until, now, later=opened)
        weeks = weeks_of(closed, start, end, marks, opened)
    in_weeks = {week["week"] for week in weeks}
    no_closed = {"empty_reason": "no closed tickets in the period"}
    figures = {
        "closed_tickets": len(closed),
        "open_tickets": len(backlog),
        "covered_from": _iso(start),
        "covered_to": _iso(end),
        "weeks": weeks,
        "partial_weeks": [week["week"] for week in weeks if week["partial"]],
        "promotions": [mark for mark in marks if mark["week"] in in_weeks or not weeks],
        "backlog": backlog_figures(backlog, levels, settings),
        "sla": {
            "weekly": _weekly(closed, weeks, _attainment),
            "all": _attainment(closed),
            "empty_reason": None,
        }
        if len(closed)
        else no_closed,
        "times": time_figures(closed, levels) if len(closed) else no_closed,
        "workload": workload_figures(closed, backlog, weeks),
        "reassignment": reassignment_figures(closed, assignments, weeks, settings.top)
        if len(closed)
        else no_closed,
        "requests": request_figures(closed, weeks, settings.top_categories) if len(closed) else no_closed,
        "csat": csat_figures(closed, weeks, settings.satisfied) if len(closed) else no_closed,
        # The period: the one asked for, else the one the tickets cover.
        "clusters": cluster_figures(
            cluster_alerts,
            since if since is not None else start,
            until if until is not None else end,
        ),
    }
    return json_ready(figures)
