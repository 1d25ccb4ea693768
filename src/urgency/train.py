"""Train the baseline heads, evaluate them on their test split and register them in MLflow.

One parent MLflow run per `urgency train`, one child run per head. Each child logs the head's
params, its train/validation/test datasets (with digests), the test and validation metrics, the
confusion matrix, and the model; the model is registered as `<prefix>-<head>`, and the champion
alias is set when the head has none yet.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from urgency import tracking
from urgency.cleaning import Cleaning, TextCleaner, write_model_code
from urgency.config import HEADS, SIGNALS_MODEL, BaselineParams, CleaningParams, Params
from urgency.data import LoadResult, check_head_dataset, configured_head_dataset, load_configured
from urgency.errors import DataValidationError, ParamsError
from urgency.evaluate import classification_report, confusion_frame, flat_metrics, quality_table
from urgency.models import DIGEST_TAG, load_head_model, recorded_digests, registry_client
from urgency.predict import predict_proba
from urgency.text_features import HashedTfidf

log = logging.getLogger(__name__)

LABEL_FREE = "label-free"
HYBRID = "hybrid"

# What a baseline model needs at load time, pinned to the versions it was trained with.
BASELINE_REQUIREMENTS = ("scikit-learn", "scipy", "numpy", "pandas", "selectolax")


def pip_requirements(packages: Sequence[str]) -> list[str]:
    return [f"{name}=={package_version(name)}" for name in packages]


def build_features(params: BaselineParams) -> HashedTfidf:
    """Hashed TF-IDF n-grams of a DataFrame's `text` column (`urgency.text_features`): the
    baseline's features, which the hybrid family reads too. Heads with equal n-gram settings
    share one tokenisation of each batch."""
    return HashedTfidf(
        word_ngram_max=params.word_ngram_max,
        char_ngrams=params.char_ngrams,
        char_ngram_min=params.char_ngram_min,
        char_ngram_max=params.char_ngram_max,
        min_df=params.min_df,
        max_features=params.max_features,
    )


def build_pipeline(params: BaselineParams, cleaning: Cleaning | None = None) -> Pipeline:
    """Text cleaning, then the hashed TF-IDF features (`build_features`) into a class-balanced
    logistic regression.

    The pipeline reads a DataFrame with a `text` column, so the saved artifact carries all of
    its preprocessing, cleaning included (`cleaning`, default every step): any caller of the
    saved model gets the cleaning it was trained with.
    """
    cleaning = cleaning or Cleaning()
    features = build_features(params)
    classifier = LogisticRegression(
        C=params.C, class_weight=params.class_weight, tol=params.tol, max_iter=2000
    )
    return Pipeline(
        [("clean", TextCleaner(**cleaning.as_dict())), ("features", features), ("classifier", classifier)]
    )


def fit_baseline(
    train: pd.DataFrame, validation: pd.DataFrame, params: BaselineParams, cleaning: Cleaning | None = None
) -> Any:
    """Fit on the train split, then calibrate the probabilities on the validation split.

    Temperature scaling keeps every prediction's argmax (so F1 does not move) and only makes the
    confidences honest, which the confidence thresholds of the scoring rules rely on.
    """
    # One BLAS thread: scipy's L-BFGS-B (1.15+) spends twice the CPU on its small vector steps
    # when OpenBLAS threads them (measured on the category head: 27 vs 56 CPU-s); the heads are
    # fitted in parallel instead (`fit_baseline_heads`).
    with threadpool_limits(1, user_api="blas"):
        pipeline = build_pipeline(params, cleaning).fit(train[["text"]], train["label"].to_numpy())
        return calibrate(pipeline, validation, params)


def _timed_fit(
    head: str, train: pd.DataFrame, validation: pd.DataFrame, params: BaselineParams, cleaning: Cleaning
) -> tuple[str, Any, float]:
    started = time.perf_counter()
    model = fit_baseline(train, validation, params, cleaning)
    return head, model, time.perf_counter() - started


def fit_baseline_heads(
    datasets: dict[str, pd.DataFrame], params: Params, jobs: int | None = None
) -> Iterator[tuple[str, Any, float]]:
    """Each head's baseline (`fit_baseline` on its train and validation splits) with its fit
    seconds, the heads fitted side by side in `jobs` processes (default: one per core, at most
    one per head). The fits start at once, in the background, and come back as each ends: the
    caller evaluates and registers the first heads (and does other work) while the slowest
    still fits."""
    cleaning = model_cleaning(params.data.cleaning)
    jobs = min(len(datasets), jobs or os.cpu_count() or 1)
    tasks = [
        (
            head,
            dataset[dataset["split"] == "train"],
            dataset[dataset["split"] == "validation"],
            params.heads.get(head).baseline,
            cleaning,
        )
        for head, dataset in datasets.items()
    ]
    if jobs == 1:
        return (_timed_fit(*task) for task in tasks)
    return Parallel(n_jobs=jobs, return_as="generator_unordered")(
        delayed(_timed_fit)(*task) for task in tasks
    )


def calibrate(pipeline: Pipeline, validation: pd.DataFrame, params: BaselineParams) -> Any:
    """The fitted `pipeline` with its probabilities calibrated on the validation rows
    (`params.calibration`), as `fit_baseline` does (the distilled student too)."""
    counts = validation["label"].value_counts()
    if params.calibration == "none":
        return pipeline
    if set(counts.index) != set(pipeline.classes_) or counts.min() < 2:
        log.warning("calibration skipped: the validation split needs 2+ rows of every class")
        return pipeline
    # The estimator is frozen, so the folds only batch the validation rows; the result is the
    # same for any number of them.
    calibrated = CalibratedClassifierCV(
        FrozenEstimator(pipeline), method=params.calibration, cv=int(min(5, counts.min()))
    )
    return calibrated.fit(validation[["text"]], validation["label"].to_numpy())


@dataclass
class HeadResult:
    head: str
    run_id: str
    model_uri: str
    registered_name: str
    version: str
    champion_set: bool
    test_report: dict[str, Any]
    validation_report: dict[str, Any]


@dataclass
class TrainResult:
    parent_run_id: str
    heads: dict[str, HeadResult]
    load: LoadResult
    # The text signals' model version registered by this run (None: none, or unchanged).
    signals_version: str | None = None
    # Baseline family: each head's fit seconds (the heads are fitted side by side).
    fit_seconds: dict[str, float] | None = None


def _log_json(data: Any, name: str) -> None:
    mlflow.log_text(json.dumps(data, indent=2, default=str), name)


def _log_confusion_matrix(report: dict[str, Any], head: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = confusion_frame(report)
    mlflow.log_text(frame.to_csv(), f"confusion_matrix_{head}.csv")
    figure, axes = plt.subplots(figsize=(1.2 + 0.8 * len(frame), 1 + 0.7 * len(frame)))
    axes.imshow(frame.to_numpy(), cmap="Blues")
    axes.set_xticks(range(len(frame)), frame.columns, rotation=45, ha="right")
    axes.set_yticks(range(len(frame)), frame.index)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"{head}: test confusion matrix")
    for (row, column), count in np.ndenumerate(frame.to_numpy()):
        axes.text(column, row, str(count), ha="center", va="center", fontsize=8)
    figure.tight_layout()
    mlflow.log_figure(figure, f"confusion_matrix_{head}.png")
    plt.close(figure)


def _flat_params(params: BaselineParams, prefix: str) -> dict[str, Any]:
    return {f"{prefix}.{key}": value for key, value in params.model_dump().items()}


def train_head(
    dataset: pd.DataFrame,
    head: str,
    params: Params,
    *,
    sources: str,
    client: MlflowClient,
    family: str = "baseline",
    fitted: Any = None,
    claim_champion: bool = True,
    tags: dict[str, str] | None = None,
) -> HeadResult:
    """Fit, log, reload, evaluate and register one head inside the active parent run.

    Transformer families arrive already `fitted` (a `urgency.transformer.FittedHead`: their
    heads may share one encoder, so they are fitted together before this runs); a baseline-family
    model fitted elsewhere (the distilled student, `urgency.distill`) arrives as its fitted
    scikit-learn estimator. `claim_champion`: point the champion alias at the new version when
    the head has none yet. `tags`: more tags for the run and the registered version."""
    head_params = params.heads.get(head)
    train, validation, test = (dataset[dataset["split"] == name] for name in ("train", "validation", "test"))
    with mlflow.start_run(run_name=f"{head}-{family}", nested=True) as run:
        mlflow.set_tags({"head": head, "family": family, **(tags or {})})
        mlflow.log_params({"head": head, "labels": ",".join(head_params.labels), "sources": sources})
        mlflow.log_params({f"split.{k}": v for k, v in params.splits.model_dump().items()})
        for name, part in (("training", train), ("validation", validation), ("testing", test)):
            mlflow.log_metric(f"rows_{name}", len(part))
            if part.empty:  # a label-free head for a head no row is labelled for
                continue
            data = mlflow.data.from_pandas(
                part[["id", "source", "text", "label"]].reset_index(drop=True),
                name=f"{head}-{name}",
                targets="label",
            )
            mlflow.log_input(data, context=name)

        example = test[["text"]].head(3).reset_index(drop=True)
        if example.empty and head_params.descriptions:
            # No labelled row: the head's own descriptions are the example input.
            example = pd.DataFrame({"text": [s for d in head_params.descriptions.values() for s in d][:3]})
        cleaning = model_cleaning(params.data.cleaning)
        if fitted is not None and hasattr(fitted, "encoder"):  # a transformer.FittedHead
            from urgency.transformer import log_head_model

            info = log_head_model(fitted, example, cleaning=cleaning)
        else:
            info = _fit_and_log_baseline(
                train, validation, example, head, head_params.baseline, cleaning, model=fitted, family=family
            )

        # Evaluate the logged artifact through the same path the CLI and service use.
        loaded = load_head_model(info.model_uri)
        labels = list(head_params.labels)
        majority = train["label"].mode().iloc[0] if not train.empty else labels[0]
        reports: dict[str, Any] = {}
        for split_name, part in (("validation", validation), ("test", test)):
            if part.empty:  # nothing to evaluate on (a label-free head without labelled rows)
                reports[split_name] = {}
                continue
            started = time.perf_counter()
            probabilities = predict_proba(loaded, part["text"])
            seconds = time.perf_counter() - started
            reports[split_name] = classification_report(part["label"], probabilities, labels, majority)
            mlflow.log_metrics(flat_metrics(reports[split_name], split_name))
            mlflow.log_metric(f"{split_name}_tickets_per_second", len(part) / max(seconds, 1e-9))
        if reports["test"]:
            _log_confusion_matrix(reports["test"], head)
        _log_json(reports, f"evaluation_{head}.json")

        name = params.mlflow.model_name(head)
        # The files' digests, recorded with the version (in one call: no version exists without
        # them); every load checks them before unpickling (`urgency.models`).
        digests = recorded_digests(info.model_uri)
        version = tracking.register(
            info.model_uri,
            name,
            tags={
                "head": head,
                "family": family,
                **(tags or {}),
                **{
                    f"{split_name}_macro_f1": f"{report['macro_f1']:.4f}"
                    for split_name, report in reports.items()
                    if report
                },
                DIGEST_TAG: digests,
            },
        )
        champion_set = claim_champion and tracking.set_alias_if_missing(
            client, name, params.mlflow.champion_alias, str(version.version)
        )
        return HeadResult(
            head=head,
            run_id=run.info.run_id,
            model_uri=info.model_uri,
            registered_name=name,
            version=str(version.version),
            champion_set=champion_set,
            test_report=reports["test"],
            validation_report=reports["validation"],
        )


def described(params: Params, head: str) -> bool:
    """Whether `head` is configured with descriptions (so it can be a label-free head)."""
    head_params = getattr(params.heads, head, None)
    return head_params is not None and bool(head_params.descriptions)


def priors(params: Params, heads: Sequence[str]) -> dict[str, Any]:
    """The label-free priors (`transformer.Prior`) of the heads with `prior_weight` set."""
    from urgency.transformer import Prior

    found = {}
    for head in heads:
        head_params = params.heads.get(head)
        if head_params.prior_weight is not None and head_params.descriptions:
            found[head] = Prior(descriptions=head_params.descriptions, weight=head_params.prior_weight)
    return found


def _fit_label_free(params: Params, datasets: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Label-free heads from their descriptions, each temperature fitted on the head's labelled
    train and validation rows when there are any (`urgency.label_free`)."""
    from urgency.label_free import fit_label_free

    descriptions = {}
    for head in datasets:
        head_params = params.heads.get(head)
        descriptions[head] = {label: head_params.descriptions[label] for label in head_params.labels}
    labelled = {
        head: frame[frame["split"].isin(["train", "validation"])] if not frame.empty else frame
        for head, frame in datasets.items()
    }
    with mlflow.start_run(run_name=f"{LABEL_FREE}-fit", nested=True):
        mlflow.set_tags({"family": LABEL_FREE, "heads": ",".join(datasets)})
        return fit_label_free(
            descriptions,
            labelled,
            params.training.label_free,
            seed=params.training.seed,
            embedding_cache=params.training.embedding_cache,
        )


# The tag on a signals model version: a digest of the definition it was fitted from.
SIGNALS_DEFINITION_TAG = "signals_definition_sha256"


def register_signals(params: Params, client: MlflowClient) -> str | None:
    """Fit the text signals' model from params `signals` (`urgency.label_free.fit_signals`),
    register it as `<model_prefix>-signals` with its file digests, and point the champion alias
    at it: the params are its definition and there is nothing labelled to gate it on. Returns the
    version; None when the champion was fitted from the same definition (a retrain adds no copy)."""
    from urgency.label_free import fit_signals
    from urgency.transformer import log_head_model

    assert params.signals is not None
    settings = params.training.label_free
    definition = json.dumps(
        {
            "signals": params.signals.model_dump(mode="json"),
            "checkpoint": str(settings.checkpoint),
            "max_length": settings.max_length,
            "cleaning": params.data.cleaning.model_dump(),
            # The encoder's runtime moves the confidences near the thresholds; fp32 definitions
            # read as before runtimes, so their champions are not registered again.
            **({"runtime": settings.runtime} if settings.runtime != "fp32" else {}),
        },
        sort_keys=True,
    )
    definition_digest = hashlib.sha256(definition.encode()).hexdigest()
    name, alias = params.mlflow.model_name(SIGNALS_MODEL), params.mlflow.champion_alias
    champion = tracking.alias_version(client, name, alias)
    if champion is not None and champion.tags.get(SIGNALS_DEFINITION_TAG) == definition_digest:
        log.info("%s@%s (v%s) has these signals: not registered again", name, alias, champion.version)
        return None
    with mlflow.start_run(run_name=f"{SIGNALS_MODEL}-{LABEL_FREE}", nested=True):
        mlflow.set_tags({"head": SIGNALS_MODEL, "family": LABEL_FREE})
        fitted = fit_signals(params.signals, settings)
        example = pd.DataFrame({"text": params.signals.other[:3]})
        info = log_head_model(fitted, example, cleaning=model_cleaning(params.data.cleaning))
        version = tracking.register(
            info.model_uri,
            name,
            tags={
                "head": SIGNALS_MODEL,
                "family": LABEL_FREE,
                SIGNALS_DEFINITION_TAG: definition_digest,
                DIGEST_TAG: recorded_digests(info.model_uri),
            },
        )
    client.set_registered_model_alias(name, alias, str(version.version))
    log.info("text signals: %s v%s registered, %s set", name, version.version, alias)
    return str(version.version)


def model_cleaning(params: CleaningParams) -> Cleaning:
    """The cleaning a model carries: the params' `data.cleaning`."""
    return Cleaning(**params.model_dump())


def _fit_and_log_baseline(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    example: pd.DataFrame,
    head: str,
    params: BaselineParams,
    cleaning: Cleaning,
    *,
    model: Any = None,
    family: str = "baseline",
) -> Any:
    """Fit the baseline (unless `model`, already fitted, is given) and log it to the active run."""
    mlflow.log_params(_flat_params(params, "baseline"))
    mlflow.log_params({f"cleaning.{step}": on for step, on in cleaning.as_dict().items()})
    if model is None:
        started = time.perf_counter()
        model = fit_baseline(train, validation, params, cleaning)
        mlflow.log_metric("train_seconds", time.perf_counter() - started)
    signature = infer_signature(example, model.predict_proba(example))
    # The pickled pipeline's first step is `urgency.cleaning.TextCleaner`: that module travels
    # with the model, so it loads where urgency is not installed.
    with tempfile.TemporaryDirectory() as folder:
        code = write_model_code(Path(folder))
        return mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            # The example is the test split's text, cleaned when its source was read: the text a
            # model reads (raw HTML would clean to the same).
            input_example=example,
            code_paths=[str(code)],
            pip_requirements=pip_requirements(BASELINE_REQUIREMENTS),
            pyfunc_predict_fn="predict_proba",
            # skops (MLflow's default) stores each vocabulary entry as its own zip member and
            # takes hours on a 200k-term TF-IDF vocabulary; these models are our own, so pickle.
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_PICKLE,
            metadata={
                "head": head,
                "labels": [str(c) for c in model.classes_],
                "family": family,
                "cleaning": cleaning.as_dict(),
            },
        )


def train(
    params: Params,
    heads: Sequence[str] | None,
    *,
    params_path: Path | None = None,
    code_folder: Path | None = None,
    on_start: Callable[[Sequence[str]], None] | None = None,
    on_head: Callable[[str], None] | None = None,
    family: str | None = None,
    tickets: LoadResult | None = None,
    run_name: str = "train",
) -> TrainResult:
    """Validate the data, then train, evaluate and register each head in one MLflow run.

    `family` (default: params.training.family) is baseline, embedding, hybrid (`urgency.hybrid`),
    finetune or label-free (every described head, or those asked for, from its descriptions:
    `urgency.label_free`). `tickets`
    (default: the configured sources, validated) is the canonical ticket frame to learn from;
    `urgency retrain` passes the merged history.

    `heads` None: every head some row has a label for (a helpdesk without sentiment labels gets
    urgency and category, and `urgency.models.resolve` then finds just those), and a label-free
    head for each head with descriptions and no labelled row. A head asked for
    with no label at all is a DataValidationError naming it. `on_start` is told the heads that
    will really be trained (a progress bar's total), `on_head` each one when it is done."""
    family = family or params.training.family
    loaded = tickets if tickets is not None else load_configured(params.data)
    experiment_id = tracking.use_tracking(
        params.mlflow.tracking_uri, params.mlflow.experiment, params.mlflow.artifact_location
    )
    # Nested runs go to the active experiment, not their parent's: without this they land in
    # "Default".
    mlflow.set_experiment(experiment_id=experiment_id)
    client = registry_client(params.mlflow.tracking_uri)
    results: dict[str, HeadResult] = {}
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as parent:
        commit, dirty = tracking.git_state(code_folder or Path(__file__).resolve().parent)
        if commit:
            mlflow.set_tags({"mlflow.source.git.commit": commit, "git_dirty": str(dirty).lower()})
        mlflow.set_tag("family", family)
        if params_path is not None:
            mlflow.log_artifact(str(params_path), "params")
        _log_json(params.model_dump(mode="json"), "params/resolved_params.json")
        for report in loaded.reports:
            mlflow.log_metrics(
                {
                    f"data.{report.name}.rows_read": report.rows_read,
                    f"data.{report.name}.rows_dropped": report.rows_dropped,
                }
            )
        _log_json(
            [
                {
                    "source": r.name,
                    "path": str(r.path),
                    "rows_read": r.rows_read,
                    "rows_kept": r.rows_kept,
                    "rows_dropped": r.rows_dropped,
                    "labelled": r.labelled,
                    "problems": r.describe_problems(),
                }
                for r in loaded.reports
            ],
            "data_report.json",
        )
        datasets = {}
        # Heads registered as label-free heads (family label-free): all asked for (or every
        # described head) with --family label-free; else a head with descriptions and no label.
        label_free: list[str] = []
        for head in HEADS if heads is None else heads:
            if family == LABEL_FREE:
                if heads is None and not described(params, head):
                    continue
                if not described(params, head):
                    raise ParamsError(
                        f"head {head} has no descriptions: a label-free head needs heads.{head}.descriptions"
                    )
                label_free.append(head)
                datasets[head] = configured_head_dataset(loaded.tickets, head, params.data, params.splits)
                continue
            dataset = configured_head_dataset(loaded.tickets, head, params.data, params.splits)
            if dataset.empty and heads is None and described(params, head):
                log.info("no row carries a %s label: %s is a label-free head (its descriptions)", head, head)
                label_free.append(head)
                datasets[head] = dataset
                continue
            if dataset.empty:
                if heads is not None:
                    raise DataValidationError(
                        f"no row carries a {head} label: head {head} cannot be trained (label it "
                        "in a source's columns, describe its labels and use --family label-free, "
                        "or leave the head out)"
                    )
                log.info("no row carries a %s label: %s is not trained (it has no model)", head, head)
                continue
            check_head_dataset(dataset, head)
            datasets[head] = dataset
        if not datasets and family == LABEL_FREE:
            raise ParamsError("no head has descriptions (heads.<head>.descriptions) to build from")
        if not datasets:
            raise DataValidationError(
                f"no row carries a label for any head ({', '.join(HEADS)}): nothing to train"
            )
        mlflow.set_tag("heads", ",".join(datasets))
        if on_start:
            on_start(list(datasets))
        fitted: dict[str, Any] = {}
        fit_seconds: dict[str, float] = {}
        trained = {head: dataset for head, dataset in datasets.items() if head not in label_free}

        def finish(head: str) -> None:
            dataset = datasets[head]
            sources = ",".join(sorted(dataset["source"].unique())) if not dataset.empty else ""
            results[head] = train_head(
                dataset,
                head,
                params,
                sources=sources,
                client=client,
                family=LABEL_FREE if head in label_free else family,
                fitted=fitted.get(head),
            )
            if head in fit_seconds:
                client.log_metric(results[head].run_id, "train_seconds", fit_seconds[head])
            if on_head:
                on_head(head)

        # The baseline heads fit in the background while the text signals' model (a whole
        # training, not a chosen head) is built here; each head is evaluated and registered as
        # soon as its fit ends.
        fitting = fit_baseline_heads(trained, params) if family == "baseline" and trained else ()
        signals_version = register_signals(params, client) if params.signals and heads is None else None
        for head, model, seconds in fitting:
            fitted[head], fit_seconds[head] = model, seconds
            finish(head)
        if family == HYBRID and trained:
            from urgency.hybrid import fit_hybrid_family

            baseline = {head: params.heads.get(head).baseline for head in trained}
            fitted = fit_hybrid_family(trained, baseline, params.training)
        elif family not in ("baseline", LABEL_FREE) and trained:
            from urgency.transformer import fit_family

            fitted = fit_family(family, trained, params.training, priors=priors(params, trained))
        if label_free:
            fitted |= _fit_label_free(params, {head: datasets[head] for head in label_free})
        for head in datasets:
            if head not in results:
                finish(head)
        results = {head: results[head] for head in datasets}  # the heads' order, not the fits'
        table = quality_table({head: r.test_report for head, r in results.items() if r.test_report})
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "quality.md"
            path.write_text(table.to_markdown(index=False))
            mlflow.log_artifact(str(path))
    return TrainResult(
        parent_run_id=parent.info.run_id,
        heads=results,
        load=loaded,
        signals_version=signals_version,
        fit_seconds=fit_seconds or None,
    )
