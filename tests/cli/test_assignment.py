"""`urgency assign`: a queue `urgency score` wrote, assigned to agents; the load from the service's
store when there is one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.cli import invoke
from tests.conftest import write_params
from urgency.store import Store, make_engine, ticket_states, upgrade

AGENTS = [
    {"id": "ana", "teams": ["desk", "triage"], "calendar": "always", "max_open": 2, "languages": ["en"]},
    {"id": "ben", "teams": ["desk", "triage"], "calendar": "always", "max_open": 2, "languages": ["en"]},
    {"id": "nina", "teams": ["desk", "triage"], "calendar": "new-york", "max_open": 9, "languages": ["en"]},
]


@pytest.fixture
def project(service_params: Path, tmp_path: Path) -> dict[str, Any]:
    """The service tests' trained params with an agents file, and a queue `urgency score` wrote."""
    (tmp_path / "agents.yaml").write_text(yaml.safe_dump({"agents": AGENTS}))
    data = yaml.safe_load(service_params.read_text())
    data["operations"] = {"agents": "agents.yaml", "assignment_strategy": "round-robin"}
    params = write_params(tmp_path, data)
    tickets = tmp_path / "tickets.csv"
    pd.DataFrame(
        {
            "ticket_id": [f"A-{n}" for n in range(5)],
            "subject": ["server down", "invoice", "password", "printer", "laptop"],
            "body": [
                "production broken critical outage",
                "question about invoice",
                "reset please",
                "printer jammed",
                "laptop slow",
            ],
            "opened": ["2026-03-02T09:00:00Z"] * 5,
        }
    ).to_csv(tickets, index=False)
    queue = tmp_path / "queue.csv"
    scored = invoke(
        "score", "-p", str(params), "-i", str(tickets), "-o", str(queue), "--now", "2026-03-02T10:00"
    )
    assert scored.exit_code == 0, scored.output
    return {"params": params, "queue": queue, "folder": tmp_path}


def test_a_scored_queue_is_assigned_and_explained(project: dict[str, Any]) -> None:
    output = project["folder"] / "assigned.csv"
    # 10:00 UTC on a Monday: 05:00 in New York, nina is not working.
    result = invoke("assign", "-p", str(project["params"]), "-i", str(project["queue"]), "-o", str(output),
                    "--now", "2026-03-02T10:00")  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "4 of 5 tickets assigned (1 wait in their team's queue), load from zero (no store)" in text
    queue = pd.read_csv(project["queue"], keep_default_na=False)
    assigned = pd.read_csv(output, keep_default_na=False)
    assert list(assigned.columns) == [*queue.columns, "assignee", "assignment_explanation"]
    assert sorted(assigned["assignee"]) == ["", "ana", "ana", "ben", "ben"]  # max_open 2 each
    # Most urgent first: the ticket left waiting is one of the least urgent.
    waiting = assigned[assigned["assignee"] == ""].iloc[0]
    assert waiting["order_key"] == max(assigned["order_key"])
    assert "nina (outside working hours (new-york))" in waiting["assignment_explanation"]
    assert all(text.startswith("round-robin: ") for text in assigned["assignment_explanation"])


def test_the_load_starts_from_the_services_store(project: dict[str, Any]) -> None:
    engine = make_engine(f"sqlite:///{project['folder'] / 'data' / 'service.db'}")  # the default store
    upgrade(engine)
    from datetime import UTC, datetime

    at = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(
            ticket_states.insert(),
            [
                {
                    "ticket_id": "OLD-1",
                    "status": "open",
                    "updated_at": at,
                    "assignee": "ana",
                    "source": "zendesk",
                }
            ],
        )
    Store(engine).set_availability("ben", False, source="zendesk", at=at)
    engine.dispose()
    output = project["folder"] / "assigned.csv"
    result = invoke("assign", "-p", str(project["params"]), "-i", str(project["queue"]), "-o", str(output),
                    "--now", "2026-03-02T10:00", "--strategy", "least-loaded")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "load from the store sqlite:///" in " ".join(result.output.split())
    assigned = pd.read_csv(output, keep_default_na=False)
    assert sorted(assigned["assignee"]) == ["", "", "", "", "ana"]  # one place left; ben is switched off
    assert any("ben (switched off (zendesk))" in text for text in assigned["assignment_explanation"])


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["--strategy", "random"], "Invalid value for --strategy: use one of round-robin", 2),
        (["--agents", "missing.yaml"], "agents file not found", 3),
    ],
)
def test_wrong_options_say_why(project: dict[str, Any], args: list[str], message: str, code: int) -> None:
    output = project["folder"] / "assigned.csv"
    result = invoke(
        "assign", "-p", str(project["params"]), "-i", str(project["queue"]), "-o", str(output), *args
    )
    assert result.exit_code == code and message in " ".join(result.output.split()), result.output


def test_a_file_that_is_not_a_queue_is_refused(project: dict[str, Any]) -> None:
    raw = project["folder"] / "raw.csv"
    pd.DataFrame({"ticket_id": ["A-1"], "body": ["x"]}).to_csv(raw, index=False)
    result = invoke(
        "assign", "-p", str(project["params"]), "-i", str(raw), "-o", str(project["folder"] / "o.csv")
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 6 and "raw.csv lacks the column(s) priority, order_key, team" in text
