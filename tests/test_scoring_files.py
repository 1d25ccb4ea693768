from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tests.rules_helpers import CATEGORIES, make_rules, rules_dict
from urgency.cli import app
from urgency.decision import DECISION_COLUMNS
from urgency.errors import InputError
from urgency.scoring import score_file, score_frame

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TICKETS = pd.DataFrame(
    {
        "ticket_id": ["calm", "outage", "empty", "old-calm"],
        "created_at": [
            "2026-03-02T10:00:00Z",
            "2026-03-02T11:00:00Z",
            "2026-03-02T09:00:00Z",
            "2026-03-02T08:00:00Z",
        ],
        "subject": ["question", "server down", "", "question"],
        "body": ["question about invoice ticket", "production broken critical outage", "", "thanks for help"],
        "plan": ["free", "enterprise", "free", "free"],
        "service_down": ["", "true", "", ""],
    }
)
RULES = {
    "impact_rules": [{"name": "down", "when": {"service_down": True}, "impact": "high"}],
    "routing": {"default_team": "desk", "triage_team": "triage", "rules": []},
}
PREDICT = {"subject_column": "subject", "body_column": "body", "max_text_chars": 1000}


def test_score_frame_adds_decisions(models: dict[str, Any]) -> None:
    scored = score_frame(models, TICKETS, make_rules(**RULES), now=NOW, **PREDICT).frame()
    assert list(scored.columns[: len(TICKETS.columns)]) == list(TICKETS.columns)
    assert set(DECISION_COLUMNS) <= set(scored.columns) and "urgency_confidence" in scored.columns
    row = scored.set_index("ticket_id").loc["empty"]
    assert row["needs_human_triage"] and row["team"] == "triage" and pd.notna(row["error"])


def test_score_file_writes_the_sorted_queue(models: dict[str, Any], tmp_path: Path) -> None:
    source = tmp_path / "tickets.csv"
    TICKETS.to_csv(source, index=False)
    output = tmp_path / "queue.csv"
    stats = score_file(models, make_rules(**RULES), source, output, now=NOW, chunk_size=2, **PREDICT)
    queue = pd.read_csv(output, dtype=str, keep_default_na=False)
    assert stats.rows == 4 and stats.rows_with_error == 1 and sum(stats.by_priority.values()) == 4
    assert queue["order_key"].tolist() == sorted(queue["order_key"])
    assert queue["ticket_id"].iloc[0] == "outage" and queue["priority"].iloc[0] == "P1"
    # Same level: the earlier deadline (here: the earlier ticket) first.
    calm = queue[queue["priority"] == queue.set_index("ticket_id").loc["calm", "priority"]][
        "ticket_id"
    ].tolist()
    assert calm.index("old-calm") < calm.index("calm")
    assert "region" in stats.missing_columns


def test_a_failed_run_leaves_no_partial_output(models: dict[str, Any], tmp_path: Path) -> None:
    source = tmp_path / "tickets.csv"
    TICKETS.to_csv(source, index=False)
    output = tmp_path / "queue.csv"
    output.write_text("old queue\n")
    with pytest.raises(ValueError, match="time zone"):
        score_file(
            models, make_rules(**RULES), source, output, now=datetime(2026, 3, 2), chunk_size=2, **PREDICT
        )
    assert output.read_text() == "old queue\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["queue.csv", "tickets.csv"]


def test_score_file_refuses_to_write_over_its_input(models: dict[str, Any], tmp_path: Path) -> None:
    """`urgency score -i X -o X` once exited 0 having replaced the helpdesk's own columns."""
    source = tmp_path / "tickets.csv"
    TICKETS.to_csv(source, index=False)
    before = source.read_bytes()
    (tmp_path / "link.csv").symlink_to(source)
    for output in (source, tmp_path / "link.csv", tmp_path / "sub" / ".." / "tickets.csv"):
        with pytest.raises(InputError, match="the output is the input"):
            score_file(models, make_rules(**RULES), source, output, now=NOW, chunk_size=2, **PREDICT)
    assert source.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["link.csv", "tickets.csv"]


def test_scoring_never_overwrites_an_input_column(models: dict[str, Any], tmp_path: Path) -> None:
    """The helpdesk's own priority and team are kept: an input column named like a decision
    column is refused (rename it), never silently replaced."""
    tickets = TICKETS.assign(priority="P4", team="helpdesk-own")
    with pytest.raises(InputError, match=r"already has column\(s\) \['priority', 'team'\].*rename them"):
        score_frame(models, tickets, make_rules(**RULES), now=NOW, **PREDICT).frame()
    source = tmp_path / "tickets.csv"
    tickets.to_csv(source, index=False)
    output = tmp_path / "queue.csv"
    for queue in (True, False):
        with pytest.raises(InputError, match=r"\['priority', 'team'\]"):
            score_file(
                models,
                make_rules(**RULES),
                source,
                output,
                now=NOW,
                surge=False,
                queue=queue,
                chunk_size=2,
                **PREDICT,
            )
    assert not output.exists()


def test_score_and_rules_commands(trained: dict[str, Any], tmp_path: Path) -> None:
    runner = CliRunner()
    params = str(trained["params_path"])
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(yaml.safe_dump(rules_dict(**RULES)))
    source = tmp_path / "tickets.csv"
    TICKETS.to_csv(source, index=False)
    output = tmp_path / "queue.csv"
    args = ["score", "--params", params, "--rules", str(rules_path), "-i", str(source), "-o", str(output)]

    done = runner.invoke(app, [*args, "--now", "2026-03-02T12:00:00", "--surge", "on"])
    assert done.exit_code == 0, done.output
    assert "4 tickets queued" in done.output and "surge on" in done.output
    queue = pd.read_csv(output)
    assert queue["surge"].all() and queue["ticket_id"].iloc[0] == "outage"

    onto_itself = [
        "score",
        "--params",
        params,
        "--rules",
        str(rules_path),
        "-i",
        str(source),
        "-o",
        str(source),
    ]
    before = source.read_bytes()
    refused = runner.invoke(app, onto_itself)
    assert refused.exit_code == 6 and "the output is the input" in refused.output
    assert source.read_bytes() == before

    assert runner.invoke(app, [*args, "--now", "soon"]).exit_code == 2
    assert runner.invoke(app, [*args, "--surge", "maybe"]).exit_code == 2

    # The params' own rules path (not given here) is missing: a params error, exit 3.
    missing = runner.invoke(app, ["validate-rules", "--params", params])
    assert missing.exit_code == 3 and "rules file not found" in missing.output

    broken = rules_dict(**RULES)
    broken["routing"]["default_team"] = "nobody"
    broken["priority_rules"] = [{"name": "noop", "when": {"vip": True}, "at_least": "P4"}]
    rules_path.write_text(yaml.safe_dump(broken))
    failed = runner.invoke(app, args)
    assert failed.exit_code == 3 and "routing.default_team: 'nobody' is not a defined team" in failed.output

    broken["routing"]["default_team"] = "desk"
    rules_path.write_text(yaml.safe_dump(broken))
    warned = runner.invoke(app, ["validate-rules", "--params", params, "--rules", str(rules_path)])
    assert warned.exit_code == 0 and "warning" in warned.output and "'noop' never changes" in warned.output


def test_score_command_on_many_files(trained: dict[str, Any], tmp_path: Path) -> None:
    """A glob scores each file through the same predict-then-decide path into a Parquet folder,
    in input order; the surge is decided once for the run."""
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(yaml.safe_dump(rules_dict(**RULES)))
    (tmp_path / "in").mkdir()
    TICKETS.iloc[:2].to_csv(tmp_path / "in" / "a.csv", index=False)
    TICKETS.iloc[2:].to_csv(tmp_path / "in" / "b.csv", index=False)
    args = [
        "--params",
        str(trained["params_path"]),
        "--rules",
        str(rules_path),
        "--now",
        "2026-03-02T12:00:00",
    ]

    done = CliRunner().invoke(
        app,
        ["score", *args, "--surge", "on", "-i", str(tmp_path / "in" / "*.csv"), "-o", str(tmp_path / "out")],
    )
    assert done.exit_code == 0, done.output
    parts = pd.read_parquet(tmp_path / "out")
    assert parts["ticket_id"].tolist() == TICKETS["ticket_id"].tolist()  # input order, not the queue's
    single = CliRunner().invoke(
        app,
        [
            "score",
            *args,
            "--surge",
            "on",
            "-i",
            str(tmp_path / "in" / "a.csv"),
            "-o",
            str(tmp_path / "a.csv"),
        ],
    )
    assert single.exit_code == 0, single.output
    first = pd.read_csv(tmp_path / "a.csv").set_index("ticket_id")
    for ticket in first.index:
        row = parts.set_index("ticket_id").loc[ticket]
        assert (row["priority"], row["team"], row["order_key"]) == tuple(
            first.loc[ticket, ["priority", "team", "order_key"]]
        )
    assert parts["surge"].all()


def test_thresholds_command(trained: dict[str, Any]) -> None:
    result = CliRunner().invoke(
        app,
        [
            "thresholds",
            "--params",
            str(trained["params_path"]),
            "--target-precision",
            "0.5",
            "--head",
            "category",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "coverage" in result.output and "thresholds: {category:" in result.output
    assert set(CATEGORIES) == set(trained["params"].heads.category.labels)
