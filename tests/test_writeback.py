"""Write-back (`urgency.writeback`): the calls per helpdesk, the back-off, and `drain` against a
fake helpdesk server (a real process on loopback) with a store in SQLite."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.serve.test_helpdesk_live import CREDENTIALS, fake_helpdesk
from urgency.store import Store, make_engine, outbox, upgrade
from urgency.writeback import FIRST_RETRY, LONGEST_RETRY, MAX_ATTEMPTS, calls_for, drain, retry_delay

VALUES = {
    "priority": "urgent",
    "group": "12",
    "tags": ["urgency-p1", "urgency-team-desk"],
    "note": "urgency: P1",
}
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_each_helpdesk_gets_its_own_calls() -> None:
    zendesk = calls_for("zendesk", "5", VALUES)
    assert [(call.method, call.path) for call in zendesk] == [("PUT", "/api/v2/tickets/5.json")]
    assert (
        zendesk[0].json["ticket"]["group_id"] == 12
        and zendesk[0].json["ticket"]["additional_tags"] == VALUES["tags"]
    )
    freshdesk = calls_for("freshdesk", "5", VALUES)
    assert freshdesk[0].json["priority"] == 4 and freshdesk[1].json == {
        "body": "urgency: P1",
        "private": True,
    }
    zammad = calls_for("zammad", "5", VALUES)
    assert len(zammad) == 1 + len(VALUES["tags"]) and zammad[1].json["o_id"] == 5  # Zammad's ids are numbers
    unmapped = calls_for("jira", "SUP-1", {**VALUES, "priority": None})
    assert unmapped[0].json["fields"] == {}  # a priority the mapping lacks is not written


def test_a_ticket_id_is_one_path_segment() -> None:
    assert calls_for("zammad", "7?x=1#y", VALUES)[0].path == "/api/v1/tickets/7%3Fx%3D1%23y"
    assert (
        calls_for("zendesk", "1/../../users/5", VALUES)[0].path
        == "/api/v2/tickets/1%2F..%2F..%2Fusers%2F5.json"
    )


def test_back_off_doubles_and_honours_retry_after() -> None:
    assert retry_delay(0, None, NOW) == FIRST_RETRY
    assert retry_delay(3, None, NOW) == FIRST_RETRY * 8
    assert retry_delay(40, None, NOW) == LONGEST_RETRY
    assert retry_delay(0, "120", NOW) == timedelta(seconds=120)
    assert retry_delay(0, "Mon, 02 Mar 2026 09:05:00 GMT", NOW) == timedelta(minutes=5)
    assert retry_delay(5, "1", NOW) == FIRST_RETRY * 32  # never sooner than the back-off
    assert retry_delay(0, "9" * 40, NOW) == LONGEST_RETRY  # an absurd ask is capped, not an overflow


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Each store in turn: the outbox's claims must hold on both."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database(f"outbox_{uuid.uuid4().hex[:12]}")
    engine = make_engine(url)
    upgrade(engine)
    return Store(engine)


def queue(store: Store, helpdesk: str, ticket_id: str) -> None:
    delivery = {
        "helpdesk": helpdesk,
        "delivery_id": f"d-{ticket_id}",
        "ticket_id": ticket_id,
        "kind": "created",
    }
    assert store.record_delivery({**delivery, "received_at": NOW, "outcome": {}}, write_back=VALUES)


def test_drain_sends_retries_and_gives_up_on_a_refusal(store: Store) -> None:
    with fake_helpdesk() as fake, httpx.Client() as client:
        urls = dict.fromkeys(CREDENTIALS, fake)
        queue(store, "zendesk", "1")
        queue(store, "freshdesk", "2")
        wrong = {**CREDENTIALS, "freshdesk": "not-the-key"}
        assert drain(store, client, urls, wrong, NOW) == {"done": 1, "retry": 0, "failed": 1}
        by_ticket = {row["ticket_id"]: row for row in store.rows(outbox)}
        assert by_ticket["1"]["status"] == "done"
        assert by_ticket["2"]["status"] == "failed" and "HTTP 401" in by_ticket["2"]["last_error"]
        # Down: retried later, not sooner; up again: sent.
        queue(store, "zammad", "3")
        httpx.post(f"{fake}/_down", json={"down": True})
        assert drain(store, client, urls, CREDENTIALS, NOW)["retry"] == 1
        assert drain(store, client, urls, CREDENTIALS, NOW) == {"done": 0, "retry": 0, "failed": 0}
        httpx.post(f"{fake}/_down", json={"down": False})
        # A minute on: well past the back-off, which counts from when the round sent the write.
        assert drain(store, client, urls, CREDENTIALS, NOW + timedelta(minutes=1))["done"] == 1
        assert [row["attempts"] for row in store.rows(outbox)] == [1, 1, 2]


def test_a_write_is_given_up_after_its_last_attempt(store: Store) -> None:
    with fake_helpdesk() as fake, httpx.Client() as client:
        httpx.post(f"{fake}/_down", json={"down": True})
        queue(store, "jira", "SUP-9")
        moment = NOW
        for _ in range(MAX_ATTEMPTS):
            drain(store, client, {"jira": fake}, CREDENTIALS, moment)
            moment += LONGEST_RETRY + timedelta(minutes=1)  # past the longest back-off
        (row,) = store.rows(outbox)
        assert (row["status"], row["attempts"]) == ("failed", MAX_ATTEMPTS)


def test_a_claimed_write_is_not_sent_twice_until_its_lease_ends(store: Store) -> None:
    """Two worker processes look at the outbox at once: each write goes to one of them; a write
    whose sender died is taken again once its claim has run out."""
    for ticket in ("1", "2", "3"):
        queue(store, "zendesk", ticket)
    first = store.claim_writes(NOW, timedelta(seconds=60), limit=2)
    second = store.claim_writes(NOW, timedelta(seconds=60), limit=5)
    assert [row["ticket_id"] for row in first] == ["1", "2"]
    assert [row["ticket_id"] for row in second] == ["3"]
    assert store.claim_writes(NOW + timedelta(seconds=59), timedelta(seconds=60)) == []
    # The first claimant died without finishing: after the lease, its writes are due again.
    again = store.claim_writes(NOW + timedelta(seconds=61), timedelta(seconds=60))
    assert sorted(row["ticket_id"] for row in again) == ["1", "2", "3"]


def test_the_assignee_is_written_in_each_helpdesks_field() -> None:
    # The agent's user id in that helpdesk (agents file `helpdesk_ids`), from `urgency.assignment`.
    zendesk = calls_for("zendesk", "5", {**VALUES, "assignee": "9001"})
    assert zendesk[0].json["ticket"]["assignee_id"] == 9001
    freshdesk = calls_for("freshdesk", "5", {**VALUES, "assignee": "77"})
    assert freshdesk[0].json["responder_id"] == 77
    zammad = calls_for("zammad", "5", {**VALUES, "assignee": "3"})
    assert zammad[0].json["owner_id"] == 3
    jira = calls_for("jira", "SUP-1", {**VALUES, "assignee": "5b10a2844c20165700ede21g"})
    assert jira[0].json["fields"]["assignee"] == {"accountId": "5b10a2844c20165700ede21g"}
    # No assignee (none chosen, or no id in that helpdesk): the fields are left alone.
    assert "assignee_id" not in calls_for("zendesk", "5", VALUES)[0].json["ticket"]
    assert "responder_id" not in calls_for("freshdesk", "5", VALUES)[0].json
    assert "owner_id" not in calls_for("zammad", "5", VALUES)[0].json
    assert "assignee" not in calls_for("jira", "SUP-1", VALUES)[0].json["fields"]
