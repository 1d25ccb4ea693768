"""The hand-labelled support-sentiment check: loader (digests), figures, and its compare column."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from tests.conftest import PROJECT, SHARED_DATA, params_dict, write_params, write_sources
from urgency.cli import app
from urgency.config import load_params
from urgency.errors import DataValidationError, InputError
from urgency.hand_labelled import (
    CHECK_TAG,
    SUPPORT_SENTIMENT_FILE,
    load_support_sentiment,
    sentiment_report,
    text_digest,
)

runner = CliRunner()

TICKETS = pd.DataFrame(
    {
        "subject": ["Login fails", None, "Invoice", "Outage", "Thanks"],
        "body": [
            "I cannot log in since Monday.",
            "This is the third time I write and nobody answers. Unacceptable!",
            "Please send the invoice for May.",
            "The whole shop is down, customers cannot pay.",
            "worst service ever angry, terrible delay again",
        ],
        "language": "en",
    }
)
SENTIMENT = ["neutral", "negative", "neutral", "neutral", "negative"]


def write_set(folder: Path, rows: list[int] | None = None) -> tuple[Path, Path]:
    """A tickets file and a labels file over it, digests as the guideline computes them."""
    folder.mkdir(parents=True, exist_ok=True)
    tickets = folder / "support.csv"
    TICKETS.to_csv(tickets, index=False)
    rows = rows if rows is not None else [3, 0, 4, 1, 2]
    labels = pd.DataFrame(
        {
            "row": rows,
            "text_sha256": [
                text_digest(TICKETS.subject[r], TICKETS.body[r]) if r < len(TICKETS) else "0" * 16
                for r in rows
            ],
            "language": "en",
            "sentiment": [SENTIMENT[r % len(SENTIMENT)] for r in rows],
            "service_down": [int(r == 3) for r in rows],
            "note": "",
        }
    )
    path = folder / "support_sentiment.csv"
    labels.to_csv(path, index=False)
    return path, tickets


def test_loader_joins_by_row_and_builds_the_model_text(tmp_path: Path) -> None:
    labels, tickets = write_set(tmp_path)
    checked = load_support_sentiment(labels, tickets)
    frame = checked.labels
    assert list(frame["row"]) == [3, 0, 4, 1, 2]
    assert frame.loc[0, "text"] == "Outage\nThe whole shop is down, customers cannot pay."
    # A missing subject is no subject (the text is the body alone).
    assert frame.loc[3, "text"].startswith("This is the third time")
    assert list(frame["sentiment"]) == ["neutral", "neutral", "negative", "negative", "neutral"]


def test_a_digest_that_does_not_match_names_the_file_and_row(tmp_path: Path) -> None:
    labels, tickets = write_set(tmp_path)
    changed = TICKETS.copy()
    changed.loc[4, "body"] = "a different text"
    changed.to_csv(tickets, index=False)
    with pytest.raises(DataValidationError) as error:
        load_support_sentiment(labels, tickets)
    message = str(error.value)
    assert str(labels) in message and str(tickets) in message
    assert "1 of 5" in message and "row 4 (line 4)" in message


def test_a_row_past_the_end_and_a_missing_file_are_clear(tmp_path: Path) -> None:
    labels, tickets = write_set(tmp_path, rows=[0, 9])
    with pytest.raises(DataValidationError, match="row 9"):
        load_support_sentiment(labels, tickets)
    with pytest.raises(InputError, match="not found"):
        load_support_sentiment(tmp_path / "none.csv", tickets)


def test_sentiment_report_negative_vs_not_by_hand() -> None:
    truth = ["negative", "neutral", "neutral", "neutral"]
    # Predicted: negative, negative, neutral, positive.
    probabilities = pd.DataFrame(
        [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7]],
        columns=["negative", "neutral", "positive"],
    )
    result = sentiment_report(truth, probabilities)
    assert result["negative_vs_not_accuracy"] == pytest.approx(3 / 4)  # the positive counts as "not"
    assert result["share_predicted_negative"] == pytest.approx(2 / 4)
    assert result["share_labelled_negative"] == pytest.approx(1 / 4)
    assert result["predicted_counts"] == {"negative": 2, "neutral": 1, "positive": 1}
    assert result["report"]["accuracy"] == pytest.approx(2 / 4)
    assert result["report"]["per_class"]["negative"]["precision"] == pytest.approx(0.5)
    assert result["report"]["per_class"]["neutral"]["recall"] == pytest.approx(1 / 3)


def test_compare_gets_the_support_sentiment_column(tmp_path: Path) -> None:
    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    labels, tickets = write_set(tmp_path / "support")
    data["data"]["sources"].append(
        {
            "name": "support_tickets_synthetic",
            "path": str(tickets),
            "columns": {"subject": "subject", "body": "body"},
        }
    )
    params_path = str(write_params(tmp_path, data))
    trained = runner.invoke(app, ["train", "-p", params_path, "--head", "sentiment", "--head", "urgency"])
    assert trained.exit_code == 0, trained.output
    output = tmp_path / "comparison.md"
    result = runner.invoke(
        app, ["compare", "-p", params_path, "--support-sentiment", str(labels), "--output", str(output)]
    )
    assert result.exit_code == 0, result.output
    text = output.read_text()
    assert "support sentiment acc." in text and "support predicted negative" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()[2:]}
    sentiment_cells = [cell.strip() for cell in rows["sentiment"].split("|")]
    urgency_cells = [cell.strip() for cell in rows["urgency"].split("|")]
    accuracy = float(sentiment_cells[-3])
    assert 0.0 <= accuracy <= 1.0 and urgency_cells[-3] == ""
    params = load_params(params_path)
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri)
    run = client.search_runs(
        [client.get_experiment_by_name(params.mlflow.experiment).experiment_id],
        "attributes.run_name = 'compare'",
    )[0]
    assert run.data.metrics["sentiment.baseline.support_sentiment_accuracy"] == pytest.approx(
        accuracy, abs=5e-4
    )
    # The figures are kept on the version with the set's digest, and read from there while the
    # set is the same: a planted figure comes back, a changed label measures again.
    name = params.mlflow.model_name("sentiment")
    version = client.get_model_version_by_alias(name, params.mlflow.champion_alias)
    kept = json.loads(version.tags[CHECK_TAG])
    assert kept["negative_vs_not_accuracy"] == pytest.approx(accuracy, abs=5e-4)
    client.set_model_version_tag(
        name, version.version, CHECK_TAG, json.dumps({**kept, "negative_vs_not_accuracy": 0.123})
    )

    def compared_accuracy() -> float:
        done = runner.invoke(
            app, ["compare", "-p", params_path, "--support-sentiment", str(labels), "--output", str(output)]
        )
        assert done.exit_code == 0, done.output
        row = next(
            line for line in output.read_text().splitlines()[2:] if line.split("|")[1].strip() == "sentiment"
        )
        return float(row.split("|")[-3])

    assert compared_accuracy() == 0.123
    changed = pd.read_csv(labels, keep_default_na=False, dtype=str)
    changed.loc[0, "sentiment"] = "positive"
    changed.to_csv(labels, index=False)
    assert compared_accuracy() != 0.123
    assert json.loads(client.get_model_version(name, version.version).tags[CHECK_TAG])["set"] != kept["set"]
    # Without the set (absent beside the params, none named) the column is left out, not an error.
    plain = runner.invoke(app, ["compare", "-p", params_path])
    assert plain.exit_code == 0 and "column left out" in plain.output
    missing = runner.invoke(
        app, ["compare", "-p", params_path, "--support-sentiment", str(tmp_path / "x.csv")]
    )
    assert missing.exit_code == 6 and "not found" in missing.output


@pytest.mark.slow
def test_the_projects_set_matches_the_shared_file() -> None:
    tickets = SHARED_DATA / "support_tickets_synthetic.csv"
    if not tickets.exists():
        pytest.skip("no shared data")
    checked = load_support_sentiment(PROJECT / SUPPORT_SENTIMENT_FILE, tickets)
    assert len(checked.labels) == 400
    assert checked.labels["sentiment"].value_counts().to_dict() == {"neutral": 391, "negative": 9}
