"""POST /v1/score and /v1/score/batch: the decision, the stored prediction, the batch limit."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from serve.app import create_app
from tests.serve_helpers import ALL, TICKET, rows, settings
from urgency.store import predictions


def test_score_returns_the_decision_and_stores_it(client: TestClient, database: str) -> None:
    response = client.post("/v1/score", json=TICKET, headers=ALL)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["ticket_id"] == "T-1"
    assert result["urgency"] == "high" and result["urgency_confidence"] > 0.5
    assert set(result["probabilities"]) == {"urgency", "category", "sentiment"}
    assert abs(sum(result["probabilities"]["urgency"].values()) - 1) < 1e-6
    assert result["impact"] == "high"  # the service_down rule
    assert result["priority"] == "P1"
    assert result["first_response_due"] and result["resolution_due"]
    assert {step["stage"] for step in result["explanation"]} >= {"impact", "priority"}
    assert result["model_versions"] == {"urgency": "1", "category": "1", "sentiment": "1"}
    [stored] = rows(database, predictions)
    assert stored["ticket_id"] == "T-1" and stored["body"] == TICKET["body"]
    assert stored["priority"] == "P1" and stored["fields"] == TICKET["fields"]
    assert stored["decision"]["explanation_text"] == result["explanation_text"]


def test_an_unsure_ticket_goes_to_a_person(client: TestClient) -> None:
    result = client.post("/v1/score", json={"ticket_id": "T-9", "body": "zzz qqq"}, headers=ALL).json()
    assert result["needs_human_triage"] and result["team"] == "triage"
    assert "urgency" in result["untrusted_heads"]


def test_batch_scores_in_order_up_to_the_limit(service_params: Path, database: str) -> None:
    app = create_app(settings(service_params, database, max_batch=3))
    with TestClient(app) as client:
        tickets = [{**TICKET, "ticket_id": f"T-{n}"} for n in range(3)]
        tickets[1] = {"ticket_id": "T-1", "body": "question about invoice", "fields": {"plan": "free"}}
        response = client.post("/v1/score/batch", json={"tickets": tickets}, headers=ALL)
        assert response.status_code == 200, response.text
        assert [r["ticket_id"] for r in response.json()["results"]] == ["T-0", "T-1", "T-2"]
        assert response.json()["results"][1]["urgency"] == "low"
        too_many = client.post("/v1/score/batch", json={"tickets": tickets + tickets[:1]}, headers=ALL)
        assert too_many.status_code == 422
        assert too_many.json()["detail"][0]["loc"] == ["body", "tickets"]
        assert "at most 3 tickets" in too_many.json()["detail"][0]["msg"]
    assert len(rows(database, predictions)) == 3  # the refused batch stored nothing
