"""`urgency report backlog`: the open backlog read from a store, printed and written."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from tests.cli import invoke
from urgency.store import Store, make_engine, upgrade

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def store_with_tickets(url: str) -> None:
    engine = make_engine(url)
    upgrade(engine)
    store = Store(engine)
    store.record_predictions(
        [
            {
                "ticket_id": ticket_id,
                "scored_at": NOW - timedelta(hours=2),
                "created_at": NOW - timedelta(hours=2),
                "fields": {"plan": "free"},
                "priority": priority,
                "team": "desk",
                "needs_human_triage": False,
                "first_response_due": NOW + timedelta(hours=hours),
                "resolution_due": NOW + timedelta(hours=24),
                "decision": {},
                "model_versions": {},
            }
            for ticket_id, priority, hours in (("late", "P1", -1), ("soon", "P2", 1), ("done", "P3", 5))
        ]
    )
    store.record_feedback({"ticket_id": "done", "event_id": "e1", "status": "solved", "decided_at": NOW})
    engine.dispose()


def test_report_backlog_prints_and_writes_json_and_csv(service_params: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'service.db'}"
    store_with_tickets(url)
    output = tmp_path / "backlog.json"
    common = ("--params", str(service_params), "--database-url", url, "--now", "2026-03-02T12:00:00")
    result = invoke("report", "backlog", *common, "--output", str(output))
    assert result.exit_code == 0, result.output
    assert "2 open tickets" in result.output and "late" in result.output
    figures = json.loads(output.read_text())
    assert [row["ticket_id"] for row in figures["tickets"]] == ["late", "soon"]
    assert figures["tickets"][0]["breach_risk"] == 1.0 and figures["tickets"][0]["hours_left"] == -1.0
    assert figures["summary"][0] == {
        "priority": "P1",
        "team": "desk",
        "tickets": 1,
        "breached": 1,
        "at_risk": 1,
    }
    table = tmp_path / "backlog.csv"
    assert invoke("report", "backlog", *common, "--output", str(table)).exit_code == 0
    assert list(pd.read_csv(table)["ticket_id"]) == ["late", "soon"]


def test_report_backlog_refuses_a_missing_store_and_another_format(
    service_params: Path, tmp_path: Path
) -> None:
    missing = invoke(
        "report", "backlog", "-p", str(service_params), "--database-url", f"sqlite:///{tmp_path / 'no.db'}"
    )
    assert missing.exit_code != 0 and "no store at" in missing.output
    wrong = invoke("report", "backlog", "-p", str(service_params), "--output", str(tmp_path / "b.html"))
    assert wrong.exit_code == 2 and ".json or a .csv" in wrong.output
