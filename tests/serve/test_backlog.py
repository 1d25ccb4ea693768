"""The backlog part in the service: feedback status / assignee / CSAT, the expected first
response in the score answer, GET /v1/backlog; on both stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from tests.serve_helpers import ALL, TICKET, rows
from urgency.store import feedback, ticket_states


def score(client: TestClient, ticket_id: str, **fields: object) -> dict:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {**TICKET, "ticket_id": ticket_id, "created_at": now, "fields": {**TICKET["fields"], **fields}}
    answer = client.post("/v1/score", json=body, headers=ALL)
    assert answer.status_code == 200, answer.text
    return answer.json()


def send(client: TestClient, **event: object) -> dict:
    answer = client.post("/v1/feedback", json={"ticket_id": "T-1", "event_id": "e1", **event}, headers=ALL)
    return {"status": answer.status_code, "body": answer.json()}


def test_feedback_takes_status_assignee_and_csat(any_client: TestClient, any_database: str) -> None:
    score(any_client, "T-1")
    assert send(any_client, status="open", assignee="maria", csat="4/5")["status"] == 200
    stored = rows(any_database, feedback)[0]
    assert (stored["status"], stored["assignee"], stored["csat"]) == ("open", "maria", 0.75)
    state = rows(any_database, ticket_states)[0]
    assert (state["status"], state["assignee"], state["team"]) == ("open", "maria", "desk")
    # The same event again is a retry; "good" and 0.9 are CSATs too.
    assert send(any_client, status="open", assignee="maria", csat="4/5")["body"]["stored"] is False
    assert send(any_client, event_id="e2", csat="good")["status"] == 200
    assert send(any_client, event_id="e3", csat=0.9)["status"] == 200


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"csat": 4}, "csat"),
        ({"csat": "great"}, "csat"),
        ({"status": "archived"}, "status"),
        ({"assignee": ""}, "assignee"),
    ],
)
def test_feedback_refuses_a_bad_operations_value_naming_it(
    client: TestClient, event: dict, field: str
) -> None:
    answer = client.post("/v1/feedback", json={"ticket_id": "T-1", "event_id": "e1", **event}, headers=ALL)
    assert answer.status_code == 422, answer.text
    assert field in str(answer.json()["detail"])


def test_a_score_says_when_the_customer_can_expect_an_answer(client: TestClient, database: str) -> None:
    client.app.state.service.queue_seconds = 0  # read the queue on every request
    first = score(client, "T-1")
    expected = datetime.fromisoformat(first["expected_first_response_at"].replace("Z", "+00:00"))
    assert expected > datetime.now(UTC)
    assert first["expected_first_response"].startswith("We expect to reply within about")
    assert isinstance(first["at_risk"], bool)
    assert [row["status"] for row in rows(database, ticket_states)] == ["new"]
    # Two more of the same priority and team: each waits behind the ones before it.
    second, third = score(client, "T-2"), score(client, "T-3")
    assert (
        first["expected_first_response_at"]
        < second["expected_first_response_at"]
        < third["expected_first_response_at"]
    )
    # Solved tickets leave the queue.
    for number, ticket_id in enumerate(("T-1", "T-2")):
        client.post(
            "/v1/feedback",
            json={"ticket_id": ticket_id, "event_id": f"s{number}", "status": "solved"},
            headers=ALL,
        )
    again = score(client, "T-4")
    assert again["expected_first_response_at"] < third["expected_first_response_at"]


def test_a_batch_queues_its_own_tickets(client: TestClient) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tickets = [{**TICKET, "ticket_id": f"B-{n}", "created_at": now} for n in range(3)]
    answer = client.post("/v1/score/batch", json={"tickets": tickets}, headers=ALL).json()["results"]
    assert len({result["expected_first_response_at"] for result in answer}) == 3


def test_the_backlog_lists_open_tickets_with_risk(any_client: TestClient) -> None:
    any_client.app.state.service.queue_seconds = 0
    for ticket_id in ("T-1", "T-2", "T-3"):
        score(any_client, ticket_id)
    any_client.post(
        "/v1/feedback", json={"ticket_id": "T-3", "event_id": "x", "status": "closed"}, headers=ALL
    )
    answer = any_client.get("/v1/backlog", headers=ALL)
    assert answer.status_code == 200, answer.text
    backlog = answer.json()
    assert backlog["open_tickets"] == 2 and backlog["breach_model"] is False
    assert [row["ticket_id"] for row in backlog["tickets"]] == ["T-1", "T-2"]
    first, second = backlog["tickets"]
    assert (first["queue_ahead"], second["queue_ahead"]) == (0, 1)
    assert 0 <= first["breach_risk"] <= second["breach_risk"] <= 1
    assert first["handling_from"] == "default" and first["agents"] == 1
    assert sum(row["tickets"] for row in backlog["summary"]) == 2
    limited = any_client.get("/v1/backlog", params={"limit": 1}, headers=ALL).json()
    assert limited["open_tickets"] == 2 and len(limited["tickets"]) == 1
    unknown = any_client.get("/v1/backlog", params={"team": "nobody"}, headers=ALL)
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["query", "team"]
    odd = any_client.get("/v1/backlog", params={"priority": "p4"}, headers=ALL)
    assert odd.status_code == 422 and "is not one of" in odd.json()["detail"][0]["msg"]
    priority = first["priority"]
    assert (
        any_client.get("/v1/backlog", params={"priority": priority}, headers=ALL).json()["open_tickets"] == 2
    )


def test_the_backlog_needs_an_admin_key(client: TestClient) -> None:
    assert client.get("/v1/backlog").status_code == 401
    assert client.get("/v1/backlog", params={"limit": 0}, headers=ALL).status_code == 422


def test_a_late_ticket_is_at_risk_and_breached(client: TestClient, database: str) -> None:
    # Created long ago: its deadlines have passed by the time it is scored.
    old = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {**TICKET, "ticket_id": "OLD", "created_at": old}
    answer = client.post("/v1/score", json=body, headers=ALL).json()
    if answer["first_response_due"] is None:
        pytest.skip("the service rules give this ticket no first-response deadline")
    assert answer["at_risk"] is True
    row = client.get("/v1/backlog", headers=ALL).json()["tickets"][0]
    assert row["hours_left"] < 0 and row["breach_risk"] == 1.0
