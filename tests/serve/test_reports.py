"""GET /v1/reports/agreement: the agreement page over the service's own store (admin scope)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from serve.app import create_app
from serve.settings import ApiKey, hash_key
from tests.serve_helpers import ALL, TICKET, settings

ADMIN = "admin-key-0123456789"
SCORER = "scorer-key-0123456789"
KEYS = (
    ApiKey(name="ops", sha256=hash_key(ADMIN), scopes=("admin",)),
    ApiKey(name="helpdesk", sha256=hash_key(SCORER), scopes=("score", "feedback")),
)


def score_and_decide(client: TestClient, headers: dict[str, str]) -> None:
    """Three tickets scored; agents decide on two of them (one agrees on urgency, one does not)."""
    for number, body in enumerate(["production broken critical outage", "question about invoice", "slow"]):
        ticket = {**TICKET, "ticket_id": f"T-{number}", "body": body, "fields": {"plan": "enterprise"}}
        assert client.post("/v1/score", json=ticket, headers=headers).status_code == 200
    for ticket, urgency in (("T-0", "high"), ("T-1", "high")):
        event = {"ticket_id": ticket, "event_id": "e-1", "urgency": urgency, "priority": "P2"}
        assert client.post("/v1/feedback", json=event, headers=headers).status_code == 200


def test_the_report_page_over_the_store(client: TestClient) -> None:
    score_and_decide(client, ALL)
    response = client.get("/v1/reports/agreement", headers=ALL)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "Model vs agent agreement" in page
    assert "2 decided ticket(s)" in page  # T-2 was never decided
    assert page.count('<img src="data:image/svg+xml;base64,') >= 4
    # T-0 reads "high" (the tiny model is sure), T-1 reads "low": one of two agree on urgency.
    assert '<td class="text">urgency</td><td>2</td><td>0</td>\n      <td>50.0%</td>' in page


def test_the_report_needs_the_admin_scope(service_params: Path, tmp_path: Path) -> None:
    app = create_app(
        settings(service_params, f"sqlite:///{tmp_path / 'service.db'}", mode="production", api_keys=KEYS)
    )
    with TestClient(app) as client:
        score_and_decide(client, {"X-API-Key": SCORER})
        assert client.get("/v1/reports/agreement").status_code == 401
        forbidden = client.get("/v1/reports/agreement", headers={"X-API-Key": SCORER})
        assert forbidden.status_code == 403 and "lacks the 'admin' scope" in forbidden.text
        assert client.get("/v1/reports/agreement", headers={"X-API-Key": ADMIN}).status_code == 200


def test_an_empty_period_and_bad_dates(client: TestClient) -> None:
    score_and_decide(client, ALL)
    empty = client.get("/v1/reports/agreement?since=2001-01-01&until=2001-12-31", headers=ALL)
    assert empty.status_code == 404
    assert "no decided tickets from 2001-01-01 to 2001-12-31" in empty.json()["detail"]
    bad = client.get("/v1/reports/agreement?since=yesterday", headers=ALL)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "since"]
    backwards = client.get("/v1/reports/agreement?since=2026-02-01&until=2026-01-01", headers=ALL)
    assert backwards.status_code == 422 and backwards.json()["detail"][0]["loc"] == ["query", "until"]
    # Today is inside a period that ends today: `until` includes the day it names.
    from datetime import UTC, datetime

    today = datetime.now(UTC).date().isoformat()
    assert client.get(f"/v1/reports/agreement?since={today}&until={today}", headers=ALL).status_code == 200


def test_a_bad_date_is_not_echoed_back(client: TestClient) -> None:
    for query in ("since=secret-token-123", "until=secret-token-123", "since=2026-01-01&until=2025-secret"):
        bad = client.get(f"/v1/reports/agreement?{query}", headers=ALL)
        assert bad.status_code == 422 and "secret" not in bad.text, bad.text
    backwards = client.get("/v1/reports/agreement?since=2026-02-01&until=2026-01-01", headers=ALL)
    assert backwards.status_code == 422 and "2026-01-01" not in backwards.text
