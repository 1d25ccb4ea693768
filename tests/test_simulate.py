"""The demo's simulated agents: held-back labels as the agents' values, seeded metadata."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from urgency.agreement import read_closed_tickets
from urgency.cli import app
from urgency.config import load_params
from urgency.data import configured_head_dataset, load_configured
from urgency.rules import load_rules
from urgency.simulate import COLUMNS, simulate_closed_tickets, write_closed_tickets

NOW = datetime(2026, 3, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def setup(service_params: Path, models: dict[str, Any]) -> dict[str, Any]:
    params = load_params(service_params)
    rules = load_rules(params.scoring.rules, category_labels=params.heads.category.labels)
    tickets = load_configured(params.data).tickets
    return {"params": params, "rules": rules, "tickets": tickets, "models": models}


def simulate(setup: dict[str, Any], **options: Any) -> pd.DataFrame:
    params = setup["params"]
    return simulate_closed_tickets(
        setup["models"], setup["rules"], setup["tickets"], params.data, params.splits, now=NOW, **options
    )


def test_agents_values_are_the_held_back_labels(setup: dict[str, Any]) -> None:
    closed = simulate(setup, rows=1000)
    params = setup["params"]
    assert list(closed.columns) == list(COLUMNS)
    assert closed["ticket_id"].is_unique
    for head in ("urgency", "category", "sentiment"):
        dataset = configured_head_dataset(setup["tickets"], head, params.data, params.splits)
        test = dataset[dataset["split"] == "test"].set_index("id")["label"]
        known = closed[closed[f"agent_{head}"].notna()].set_index("ticket_id")[f"agent_{head}"]
        # Every test ticket of the head is there (1000 is more than the tiny data holds), with
        # its true label, and no training ticket ever gets an agent's value.
        assert known.sort_index().to_dict() == test.sort_index().to_dict()
    # The agent's priority is set where the true urgency is known, and nowhere else.
    assert (closed["agent_priority"].notna() == closed["agent_urgency"].notna()).all()
    assert closed["agent_team"].notna().all()


def test_the_agents_priority_follows_the_rules_with_the_true_urgency(setup: dict[str, Any]) -> None:
    closed = simulate(setup, rows=1000)
    matrix = setup["rules"].spec.matrix
    decided = closed[closed["agent_urgency"].notna()]
    # The test rules have no priority rules and impact low for these tickets: the matrix decides.
    expected = [matrix[urgency]["low"] for urgency in decided["agent_urgency"]]
    assert decided["agent_priority"].tolist() == expected


def test_metadata_is_seeded_and_spread(setup: dict[str, Any]) -> None:
    first, again = simulate(setup, rows=20, seed=3), simulate(setup, rows=20, seed=3)
    pd.testing.assert_frame_equal(first, again)
    assert len(first) == 20
    assert not simulate(setup, rows=20, seed=4)["ticket_id"].equals(first["ticket_id"])
    closed = simulate(setup, rows=1000)
    created = pd.to_datetime(closed["created_at"], utc=True)
    assert created.min() >= NOW - timedelta(weeks=8) and created.max() <= NOW
    assert created.dt.isocalendar().week.nunique() >= 6
    assert set(closed["plan"]) == {"free", "standard", "premium", "enterprise"}
    answered = pd.to_datetime(closed["first_response_at"], utc=True)
    resolved = pd.to_datetime(closed["resolved_at"], utc=True)
    assert 0.85 < answered.notna().mean() < 1.0  # 5% have no response time recorded
    assert (answered.dropna() >= created[answered.notna()]).all()
    both = answered.notna() & resolved.notna()
    assert (resolved[both] >= answered[both]).all()
    due = pd.to_datetime(closed["first_response_due"], utc=True)
    judged = due.notna() & answered.notna()
    assert 0.6 < (answered[judged] <= due[judged]).mean() < 0.97  # around the deadlines


def test_the_file_is_a_valid_closed_tickets_csv(setup: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "closed.csv"
    write_closed_tickets(simulate(setup, rows=20), path)
    params = setup["params"]
    labels = {head: getattr(params.heads, head).labels for head in ("urgency", "category", "sentiment")}
    frame = read_closed_tickets(path, labels=labels, levels=setup["rules"].levels)
    assert len(frame) == 20


def test_demo_agents_then_report(service_params: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    closed = tmp_path / "data" / "closed.csv"
    made = runner.invoke(
        app, ["demo-agents", "--params", str(service_params), "--output", str(closed), "--rows", "40"]
    )
    assert made.exit_code == 0, made.output
    assert "closed tickets written" in made.output
    page = tmp_path / "report.html"
    reported = runner.invoke(
        app,
        [
            "report",
            "agreement",
            "--params",
            str(service_params),
            "--input",
            str(closed),
            "--output",
            str(page),
        ],
    )
    assert reported.exit_code == 0, reported.output
    assert page.exists()
