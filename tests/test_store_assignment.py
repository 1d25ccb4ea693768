"""The store's assignment section on SQLite and on a real PostgreSQL server: assignments, moves,
open load, availability."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from urgency.store import Store, assignments, feedback, make_engine, ticket_states, upgrade

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database(f"assign_{uuid.uuid4().hex[:12]}")
    engine = make_engine(url)
    upgrade(engine)
    yield Store(engine)
    engine.dispose()


def assigned(ticket_id: str, agent: str | None, team: str = "desk", priority: str = "P3", **row: Any) -> dict:
    return {
        "ticket_id": ticket_id,
        "assigned_at": row.pop("at", T0),
        "agent": agent,
        "team": team,
        "priority": priority,
        "strategy": "least-loaded",
        "reassignment": False,
        "previous_agent": None,
        "previous_team": None,
        "source": "api",
        "explanation": "least-loaded: ...",
        **row,
    }


def prediction(ticket_id: str, priority: str) -> dict:
    return {
        "ticket_id": ticket_id,
        "scored_at": T0,
        "fields": {},
        "priority": priority,
        "team": "desk",
        "needs_human_triage": False,
        "decision": {"priority": priority},
        "model_versions": {},
    }


def state(ticket_id: str, status: str, assignee: str | None = None) -> dict:
    return {
        "ticket_id": ticket_id,
        "status": status,
        "updated_at": T0,
        "assignee": assignee,
        "source": "zendesk",
    }


def test_open_load_counts_open_states_by_assignee_and_assigned_tickets_without_a_state(store: Store) -> None:
    store.record_assignments(
        [
            assigned("T-1", "ana", priority="P1"),
            assigned("T-2", "ana", priority="P2"),  # solved since: not counted
            assigned("T-3", "ben", priority="P3"),  # its state says the helpdesk gave it to cem
            assigned("T-4", None),  # waiting in the queue: nobody's
            assigned("T-1", "ana", priority="P2", at=T0 + timedelta(minutes=5)),  # the newest counts
        ]
    )
    with store.engine.begin() as connection:
        connection.execute(
            ticket_states.insert(),
            [
                state("T-2", "solved", "ana"),
                state("T-3", "open", "cem"),
                state("T-9", "pending", "9001"),  # never assigned by us: the prediction's priority
                state("T-8", "open", None),  # nobody's
                state("T-7", "new", "dan"),  # no prediction, no assignment: priority unknown
            ],
        )
    store.record_predictions([prediction("T-9", "P4")])  # after: scoring keeps a state it finds
    assert store.open_load() == {
        "ana": {"P2": 1},
        "cem": {"P3": 1},
        "9001": {"P4": 1},
        "dan": {"unknown": 1},
    }
    assert store.open_load(exclude=["T-1", "T-9"]) == {"cem": {"P3": 1}, "dan": {"unknown": 1}}


def test_the_last_assignment_and_each_teams_last_agent(store: Store) -> None:
    assert store.last_assignment("T-1") is None and store.last_agents_by_team() == {}
    store.record_assignments(
        [
            assigned("T-1", "ana"),
            assigned("T-2", "ben"),
            assigned("T-3", None),
            assigned("T-4", "felix", team="hardware"),
        ]
    )
    assert store.last_assignment("T-2")["agent"] == "ben"
    assert set(store.last_assignments(["T-1", "T-3", "T-404"])) == {"T-1", "T-3"}
    assert store.last_assignments([]) == {}
    assert store.last_agents_by_team() == {"desk": "ben", "hardware": "felix"}
    # A move by people is not the strategy's turn.
    store.record_move("T-1", agent="cem", team=None, at=T0, source="feedback")
    assert store.last_agents_by_team() == {"desk": "ben", "hardware": "felix"}


def test_a_move_is_recorded_only_when_the_agent_or_team_changes(store: Store) -> None:
    assert (
        store.record_move("T-1", agent="ben", team=None, at=T0, source="feedback") is None
    )  # never assigned
    store.record_assignments([assigned("T-1", "ana", priority="P2")])
    assert store.record_move("T-1", agent="ana", team="desk", at=T0, source="feedback") is None  # same
    moved = store.record_move("T-1", agent="ben", team=None, at=T0, source="zendesk", strategy="helpdesk")
    assert moved is not None and moved["explanation"] == "reassigned by zendesk: agent ana -> ben"
    to_team = store.record_move("T-1", agent=None, team="hardware", at=T0, source="feedback")
    assert to_team is not None
    assert to_team["explanation"] == "reassigned by feedback: team desk -> hardware, agent ben -> none"
    rows = store.rows(
        assignments,
        ["agent", "team", "priority", "strategy", "reassignment", "previous_agent", "previous_team"],
    )
    assert rows == [
        {"agent": "ana", "team": "desk", "priority": "P2", "strategy": "least-loaded", "reassignment": False,
         "previous_agent": None, "previous_team": None},
        {"agent": "ben", "team": "desk", "priority": "P2", "strategy": "helpdesk", "reassignment": True,
         "previous_agent": "ana", "previous_team": "desk"},
        {"agent": None, "team": "hardware", "priority": "P2", "strategy": "agent", "reassignment": True,
         "previous_agent": "ben", "previous_team": "desk"},
    ]  # fmt: skip


def test_availability_is_set_and_set_again(store: Store) -> None:
    assert store.availability() == {}
    store.set_availability("ana", False, source="api", at=T0)
    store.set_availability("ben", True, source="zendesk", at=T0)
    store.set_availability("ana", True, source="freshdesk", at=T0 + timedelta(hours=1))
    found = store.availability()
    assert {agent: (row["available"], row["source"]) for agent, row in found.items()} == {
        "ana": (True, "freshdesk"),
        "ben": (True, "zendesk"),
    }


def test_feedback_keeps_the_assignee_and_an_older_event_keeps_its_digest(store: Store) -> None:
    event = {"ticket_id": "T-1", "event_id": "e-1", "team": "desk"}
    assert store.record_feedback(event).stored
    assert not store.record_feedback({**event, "assignee": None}).stored  # no assignee: the same event
    assert store.record_feedback({**event, "event_id": "e-2", "assignee": "ana"}).stored
    assert [row["assignee"] for row in store.rows(feedback, ["assignee"])] == [None, "ana"]


def test_a_created_tickets_assignment_is_stored_with_its_delivery_once(store: Store) -> None:
    delivery = {
        "helpdesk": "zendesk",
        "delivery_id": "d-1",
        "ticket_id": "555",
        "kind": "created",
        "received_at": T0,
        "outcome": {},
    }
    assert store.record_delivery(delivery, assigned=[assigned("555", "ana", source="zendesk")])
    # The same delivery arriving twice at once: the second stores nothing, its assignment neither.
    assert not store.record_delivery(dict(delivery), assigned=[assigned("555", "ben", source="zendesk")])
    assert [(row["agent"], row["source"]) for row in store.rows(assignments)] == [("ana", "zendesk")]


def test_an_assignment_makes_its_agent_the_states_assignee(store: Store) -> None:
    """The helpdesk had given the ticket to ines; we assign it to liam: liam carries it (the
    open load counts the state's assignee first), however often it happens."""
    for number in range(3):
        ticket = f"T-{number}"
        store.record_feedback({"ticket_id": ticket, "event_id": "open", "status": "open", "assignee": "ines"})
        store.record_assignments([assigned(ticket, "liam", at=T0 + timedelta(days=365))])
    assert store.open_load() == {"liam": {"P3": 3}}
    states = {row["ticket_id"]: row for row in store.rows(ticket_states)}
    assert {row["assignee"] for row in states.values()} == {"liam"}


def test_one_assignment_round_at_a_time_across_processes(store: Store) -> None:
    """The lock a round holds is the store's (a file beside SQLite, an advisory lock on
    PostgreSQL), not the process's: a second holder waits until the first lets go."""
    import threading
    import time

    events: list[str] = []
    inside = threading.Event()

    def second() -> None:
        inside.wait(5)
        with store.assignment_lock():
            events.append("second in")

    other = threading.Thread(target=second)
    other.start()
    with store.assignment_lock():
        events.append("first in")
        inside.set()
        time.sleep(0.5)  # the second asks meanwhile and must wait
        events.append("first out")
    other.join(10)
    assert events == ["first in", "first out", "second in"]
