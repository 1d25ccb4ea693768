from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.test_data import _corrupt
from urgency.cli import app

runner = CliRunner()


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_help_lists_the_commands() -> None:
    result = _run("--help")
    assert result.exit_code == 0
    for command in ("validate-data", "train", "evaluate", "predict", "export-models"):
        assert command in result.output


def test_validate_data_ok(params_file: Path) -> None:
    result = _run("validate-data", "--params", str(params_file))
    assert result.exit_code == 0, result.output
    assert "180 tickets valid" in result.output


def test_validate_data_reports_problems_with_exit_code_4(params_file: Path, sources: dict[str, Path]) -> None:
    _corrupt(sources["urgency"])
    result = _run("validate-data", "--params", str(params_file))
    assert result.exit_code == 4
    assert "value not in labels.urgency.mapping: 2 row(s), e.g. rows 5, 7" in result.output
    assert "Traceback" not in result.output


def test_params_error_exit_code_3(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("data: {sources: []}\nheads: {category: {labels: [a, b]}}\nmlfow: {}\n")
    result = _run("validate-data", "--params", str(bad))
    assert result.exit_code == 3
    assert "mlfow: unknown key" in result.output
    assert "data.sources" in result.output


def test_unknown_head_is_a_usage_error(params_file: Path) -> None:
    result = runner.invoke(app, ["train", "--params", str(params_file), "--head", "mood"])
    assert result.exit_code == 2


def test_train_evaluate_export_predict(params_file: Path, tmp_path: Path) -> None:
    result = _run("train", "--params", str(params_file), "--head", "urgency", "--head", "sentiment")
    assert result.exit_code == 0, result.output
    assert "ticket-urgency" in result.output

    # category was not trained: predicting with all heads names what is missing.
    missing = _run("predict", "--params", str(params_file), "-i", "x.csv", "-o", str(tmp_path / "o.csv"))
    assert missing.exit_code == 5 and "ticket-category@champion" in missing.output

    assert _run("train", "--params", str(params_file), "--head", "category").exit_code == 0
    report = tmp_path / "evaluation.json"
    evaluated = _run("evaluate", "--params", str(params_file), "--output", str(report))
    assert evaluated.exit_code == 0, evaluated.output
    assert report.exists() and "macro_f1" in report.read_text()

    models = tmp_path / "exported"
    assert _run("export-models", "--params", str(params_file), "--output", str(models)).exit_code == 0
    assert sorted(p.name for p in models.iterdir()) == ["category", "sentiment", "urgency"]

    tickets = tmp_path / "tickets.csv"
    pd.DataFrame({"id": [1, 2], "subject": ["server down", ""], "body": ["outage critical", ""]}).to_csv(
        tickets, index=False
    )
    scored = tmp_path / "scored.csv"
    result = _run(
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

    bad_input = _run(
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


@pytest.mark.slow
def test_console_script_is_installed_and_exits_cleanly(tmp_path: Path) -> None:
    urgency = Path(sys.executable).parent / "urgency"
    done = subprocess.run(
        [str(urgency), "validate-data", "--params", str(tmp_path / "none.yaml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 3
    assert "params file not found" in done.stderr and "Traceback" not in done.stderr
