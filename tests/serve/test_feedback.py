"""POST /v1/feedback: idempotent by (ticket_id, event_id), checked against the served labels."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.serve_helpers import ALL, rows
from urgency.store import feedback


def test_feedback_is_idempotent_and_checked(client: TestClient, database: str) -> None:
    event = {"ticket_id": "T-1", "event_id": "e-1", "urgency": "low", "priority": "P3", "agent": "maria"}
    first = client.post("/v1/feedback", json=event, headers=ALL)
    assert first.status_code == 200 and first.json()["stored"] is True
    retry = client.post("/v1/feedback", json=event, headers=ALL)
    assert retry.status_code == 200 and retry.json()["stored"] is False
    conflict = client.post("/v1/feedback", json={**event, "urgency": "high"}, headers=ALL)
    assert conflict.status_code == 409 and "different content" in conflict.json()["detail"]
    unknown = client.post("/v1/feedback", json={**event, "event_id": "e-2", "urgency": "urgent"}, headers=ALL)
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["body", "urgency"]
    empty = client.post("/v1/feedback", json={"ticket_id": "T-1", "event_id": "e-3"}, headers=ALL)
    assert empty.status_code == 422 and "at least one of" in empty.text
    stored = rows(database, feedback)
    assert [(r["event_id"], r["urgency"], r["priority"]) for r in stored] == [("e-1", "low", "P3")]


def test_a_decision_from_the_future_is_refused(client: TestClient, database: str) -> None:
    """A decided_at far ahead would outrank every real later event of the ticket's state."""
    future = {
        "ticket_id": "T-1",
        "event_id": "e-9",
        "status": "pending",
        "decided_at": "2999-01-01T00:00:00Z",
    }
    answer = client.post("/v1/feedback", json=future, headers=ALL)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "decided_at"]
    assert "in the future" in answer.json()["detail"][0]["msg"]
    assert rows(database, feedback) == []
