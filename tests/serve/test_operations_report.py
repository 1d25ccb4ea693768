"""GET /v1/reports/operations: the operations page over the service's own store (admin scope),
with the real app: tickets scored, decided and moved through the API; the first assignment written
into the store as the assignment step does; states and CSAT by feedback events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from serve.app import create_app
from tests.serve.test_reports import ADMIN, KEYS, SCORER
from tests.serve_helpers import ALL, TICKET, settings
from urgency.store import Store, make_engine, ticket_states

NOW = datetime.now(UTC)


def fill(client: TestClient, database: str) -> None:
    """Four tickets scored; agents decide on three (answered, resolved); T-0, assigned to ann in
    desk (as the assignment step stores it), is moved to bob in triage by a feedback event (the
    service records the reassignment) and solved with a CSAT of 5 of 5 (a status event); the
    fourth is open (a status event)."""
    for number, body in enumerate(
        ["production broken critical outage", "question about invoice", "slow", "help"]
    ):
        ticket = {**TICKET, "ticket_id": f"T-{number}", "body": body, "created_at": "2026-03-04T09:00:00Z"}
        assert client.post("/v1/score", json=ticket, headers=ALL).status_code == 200
    engine = make_engine(database)
    moment = datetime(2026, 3, 4, 9, 5, tzinfo=UTC)
    Store(engine).record_assignments(
        [
            {"ticket_id": "T-0", "assigned_at": moment, "agent": "ann", "team": "desk", "priority": "P2",
             "strategy": "least-loaded", "reassignment": False, "previous_agent": None,
             "previous_team": None, "source": "assignment", "explanation": "least-loaded: ann"},
        ]
    )  # fmt: skip
    for number in range(3):
        event = {
            "ticket_id": f"T-{number}",
            "event_id": "e-1",
            "agent": "ann",
            "category": "Access",
            "first_response_at": "2026-03-04T10:00:00Z",
            "resolved_at": "2026-03-05T09:00:00Z",
        }
        if number == 0:
            event.update(assignee="bob", team="triage")
        assert client.post("/v1/feedback", json=event, headers=ALL).status_code == 200
    # The helpdesk's status events: T-0 solved with a CSAT of 5 of 5, T-3 open with cy in desk.
    for event in (
        {"ticket_id": "T-0", "event_id": "solved", "status": "solved", "csat": "5/5"},
        {"ticket_id": "T-3", "event_id": "open", "status": "open", "assignee": "cy", "team": "desk"},
    ):
        assert client.post("/v1/feedback", json=event, headers=ALL).status_code == 200
    engine.dispose()


def test_the_operations_page_over_the_store(any_client: TestClient, any_database: str) -> None:
    fill(any_client, any_database)
    response = any_client.get("/v1/reports/operations", headers=ALL)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "Support operations" in page
    assert "3 closed ticket(s)" in page and "1 open as of" in page
    # T-0 moved from desk to triage (the others have no assignment records).
    assert "<b>100.0%</b> of 1 closed tickets whose assignments are known were" in page
    assert '<td class="text">desk</td><td class="text">triage</td><td>1</td>' in page
    # Its customer's score, the one CSAT response.
    assert "<b>100.0%</b> of 1 responses satisfied" in page
    assert page.count('<img src="data:image/svg+xml;base64,') >= 8
    assert "<script" not in page


def test_the_operations_page_needs_the_admin_scope_and_good_dates(
    service_params: Path, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'service.db'}"
    app = create_app(settings(service_params, database, mode="production", api_keys=KEYS))
    with TestClient(app) as client:
        # Nothing stored yet: nothing to report.
        empty = client.get("/v1/reports/operations", headers={"X-API-Key": ADMIN})
        assert empty.status_code == 404 and "nothing to report" in empty.json()["detail"]
        for number in range(2):
            ticket = {**TICKET, "ticket_id": f"T-{number}"}
            assert client.post("/v1/score", json=ticket, headers={"X-API-Key": SCORER}).status_code == 200
        event = {"ticket_id": "T-0", "event_id": "e-1", "resolved_at": "2026-03-03T09:00:00Z"}
        assert client.post("/v1/feedback", json=event, headers={"X-API-Key": SCORER}).status_code == 200
        assert client.get("/v1/reports/operations").status_code == 401
        forbidden = client.get("/v1/reports/operations", headers={"X-API-Key": SCORER})
        assert forbidden.status_code == 403 and "lacks the 'admin' scope" in forbidden.text
        page = client.get("/v1/reports/operations", headers={"X-API-Key": ADMIN})
        assert page.status_code == 200
        # Without CSAT the section says why; T-1, scored and never resolved, is open.
        assert "Nothing to show: no CSAT in the input" in page.text
        assert "1 closed ticket(s)" in page.text and "1 open as of" in page.text
        bad = client.get("/v1/reports/operations?since=secret-token", headers={"X-API-Key": ADMIN})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "since"]
        assert "secret" not in bad.text
        assert json.loads(bad.text)["detail"]


def test_a_period_selects_the_closed_tickets(client: TestClient, database: str) -> None:
    fill(client, database)
    inside = client.get("/v1/reports/operations?since=2026-03-01&until=2026-03-31", headers=ALL)
    assert inside.status_code == 200 and "3 closed ticket(s)" in inside.text
    # Scored today, so outside March: the open T-3 is still reported.
    outside = client.get("/v1/reports/operations?since=2001-01-01&until=2001-01-31", headers=ALL)
    assert outside.status_code == 200 and "0 closed ticket(s)" in outside.text
    assert "Nothing to show: no closed tickets in the period" in outside.text
    with make_engine(database).connect() as connection:
        # Every scored ticket has a state (scoring opens it, feedback moves it).
        assert connection.execute(sa.select(sa.func.count()).select_from(ticket_states)).scalar_one() == 4
