"""A helpdesk with urgency and category labels only: every command works on the heads it has.

`two_heads` (tests/conftest.py) trains with no --head on sources without sentiment labels; the
heads that exist are those with a model (`urgency.models.resolve`), and outputs carry exactly
those. A head asked for that has no model is a clear error naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.cli import invoke
from tests.conftest import URGENT

TRAINED = {"urgency", "category"}


def _columns_of_heads(columns: list[str]) -> set[str]:
    """Which heads a file's model columns belong to."""
    return {head for head in ("urgency", "category", "sentiment") if any(c.startswith(head) for c in columns)}


@pytest.fixture(scope="module")
def tickets(two_heads: dict[str, Any]) -> Path:
    path = two_heads["folder"] / "tickets.csv"
    pd.DataFrame(
        {
            "ticket_id": ["A-1", "A-2", "A-3"],
            "subject": ["server down", "", "invoice"],
            "body": ["production broken critical outage", "", "question about invoice"],
            "opened": ["2026-03-02T09:00:00Z"] * 3,
        }
    ).to_csv(path, index=False)
    return path


def test_train_trains_the_heads_that_have_labels(two_heads: dict[str, Any]) -> None:
    output = " ".join(two_heads["train_output"].split())
    assert "2/2" in output and "2/3" not in output  # the bar counts the heads really trained
    uri = f"sqlite:///{two_heads['folder'] / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert {model.name for model in client.search_registered_models()} == {
        "ticket-urgency",
        "ticket-category",
    }


def test_predict_and_score_carry_exactly_the_trained_heads(
    two_heads: dict[str, Any], tickets: Path, tmp_path: Path
) -> None:
    params = str(two_heads["params_path"])
    predicted = tmp_path / "predicted.csv"
    result = invoke("predict", "-p", params, "-i", str(tickets), "-o", str(predicted))
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(predicted)
    added = [c for c in frame.columns if c not in ("ticket_id", "subject", "body", "opened", "error")]
    assert _columns_of_heads(added) == TRAINED
    assert frame.loc[0, "urgency"] == "high"

    queue = tmp_path / "queue.csv"
    result = invoke("score", "-p", params, "-i", str(tickets), "-o", str(queue), "--now", "2026-03-02T10:00")
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(queue, keep_default_na=False).set_index("ticket_id")
    assert not any(c.startswith("sentiment") for c in scored.columns)
    outage = scored.loc["A-1"]
    # No sentiment model: nobody is sent to triage for it, and the rule reading it cannot fire.
    assert "sentiment" not in outage["untrusted_heads"]
    assert "no sentiment model: rule(s) reading sentiment see no value (angry)" in outage["explanation"]
    assert "angry:" not in outage["explanation"]
    assert outage["priority"] == "P3"  # urgency high x impact low, and no sentiment raise


def test_predict_and_score_of_heads_asked_for(
    two_heads: dict[str, Any], tickets: Path, tmp_path: Path
) -> None:
    """--head picks the heads to run; one without a model is a clear error naming it, and no
    output is written."""
    params = str(two_heads["params_path"])
    only = tmp_path / "urgency_only.csv"
    result = invoke("predict", "-p", params, "-i", str(tickets), "-o", str(only), "--head", "urgency")
    assert result.exit_code == 0, result.output
    added = [
        c for c in pd.read_csv(only).columns if c not in ("ticket_id", "subject", "body", "opened", "error")
    ]
    assert _columns_of_heads(added) == {"urgency"}
    for command in ("predict", "score"):
        output = tmp_path / f"{command}_sentiment.csv"
        missing = invoke(command, "-p", params, "-i", str(tickets), "-o", str(output), "--head", "sentiment")
        assert missing.exit_code == 5, missing.output
        assert "no sentiment model" in " ".join(missing.output.split())
        assert not output.exists()


def test_evaluate_the_split_a_labelled_file_and_a_head_with_no_model(
    two_heads: dict[str, Any], tmp_path: Path
) -> None:
    params = str(two_heads["params_path"])
    report = tmp_path / "split.json"
    result = invoke("evaluate", "-p", params, "--output", str(report))
    assert result.exit_code == 0, result.output
    assert set(json.loads(report.read_text())) == TRAINED

    # Any labelled file a source describes: here the `tickets` source's shape (P1-P3 mapped).
    labelled = tmp_path / "labelled.jsonl"
    rows = [
        {"key": f"N-{i}", "title": "", "description": f"{text} {i}", "prio": "P1", "opened": "2026-03-01"}
        for i, text in enumerate(URGENT)
    ]
    rows += [
        {
            "key": "N-9",
            "title": "",
            "description": "question about invoice 9",
            "prio": "P3",
            "opened": "2026-03-01",
        }
    ]
    pd.DataFrame(rows).to_json(labelled, orient="records", lines=True)
    several = invoke("evaluate", "-p", params, "--input", str(labelled))
    assert several.exit_code == 6 and "--source" in several.output  # two sources: which one?
    report = tmp_path / "file.json"
    result = invoke(
        "evaluate",
        "-p",
        params,
        "--input",
        str(labelled),
        "--source",
        "tickets",
        "--output",
        str(report),
        "--log",
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(report.read_text())
    assert set(figures) == {"urgency"}  # the file labels urgency only; category is named as left out
    urgency = figures["urgency"]
    assert urgency["n"] == 5 and urgency["confusion_matrix"] and urgency["per_class"]["high"]["support"] == 4
    assert sum(b["n"] for b in urgency["reliability"]) == 5 and 0 <= urgency["ece"] <= 1
    assert "no category labels" in " ".join(result.output.split())
    assert "logged to MLflow run" in result.output

    missing = invoke("evaluate", "-p", params, "--head", "sentiment")
    assert missing.exit_code == 5, missing.output
    assert "no sentiment model" in " ".join(missing.output.split())


def test_export_models_writes_the_heads_that_exist(
    two_heads: dict[str, Any], tickets: Path, tmp_path: Path
) -> None:
    params = str(two_heads["params_path"])
    folder = tmp_path / "models"
    (folder / "sentiment").mkdir(parents=True)  # left by an older export: would be loaded
    (folder / "sentiment" / "MLmodel").write_text("stale")
    result = invoke("export-models", "-p", params, "--output", str(folder))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["category", "urgency"]

    asked = invoke("export-models", "-p", params, "--output", str(tmp_path / "other"), "--head", "sentiment")
    assert asked.exit_code == 5 and "no sentiment model" in " ".join(asked.output.split())
    assert not (tmp_path / "other").exists() or not any((tmp_path / "other").iterdir())

    # The folder serves like the registry: evaluate (once an IndexError) and predict.
    report = tmp_path / "evaluation.json"
    result = invoke("evaluate", "-p", params, "--model-dir", str(folder), "--output", str(report))
    assert result.exit_code == 0, result.output
    assert set(json.loads(report.read_text())) == TRAINED
    predicted = tmp_path / "predicted.jsonl"
    result = invoke(
        "predict", "-p", params, "--model-dir", str(folder), "-i", str(tickets), "-o", str(predicted)
    )
    assert result.exit_code == 0, result.output
    assert _columns_of_heads(list(pd.read_json(predicted, lines=True).columns)) == TRAINED


def test_demo_agents_and_the_agreement_report_cover_the_heads_that_exist(
    two_heads: dict[str, Any], tmp_path: Path
) -> None:
    params = str(two_heads["params_path"])
    closed = tmp_path / "closed.csv"
    result = invoke(
        "demo-agents", "-p", params, "--output", str(closed), "--rows", "40", "--now", "2026-03-02"
    )
    assert result.exit_code == 0, result.output
    page = tmp_path / "report.html"
    result = invoke("report", "agreement", "-p", params, "--input", str(closed), "--output", str(page))
    assert result.exit_code == 0, result.output
    figures = json.loads(page.with_suffix(".json").read_text())
    assert set(figures["fields"]) == {"urgency", "category", "priority", "team"}
    assert ">sentiment<" not in page.read_text()

    # A helpdesk's own CSV may leave the sentiment columns out altogether.
    frame = pd.read_csv(closed)
    frame.drop(columns=["sentiment", "sentiment_confidence", "agent_sentiment"]).to_csv(closed, index=False)
    result = invoke("report", "agreement", "-p", params, "--input", str(closed), "--output", str(page))
    assert result.exit_code == 0, result.output
    assert set(json.loads(page.with_suffix(".json").read_text())["fields"]) == set(figures["fields"])


def test_rollback_with_nothing_to_roll_back_has_its_own_code(two_heads: dict[str, Any]) -> None:
    result = invoke("rollback", "-p", str(two_heads["params_path"]), "--head", "urgency", "--reason", "x")
    assert result.exit_code == 11, result.output
    assert "nothing to roll back" in " ".join(result.output.split())


def test_retrain_gates_the_heads_that_exist(two_heads: dict[str, Any], tmp_path: Path) -> None:
    """New history with urgency and category labels (no sentiment column): the challengers are
    the two heads, on a private copy of the registry."""
    import shutil

    import yaml

    from tests.test_retrain import NEW, START, history_rows

    shutil.copy(two_heads["folder"] / "mlruns" / "mlflow.db", tmp_path / "mlflow.db")
    data = yaml.safe_load(two_heads["params_path"].read_text())
    data["mlflow"]["tracking_uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(data))
    history = history_rows(NEW, copies=8, start=START)
    history["category"] = [("Hardware", "Access", "Purchase")[i % 3] for i in range(len(history))]
    history.to_csv(tmp_path / "history.csv", index=False)
    result = invoke("retrain", "-p", str(params), "--history", str(tmp_path / "history.csv"))
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "training challengers (urgency, category)" in output
    assert "urgency: challenger" in output and "category: challenger" in output
    assert "sentiment: challenger" not in output


def test_training_a_head_asked_for_without_labels_names_it(two_heads: dict[str, Any]) -> None:
    result = invoke("train", "-p", str(two_heads["params_path"]), "--head", "sentiment")
    assert result.exit_code == 4, result.output  # invalid ticket data: no sentiment label at all
    assert "no row carries a sentiment label" in " ".join(result.output.split())
