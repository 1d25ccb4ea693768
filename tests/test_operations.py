"""The operations report's figures (`urgency.operations`), its page and JSON, the CLI, and the
demo's simulated operations, on small frames made here."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from urgency.agreement import in_period
from urgency.cli import app
from urgency.errors import DataValidationError, EmptyReport
from urgency.operations import (
    OPEN_STATUSES,
    OperationsSettings,
    backlog_stand_in,
    distribution,
    operations_figures,
    parse_versions,
    read_open_tickets,
    read_operations_closed,
    type_extension,
    typed_assignments,
    versions_text,
)
from urgency.operations_report import figures_from_frames, frames_from_files, operations_report
from urgency.simulate_operations import reassignment_pattern, simulate_operations

runner = CliRunner()
LEVELS = ["P1", "P2", "P3", "P4"]
SETTINGS = OperationsSettings(levels=LEVELS)
NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)


def closed_frame(created: list, **columns: list) -> pd.DataFrame:
    """Typed closed tickets: created at the given times, P3 / desk unless told otherwise."""
    n = len(created)
    frame = pd.DataFrame(
        {
            "ticket_id": [f"C-{i}" for i in range(n)],
            "created_at": pd.to_datetime(created, utc=True),
            "priority": ["P3"] * n,
            "team": ["desk"] * n,
            "category": ["Access"] * n,
        }
    )
    for name, values in columns.items():
        frame[name] = values
    for name in ("first_response_due", "first_response_at", "resolution_due", "resolved_at"):
        if name in frame.columns:
            frame[name] = pd.to_datetime(frame[name], utc=True)
    return type_extension(frame)


def no_backlog() -> pd.DataFrame:
    return backlog_stand_in(pd.DataFrame(), pd.DataFrame(), NOW, LEVELS)


def test_the_first_and_last_weeks_the_data_covers_in_part_are_flagged() -> None:
    # Wednesday 4 March to Tuesday 17 March: both ends cut a week.
    closed = closed_frame(["2026-03-04T10:00:00Z", "2026-03-10T10:00:00Z", "2026-03-17T08:00:00Z"])
    figures = operations_figures(closed, no_backlog(), settings=SETTINGS)
    weeks = {week["week"]: week for week in figures["weeks"]}
    assert list(weeks) == ["2026-03-02", "2026-03-09", "2026-03-16"]
    assert [week["partial"] for week in weeks.values()] == [True, False, True]
    assert weeks["2026-03-02"]["days_covered"] == 5.0  # Wednesday to Sunday
    assert weeks["2026-03-16"]["days_covered"] == 2.0  # Monday and Tuesday
    assert figures["partial_weeks"] == ["2026-03-02", "2026-03-16"]
    # Every weekly trend carries the flag.
    assert [row["partial"] for row in figures["sla"]["weekly"]] == [True, False, True]
    # A period that spans whole weeks has none; `until` cutting into a week makes it partial.
    whole = operations_figures(
        closed,
        no_backlog(),
        settings=SETTINGS,
        since=datetime(2026, 3, 2, tzinfo=UTC),
        until=datetime(2026, 3, 23, tzinfo=UTC),
    )
    assert whole["partial_weeks"] == []
    cut = operations_figures(
        closed, no_backlog(), settings=SETTINGS, since=datetime(2026, 3, 2, tzinfo=UTC), now=NOW
    )
    assert cut["partial_weeks"] == ["2026-03-16"]


moments = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2026, 6, 30), timezones=st.just(UTC)
)


@settings(max_examples=60, deadline=None)
@given(
    created=st.lists(moments, min_size=1, max_size=30),
    since=st.none() | moments,
    days=st.none() | st.integers(1, 90),
)
def test_weeks_tile_the_period_and_only_its_ends_are_partial(
    created: list[datetime], since: datetime | None, days: int | None
) -> None:
    """Whatever the tickets and the period: the weeks cover it exactly, Monday to Monday, every
    closed ticket inside it is in one week, and only the first and the last week can be partial."""
    until = (since or min(created)) + timedelta(days=days) if days else None
    closed = closed_frame(created)
    chosen = in_period(closed, since, until, column="created_at")
    if chosen.empty:
        return
    figures = operations_figures(chosen, no_backlog(), settings=SETTINGS, since=since, until=until)
    weeks = figures["weeks"]
    start, end = pd.Timestamp(figures["covered_from"]), pd.Timestamp(figures["covered_to"])
    assert sum(week["days_covered"] for week in weeks) == pytest.approx(
        (end - start) / pd.Timedelta(days=1), abs=0.05
    )
    assert all(pd.Timestamp(week["week"]).weekday() == 0 for week in weeks)
    assert sum(week["tickets"] for week in weeks) == len(chosen)
    assert not any(week["partial"] for week in weeks[1:-1])
    assert [week["week"] for week in weeks if week["partial"]] == figures["partial_weeks"]
    assert all(week["days_covered"] <= 7 for week in weeks)


def test_bounces_count_the_moves_from_team_to_team() -> None:
    closed = closed_frame(["2026-03-02T10:00:00Z"] * 3)
    moves = typed_assignments(
        pd.DataFrame(
            [
                # C-0: desk -> hardware -> back to desk (two team moves)
                ("C-0", "2026-03-02T10:01:00Z", "ann", "desk", "false", None, None),
                ("C-0", "2026-03-02T11:00:00Z", "hal", "hardware", "true", "ann", "desk"),
                ("C-0", "2026-03-02T12:00:00Z", "bob", "desk", "true", "hal", "hardware"),
                # C-1: another agent of the same team
                ("C-1", "2026-03-02T10:01:00Z", "ann", "desk", "false", None, None),
                ("C-1", "2026-03-02T10:30:00Z", "bob", "desk", "true", "ann", "desk"),
                # C-2 stays; X-9 is not among the closed tickets and does not count
                ("C-2", "2026-03-02T10:01:00Z", "bob", "desk", "false", None, None),
                ("X-9", "2026-03-02T10:01:00Z", "hal", "hardware", "true", "bob", "desk"),
            ],
            columns=[
                "ticket_id",
                "assigned_at",
                "agent",
                "team",
                "reassignment",
                "previous_agent",
                "previous_team",
            ],
        )
    )
    figures = operations_figures(closed, no_backlog(), settings=SETTINGS, assignments=moves)
    moved = figures["reassignment"]
    assert moved["source"] == "assignments"
    assert (moved["tickets"], moved["reassigned"], moved["moves"], moved["twice_or_more"]) == (3, 2, 3, 1)
    assert moved["rate"] == pytest.approx(2 / 3)
    assert moved["distribution"] == {"0": 1, "1": 1, "2": 1}
    assert moved["bounces"] == [
        {"from": "desk", "to": "hardware", "moves": 1},
        {"from": "hardware", "to": "desk", "moves": 1},
    ]
    assert (moved["team_moves"], moved["agent_moves"]) == (2, 1)


def test_without_assignments_the_reassignments_column_counts() -> None:
    closed = closed_frame(["2026-03-02T10:00:00Z"] * 4, reassignments=[0, 1, 3, None])
    moved = operations_figures(closed, no_backlog(), settings=SETTINGS)["reassignment"]
    assert moved["source"] == "reassignments column"
    assert (moved["tickets"], moved["reassigned"], moved["rate"]) == (3, 2, pytest.approx(2 / 3))
    assert moved["bounces"] == []
    none = operations_figures(closed_frame(["2026-03-02T10:00:00Z"]), no_backlog(), settings=SETTINGS)
    assert "no assignments" in none["reassignment"]["empty_reason"]


def test_response_times_have_percentiles_and_a_histogram_per_priority() -> None:
    created = ["2026-03-02T00:00:00Z"] * 5
    answered = [
        "2026-03-02T01:00:00Z",
        "2026-03-02T02:00:00Z",
        "2026-03-02T03:00:00Z",
        "2026-03-02T04:00:00Z",
        "2026-03-02T10:00:00Z",
    ]
    closed = closed_frame(created, first_response_at=answered, priority=["P1", "P1", "P3", "P3", "P3"])
    times = operations_figures(closed, no_backlog(), settings=SETTINGS)["times"]
    everything = times["first_response"]["all"]
    assert everything["count"] == 5
    assert everything["p50"] == 3.0
    assert everything["p90"] == pytest.approx(7.6)  # linear between 4 h and 10 h
    assert everything["mean"] == 4.0
    # bins 0-1, 1-2, 2-4, 4-8, 8-16, ...: a value on an edge goes to the bin it starts
    assert everything["histogram"][:5] == [0, 1, 2, 1, 1]
    by_priority = {row["priority"]: row for row in times["first_response"]["by_priority"]}
    assert list(by_priority) == ["P1", "P3"]
    assert by_priority["P1"]["p50"] == 1.5
    assert times["resolution"]["all"]["count"] == 0  # no resolved_at: nothing to show, no error
    assert distribution(pd.Series([], dtype=float))["p50"] is None


def test_csat_shares_per_week_and_team_and_why_it_is_empty() -> None:
    created = ["2026-03-02T10:00:00Z"] * 4 + ["2026-03-09T10:00:00Z"] * 2
    closed = closed_frame(
        created,
        csat=[1.0, 0.75, 0.25, None, 0.0, 1.0],
        agent_team=["desk", "desk", "hardware", "desk", "hardware", "hardware"],
    )
    csat = operations_figures(closed, no_backlog(), settings=SETTINGS)["csat"]
    assert (csat["responses"], csat["satisfied"]) == (5, pytest.approx(3 / 5))
    assert csat["response_rate"] == pytest.approx(5 / 6)
    weekly = {row["week"]: row for row in csat["weekly"]}
    assert weekly["2026-03-02"]["satisfied"] == pytest.approx(2 / 3)
    assert weekly["2026-03-09"]["satisfied"] == pytest.approx(1 / 2)
    teams = {row["team"]: row for row in csat["teams"]}
    assert teams["desk"] == {"team": "desk", "responses": 2, "satisfied": 1.0, "mean": 0.875}
    assert teams["hardware"]["satisfied"] == pytest.approx(1 / 3)
    empty = operations_figures(closed_frame(created), no_backlog(), settings=SETTINGS)["csat"]
    assert empty["empty_reason"] == "no CSAT in the input: the helpdesk sent no satisfaction scores"


def test_promotions_and_model_versions_are_marked_on_the_weeks() -> None:
    created = ["2026-03-02T10:00:00Z", "2026-03-03T10:00:00Z", "2026-03-10T10:00:00Z", "2026-03-17T10:00:00Z"]
    versions = [
        "urgency=1;category=4",
        "urgency=1;category=4",
        '{"urgency": "2", "category": "4"}',
        "urgency=2",
    ]
    closed = closed_frame(created, model_versions=versions)
    promotions = pd.DataFrame(
        [
            {
                "at": "2026-03-09T15:30:00+00:00",
                "head": "urgency",
                "alias": "champion",
                "from": "1",
                "to": "2",
                "action": "promote",
            },
            {
                "at": "2025-01-01T00:00:00+00:00",
                "head": "urgency",
                "alias": "champion",
                "from": "none",
                "to": "1",
                "action": "promote",
            },
        ]
    )
    figures = operations_figures(closed, no_backlog(), settings=SETTINGS, promotions=promotions)
    weeks = {week["week"]: week for week in figures["weeks"]}
    assert weeks["2026-03-02"]["model_versions"] == {"category=4;urgency=1": 2}
    assert weeks["2026-03-09"]["model_versions"] == {"category=4;urgency=2": 1}
    (mark,) = weeks["2026-03-09"]["promotions"]
    assert (mark["label"], mark["action"], mark["from"], mark["source"]) == (
        "urgency v2",
        "promote",
        "1",
        "audit trail",
    )
    assert weeks["2026-03-02"]["promotions"] == weeks["2026-03-16"]["promotions"] == []
    # Only the marks inside the period are listed (the 2025 promotion is not).
    assert [m["at"] for m in figures["promotions"]] == ["2026-03-09T15:30:00+00:00"]
    # Without an audit trail, the first ticket a new version scored marks the change.
    seen = operations_figures(closed, no_backlog(), settings=SETTINGS)["promotions"]
    assert [(m["label"], m["week"], m["source"]) for m in seen] == [("urgency v2", "2026-03-09", "tickets")]


def test_model_versions_read_from_json_or_text() -> None:
    assert parse_versions('{"urgency": 3}') == {"urgency": "3"}
    assert parse_versions("urgency=3; category=2") == {"urgency": "3", "category": "2"}
    assert parse_versions({"sentiment": "models/sentiment"}) == {"sentiment": "models/sentiment"}
    assert parse_versions("") == parse_versions(None) == {}
    assert versions_text({"urgency": "3", "category": "2"}) == "category=2;urgency=3"
    with pytest.raises(ValueError):
        parse_versions("urgency 3")


def test_the_backlog_by_priority_and_team_with_breach_risk() -> None:
    # Two desk agents resolved 8 tickets, each 10 hours after it was created (the median).
    closed = closed_frame(
        ["2026-03-16T00:00:00Z"] * 8, agent=["ann", "bob"] * 4, resolved_at=["2026-03-16T10:00:00Z"] * 8
    )
    open_tickets = pd.DataFrame(
        {
            "ticket_id": ["O-1", "O-2", "O-3", "O-4"],
            "priority": ["P1", "P3", "P3", "P4"],
            "team": ["desk", "desk", "desk", "hardware"],
            "assignee": ["ann", None, "bob", None],
            "created_at": pd.to_datetime(
                [
                    "2026-03-19T00:00:00Z",
                    "2026-03-20T09:00:00Z",
                    "2026-03-20T10:00:00Z",
                    "2026-03-20T10:00:00Z",
                ],
                utc=True,
            ),
            "first_response_due": pd.to_datetime(["2026-03-19T01:00:00Z", None, None, None], utc=True),
            "resolution_due": pd.to_datetime(
                ["2026-03-20T00:00:00Z", "2026-03-21T12:00:00Z", "2026-03-20T13:00:00Z", None], utc=True
            ),
        }
    )
    backlog = backlog_stand_in(open_tickets, closed, NOW, LEVELS)
    left = dict(zip(backlog["ticket_id"], backlog["hours_left"], strict=True))
    assert left["O-1"] == -35.0  # the first response was due and never given
    assert left["O-2"] == 24.0 and left["O-3"] == 1.0
    risk = dict(zip(backlog["ticket_id"], backlog["breach_risk"], strict=True))
    assert risk["O-1"] == 1.0
    # The queue's order is priority, then the nearest deadline: O-3 (due 13:00) is before O-2.
    # O-2: 24 h left, O-1 and O-3 ahead: a median wait of 10 x (2/2 + 1) = 20 h, P(wait > 24 h)
    # = 1 - Phi(ln(24/20)) (`breach_risk.rules_risk`); O-3: 1 h left, a median 10 x 1.5 = 15 h.
    assert risk["O-3"] > 0.99 and risk["O-2"] == pytest.approx(0.4277, abs=1e-3)
    assert pd.isna(risk["O-4"])  # no deadline: no risk
    # A risk the backlog module gave is kept.
    given = backlog_stand_in(open_tickets.assign(breach_risk=[0.1, 0.2, 0.3, 0.4]), closed, NOW, LEVELS)
    assert given["breach_risk"].tolist() == [0.1, 0.2, 0.3, 0.4]
    figures = operations_figures(closed, backlog, settings=SETTINGS)["backlog"]
    assert (figures["open"], figures["breached"], figures["at_risk"], figures["without_deadline"]) == (
        4,
        1,
        1,
        1,
    )
    assert figures["by_team"][0] == {"team": "desk", "open": 3, "P1": 1, "P2": 0, "P3": 2, "P4": 0}
    assert [row["ticket_id"] for row in figures["top_at_risk"]] == ["O-1", "O-3", "O-2", "O-4"]
    workload = operations_figures(closed, backlog, settings=SETTINGS)["workload"]
    agents = {row["agent"]: row for row in workload["agents"]}
    assert (agents["ann"]["closed"], agents["ann"]["open"]) == (4, 1)
    teams = {row["team"]: row for row in workload["teams"]}
    assert (teams["desk"]["closed"], teams["desk"]["open"], teams["hardware"]["open"]) == (8, 3, 1)


def test_a_backlog_with_missing_cells_gives_plain_json(tmp_path: Path) -> None:
    """A backlog without a priority, team or deadline (a ticket state with nothing decided yet)
    and no closed ticket: the figures are still JSON (no NaN) and the page renders."""
    from urgency.operations_report import render_html
    from urgency.report import to_json

    open_tickets = pd.DataFrame(
        {
            "ticket_id": ["O-1", "O-2"],
            "priority": [None, "P2"],
            "team": [None, "desk"],
            "created_at": pd.to_datetime(["2026-03-19T00:00:00Z", "2026-03-20T09:00:00Z"], utc=True),
        }
    )
    frames = {"closed": pd.DataFrame(), "open": open_tickets, "assignments": None, "promotions": None}
    figures = figures_from_frames(frames, SETTINGS, source="test", now=NOW)
    text = to_json(figures)  # refuses NaN
    listed = {row["ticket_id"]: row for row in json.loads(text)["backlog"]["top_at_risk"]}
    assert listed["O-1"]["priority"] is None and listed["O-1"]["breach_risk"] is None
    assert (
        figures["closed_tickets"] == 0 and figures["sla"]["empty_reason"] == "no closed tickets in the period"
    )
    assert "Nothing to show: no closed tickets in the period." in render_html(figures)


def test_nothing_at_all_is_an_empty_report() -> None:
    with pytest.raises(EmptyReport):
        operations_figures(closed_frame([]), no_backlog(), settings=SETTINGS)


def test_the_store_statuses_are_the_open_ones() -> None:
    from urgency import store

    assert OPEN_STATUSES == store.OPEN_STATUSES


# ---------------------------------------------------------------------------------------------
# Files: the CSVs, the page and its JSON, the CLI


def write_files(folder: Path) -> dict[str, Path]:
    """A closed-tickets CSV (tests/test_notebooks.py's) with the operations columns, open tickets
    and assignments."""
    from tests.test_notebooks import write_closed_tickets

    closed = write_closed_tickets(folder / "closed.csv")
    frame = pd.read_csv(closed)
    rng = np.random.default_rng(3)
    frame["agent"] = rng.choice(["ann", "bob", "cy"], len(frame))
    frame["csat"] = np.where(rng.random(len(frame)) < 0.4, (rng.integers(1, 6, len(frame)) - 1) / 4, np.nan)
    frame["model_versions"] = np.where(frame["created_at"] < "2026-03-12", "urgency=1", "urgency=2")
    frame.to_csv(closed, index=False)
    pd.DataFrame(
        {
            "ticket_id": ["O-1", "O-2"],
            "created_at": ["2026-03-22T10:00:00Z", "2026-03-23T08:00:00Z"],
            "priority": ["P1", "P3"],
            "team": ["desk", "triage"],
            "assignee": ["ann", ""],
            "first_response_due": ["2026-03-22T11:00:00Z", "2026-03-23T20:00:00Z"],
            "resolution_due": ["2026-03-23T10:00:00Z", "2026-03-25T08:00:00Z"],
        }
    ).to_csv(folder / "open.csv", index=False)
    pd.DataFrame(
        {
            "ticket_id": ["C-0", "C-0", "C-1"],
            "assigned_at": ["2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z", "2026-03-03T10:00:00Z"],
            "agent": ["ann", "bob", "cy"],
            "team": ["desk", "triage", "desk"],
            "reassignment": ["false", "true", "false"],
            "previous_agent": ["", "ann", ""],
            "previous_team": ["", "desk", ""],
        }
    ).to_csv(folder / "assignments.csv", index=False)
    return {"closed": closed, "open": folder / "open.csv", "assignments": folder / "assignments.csv"}


def test_bad_files_name_the_row_and_column(tmp_path: Path) -> None:
    paths = write_files(tmp_path)
    frame = pd.read_csv(paths["closed"])
    frame.loc[2, "csat"] = 7
    frame["reassignments"] = ""
    frame.loc[4, "reassignments"] = "-1"
    frame.loc[5, "model_versions"] = "urgency three"
    frame.to_csv(paths["closed"], index=False)
    with pytest.raises(DataValidationError) as error:
        read_operations_closed(paths["closed"], levels=LEVELS)
    message = str(error.value)
    assert "3 problem(s)" in message
    assert "row 3, column csat: '7.0' is not a CSAT" in message
    assert "row 5, column reassignments: '-1' is not a whole number from 0" in message
    assert "row 6, column model_versions: 'urgency three'" in message
    pd.DataFrame({"ticket_id": ["O-1"], "created_at": ["soon"], "priority": ["P9"], "team": ["desk"]}).to_csv(
        tmp_path / "bad_open.csv", index=False
    )
    with pytest.raises(DataValidationError) as error:
        read_open_tickets(tmp_path / "bad_open.csv", LEVELS)
    assert "row 1, column created_at: 'soon' is not an ISO 8601 timestamp" in str(error.value)
    assert "row 1, column priority: 'P9' is not one of" in str(error.value)


def test_page_and_json_hold_the_same_figures(tmp_path: Path) -> None:
    paths = write_files(tmp_path)
    output = tmp_path / "out" / "operations.html"
    _, json_path = operations_report(
        SETTINGS,
        output,
        input=paths["closed"],
        database_url="sqlite:///unused.db",
        open_tickets=paths["open"],
        assignments=paths["assignments"],
        now=datetime(2026, 3, 23, 12, tzinfo=UTC),
    )
    written = json.loads(json_path.read_text())
    assert json_path == tmp_path / "out" / "operations.json"
    assert (written["closed_tickets"], written["open_tickets"]) == (60, 2)
    assert written["partial_weeks"] == ["2026-03-23"]  # the data ends on Monday 23 March
    assert [mark["label"] for mark in written["promotions"]] == ["urgency v2"]
    assert written["reassignment"]["bounces"] == [{"from": "desk", "to": "triage", "moves": 1}]
    page = output.read_text()
    assert "2026-03-23 (partial)" in page
    assert page.count('<img src="data:image/svg+xml;base64,') >= 12
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page and "<link" not in page
    # Without CSAT or open tickets, the sections say why.
    frame = pd.read_csv(paths["closed"]).drop(columns=["csat"])
    frame.to_csv(paths["closed"], index=False)
    bare = figures_from_frames(frames_from_files(paths["closed"], SETTINGS), SETTINGS, source="test")
    from urgency.operations_report import render_html

    page = render_html(bare)
    assert "Nothing to show: no CSAT in the input: the helpdesk sent no satisfaction scores." in page
    assert "Nothing to show: no open tickets in the input" in page


def test_cli_writes_the_page_and_json(service_params: Path, tmp_path: Path) -> None:
    paths = write_files(tmp_path)
    output = tmp_path / "ops.html"
    args = ["report", "operations", "--params", str(service_params), "--input", str(paths["closed"])]
    more = ["--open", str(paths["open"]), "--assignments", str(paths["assignments"]), "--output", str(output)]
    result = runner.invoke(app, [*args, *more, "--now", "2026-03-23T12:00:00Z", "--registry"])
    assert result.exit_code == 0, result.output
    assert "60 closed, 2 open (1 past a deadline" in result.output
    assert output.exists() and output.with_suffix(".json").exists()
    bad = runner.invoke(app, [*args, "--output", str(output), "--since", "yesterday"])
    assert bad.exit_code == 2
    missing = runner.invoke(
        app, ["report", "operations", "--params", str(service_params), "--input", "nope.csv"]
    )
    assert missing.exit_code == 6 and "nope.csv does not exist" in missing.output


# ---------------------------------------------------------------------------------------------
# The demo's simulation


def incident_log() -> pd.DataFrame:
    """Three incidents: INC1 moved twice (group a -> b -> a), INC2 once within its group, INC3 never."""
    rows = [
        ("INC1", "0", "a"),
        ("INC1", "1", "b"),
        ("INC1", "2", "a"),
        ("INC2", "0", "c"),
        ("INC2", "1", "c"),
        ("INC3", "0", "?"),
        ("INC3", "0", "d"),
    ]
    return pd.DataFrame(rows, columns=["number", "reassignment_count", "assignment_group"])


def test_the_reassignment_pattern_of_an_incident_log() -> None:
    pattern = reassignment_pattern(incident_log())
    assert pattern.incidents == 3
    assert pattern.counts == {0: pytest.approx(1 / 3), 1: pytest.approx(1 / 3), 2: pytest.approx(1 / 3)}
    assert pattern.rate == pytest.approx(2 / 3)
    assert pattern.team_move_share == pytest.approx(2 / 3)  # 2 group changes of 3 moves
    assert pattern.bounce_back_share == pytest.approx(1 / 2)  # a -> b -> a: the second goes back


def test_simulated_operations_are_seeded_and_consistent(tmp_path: Path) -> None:
    from tests.test_notebooks import write_closed_tickets

    closed = pd.read_csv(write_closed_tickets(tmp_path / "closed.csv", rows=120), dtype=str)
    pattern = reassignment_pattern(incident_log())
    now = datetime(2026, 3, 23, 12, tzinfo=UTC)
    made = simulate_operations(closed, pattern, now=now, model_versions={"urgency": "3"}, seed=1)
    again = simulate_operations(closed, pattern, now=now, model_versions={"urgency": "3"}, seed=1)
    for name in made:
        pd.testing.assert_frame_equal(made[name], again[name])
    assert len(made["closed"]) + len(made["open"]) == 120
    assert len(made["open"]) > 0
    opened = pd.to_datetime(made["open"]["created_at"], utc=True)
    assert (opened >= pd.Timestamp(now) - pd.Timedelta(days=3)).all()
    assert set(made["open"]["status"]) <= set(OPEN_STATUSES)
    moves = made["assignments"]
    # One first assignment per ticket; every move leaves the agent or the team it came from.
    assert (moves.groupby("ticket_id")["reassignment"].apply(lambda r: (~r).sum()) == 1).all()
    moved = moves[moves["reassignment"]]
    assert ((moved["agent"] != moved["previous_agent"]) | (moved["team"] != moved["previous_team"])).all()
    # The last assignment is the ticket's agent and final team.
    last = moves.groupby("ticket_id").last()
    final = made["closed"].set_index("ticket_id")
    assert (last.loc[final.index, "agent"] == final["agent"]).all()
    assert (last.loc[final.index, "team"] == final["agent_team"].fillna(final["team"])).all()
    assert (final["reassignments"] == moved.groupby("ticket_id").size().reindex(final.index).fillna(0)).all()
    # Tickets the rules routed elsewhere than the agents' team moved at least once.
    misrouted = final["team"] != final["agent_team"]
    assert (final.loc[misrouted, "reassignments"] >= 1).all()
    assert made["closed"]["csat"].dropna().isin([0.0, 0.25, 0.5, 0.75, 1.0]).all()
    assert set(made["closed"]["model_versions"]) == {"urgency=3"}
    # The agents file's agents where it names a team's; the others' are made up.
    roster = {"desk": ["ann", "bob"]}
    staffed = simulate_operations(closed, pattern, now=now, roster=roster, seed=1)
    desk = staffed["agents"][staffed["agents"]["team"] == "desk"]["agent"].tolist()
    assert desk == ["ann", "bob"]
    assert set(staffed["assignments"].loc[staffed["assignments"]["team"] == "desk", "agent"]) <= {
        "ann",
        "bob",
    }
    assert staffed["agents"][staffed["agents"]["team"] == "triage"]["agent"].str.startswith("triage-").all()
    # The files read back as the report reads them.
    for name in ("closed", "open", "assignments"):
        made[name].to_csv(tmp_path / f"{name}.csv", index=False)
    frames = frames_from_files(
        tmp_path / "closed.csv",
        SETTINGS,
        open_tickets=tmp_path / "open.csv",
        assignments=tmp_path / "assignments.csv",
    )
    figures = figures_from_frames(frames, SETTINGS, source="demo", now=now)
    assert figures["reassignment"]["source"] == "assignments"
    assert figures["open_tickets"] == len(made["open"])


def test_cli_demo_operations_then_the_report(service_params: Path, tmp_path: Path) -> None:
    from tests.test_notebooks import write_closed_tickets

    closed = write_closed_tickets(tmp_path / "closed.csv", rows=80)
    log = incident_log().assign(impact="2", urgency="2", priority="3", made_sla="true")
    log.to_csv(tmp_path / "incidents.csv.gz", index=False)
    now = ["--now", "2026-03-23T12:00:00Z"]
    out = tmp_path / "out"
    made = runner.invoke(
        app,
        ["demo-operations", "--params", str(service_params), "--closed", str(closed), "--output-dir",
         str(out), "--incident-log", str(tmp_path / "incidents.csv.gz"), *now],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "the incident log moves 66.7% of 3 incidents" in made.output
    versions = pd.read_csv(out / "demo_operations_closed.csv")["model_versions"]
    assert versions.str.contains("urgency=").all()  # the champions that scored the demo
    files = ["--input", str(out / "demo_operations_closed.csv"), "--open", str(out / "demo_open_tickets.csv"),
             "--assignments", str(out / "demo_assignments.csv")]  # fmt: skip
    report = runner.invoke(
        app,
        [
            "report",
            "operations",
            "--params",
            str(service_params),
            *files,
            *now,
            "--output",
            str(tmp_path / "ops.html"),
        ],
    )
    assert report.exit_code == 0, report.output
    figures = json.loads((tmp_path / "ops.json").read_text())
    assert figures["reassignment"]["source"] == "assignments"
    assert figures["csat"]["responses"] > 0


def test_a_period_without_tickets_says_so(tmp_path: Path) -> None:
    paths = write_files(tmp_path)
    frames = frames_from_files(paths["closed"], SETTINGS)
    with pytest.raises(
        EmptyReport, match=r"no closed ticket created from 2001-01-01 to 2001-01-31 and no open"
    ):
        figures_from_frames(
            frames,
            SETTINGS,
            source="closed.csv",
            since=datetime(2001, 1, 1, tzinfo=UTC),
            until=datetime(2001, 2, 1, tzinfo=UTC),
        )
