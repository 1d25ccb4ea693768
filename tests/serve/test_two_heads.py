"""The service of a helpdesk with urgency and category models only (no sentiment labels): it
loads the champions that exist, lists them, and answers with sentiment null - never an error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from serve.app import create_app
from tests.serve_helpers import ALL, TICKET, settings


def test_serves_the_heads_that_have_a_model(two_heads: dict[str, Any], tmp_path: Path) -> None:
    app = create_app(settings(two_heads["params_path"], f"sqlite:///{tmp_path / 'service.db'}"))
    with TestClient(app) as client:
        info = client.get("/v1/model", headers=ALL).json()
        assert {head["head"] for head in info["heads"]} == {"urgency", "category"}

        response = client.post("/v1/score", json=TICKET, headers=ALL)
        assert response.status_code == 200, response.text
        result = response.json()
        # The response schema keeps the sentiment fields, null: no sentiment model is served.
        assert result["sentiment"] is None and result["sentiment_confidence"] is None
        assert result["urgency"] == "high" and result["category"] is not None
        assert set(result["probabilities"]) == set(result["model_versions"]) == {"urgency", "category"}
        assert "sentiment" not in result["untrusted_heads"]
        assert "no sentiment model" in result["explanation_text"]

        batch = client.post(
            "/v1/score/batch", json={"tickets": [TICKET, {**TICKET, "ticket_id": "T-2"}]}, headers=ALL
        )
        assert batch.status_code == 200, batch.text
        assert all(item["sentiment"] is None for item in batch.json()["results"])

        event = {"ticket_id": "T-1", "event_id": "e-1", "urgency": "high", "priority": "P2"}
        assert client.post("/v1/feedback", json=event, headers=ALL).status_code == 200
        report = client.get("/v1/reports/agreement", headers=ALL)
        assert report.status_code == 200, report.text
        assert ">sentiment<" not in report.text
