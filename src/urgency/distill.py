"""Distillation: a fast baseline-family student taught by a slower teacher on unlabelled tickets.

`urgency distill --head H --teacher V` fits the baseline family's pipeline (TF-IDF into a
logistic regression, `train.build_pipeline`) on two kinds of rows:

- the head's labelled train rows, with their labels (class-balanced weights, as the baseline's
  `class_weight="balanced"` gives them);
- a seeded sample of unlabelled tickets (`distill.unlabelled_rows`; by default from every source
  that labels no row for the head: the helpdesk's own text), labelled by the teacher's calibrated
  probabilities as soft targets. A logistic regression takes no soft labels, so each ticket
  becomes one row per class weighted by the teacher's probability (`soft_targets`); their total
  weight is `distill.unlabelled_weight` times the labelled rows'.

The hand-labelled support-sentiment rows are never among the unlabelled tickets (by id and by
text), so the check stays honest. The student is calibrated on the labelled validation split like
the baseline, logged, evaluated and registered by `train.train_head` as a version of the head's
model with family `student`, the teacher named in its tags, and its gap to the teacher on the
test split (and, for sentiment, on the support-sentiment check) in its metrics.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd

from urgency import tracking
from urgency.cleaning import Cleaning
from urgency.config import DistillParams, HeadParams, Params
from urgency.data import check_head_dataset, configured_head_dataset, load_configured
from urgency.errors import DataValidationError, ModelNotFoundError, ParamsError
from urgency.evaluate import classification_report
from urgency.models import HeadModel, HeadRef, ModelSource, load_models, registry_client
from urgency.predict import predict_proba
from urgency.text import ticket_text

if TYPE_CHECKING:
    from urgency.hand_labelled import LabelledSet

log = logging.getLogger(__name__)

FAMILY = "student"


@dataclass
class DistillResult:
    head: str
    registered_name: str
    version: str
    run_id: str
    teacher: str  # "<name> v<version> (<family>)"
    unlabelled_rows: int
    figures: dict[str, float]  # student and teacher figures and the gaps, as logged


def unlabelled_tickets(
    tickets: pd.DataFrame,
    head: str,
    sources: Sequence[str],
    *,
    rows: int,
    seed: int,
    max_text_chars: int,
    excluded_ids: Collection[str] = (),
    excluded_texts: Collection[str] = (),
) -> pd.DataFrame:
    """A seeded sample of at most `rows` tickets of `sources` that carry no `head` label: `id`,
    `source`, `text` (the model text, as `data.head_dataset` makes it). Tickets whose id is in
    `excluded_ids` or whose text is in `excluded_texts` (hand-labelled rows) are left out, as are
    empty and repeated texts."""
    chosen = tickets[tickets["source"].isin(list(sources)) & tickets[head].isna()]
    frame = pd.DataFrame(
        {
            "id": chosen["id"].astype(str),
            "source": chosen["source"],
            "text": ticket_text(chosen["subject"], chosen["body"], max_text_chars),
        }
    )
    keep = (
        ~frame["id"].isin(list(excluded_ids))
        & ~frame["text"].isin(list(excluded_texts))
        & (frame["text"].str.strip() != "")
    )
    frame = frame[keep].drop_duplicates("text")
    if len(frame) > rows:
        frame = frame.sample(n=rows, random_state=seed)
    return frame.reset_index(drop=True)


def soft_targets(probabilities: pd.DataFrame, *, total_weight: float, min_probability: float) -> pd.DataFrame:
    """The teacher's probabilities (one row per ticket) as weighted hard rows: one row
    (`ticket`: its position, `label`, `weight`) per ticket and class whose probability is at
    least `min_probability`, weighted by that probability, all weights scaled so they sum to
    `total_weight`. A weighted log-loss over these rows is the cross-entropy against the
    teacher's distribution (up to the dropped classes)."""
    values = probabilities.to_numpy(dtype=float)
    ticket, label = np.nonzero(values >= min_probability)
    weight = values[ticket, label]
    total = weight.sum()
    return pd.DataFrame(
        {
            "ticket": ticket,
            "label": np.asarray(probabilities.columns, dtype=object)[label],
            "weight": weight * (total_weight / total) if total > 0 else weight,
        }
    )


def balanced_weights(labels: pd.Series) -> np.ndarray:
    """n / (classes * count) per row's class: scikit-learn's class_weight="balanced"."""
    counts = labels.value_counts()
    return (len(labels) / (len(counts) * labels.map(counts))).to_numpy(dtype=float)


def fit_student(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    unlabelled: pd.Series,
    targets: pd.DataFrame,
    head_params: HeadParams,
    cleaning: Cleaning,
) -> Any:
    """The baseline pipeline (`train.build_pipeline`) fitted on `train` (text, label; balanced
    weights as the baseline's) and the `soft_targets` rows of the `unlabelled` texts, then
    calibrated on `validation` as the baseline is.

    The steps are fitted one by one so each text is cleaned and vectorised once (the TF-IDF
    vocabulary and weights from the distinct texts), however many class rows it becomes."""
    from urgency.train import build_pipeline, calibrate

    baseline = head_params.baseline
    pipeline = build_pipeline(baseline, cleaning)
    texts = pd.DataFrame({"text": pd.concat([train["text"], unlabelled], ignore_index=True)})
    clean, features, classifier = (pipeline.named_steps[step] for step in ("clean", "features", "classifier"))
    matrix = features.fit_transform(clean.fit_transform(texts))
    rows = np.concatenate([np.arange(len(train)), len(train) + targets["ticket"].to_numpy()])
    labels = np.concatenate([train["label"].astype(str).to_numpy(), targets["label"].astype(str).to_numpy()])
    labelled_weight = (
        balanced_weights(train["label"]) if baseline.class_weight == "balanced" else np.ones(len(train))
    )
    # The class balance is in the labelled rows' weights; the teacher's rows keep the teacher's.
    classifier.set_params(class_weight=None)
    classifier.fit(
        matrix[rows], labels, sample_weight=np.concatenate([labelled_weight, targets["weight"].to_numpy()])
    )
    return calibrate(pipeline, validation, baseline)


def resolve_teacher(params: Params, head: str, teacher: str) -> HeadRef:
    """`teacher`: a version number or an alias of the head's registered model, or a model family
    (`label-free`: its newest version, so a script need not know the number)."""
    from urgency.comparison import latest_by_family

    client = registry_client(params.mlflow.tracking_uri)
    name = params.mlflow.model_name(head)
    try:
        if teacher.isdigit():
            found = client.get_model_version(name, teacher)
        elif teacher in (families := latest_by_family(client, name)):
            found = families[teacher]
        else:
            found = client.get_model_version_by_alias(name, teacher)
    except mlflow.exceptions.MlflowException:
        raise ModelNotFoundError(
            f"no teacher {name} {'v' if teacher.isdigit() else '@'}{teacher} in the registry at "
            f"{params.mlflow.tracking_uri}: pass a registered version, alias or model family of {name}"
        ) from None
    return HeadRef(
        head=head,
        uri=f"models:/{name}/{found.version}",
        version=str(found.version),
        run_id=found.run_id,
        registry_name=name,
        alias=None if teacher.isdigit() else teacher,
    )


def _load(ref: HeadRef, tracking_uri: str) -> HeadModel:
    return load_models(ModelSource(heads=(ref,), tracking_uri=tracking_uri))[ref.head]


def _support_accuracy(client: Any, name: str, version: str, model: HeadModel, checked: LabelledSet) -> float:
    """The version's accuracy on the set, kept on the version (`version_sentiment_check`)."""
    from urgency.hand_labelled import version_sentiment_check

    found = client.get_model_version(name, version)
    return version_sentiment_check(client, found, checked, lambda: model)["negative_vs_not_accuracy"]


def _teacher_test_f1(client: Any, teacher_run: str | None, student_run: str) -> float | None:
    """The teacher's test macro-F1 as its own training run measured it, when that run tested on
    the same rows as the student's (same dataset digest); None: measure it again."""
    if not teacher_run:
        return None
    digest = tracking.dataset_digest
    same_rows = digest(client, teacher_run, "testing") == digest(client, student_run, "testing")
    measured = client.get_run(teacher_run).data.metrics.get("test_macro_f1")
    return float(measured) if same_rows and measured is not None else None


def distill(
    params: Params,
    head: str,
    teacher: str,
    *,
    sources: Sequence[str] | None = None,
    support_sentiment: LabelledSet | None = None,
    params_path: Path | None = None,
) -> DistillResult:
    """Distil the `teacher` (a registered version or alias of the head's model) into a
    baseline-family student, in one MLflow run `distill` with a child run for the student, and
    register the student (family `student`; the champion alias is not moved).

    `sources` (default `distill.sources`, else every source that labels no row for the head) give
    the unlabelled tickets; `support_sentiment` (a `hand_labelled.LabelledSet`) names the
    hand-labelled rows to leave out and, for sentiment, the check to measure both models on."""
    from urgency.hand_labelled import ticket_ids
    from urgency.train import model_cleaning, train_head

    settings: DistillParams = params.distill
    head_params = params.heads.get(head)
    loaded = load_configured(params.data)
    dataset = configured_head_dataset(loaded.tickets, head, params.data, params.splits)
    if dataset.empty:
        raise DataValidationError(
            f"no row carries a {head} label: a student needs the head's labelled rows (train, "
            "validation and test) beside the unlabelled tickets"
        )
    check_head_dataset(dataset, head)
    known = [source.name for source in params.data.sources]
    chosen = list(sources or settings.sources) or [
        name for name in known if name not in set(dataset["source"])
    ]
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise ParamsError(
            f"unlabelled source(s) {', '.join(unknown)} not in data.sources ({', '.join(known)})"
        )
    excluded_ids: set[str] = set()
    excluded_texts: set[str] = set()
    if support_sentiment is not None:
        excluded_ids = ticket_ids(support_sentiment)
        excluded_texts = set(support_sentiment.labels["text"])
    unlabelled = unlabelled_tickets(
        loaded.tickets,
        head,
        chosen,
        rows=settings.unlabelled_rows,
        seed=params.training.seed,
        max_text_chars=params.data.max_text_chars,
        excluded_ids=excluded_ids,
        excluded_texts=excluded_texts,
    )
    if unlabelled.empty:
        raise DataValidationError(
            f"no unlabelled ticket in {', '.join(chosen) or 'no source'}: nothing to distil on "
            "(name sources with --unlabelled or distill.sources)"
        )

    ref = resolve_teacher(params, head, teacher)
    teacher_model = _load(ref, params.mlflow.tracking_uri)
    labels = list(head_params.labels)
    if sorted(teacher_model.labels) != sorted(labels):
        raise ParamsError(
            f"teacher {ref.registry_name} v{ref.version} predicts {list(teacher_model.labels)}, "
            f"not the head's labels {labels}"
        )
    client = registry_client(params.mlflow.tracking_uri)
    teacher_family = client.get_model_version(ref.registry_name, ref.version).tags.get("family", "baseline")
    teacher_name = f"{ref.registry_name} v{ref.version} ({teacher_family})"
    log.info("%s: teacher %s labels %d unlabelled tickets", head, teacher_name, len(unlabelled))
    probabilities = predict_proba(teacher_model, unlabelled["text"])[labels]
    train = dataset[dataset["split"] == "train"]
    validation = dataset[dataset["split"] == "validation"]
    test = dataset[dataset["split"] == "test"]
    labelled_total = (
        float(balanced_weights(train["label"]).sum())
        if head_params.baseline.class_weight == "balanced"
        else float(len(train))
    )
    targets = soft_targets(
        probabilities,
        total_weight=settings.unlabelled_weight * labelled_total,
        min_probability=settings.min_probability,
    )
    cleaning = model_cleaning(params.data.cleaning)

    experiment_id = tracking.use_tracking(
        params.mlflow.tracking_uri, params.mlflow.experiment, params.mlflow.artifact_location
    )
    mlflow.set_experiment(experiment_id=experiment_id)
    run_params = {
        **{f"distill.{key}": value for key, value in settings.model_dump(mode="json").items()},
        "distill.sources": ",".join(chosen),
        "distill.unlabelled_rows_used": len(unlabelled),
        "distill.soft_target_rows": len(targets),
        "distill.excluded_hand_labelled": len(excluded_ids),
        "teacher": teacher_name,
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name="distill") as parent:
        mlflow.set_tags({"family": FAMILY, "head": head, "teacher_model": ref.registry_name})
        mlflow.log_params(run_params)
        if params_path is not None:
            mlflow.log_artifact(str(params_path), "params")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "unlabelled_soft_targets.csv"
            pd.concat([unlabelled[["id", "source"]], probabilities.add_prefix("teacher_")], axis=1).to_csv(
                path, index=False
            )
            mlflow.log_artifact(str(path))
        started = time.perf_counter()
        model = fit_student(train, validation, unlabelled["text"], targets, head_params, cleaning)
        train_seconds = time.perf_counter() - started
        tags = {
            "teacher_model": ref.registry_name,
            "teacher_version": ref.version,
            "teacher_family": teacher_family,
        }
        result = train_head(
            dataset,
            head,
            params,
            sources=",".join(sorted(set(dataset["source"]) | set(unlabelled["source"]))),
            client=client,
            family=FAMILY,
            fitted=model,
            claim_champion=False,
            tags=tags,
        )
        client.log_param(result.run_id, "train_rows", len(train) + len(unlabelled))
        client.log_metric(result.run_id, "train_seconds", train_seconds)
        for key, value in run_params.items():
            client.log_param(result.run_id, key, value)

        teacher_f1 = _teacher_test_f1(client, ref.run_id, result.run_id)
        if teacher_f1 is None:
            majority = train["label"].mode().iloc[0]
            teacher_f1 = classification_report(
                test["label"], predict_proba(teacher_model, test["text"])[labels], labels, majority
            )["macro_f1"]
        figures = {
            "teacher_test_macro_f1": teacher_f1,
            "test_macro_f1_gap_to_teacher": result.test_report["macro_f1"] - teacher_f1,
        }
        if head == "sentiment" and support_sentiment is not None:
            student_model = _load(
                HeadRef(
                    head=head,
                    uri=f"models:/{result.registered_name}/{result.version}",
                    version=result.version,
                    run_id=result.run_id,
                    registry_name=result.registered_name,
                ),
                params.mlflow.tracking_uri,
            )
            student_accuracy = _support_accuracy(
                client, result.registered_name, result.version, student_model, support_sentiment
            )
            teacher_accuracy = _support_accuracy(
                client, ref.registry_name, ref.version, teacher_model, support_sentiment
            )
            figures["support_sentiment_accuracy"] = student_accuracy
            figures["teacher_support_sentiment_accuracy"] = teacher_accuracy
            figures["support_sentiment_gap_to_teacher"] = student_accuracy - teacher_accuracy
        for key, value in figures.items():
            client.log_metric(result.run_id, key, value)
            client.set_model_version_tag(result.registered_name, result.version, key, f"{value:.4f}")
        figures["test_macro_f1"] = result.test_report["macro_f1"]
        mlflow.log_metrics(figures)
    return DistillResult(
        head=head,
        registered_name=result.registered_name,
        version=result.version,
        run_id=parent.info.run_id,
        teacher=teacher_name,
        unlabelled_rows=len(unlabelled),
        figures=figures,
    )
