"""Hyper-parameter search for a baseline head: many configurations fitted in parallel (on a Dask
cluster through joblib's Dask backend, or on this machine's cores), one MLflow run with a child
run per configuration, and the best configuration trained, evaluated and registered exactly as
`urgency train` does it, then given the challenger alias. Promotion stays a separate step.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from urgency import tracking
from urgency.cleaning import Cleaning
from urgency.config import BaselineParams, Params, TuneParams
from urgency.data import check_head_dataset, configured_head_dataset, load_configured
from urgency.errors import DataValidationError, ParamsError
from urgency.evaluate import classification_report
from urgency.models import registry_client
from urgency.promote import PromotionDecision, judge_version
from urgency.train import HeadResult, build_pipeline, model_cleaning, train_head

log = logging.getLogger(__name__)


@dataclass
class Trial:
    number: int
    settings: dict[str, Any]  # the searched settings only
    baseline: BaselineParams  # the head's full baseline params with those settings
    scores: list[float] = field(default_factory=list)  # macro-F1 per fold
    fit_seconds: float = 0.0

    @property
    def score(self) -> float:
        return sum(self.scores) / len(self.scores)


@dataclass
class TuneResult:
    parent_run_id: str
    head: str
    trials: list[Trial]
    best: Trial
    registered: HeadResult
    alias: str
    # The promotion policy's verdict on the challenger against the champion (nothing moved).
    verdict: PromotionDecision


def candidates(base: BaselineParams, tune: TuneParams) -> list[Trial]:
    """The configurations to try: the grid of `tune.space`, or a seeded sample of it."""
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    space = {key: list(values) for key, values in sorted(tune.space.items())}
    if tune.method == "grid":
        combos = list(ParameterGrid(space))
    else:
        size = len(ParameterGrid(space))
        combos = list(ParameterSampler(space, n_iter=min(tune.n_iter, size), random_state=tune.seed))
    trials = []
    for combo in combos:
        baseline = BaselineParams.model_validate({**base.model_dump(), **combo})
        if baseline.char_ngrams and baseline.char_ngram_min > baseline.char_ngram_max:
            log.warning("skipping %s: char_ngram_min > char_ngram_max", combo)
            continue
        trials.append(Trial(len(trials), combo, baseline))
    if not trials:
        raise ParamsError("tune.space leaves no valid configuration (char_ngram_min > char_ngram_max in all)")
    return trials


def folds(dataset: pd.DataFrame, cv: int, seed: int) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """(fit, score) pairs: train/validation split, or k folds of the train split grouped by text."""
    train = dataset[dataset["split"] == "train"].reset_index(drop=True)
    if cv == 0:
        return [(train, dataset[dataset["split"] == "validation"].reset_index(drop=True))]
    from sklearn.model_selection import StratifiedGroupKFold

    smallest = int(train["label"].value_counts().min())
    if smallest < cv:
        raise DataValidationError(
            f"tune.cv is {cv} but the train split has only {smallest} row(s) of its rarest label; "
            "use fewer folds or cv: 0"
        )
    splitter = StratifiedGroupKFold(n_splits=cv, shuffle=True, random_state=seed)
    return [
        (train.iloc[fit].reset_index(drop=True), train.iloc[score].reset_index(drop=True))
        for fit, score in splitter.split(train, train["label"], groups=train["text"])
    ]


def fit_and_score(
    baseline: BaselineParams,
    fit: pd.DataFrame,
    score: pd.DataFrame,
    labels: list[str],
    cleaning: Cleaning | None = None,
) -> tuple[float, float]:
    """Macro-F1 of the head's pipeline with these settings and `cleaning` (the one the trained
    model will carry), and the fit's seconds (runs on a worker).

    Calibration is left out: it keeps every prediction, so it cannot change the score.
    """
    started = time.perf_counter()
    pipeline = build_pipeline(baseline, cleaning).fit(fit[["text"]], fit["label"].to_numpy())
    seconds = time.perf_counter() - started
    probabilities = pd.DataFrame(pipeline.predict_proba(score[["text"]]), columns=list(pipeline.classes_))
    majority = fit["label"].mode().iloc[0]
    return classification_report(score["label"], probabilities, labels, majority)["macro_f1"], seconds


def search(
    trials: list[Trial],
    splits: list[tuple[pd.DataFrame, pd.DataFrame]],
    labels: list[str],
    *,
    backend: str,
    n_jobs: int,
    cleaning: Cleaning | None = None,
) -> None:
    """Fit every (configuration, fold) pair in parallel and record the scores on the trials.

    `backend="dask"` runs them on the workers of the current `distributed.Client`.
    """
    from joblib import Parallel, delayed, parallel_config

    jobs = [(trial, fit, score) for trial in trials for fit, score in splits]
    with parallel_config(backend=backend, n_jobs=n_jobs):
        outcomes = Parallel()(
            delayed(fit_and_score)(t.baseline, fit, score, labels, cleaning) for t, fit, score in jobs
        )
    for (trial, _, _), (score, seconds) in zip(jobs, outcomes, strict=True):
        trial.scores.append(score)
        trial.fit_seconds += seconds


def tune(
    params: Params,
    head: str,
    *,
    backend: str = "loky",
    n_jobs: int = -1,
    params_path: Path | None = None,
    code_folder: Path | None = None,
    on_searched: Callable[[list[Trial]], None] | None = None,
) -> TuneResult:
    """Search `params.tune.space` for `head`, log it to MLflow, register the best as challenger."""
    settings = params.tune
    head_params = params.heads.get(head)
    loaded = load_configured(params.data)
    dataset = configured_head_dataset(loaded.tickets, head, params.data, params.splits)
    if dataset.empty:
        raise DataValidationError(f"no rows carry a {head} label: nothing to tune")
    check_head_dataset(dataset, head)
    trials = candidates(head_params.baseline, settings)
    splits = folds(dataset, settings.cv, settings.seed)

    experiment_id = tracking.use_tracking(
        params.mlflow.tracking_uri, params.mlflow.experiment, params.mlflow.artifact_location
    )
    mlflow.set_experiment(experiment_id=experiment_id)  # nested runs follow the active experiment
    client = registry_client(params.mlflow.tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"tune-{head}") as parent:
        commit, dirty = tracking.git_state(code_folder or Path(__file__).resolve().parent)
        if commit:
            mlflow.set_tags({"mlflow.source.git.commit": commit, "git_dirty": str(dirty).lower()})
        mlflow.set_tags({"head": head, "family": "baseline", "kind": "tune", "backend": backend})
        mlflow.log_params(
            {
                "tune.method": settings.method,
                "tune.cv": settings.cv,
                "tune.configurations": len(trials),
                "tune.space": json.dumps(settings.space, sort_keys=True),
            }
        )
        if params_path is not None:
            mlflow.log_artifact(str(params_path), "params")
        started = time.perf_counter()
        search(
            trials,
            splits,
            list(head_params.labels),
            backend=backend,
            n_jobs=n_jobs,
            cleaning=model_cleaning(params.data.cleaning),
        )
        mlflow.log_metric("search_seconds", time.perf_counter() - started)
        if on_searched:
            on_searched(trials)
        metric = "validation_macro_f1" if settings.cv == 0 else "cv_macro_f1"
        for trial in trials:
            with mlflow.start_run(run_name=f"{head}-trial-{trial.number}", nested=True):
                mlflow.set_tags({"head": head, "kind": "tune-trial"})
                mlflow.log_params(trial.settings)
                mlflow.log_metrics({metric: trial.score, "fit_seconds": trial.fit_seconds})
                if len(trial.scores) > 1:
                    mlflow.log_metric(f"{metric}_std", float(pd.Series(trial.scores).std(ddof=0)))
        best = max(trials, key=lambda trial: trial.score)  # ties: the first configuration
        mlflow.log_params({f"best.{key}": value for key, value in best.settings.items()})
        mlflow.log_metric(f"best_{metric}", best.score)

        # The best configuration goes through `urgency train`'s own path: fit with calibration,
        # log, evaluate on the test split, register.
        tuned = head_params.model_copy(update={"baseline": best.baseline})
        best_params = params.model_copy(update={"heads": params.heads.model_copy(update={head: tuned})})
        sources = ",".join(sorted(dataset["source"].unique()))
        # A search proposes; it never decides what serves, not even for a head without a champion.
        registered = train_head(
            dataset, head, best_params, sources=sources, client=client, claim_champion=False
        )
        client.set_registered_model_alias(registered.registered_name, settings.alias, registered.version)
        client.set_model_version_tag(
            registered.registered_name, registered.version, "tune_run_id", parent.info.run_id
        )
        # What the promotion policy says of the challenger (nothing moves: `urgency promote` does).
        verdict, _ = judge_version(
            client,
            head,
            registered.registered_name,
            registered.version,
            params.mlflow.champion_alias,
            min_gain=params.promotion.min_macro_f1_gain,
            max_recall_drop=params.promotion.max_recall_drop,
        )
        mlflow.set_tags(
            {"promotion_verdict": str(verdict.promoted).lower(), "promotion_reason": verdict.reason}
        )
    return TuneResult(parent.info.run_id, head, trials, best, registered, settings.alias, verdict)
