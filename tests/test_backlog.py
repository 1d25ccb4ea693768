"""The open backlog and what the customer is told (`urgency.backlog`): pure functions over the
store's frames, built here as the store returns them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from urgency.backlog import (
    BACKLOG_COLUMNS,
    backlog_json,
    build_backlog,
    customer_sentence,
    expected_first_response,
    filtered,
    queues,
    summarise,
    team_agents,
    team_medians,
)
from urgency.breach_risk import BREACH_FEATURES, expected_wait_hours, rules_risk

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LEVELS = ("P1", "P2", "P3", "P4")
OPEN_COLUMNS = [
    "ticket_id",
    "status",
    "opened_at",
    "updated_at",
    "state_team",
    "assignee",
    "priority",
    "team",
    "created_at",
    "scored_at",
    "first_response_due",
    "resolution_due",
    "category",
    "fields",
    "first_response_at",
]


def ticket(ticket_id: str, priority: str = "P2", team: str = "desk", **values: Any) -> dict[str, Any]:
    """An `open_tickets` row; times naive UTC as SQLite gives them back."""
    created = values.pop("created_at", NOW - timedelta(hours=1))
    return {
        "ticket_id": ticket_id,
        "status": "open",
        "opened_at": created,
        "updated_at": created,
        "state_team": None,
        "assignee": None,
        "priority": priority,
        "team": team,
        "created_at": created.replace(tzinfo=None),
        "scored_at": created,
        "first_response_due": NOW + timedelta(hours=2),
        "resolution_due": NOW + timedelta(hours=24),
        "category": "billing",
        "fields": {"plan": "enterprise"},
        "first_response_at": None,
        **values,
    }


def open_frame(*rows: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=OPEN_COLUMNS)


def closed(team: str, handled_hours: float, answered_hours: float, days_ago: float = 1) -> dict[str, Any]:
    """A `recent_times` row: a ticket of `team` answered and resolved `days_ago`."""
    created = NOW - timedelta(days=days_ago, hours=handled_hours)
    return {
        "ticket_id": f"c-{team}-{handled_hours}-{days_ago}",
        "team": team,
        "created_at": created,
        "first_response_at": created + timedelta(hours=answered_hours),
        "resolved_at": created + timedelta(hours=handled_hours),
    }


def backlog(
    open_rows: pd.DataFrame, recent: list[dict[str, Any]] | None = None, **options: Any
) -> pd.DataFrame:
    return build_backlog(
        open_rows,
        pd.DataFrame(
            recent or [], columns=["ticket_id", "team", "created_at", "first_response_at", "resolved_at"]
        ),
        levels=LEVELS,
        now=NOW,
        agents=options.pop("agents", {}),
        window_days=options.pop("window_days", 30),
        default_handling_hours=options.pop("default_handling_hours", 4.0),
        **options,
    )


def test_open_tickets_by_priority_then_nearest_deadline_with_hours_left() -> None:
    frame = backlog(
        open_frame(
            ticket("late-p2", "P2", first_response_due=NOW - timedelta(hours=1)),
            ticket("p1", "P1"),
            ticket("soon-p2", "P2", first_response_due=NOW + timedelta(minutes=30)),
            ticket("p3", "P3", team="billing"),
            ticket("gone", "P9"),  # a level the rules no longer have: last
        )
    )
    assert list(frame.columns) == list(BACKLOG_COLUMNS)
    assert list(frame["ticket_id"]) == ["p1", "late-p2", "soon-p2", "p3", "gone"]
    late = frame.set_index("ticket_id").loc["late-p2"]
    assert late["first_response_hours_left"] == pytest.approx(-1)
    assert late["resolution_hours_left"] == pytest.approx(24)
    assert (late["next_deadline"], late["hours_left"], late["breach_risk"]) == ("first_response", -1, 1.0)
    # The queue ahead counts the team's tickets before it; the billing team's is its own.
    assert list(frame["queue_ahead"]) == [0, 1, 2, 0, 3]


def test_an_answered_ticket_races_its_resolution_deadline() -> None:
    frame = backlog(open_frame(ticket("a", first_response_at=NOW - timedelta(minutes=5))))
    row = frame.iloc[0]
    assert row["next_deadline"] == "resolution" and row["hours_left"] == pytest.approx(24)
    assert pd.isna(row["first_response_hours_left"])  # answered: no first response to meet
    # No deadline at all: no risk to state.
    none = backlog(open_frame(ticket("b", first_response_due=None, resolution_due=None))).iloc[0]
    assert none["next_deadline"] is None and none["breach_risk"] is None


def test_the_teams_history_gives_its_median_handling_time_else_the_default() -> None:
    recent = [
        closed("desk", 2, 0.5),
        closed("desk", 6, 1.5),
        closed("desk", 10, 1),
        closed("desk", 99, 9, days_ago=40),
    ]
    frame = backlog(open_frame(ticket("a"), ticket("b", team="billing")), recent, default_handling_hours=5.0)
    rows = frame.set_index("ticket_id")
    assert rows.loc["a", "median_handling_hours"] == pytest.approx(6)  # 40 days ago is outside 30
    assert rows.loc["a", "handling_from"] == "history"
    assert (rows.loc["b", "median_handling_hours"], rows.loc["b", "handling_from"]) == (5.0, "default")
    handling, response = team_medians(pd.DataFrame(recent), now=NOW, window_days=30)
    assert handling == {"desk": pytest.approx(6)} and response == {"desk": pytest.approx(1)}


def test_the_risk_is_rules_risk_of_the_nearest_deadline_with_the_teams_agents() -> None:
    rows = [ticket(f"t{i}", first_response_due=NOW + timedelta(hours=3)) for i in range(4)]
    alone = backlog(open_frame(*rows))
    staffed = backlog(open_frame(*rows), agents={"desk": 3})
    last = alone.iloc[-1]
    assert last["breach_risk"] == pytest.approx(rules_risk(3, 3, 4.0, 1))
    assert last["expected_done_hours"] == pytest.approx(expected_wait_hours(3, 4.0, 1))
    assert staffed.iloc[-1]["agents"] == 3
    assert staffed.iloc[-1]["breach_risk"] < last["breach_risk"]
    assert alone["breach_risk_model"].isna().all()


def test_a_state_team_overrides_the_scored_team() -> None:
    frame = backlog(open_frame(ticket("moved", state_team="billing"), ticket("stays")))
    assert dict(zip(frame["ticket_id"], frame["team"], strict=True)) == {"moved": "billing", "stays": "desk"}


class FittedModel:
    """A stand-in with the breach model's interface (`BreachModel.predict_risk`): the breach
    part fits the real one; here only the columns it is given are checked."""

    def __init__(self) -> None:
        self.seen: pd.DataFrame | None = None

    def predict_risk(self, frame: pd.DataFrame) -> np.ndarray:
        self.seen = frame
        return np.linspace(0.1, 0.9, len(frame))


def test_a_breach_model_adds_its_risk_from_the_breach_features() -> None:
    model = FittedModel()
    frame = backlog(open_frame(ticket("a", "P1"), ticket("b")), breach_model=model)
    assert list(frame["breach_risk_model"]) == pytest.approx([0.1, 0.9])
    assert model.seen is not None and tuple(model.seen.columns) == BREACH_FEATURES
    assert list(model.seen["plan"]) == ["enterprise", "enterprise"]
    assert list(model.seen["queue_length"]) == [0, 1]
    assert backlog_json(frame, now=NOW)["breach_model"] is True


def test_summary_counts_breached_and_at_risk_by_priority_and_team() -> None:
    frame = backlog(
        open_frame(
            ticket("late", "P1", first_response_due=NOW - timedelta(hours=1)),
            ticket(
                "fine",
                "P1",
                first_response_due=NOW + timedelta(days=5),
                resolution_due=NOW + timedelta(days=9),
            ),
            ticket("other", "P3", team="billing"),
        )
    )
    summary = {(row["priority"], row["team"]): row for row in summarise(frame)}
    assert summary[("P1", "desk")] == {
        "priority": "P1",
        "team": "desk",
        "tickets": 2,
        "breached": 1,
        "at_risk": 1,
    }
    assert summary[("P3", "billing")]["tickets"] == 1
    assert len(filtered(frame, team="billing")) == 1 and len(filtered(frame, priority="P1")) == 2
    figures = backlog_json(frame, now=NOW, limit=1)
    assert figures["open_tickets"] == 3 and len(figures["tickets"]) == 1
    assert figures["tickets"][0]["first_response_due"] == "2026-03-02T11:00:00Z"
    assert figures["breach_model"] is False


def test_an_empty_backlog() -> None:
    frame = backlog(open_frame())
    assert list(frame.columns) == list(BACKLOG_COLUMNS) and summarise(frame) == []
    assert backlog_json(frame, now=NOW)["tickets"] == []


def test_without_an_agents_file_every_team_has_one_agent() -> None:
    assert team_agents(None) == {}


def test_the_expected_first_response_tells_the_truth_past_the_deadline() -> None:
    within = expected_first_response(
        now=NOW, first_response_due=NOW + timedelta(hours=4), queue_ahead=2, median_response_hours=1, agents=2
    )
    assert within.at == NOW + timedelta(hours=2) and not within.at_risk
    assert within.sentence == "We expect to reply within about 2 hours (by 14:00 UTC on 2 March 2026)."
    late = expected_first_response(
        now=NOW, first_response_due=NOW + timedelta(hours=1), queue_ahead=5, median_response_hours=1, agents=1
    )
    assert late.at == NOW + timedelta(hours=6) and late.at_risk  # later than the deadline, said so
    assert customer_sentence(NOW + timedelta(minutes=12), NOW).startswith(
        "We expect to reply within about 15 minutes"
    )
    assert "3 days" in customer_sentence(NOW + timedelta(hours=50), NOW)


def test_queues_count_the_teams_open_tickets_before_a_new_one() -> None:
    snapshot = queues(
        open_frame(ticket("a", "P1"), ticket("b", "P3"), ticket("c", "P2", team="billing")),
        pd.DataFrame([closed("desk", 5, 0.5)]),
        levels=LEVELS,
        now=NOW,
        agents={},
        window_days=30,
        default_response_hours=3.0,
    )
    new_key = (1, (NOW + timedelta(hours=1)).timestamp(), NOW.timestamp())  # a P2
    assert snapshot.ahead("desk", "new", new_key) == 1  # the P1, not the P3
    assert snapshot.ahead("desk", "a", (0, 0.0, 0.0)) == 0  # a ticket never waits behind itself
    key_of_a = snapshot.keys["desk"]["a"]
    assert snapshot.ahead("desk", "a", key_of_a) == 0  # scored again: not behind itself
    assert snapshot.ahead("desk", "twin", key_of_a) == 1  # the same key: "a" was there first
    assert snapshot.ahead("nobody", "x", key_of_a) == 0
    assert snapshot.response("desk") == (pytest.approx(0.5), "history")
    assert snapshot.response("billing") == (3.0, "default")


# ---------------------------------------------------------------------------------------------
# Properties

hours = st.floats(min_value=0.01, max_value=1_000, allow_nan=False)
queue = st.integers(min_value=0, max_value=500)
agents = st.integers(min_value=1, max_value=50)


@given(hours, hours, queue, hours, agents)
def test_risk_is_a_probability_falling_with_time_left(
    left: float, more: float, ahead: int, median: float, staff: int
) -> None:
    risk = rules_risk(left, ahead, median, staff)
    later = rules_risk(left + more, ahead, median, staff)
    assert 0.0 <= later <= risk <= 1.0


@given(hours, queue, st.integers(min_value=1, max_value=50), hours, agents)
def test_risk_rises_with_the_queue(left: float, ahead: int, more: int, median: float, staff: int) -> None:
    assert rules_risk(left, ahead, median, staff) <= rules_risk(left, ahead + more, median, staff) <= 1.0


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=1, max_value=12), st.floats(min_value=0.5, max_value=48), agents)
def test_in_one_team_with_one_deadline_the_risk_rises_along_the_queue(
    size: int, due_hours: float, staff: int
) -> None:
    due = NOW + timedelta(hours=due_hours)
    rows = [
        ticket(f"t{i:02d}", first_response_due=due, created_at=NOW - timedelta(minutes=size - i))
        for i in range(size)
    ]
    frame = backlog(open_frame(*rows), agents={"desk": staff})
    risks = list(frame["breach_risk"])
    assert list(frame["queue_ahead"]) == list(range(size))
    assert all(0 <= risk <= 1 for risk in risks)
    assert risks == sorted(risks)


@given(queue, st.integers(min_value=1, max_value=50), hours, agents)
def test_the_expected_first_response_moves_later_with_the_queue(
    ahead: int, more: int, median: float, staff: int
) -> None:
    first = expected_first_response(
        now=NOW, first_response_due=None, queue_ahead=ahead, median_response_hours=median, agents=staff
    )
    second = expected_first_response(
        now=NOW, first_response_due=None, queue_ahead=ahead + more, median_response_hours=median, agents=staff
    )
    assert NOW <= first.at <= second.at and not first.at_risk
