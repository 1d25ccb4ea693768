"""`urgency train / evaluate / export-models` (urgency.cli.models), and predict with what they made."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.cli import invoke, runner
from urgency.cli import app


def test_unknown_head_is_a_usage_error(params_file: Path) -> None:
    result = runner.invoke(app, ["train", "--params", str(params_file), "--head", "mood"])
    assert result.exit_code == 2


def test_train_evaluate_export_predict(params_file: Path, tmp_path: Path) -> None:
    result = invoke("train", "--params", str(params_file), "--head", "urgency", "--head", "sentiment")
    assert result.exit_code == 0, result.output
    assert "ticket-urgency" in result.output

    # category was not trained: the heads are those with a model; asking for category names it.
    missing = invoke("evaluate", "--params", str(params_file), "--head", "category")
    assert missing.exit_code == 5 and "ticket-category@champion" in missing.output
    assert "no category model" in " ".join(missing.output.split())

    assert invoke("train", "--params", str(params_file), "--head", "category").exit_code == 0
    report = tmp_path / "evaluation.json"
    evaluated = invoke("evaluate", "--params", str(params_file), "--output", str(report))
    assert evaluated.exit_code == 0, evaluated.output
    assert report.exists() and "macro_f1" in report.read_text()

    models = tmp_path / "exported"
    assert invoke("export-models", "--params", str(params_file), "--output", str(models)).exit_code == 0
    assert sorted(p.name for p in models.iterdir()) == ["category", "sentiment", "urgency"]

    tickets = tmp_path / "tickets.csv"
    pd.DataFrame({"id": [1, 2], "subject": ["server down", ""], "body": ["outage critical", ""]}).to_csv(
        tickets, index=False
    )
    scored = tmp_path / "scored.csv"
    result = invoke(
        "predict",
        "--params",
        str(params_file),
        "--model-dir",
        str(models),
        "-i",
        str(tickets),
        "-o",
        str(scored),
    )
    assert result.exit_code == 0, result.output
    assert "2 tickets scored" in result.output and "1 with a row error" in result.output
    frame = pd.read_csv(scored)
    assert frame.loc[0, "urgency"] == "high" and frame["error"].notna().tolist() == [False, True]

    bad_input = invoke(
        "predict",
        "--params",
        str(params_file),
        "--model-dir",
        str(models),
        "-i",
        str(tmp_path / "none.csv"),
        "-o",
        str(scored),
    )
    assert bad_input.exit_code == 6 and "file not found" in bad_input.output
