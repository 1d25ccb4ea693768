"""Check the rules' urgency x impact matrix against a real incident log.

The ServiceNow log (`incident_event_log.csv.gz`, see the shared DATA.md) has one row per update
of an incident; the last row of an incident is its final state. Its priority was set from impact
and urgency by the ITIL matrix, so a matrix that models the helpdesk should give every incident
its recorded priority. The log also says whether each incident met its SLA (`made_sla`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from urgency.errors import DataValidationError, InputError
from urgency.rules import RuleSet

REQUIRED_COLUMNS = ("number", "impact", "urgency", "priority", "made_sla")
# ServiceNow codes: 1 - High, 2 - Medium, 3 - Low for impact and urgency; 1-4 for priority.
IMPACT_CODES = {"1": "high", "2": "medium", "3": "low"}
URGENCY_CODES = {"1": "high", "2": "medium", "3": "low"}
PRIORITY_CODES = {"1": "P1", "2": "P2", "3": "P3", "4": "P4"}


@dataclass
class IncidentReport:
    events: int
    incidents: int
    compared: int  # incidents whose codes all map onto the rules' labels
    unmapped: int
    agreement: float  # share of compared incidents whose matrix priority equals the recorded one
    matrix: pd.DataFrame  # one row per (impact, urgency): incidents, recorded -> expected, agreeing
    sla: pd.DataFrame  # one row per recorded priority: incidents, made_sla, attainment


def read_incident_log(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise InputError(f"{path}: file not found")
    try:
        events = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError) as error:
        raise InputError(f"{path}: cannot be read as CSV: {error}") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in events.columns]
    if missing:
        raise DataValidationError(f"{path}: no column(s) {missing} (has {list(events.columns)})")
    return events


def _code(value: str) -> str:
    # Accept both "2" and the export's long form "2 - Medium".
    match = re.match(r"\s*(\d+)", value)
    return match.group(1) if match else value.strip()


def final_states(events: pd.DataFrame) -> pd.DataFrame:
    """The last row of every incident (file order)."""
    return events.groupby("number", sort=False).tail(1).reset_index(drop=True)


def check_incidents(
    events: pd.DataFrame,
    rules: RuleSet,
    *,
    impact_codes: dict[str, str] = IMPACT_CODES,
    urgency_codes: dict[str, str] = URGENCY_CODES,
    priority_codes: dict[str, str] = PRIORITY_CODES,
) -> IncidentReport:
    final = final_states(events)
    impact = final["impact"].map(_code).map(impact_codes)
    urgency = final["urgency"].map(_code).map(urgency_codes)
    recorded = final["priority"].map(_code).map(priority_codes)
    matrix = rules.spec.matrix
    mapped = impact.notna() & urgency.notna() & recorded.notna()
    mapped &= impact.isin(rules.impact_levels) & recorded.isin(rules.levels)
    expected = pd.Series(
        [matrix[u][i] if ok else None for u, i, ok in zip(urgency, impact, mapped, strict=True)],
        index=final.index,
        dtype=object,
    )
    compared = final[mapped].assign(
        impact_label=impact[mapped],
        urgency_label=urgency[mapped],
        recorded=recorded[mapped],
        expected=expected[mapped],
    )
    compared["agrees"] = compared["recorded"] == compared["expected"]
    cells = (
        compared.groupby(["impact_label", "urgency_label", "recorded", "expected"], sort=True)
        .agg(incidents=("agrees", "size"), agreeing=("agrees", "sum"))
        .reset_index()
        .rename(columns={"impact_label": "impact", "urgency_label": "urgency"})
    )
    # Most severe first, as the matrix is written.
    cells = cells.sort_values(
        ["impact", "urgency"],
        key=lambda column: column.map(
            {label: position for position, label in enumerate([*rules.impact_levels, *matrix])}
        ),
        kind="stable",
        ignore_index=True,
    )
    made = final["made_sla"].str.strip().str.lower().isin(["true", "1", "yes"])
    sla = (
        pd.DataFrame(
            {
                "priority": final["priority"].map(_code).map(priority_codes).fillna(final["priority"]),
                "made": made,
            }
        )
        .groupby("priority", sort=True)
        .agg(incidents=("made", "size"), made_sla=("made", "sum"))
        .reset_index()
    )
    sla["attainment"] = sla["made_sla"] / sla["incidents"]
    return IncidentReport(
        events=len(events),
        incidents=len(final),
        compared=int(mapped.sum()),
        unmapped=int((~mapped).sum()),
        agreement=float(compared["agrees"].mean()) if len(compared) else 0.0,
        matrix=cells,
        sla=sla,
    )
