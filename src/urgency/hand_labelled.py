"""Hand-labelled checks: a model measured on the kind of text it will score.

The support-sentiment set (`data/labelled/support_sentiment.csv`, guideline beside it, described
in data/README.md) labels 400 rows of `support_tickets_synthetic.csv` by hand: it holds no text,
only the row position and a digest of the text, so `load_support_sentiment` joins it back to the
shared file and refuses a row whose digest does not match. `sentiment_check` reports a sentiment
model on it: accuracy negative-vs-not (the question the rules ask), the share predicted and
labelled negative, and per-class figures. Used for choosing and reporting, never for training.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from urgency.errors import DataValidationError, InputError
from urgency.evaluate import classification_report

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from urgency.config import Params, Source
    from urgency.models import HeadModel
    from urgency.promote import HandCheck

# The set, relative to the project (the params file's folder), and the source it labels.
SUPPORT_SENTIMENT_FILE = Path("data/labelled/support_sentiment.csv")
SUPPORT_SENTIMENT_SOURCE = "support_tickets_synthetic"
SENTIMENT_LABELS = ("negative", "neutral", "positive")
log = logging.getLogger(__name__)
# A registered version's figures on the set, with the set's digest: `version_sentiment_check`.
CHECK_TAG = "support_sentiment_check"
CHECK_FIGURES = ("negative_vs_not_accuracy", "share_predicted_negative")
SIGNALS = ("service_down", "many_users", "security", "data_loss", "payment_failure", "legal_deadline")


@dataclass(frozen=True)
class LabelledSet:
    """Hand labels joined to their tickets: `labels` has the set's columns plus `text`, the text
    a model reads (subject and body, cleaned and cut as the source's own training rows)."""

    name: str
    path: Path
    labels: pd.DataFrame


def text_digest(subject: object, body: object) -> str:
    """The set's digest: first 16 hex of sha256(subject + newline + body), missing as empty."""
    s = "" if pd.isna(subject) else str(subject)
    b = "" if pd.isna(body) else str(body)
    return hashlib.sha256((s + "\n" + b).encode("utf-8")).hexdigest()[:16]


def load_support_sentiment(
    labels_path: Path, tickets_path: Path, *, source: Source | None = None, max_text_chars: int = 5000
) -> LabelledSet:
    """The support-sentiment set joined by `row` to `tickets_path` (read with pandas' defaults,
    as the guideline says), each row's `text_sha256` verified. A missing file is an InputError; a
    row out of range or a digest that does not match is a DataValidationError naming the file and
    the rows. `source` (the params' support_tickets_synthetic) gives the text's columns and
    cleaning; without it, the file's `subject` and `body` with the default cleaning."""
    from urgency.cleaning import Cleaning
    from urgency.text import ticket_text

    for path in (labels_path, tickets_path):
        if not path.exists():
            raise InputError(f"{path}: file not found")
    labels = pd.read_csv(labels_path, keep_default_na=False, dtype={"text_sha256": str, "note": str})
    missing = [c for c in ("row", "text_sha256", "sentiment") if c not in labels.columns]
    if missing:
        raise DataValidationError(f"{labels_path}: missing column(s) {', '.join(missing)}")
    tickets = pd.read_csv(tickets_path)
    subject_column = source.columns.subject if source is not None else "subject"
    body_column = source.columns.body if source is not None else "body"
    rows = labels["row"].astype(int)
    outside = labels.index[(rows < 0) | (rows >= len(tickets))]
    if len(outside):
        shown = ", ".join(str(int(rows[i])) for i in outside[:5])
        raise DataValidationError(
            f"{labels_path}: {len(outside)} row(s) point past the end of {tickets_path} "
            f"({len(tickets)} rows), e.g. row {shown}: re-join the labels before using them"
        )
    joined = tickets.iloc[rows.to_numpy()]
    subjects = joined[subject_column] if subject_column else pd.Series("", index=joined.index)
    found = [text_digest(s, b) for s, b in zip(subjects, joined[body_column], strict=True)]
    wrong = [i for i, (want, got) in enumerate(zip(labels["text_sha256"], found, strict=True)) if want != got]
    if wrong:
        shown = ", ".join(f"row {int(rows[i])} (line {i + 2})" for i in wrong[:5])
        raise DataValidationError(
            f"{labels_path}: {len(wrong)} of {len(labels)} labelled tickets do not match the text in "
            f"{tickets_path} (text_sha256 differs), e.g. {shown}: the shared file changed; re-join "
            "the labels before using them"
        )
    cleaning = Cleaning(**source.cleaning.model_dump()) if source is not None else Cleaning()
    text = ticket_text(
        subjects.reset_index(drop=True), joined[body_column].reset_index(drop=True), max_text_chars, cleaning
    )
    frame = labels.copy()
    frame["text"] = text.to_numpy()
    return LabelledSet(name="support sentiment", path=labels_path, labels=frame)


def ticket_ids(checked: LabelledSet, source: str = SUPPORT_SENTIMENT_SOURCE) -> set[str]:
    """The canonical ids `tickets.map_tickets` gives the set's rows (the source has no id
    column: `<source>:<row + 1>`), so training code can leave them out."""
    return {f"{source}:{int(row) + 1}" for row in checked.labels["row"]}


def configured_support_sentiment(params: Params, labels_path: Path) -> LabelledSet | None:
    """The set at `labels_path` (the CLI: SUPPORT_SENTIMENT_FILE in the params file's folder),
    its tickets read as the params' support_tickets_synthetic source describes them. None when
    the params have no such source or the labels file is absent: the check is then not made."""
    source = next((s for s in params.data.sources if s.name == SUPPORT_SENTIMENT_SOURCE), None)
    if source is None or not labels_path.exists():
        return None
    return load_support_sentiment(
        labels_path, source.path, source=source, max_text_chars=params.data.max_text_chars
    )


def sentiment_report(labels: pd.Series | np.ndarray, probabilities: pd.DataFrame) -> dict[str, Any]:
    """A sentiment model's probabilities (one column per label) against hand labels: accuracy
    negative-vs-not, the share predicted and labelled negative, and the three-class report
    (`urgency.evaluate.classification_report`, majority `neutral`) with per-class figures."""
    truth = np.asarray(labels, dtype=object)
    columns = list(probabilities.columns)
    predicted = np.asarray(columns, dtype=object)[probabilities.to_numpy(dtype=float).argmax(axis=1)]
    report = classification_report(truth, probabilities, list(SENTIMENT_LABELS), "neutral")
    true_negative, said_negative = truth == "negative", predicted == "negative"
    return {
        "n": len(truth),
        "negative_vs_not_accuracy": float((true_negative == said_negative).mean()) if len(truth) else 0.0,
        "share_predicted_negative": float(said_negative.mean()) if len(truth) else 0.0,
        "share_labelled_negative": float(true_negative.mean()) if len(truth) else 0.0,
        "predicted_counts": {label: int((predicted == label).sum()) for label in SENTIMENT_LABELS},
        "report": report,
    }


def sentiment_check(model: HeadModel, checked: LabelledSet) -> dict[str, Any]:
    """`sentiment_report` for a loaded sentiment model on the set, predicting through
    `urgency.predict` as every command does."""
    from urgency.predict import predict_proba

    if model.head != "sentiment":
        raise InputError(f"the {checked.name} check is for sentiment models, not {model.head}")
    probabilities = predict_proba(model, checked.labels["text"])
    return sentiment_report(checked.labels["sentiment"], probabilities)


def set_digest(checked: LabelledSet) -> str:
    """The set's labels and its texts' digests: a changed label or text changes it."""
    rows = checked.labels[["text_sha256", "sentiment"]].astype(str).to_csv(index=False)
    return hashlib.sha256(rows.encode("utf-8")).hexdigest()[:16]


def version_sentiment_check(
    client: MlflowClient, version: ModelVersion, checked: LabelledSet, load: Callable[[], HeadModel]
) -> dict[str, float]:
    """`CHECK_FIGURES` of `sentiment_check` for a registered version, measured once per set: a
    registered version never changes (its files are digest-checked on load), so its figures on
    the same set cannot either. They are kept as the version's `CHECK_TAG` tag with the set's
    digest; `load` gives the model when they must be measured (a MiniLM head: a 10 s load and
    a minute of encoding saved in each later train, distill, promote and compare)."""
    digest = set_digest(checked)
    try:
        stored = json.loads(version.tags.get(CHECK_TAG) or "{}")
    except ValueError:
        stored = {}
    if stored.get("set") == digest and all(isinstance(stored.get(key), float) for key in CHECK_FIGURES):
        return {key: stored[key] for key in CHECK_FIGURES}
    report = sentiment_check(load(), checked)
    figures = {key: float(report[key]) for key in CHECK_FIGURES}
    try:
        client.set_model_version_tag(
            version.name, version.version, CHECK_TAG, json.dumps({"set": digest, **figures})
        )
    except Exception as error:  # a read-only registry: measured again next time, nothing lost
        log.warning(
            "could not keep the %s figures on %s v%s: %s", checked.name, version.name, version.version, error
        )
    return figures


def promotion_checks(params: Params, checked: LabelledSet | None) -> dict[str, HandCheck]:
    """The heads' hand-labelled checks for the promotion policy (`urgency.promote.HandCheck`):
    sentiment on the support-sentiment set (accuracy negative-vs-not) when the set is there."""
    from urgency.models import load_version, registry_client
    from urgency.promote import HandCheck

    if checked is None:
        return {}
    name = params.mlflow.model_name("sentiment")
    client = registry_client(params.mlflow.tracking_uri)

    def accuracy(version: ModelVersion) -> float:
        def load() -> HeadModel:
            return load_version("sentiment", name, version, params.mlflow.tracking_uri)

        return version_sentiment_check(client, version, checked, load)["negative_vs_not_accuracy"]

    policy = params.promotion
    return {
        "sentiment": HandCheck(
            name="support sentiment acc.",
            figure=accuracy,
            min_gain=policy.min_check_gain,
            max_drop=policy.max_check_drop,
            max_macro_f1_drop=policy.max_macro_f1_drop_for_check,
        )
    }
