"""Hyper-parameter search: the configured space, parallel fits on a Dask cluster (or this
machine), one MLflow parent run with a child run per configuration, and the best registered as
the challenger while the champion stays where it was."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from tests.conftest import PROJECT, params_dict, write_params, write_sources
from urgency.cli import app
from urgency.config import BaselineParams, TuneParams, load_params
from urgency.errors import ParamsError
from urgency.train import train
from urgency.tune import candidates, tune

# One term per vectorizer cannot tell three classes apart; 5,000 can: the search must see it.
SPACE = {"max_features": [1, 5000], "word_ngram_max": [1, 2]}


def tune_params(tmp_path: Path, **tune_section: Any) -> Path:
    raw = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    raw["tune"] = {"space": SPACE, **tune_section}
    return write_params(tmp_path, raw)


def _ran_training() -> bool:
    return "urgency.train" in sys.modules


def test_grid_and_random_candidates() -> None:
    base = BaselineParams(min_df=1)
    grid = candidates(base, TuneParams(space=SPACE))
    assert [trial.settings for trial in grid] == [
        {"max_features": 1, "word_ngram_max": 1},
        {"max_features": 1, "word_ngram_max": 2},
        {"max_features": 5000, "word_ngram_max": 1},
        {"max_features": 5000, "word_ngram_max": 2},
    ]
    # Settings not searched keep the head's own value.
    assert {trial.baseline.min_df for trial in grid} == {1}
    drawn = candidates(base, TuneParams(method="random", n_iter=3, seed=1, space=SPACE))
    assert len(drawn) == 3 and all(trial.settings in [t.settings for t in grid] for trial in drawn)
    assert drawn == candidates(base, TuneParams(method="random", n_iter=3, seed=1, space=SPACE))
    # A combination no vectorizer can take is skipped, not fitted (only with character n-grams:
    # without, their range is not read).
    ngrams = TuneParams(space={"char_ngram_min": [2, 4], "char_ngram_max": [3]})
    with_chars = BaselineParams(min_df=1, char_ngrams=True)
    assert [trial.settings for trial in candidates(with_chars, ngrams)] == [
        {"char_ngram_max": 3, "char_ngram_min": 2}
    ]
    assert len(candidates(base, ngrams)) == 2


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"space": {"learning_rate": [0.1]}}, "'learning_rate' is not a baseline setting"),
        ({"space": {"C": [-1]}}, "C: -1: Input should be greater than 0"),
        ({"space": {"C": []}}, "C: give at least one value"),
        ({"cv": 1}, "use 0 .* or 2 or more folds"),
        ({"method": "bayes"}, "tune.method"),
    ],
)
def test_bad_tune_section_is_a_params_error(tmp_path: Path, section: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        load_params(tune_params(tmp_path, **section))


@pytest.mark.slow
def test_search_on_a_dask_cluster_logs_trials_and_registers_a_challenger(tmp_path: Path) -> None:
    from urgency.distributed import dask_client

    params_path = tune_params(tmp_path)
    params = load_params(params_path)
    train(params, ["sentiment"], params_path=params_path, code_folder=PROJECT)  # champion v1

    with dask_client("local", n_workers=2) as client:
        result = tune(params, "sentiment", backend="dask", params_path=params_path, code_folder=PROJECT)
        # The fits ran in the cluster's worker processes (fresh processes import what they run).
        assert all(client.run(_ran_training).values())

    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri, registry_uri=params.mlflow.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.data.tags["kind"] == "tune" and parent.data.params["tune.configurations"] == "4"
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'"
    )
    trials = [run for run in children if run.data.tags.get("kind") == "tune-trial"]
    assert len(trials) == 4
    logged = {(int(r.data.params["max_features"]), int(r.data.params["word_ngram_max"])) for r in trials}
    assert logged == {(1, 1), (1, 2), (5000, 1), (5000, 2)}
    scores = [run.data.metrics["validation_macro_f1"] for run in trials]
    assert result.best.score == max(scores) == parent.data.metrics["best_validation_macro_f1"]
    assert max(scores) > min(scores) + 0.2
    assert result.best.settings["max_features"] == 5000

    # The best configuration went through the training path: its calibrated model keeps the
    # search's predictions, so its validation macro-F1 is the search score.
    name = "ticket-sentiment"
    registered = result.registered
    assert registered.version == "2"
    assert registered.validation_report["macro_f1"] == pytest.approx(result.best.score)
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    training_run = client.get_run(registered.run_id)
    assert training_run.data.tags["mlflow.parentRunId"] == result.parent_run_id
    assert training_run.data.params["baseline.max_features"] == "5000"


@pytest.mark.slow
def test_tune_command_on_this_machine(tmp_path: Path) -> None:
    params_path = tune_params(tmp_path, cv=2, method="random", n_iter=2)
    done = CliRunner().invoke(app, ["tune", "--head", "urgency", "-p", str(params_path)])
    assert done.exit_code == 0, done.output
    assert "urgency: 2 configuration(s)" in done.output
    assert "registered as ticket-urgency v1 @challenger" in done.output
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    version = client.get_model_version_by_alias("ticket-urgency", "challenger")
    assert version.tags["tune_run_id"] in done.output
    # The head had no champion: the search still does not make one.
    assert "champion" not in client.get_registered_model("ticket-urgency").aliases


def test_the_search_fits_with_the_cleaning_the_model_will_carry() -> None:
    import pandas as pd

    from urgency.cleaning import Cleaning
    from urgency.tune import fit_and_score

    # The label is the markup alone: HTML cleaning erases it, so only the cleaning the model
    # will carry (here: HTML left as it is) finds it.
    texts = [f"<div><span>report {i}</span></div>" for i in range(20)] + [f"report {i}" for i in range(20)]
    frame = pd.DataFrame({"text": texts, "label": ["markup"] * 20 + ["plain"] * 20})
    fit, score = frame.iloc[::2], frame.iloc[1::2]
    base = BaselineParams(min_df=1)
    kept, _ = fit_and_score(base, fit, score, ["markup", "plain"], Cleaning(html=False))
    cleaned, _ = fit_and_score(base, fit, score, ["markup", "plain"], Cleaning())
    assert kept == 1.0
    assert cleaned < 0.7
