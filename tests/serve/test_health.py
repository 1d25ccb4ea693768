"""Probes and metrics: /health/live, /health/ready, /metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from serve.app import create_app
from tests.serve_helpers import ALL, TICKET, settings


def test_health_and_metrics(client: TestClient) -> None:
    assert client.get("/health/live").json()["status"] == "ok"
    assert client.get("/health/ready").json() == {
        "status": "ok",
        "models": True,
        "database": True,
        "detail": None,
    }
    client.post("/v1/score", json=TICKET, headers=ALL)
    client.post("/v1/score", json={"ticket_id": "T-9", "body": "zzz qqq"}, headers=ALL)
    text = client.get("/metrics").text
    assert 'urgency_requests_total{method="POST",route="/v1/score",status="200"} 2.0' in text
    assert 'urgency_predictions_total{head="urgency",label="high"}' in text
    assert "urgency_scored_tickets_total 2.0" in text
    assert "urgency_triage_rate 0.5" in text
    assert 'urgency_request_seconds_bucket{le="0.005",route="/v1/score"}' in text
    assert 'urgency_model_version_info{head="urgency",version="1"} 1.0' in text


def test_ready_fails_when_the_database_goes_away(service_params: Path, postgres: Any) -> None:
    import psycopg

    url = postgres.create_database("ready_check")
    with TestClient(create_app(settings(service_params, url))) as client:
        assert client.get("/health/ready").status_code == 200
        with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres", autocommit=True) as conn:
            conn.execute('DROP DATABASE "ready_check" WITH (FORCE)')
        response = client.get("/health/ready")
        assert response.status_code == 503
        assert response.json()["database"] is False and response.json()["models"] is True


def test_made_up_methods_and_paths_do_not_grow_the_metrics(client: TestClient) -> None:
    def series() -> int:
        return sum(1 for line in client.get("/metrics").text.splitlines() if line.startswith("urgency_"))

    def attack(index: int) -> None:
        client.request(f"MADEUP{index}", "/v1/score")
        client.request(f"X{index}", f"/no/such/path/{index}")
        client.get(f"/nowhere/{index}")

    attack(-1)  # every label value seen once
    series()  # and the scrape's own
    before = series()
    for index in range(40):
        attack(index)
    text = client.get("/metrics").text
    assert series() == before
    assert 'method="OTHER"' in text and 'route="unmatched"' in text
    assert "MADEUP" not in text and "/no/such" not in text
