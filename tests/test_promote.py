"""Promotion (by hand and automatic) and the family comparison, on real registered models."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from tests.conftest import PROJECT, params_dict, write_params, write_sources
from tests.test_transformer import make_tiny_checkpoint
from urgency.cli import app
from urgency.comparison import compare, compare_and_log, comparison_markdown
from urgency.config import load_params
from urgency.errors import ModelNotFoundError
from urgency.evaluate import classification_report
from urgency.promote import (
    PromotionDecision,
    gate,
    promote,
    promote_each_if_better,
    promote_if_better,
)
from urgency.tracking import export_champions
from urgency.train import train

runner = CliRunner()


@pytest.fixture(scope="module")
def trained_twice(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Sentiment trained twice with the baseline (v1 champion, v2 candidate)."""
    folder = tmp_path_factory.mktemp("promote")
    data = params_dict(write_sources(folder / "data"), folder / "mlruns")
    params = load_params(write_params(folder, data))
    for _ in range(2):
        train(params, ["sentiment"], code_folder=PROJECT)
    return {"data": data, "db": folder / "mlruns" / "mlflow.db"}


@pytest.fixture
def store(trained_twice: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """A private copy of the registry database (the artifacts are shared, read-only), so each
    test starts from v1 champion, v2 candidate."""
    db = tmp_path / "mlflow.db"
    shutil.copy(trained_twice["db"], db)
    data = copy.deepcopy(trained_twice["data"])
    data["mlflow"]["tracking_uri"] = f"sqlite:///{db}"
    params_path = write_params(tmp_path, data)
    params = load_params(params_path)
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri, registry_uri=params.mlflow.tracking_uri)
    return {
        "params": params,
        "params_path": params_path,
        "client": client,
        "name": "ticket-sentiment",
        "data": data,
    }


def _champion(client: MlflowClient, name: str) -> str:
    return str(client.get_model_version_by_alias(name, "champion").version)


def test_promote_moves_the_alias_and_records_who_when_why(store: dict[str, Any]) -> None:
    client, name = store["client"], store["name"]
    assert _champion(client, name) == "1"
    previous = promote(client, name, "2", "champion", reason="better on the new tickets", by="ana")
    assert previous == "1" and _champion(client, name) == "2"
    tags = client.get_model_version(name, "2").tags
    assert tags["promoted_by"] == "ana"
    assert tags["promotion_reason"] == "better on the new tickets"
    assert tags["replaced_version"] == "1"
    assert tags["promoted_at"].startswith("20") and tags["promoted_at"].endswith("+00:00")


def test_promoting_an_unknown_version_is_a_clear_error(store: dict[str, Any]) -> None:
    with pytest.raises(ModelNotFoundError, match="ticket-sentiment v9"):
        promote(store["client"], store["name"], "9", "champion", reason="x")
    assert _champion(store["client"], store["name"]) == "1"


def _set_f1(client: MlflowClient, name: str, version: str, value: float) -> None:
    client.set_model_version_tag(name, version, "validation_macro_f1", f"{value:.4f}")


@pytest.mark.parametrize(("candidate", "promoted"), [(0.80, True), (0.705, False), (0.60, False)])
def test_automatic_promotion_needs_the_margin(
    store: dict[str, Any], candidate: float, promoted: bool
) -> None:
    client, name = store["client"], store["name"]
    _set_f1(client, name, "1", 0.70)
    _set_f1(client, name, "2", candidate)
    decision = promote_if_better(
        client, "sentiment", name, "2", "champion", min_gain=0.01, max_recall_drop=1.0, by="test"
    )
    assert decision.promoted is promoted, decision.reason
    assert decision.champion == "1" and decision.champion_f1 == pytest.approx(0.70)
    assert _champion(client, name) == ("2" if promoted else "1")
    if promoted:
        assert "beats v1" in client.get_model_version(name, "2").tags["promotion_reason"]


def test_no_automatic_promotion_across_different_validation_rows(
    store: dict[str, Any], tmp_path: Path
) -> None:
    data = store["data"] | {"splits": {"seed": 7}}  # other split: other validation rows
    params = load_params(write_params(tmp_path, data))
    train(params, ["sentiment"], code_folder=PROJECT)
    client, name = store["client"], store["name"]
    _set_f1(client, name, "1", 0.50)
    _set_f1(client, name, "3", 0.99)
    decision = promote_if_better(
        client, "sentiment", name, "3", "champion", min_gain=0.01, max_recall_drop=1.0, by="test"
    )
    assert not decision.promoted and "different validation rows" in decision.reason
    assert _champion(client, name) == "1"


def test_promote_command(store: dict[str, Any]) -> None:
    params_path = str(store["params_path"])
    result = runner.invoke(
        app, ["promote", "--head", "sentiment", "--version", "2", "--reason", "why", "-p", params_path]
    )
    assert result.exit_code == 0, result.output
    assert "ticket-sentiment@champion -> v2 (was v1)" in result.output
    assert store["client"].get_model_version(store["name"], "2").tags["promotion_reason"] == "why"
    missing = runner.invoke(app, ["promote", "--head", "sentiment", "--version", "7", "-p", params_path])
    assert missing.exit_code == 5 and "Traceback" not in missing.output
    wrong_head = runner.invoke(app, ["promote", "--head", "mood", "--version", "1", "-p", params_path])
    assert wrong_head.exit_code == 2


def test_train_family_option_is_checked(store: dict[str, Any]) -> None:
    result = runner.invoke(app, ["train", "-p", str(store["params_path"]), "--family", "gpt"])
    assert result.exit_code == 2 and "unknown family" in result.output


def test_train_promote_if_better_and_compare(tmp_path: Path) -> None:
    """The main job: baseline, then the embedding family with --promote-if-better, then the
    comparison logged to MLflow and written as markdown."""
    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    data["training"] = {"embedding": {"checkpoint": str(make_tiny_checkpoint(tmp_path / "tiny"))}}
    data["promotion"] = {"min_macro_f1_gain": 0.0, "max_recall_drop": 1.0}
    params_path = str(write_params(tmp_path, data))
    base = runner.invoke(app, ["train", "-p", params_path, "--head", "urgency", "--head", "category"])
    assert base.exit_code == 0, base.output
    cand = runner.invoke(
        app,
        [
            "train",
            "-p",
            params_path,
            "--head",
            "urgency",
            "--head",
            "category",
            "--family",
            "embedding",
            "--promote-if-better",
        ],
    )
    assert cand.exit_code == 0, cand.output
    params = load_params(params_path)
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri, registry_uri=params.mlflow.tracking_uri)
    for head in ("urgency", "category"):
        name = params.mlflow.model_name(head)
        f1 = {v: float(client.get_model_version(name, v).tags["validation_macro_f1"]) for v in ("1", "2")}
        expected = "2" if f1["2"] >= f1["1"] else "1"  # margin 0: promoted when not worse
        assert _champion(client, name) == expected, (head, f1, cand.output)
        assert f"{head}: v2" in cand.output

    output = tmp_path / "docs" / "model_comparison.md"
    result = runner.invoke(app, ["compare", "-p", params_path, "--output", str(output)])
    assert result.exit_code == 0, result.output
    table = compare(
        client, {h: params.mlflow.model_name(h) for h in ("urgency", "category", "sentiment")}, "champion"
    )
    assert list(table["family"]) == ["baseline", "embedding", "baseline", "embedding"]
    assert table["same test rows"].all()
    assert table["champion"].sum() == 2
    assert output.read_text() == comparison_markdown(table)
    assert "| urgency | embedding |" in output.read_text().replace("  ", " ").replace("  ", " ")
    runs = client.search_runs(
        [client.get_experiment_by_name(params.mlflow.experiment).experiment_id],
        "attributes.run_name = 'compare'",
    )
    assert {f.path for f in client.list_artifacts(runs[0].info.run_id)} == {
        "model_comparison.md",
        "model_comparison.json",
    }


def test_promote_each_if_better_tells_each_decision(store: dict[str, Any]) -> None:
    client, name = store["client"], store["name"]
    _set_f1(client, name, "1", 0.70)
    _set_f1(client, name, "2", 0.80)
    heard: list[PromotionDecision] = []
    decisions = promote_each_if_better(
        store["params"], {"sentiment": "2"}, by="test", on_decision=heard.append
    )
    assert decisions == heard and [d.head for d in decisions] == ["sentiment"]
    assert decisions[0].promoted and _champion(client, name) == "2"
    assert client.get_model_version(name, "2").tags["promoted_by"] == "test"


def test_compare_and_log_and_export_champions(store: dict[str, Any], tmp_path: Path) -> None:
    params = store["params"]
    output = tmp_path / "comparison.md"
    table, run_id = compare_and_log(params.mlflow, ["sentiment"], output)
    # v2 is the newest baseline, v1 the (older) champion: both are shown.
    assert sorted(table["version"]) == [1, 2] and table["champion"].sum() == 1
    assert output.read_text() == comparison_markdown(table)
    assert store["client"].get_run(run_id).info.run_name == "compare"

    exported = export_champions(params.mlflow, ["sentiment"], tmp_path / "models")
    assert exported == {"sentiment": "1"} and (tmp_path / "models" / "sentiment" / "MLmodel").exists()


# ---------------------------------------------------------------------------------------------
# The promotion policy on hand-made reports


def _report(truth: list[str], predicted: list[str]) -> dict[str, Any]:
    labels = ["high", "medium", "low"]
    probabilities = pd.DataFrame(np.eye(3)[[labels.index(p) for p in predicted]], columns=labels)
    present = [label for label in labels if label in truth]
    return classification_report(pd.Series(truth), probabilities, present, "low")


def test_gate_rules_by_hand() -> None:
    truth = ["high"] * 4 + ["medium"] * 4 + ["low"] * 4
    champion = _report(truth, ["high"] * 4 + ["low"] * 4 + ["low"] * 4)  # every medium missed
    better = _report(truth, ["high"] * 4 + ["medium"] * 4 + ["low"] * 4)
    verdict = gate("urgency", champion, better, min_gain=0.01, max_recall_drop=0.05)
    assert verdict.passed and verdict.rows == 12
    assert verdict.recall == {"high": (1.0, 1.0), "medium": (0.0, 1.0), "low": (1.0, 1.0)}
    # champion macro-F1: high 1, medium 0, low F1 = 2*(4/8*1)/(4/8+1) = 2/3
    assert verdict.champion_macro_f1 == pytest.approx((1 + 0 + 2 / 3) / 3)
    assert verdict.gain == pytest.approx(1 - 5 / 9)
    assert verdict.metrics()["challenger_recall_medium"] == 1.0

    # Better on medium, but one of four highs lost: recall of high drops by 0.25.
    trades = _report(truth, ["high"] * 3 + ["medium"] + ["medium"] * 4 + ["low"] * 4)
    refused = gate("urgency", champion, trades, min_gain=0.01, max_recall_drop=0.05)
    assert not refused.passed and refused.gain > 0.01
    assert any("recall of high 1.0000 -> 0.7500" in reason for reason in refused.reasons)
    assert gate("urgency", champion, trades, min_gain=0.01, max_recall_drop=0.25).passed  # exactly the limit

    # The same model: no gain.
    same = gate("urgency", better, better, min_gain=0.01, max_recall_drop=0.05)
    assert not same.passed and "below the required +0.0100" in same.reasons[0]
    assert gate("urgency", better, better, min_gain=0.0, max_recall_drop=0.0).passed


def _figures(macro_f1: float, recall: dict[str, float]) -> dict[str, Any]:
    return {
        "macro_f1": macro_f1,
        "n": 100,
        "per_class": {label: {"recall": value, "support": 10} for label, value in recall.items()},
    }


@pytest.mark.parametrize(
    ("challenger_f1", "challenger_recall", "check_before", "check_after", "passes", "says"),
    [
        # Wins on validation, holds on the hand-labelled set.
        (0.80, 0.70, 0.86, 0.85, True, "within the allowed drop"),
        # Wins on validation, loses where it is used: refused.
        (0.80, 0.70, 0.86, 0.14, False, "drops more than the allowed"),
        # The distilled student: a little lower on validation, far better on support text.
        (0.755, 0.70, 0.14, 0.865, True, "gains at least"),
        # A small gain on the set does not outweigh a lower validation figure.
        (0.755, 0.70, 0.84, 0.86, False, "below the gain"),
        # Validation falls too far for the set's gain.
        (0.70, 0.70, 0.14, 0.865, False, "falls by more than"),
        # A class's recall collapses: the set's gain does not excuse it.
        (0.755, 0.40, 0.14, 0.865, False, "falls by more than"),
    ],
)
def test_a_hand_labelled_check_joins_the_promotion_policy(
    challenger_f1: float,
    challenger_recall: float,
    check_before: float,
    check_after: float,
    passes: bool,
    says: str,
) -> None:
    from urgency.promote import HandCheck, gate

    judged = gate(
        "sentiment",
        _figures(0.76, {"negative": 0.70}),
        _figures(challenger_f1, {"negative": challenger_recall}),
        min_gain=0.01,
        max_recall_drop=0.05,
    )
    check = HandCheck(
        name="support sentiment acc.",
        figure=lambda version: 0.0,
        min_gain=0.05,
        max_drop=0.02,
        max_macro_f1_drop=0.02,
    )
    passed, reason = check.judge(judged, check_before, check_after)
    assert passed is passes
    assert says in reason
    assert f"{check_before:.4f} -> {check_after:.4f}" in reason
