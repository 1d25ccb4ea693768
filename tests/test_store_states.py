"""The store's ticket states (the backlog part) on SQLite and on a real PostgreSQL server:
feedback status / assignee / CSAT, states opened by scoring, upserts safe under concurrency,
the open backlog and recent times read back."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from urgency.store import (
    OPEN_STATUSES,
    Store,
    feedback,
    make_engine,
    normalise_csat,
    upgrade,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database(f"states_{uuid.uuid4().hex[:12]}")
    engine = make_engine(url)
    upgrade(engine)
    yield Store(engine)
    engine.dispose()


def prediction(ticket_id: str, team: str = "desk", at: datetime = T0, **values: Any) -> dict[str, Any]:
    return {
        "ticket_id": ticket_id,
        "scored_at": at,
        "created_at": at - timedelta(minutes=5),
        "fields": {"plan": "free"},
        "priority": "P3",
        "team": team,
        "needs_human_triage": False,
        "first_response_due": at + timedelta(hours=4),
        "resolution_due": at + timedelta(hours=24),
        "decision": {"priority": "P3"},
        "model_versions": {"urgency": "1"},
        **values,
    }


def event(event_id: str, ticket_id: str = "T-1", minutes: int = 0, **values: Any) -> dict[str, Any]:
    return {
        "ticket_id": ticket_id,
        "event_id": event_id,
        "decided_at": T0 + timedelta(minutes=minutes),
        **values,
    }


def state(store: Store, ticket_id: str = "T-1") -> dict[str, Any] | None:
    found = store.ticket_state(ticket_id)
    return None if found is None else {k: found[k] for k in ("status", "team", "assignee", "source")}


def test_scoring_opens_a_state_once(store: Store) -> None:
    # One batch scoring a ticket twice: its last answer is its latest prediction.
    store.record_predictions([prediction("T-1", team="other"), prediction("T-1")])
    assert state(store) == {"status": "new", "team": "desk", "assignee": None, "source": "score"}
    store.record_predictions([prediction("T-1", team="other", at=T0 + timedelta(minutes=1))])
    assert state(store)["team"] == "desk"  # a state once opened is the agents' and helpdesk's
    store.record_feedback(event("e1", status="solved"))
    store.record_predictions([prediction("T-1", at=T0 + timedelta(hours=1))])  # scored again
    assert state(store)["status"] == "solved"  # scoring reopens nothing


def test_feedback_status_and_assignee_update_the_state(store: Store) -> None:
    store.record_predictions([prediction("T-1")])
    store.record_feedback(event("e1", minutes=10, status="open", assignee="maria"))
    assert state(store) == {"status": "open", "team": "desk", "assignee": "maria", "source": "feedback"}
    # A team alone moves the ticket, keeps its status and assignee.
    store.record_feedback(event("e2", minutes=20, team="billing"))
    assert state(store) == {"status": "open", "team": "billing", "assignee": "maria", "source": "feedback"}
    # An event decided earlier than the state, arriving late, changes nothing.
    store.record_feedback(event("e0", minutes=5, status="pending", assignee="late"))
    assert state(store)["status"] == "open" and state(store)["assignee"] == "maria"
    stored = {row["event_id"]: row for row in store.rows(feedback)}
    assert (stored["e1"]["status"], stored["e1"]["assignee"]) == ("open", "maria")


def test_a_decision_alone_opens_no_ticket(store: Store) -> None:
    store.record_feedback(event("e1", priority="P1", team="billing"))
    assert store.ticket_state("T-1") is None
    store.record_feedback(event("e2", minutes=1, status="pending"))
    assert state(store) == {"status": "pending", "team": None, "assignee": None, "source": "feedback"}


def test_a_reopened_ticket_waits_from_its_reopening(store: Store) -> None:
    store.set_state("T-1", at=T0, source="zendesk", status="open")
    store.set_state("T-1", at=T0 + timedelta(hours=1), source="zendesk", status="solved")
    store.set_state("T-1", at=T0 + timedelta(hours=2), source="zendesk", status="open")
    opened = store.ticket_state("T-1")["opened_at"]
    assert opened.replace(tzinfo=UTC) == T0 + timedelta(hours=2)
    store.set_state("T-1", at=T0 + timedelta(hours=3), source="zendesk", status="pending")
    assert store.ticket_state("T-1")["opened_at"].replace(tzinfo=UTC) == T0 + timedelta(hours=2)
    with pytest.raises(ValueError, match="not one of"):
        store.set_state("T-1", at=T0, source="x", status="archived")


def test_an_old_events_digest_is_unchanged(store: Store) -> None:
    """An event without the new keys has the digest it had before they existed, so a retry of
    an event stored by an older version is still a retry (not a conflict)."""
    old = event("e1", priority="P2", agent="maria")
    keys = ("decided_at", "agent", "urgency", "category", "sentiment", "priority", "team")
    content = {key: old.get(key) for key in (*keys, "first_response_at", "resolved_at")}
    content["decided_at"] = T0  # in UTC already
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()
    assert store.record_feedback(old).stored
    assert store.rows(feedback)[0]["content_digest"] == digest
    # The same event sent with the new keys unset (as the service's model_dump sends it).
    assert not store.record_feedback({**old, "status": None, "assignee": None, "csat": None}).stored
    # A new key set is part of the content: the same ids with a status are a conflict.
    with pytest.raises(Exception, match="different content"):
        store.record_feedback({**old, "status": "open"})


def test_concurrent_writers_upsert_one_state(store: Store) -> None:
    """Many events for a ticket with no state, at once: ON CONFLICT, so no writer fails on the
    primary key and one state remains (the newest event's)."""
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def write(number: int) -> None:
        try:
            start.wait()
            store.record_feedback(
                event(f"e{number}", minutes=number, status="open", assignee=f"agent{number}")
            )
        except BaseException as error:  # every failure is reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert state(store)["assignee"] == "agent7"
    assert len(store.rows(feedback)) == 8


def test_open_tickets_and_recent_times(store: Store) -> None:
    store.record_predictions([prediction("A"), prediction("B", team="billing"), prediction("C")])
    store.record_predictions([prediction("A", at=T0 + timedelta(minutes=30), priority="P1")])  # latest wins
    store.record_feedback(
        event("a1", "A", minutes=40, status="open", first_response_at=T0 + timedelta(minutes=40))
    )
    store.record_feedback(
        event(
            "c1",
            "C",
            minutes=180,
            status="solved",
            first_response_at=T0 + timedelta(minutes=20),
            resolved_at=T0 + timedelta(hours=3),
        )
    )
    open_now = store.open_tickets().set_index("ticket_id")
    assert sorted(open_now.index) == ["A", "B"]
    assert set(open_now["status"]) <= set(OPEN_STATUSES)
    assert open_now.loc["A", "priority"] == "P1"
    assert open_now.loc["A", "first_response_at"] is not None
    assert open_now.loc["B", "fields"] == {"plan": "free"}
    recent = store.recent_times(T0 - timedelta(days=30)).set_index("ticket_id")
    assert sorted(recent.index) == ["A", "C"]
    assert recent.loc["C", "team"] == "desk"
    assert store.recent_times(T0 + timedelta(days=1)).empty


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (0, 0.0),
        (1, 1.0),
        (0.8, 0.8),
        ("5/5", 1.0),
        ("4/5", 0.75),
        ("1/5", 0.0),
        ("good", 1.0),
        (" Bad ", 0.0),
    ],
)
def test_csat_normalises_onto_zero_to_one(given: Any, expected: float) -> None:
    assert normalise_csat(given) == expected


@pytest.mark.parametrize("given", [4, 1.5, -0.1, "6/5", "4/10", "great", True, "0/5"])
def test_csat_refuses_what_it_cannot_read(given: Any) -> None:
    with pytest.raises(ValueError, match=r"0\.\.1|1-5"):
        normalise_csat(given)
