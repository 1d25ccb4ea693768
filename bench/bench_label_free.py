"""Label-free sentiment measured where it matters (README "Label-free heads").

Compares, on the hand-labelled support set `data/labelled/support_sentiment.csv` (400 rows of
support_tickets_synthetic.csv, negative vs not):
(a) the baseline (TF-IDF) sentiment head fitted on the airline tweets, as `urgency train` fits it;
(b) the label-free head from params.yaml's `heads.sentiment.descriptions`, its temperature
    fitted on the airline train/validation rows, saved and loaded through `urgency.models`;
and the label-free head's macro-F1 on the airline tweets' test split. Run from the project
folder (it reads ../shared/data through params.yaml):

    HF_HUB_OFFLINE=1 python bench/bench_label_free.py [--params params.yaml]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, precision_score, recall_score

from urgency.config import load_params
from urgency.data import configured_head_dataset, load_tickets
from urgency.label_free import fit_label_free
from urgency.models import load_model_dir
from urgency.predict import predict_proba
from urgency.text import ticket_text
from urgency.train import fit_baseline, model_cleaning
from urgency.transformer import save_head_model

LABELLED = Path("data/labelled/support_sentiment.csv")


def digest(subject: object, body: object) -> str:
    s = "" if pd.isna(subject) else str(subject)
    b = "" if pd.isna(body) else str(body)
    return hashlib.sha256((s + "\n" + b).encode("utf-8")).hexdigest()[:16]


def support_set(params_path: Path, params: object) -> pd.DataFrame:
    """The labelled rows joined to the shared file (digests checked), with the model text."""
    source = next(s for s in params.data.sources if s.name == "support_tickets_synthetic")
    tickets = pd.read_csv(source.path)
    labels = pd.read_csv(LABELLED, keep_default_na=False)
    joined = labels.join(tickets[["subject", "body"]], on="row")
    bad = [d != digest(s, b) for s, b, d in zip(joined.subject, joined.body, joined.text_sha256, strict=True)]
    assert not any(bad), f"{sum(bad)} rows do not match the shared file"
    joined["text"] = ticket_text(joined["subject"], joined["body"], params.data.max_text_chars).to_numpy()
    return joined


def negative_figures(truth: pd.Series, predicted: np.ndarray) -> dict[str, float]:
    y, p = (truth == "negative").to_numpy(), predicted == "negative"
    return {
        "accuracy_negative_vs_not": float((y == p).mean()),
        "negative_precision": float(precision_score(y, p, zero_division=0)),
        "negative_recall": float(recall_score(y, p, zero_division=0)),
        "predicted_negative": int(p.sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--output", type=Path, default=Path("bench/label_free.json"))
    args = parser.parse_args()
    params = load_params(args.params)
    support = support_set(args.params, params)
    airline = [s for s in params.data.sources if s.name == "airline_tweets_sentiment"]
    tweets = configured_head_dataset(load_tickets(airline).tickets, "sentiment", params.data, params.splits)
    train, validation, test = (tweets[tweets["split"] == name] for name in ("train", "validation", "test"))
    head = params.heads.sentiment
    labels = list(head.labels)
    results: dict[str, object] = {
        "support_rows": len(support),
        "support_negative": int((support["sentiment"] == "negative").sum()),
        "airline_test_rows": len(test),
    }

    started = time.perf_counter()
    baseline = fit_baseline(train, validation, head.baseline, model_cleaning(params.data.cleaning))
    classes = list(baseline.classes_)
    support_pred = np.asarray(classes)[baseline.predict_proba(support[["text"]]).argmax(axis=1)]
    test_pred = np.asarray(classes)[baseline.predict_proba(test[["text"]]).argmax(axis=1)]
    results["baseline"] = {
        **negative_figures(support["sentiment"], support_pred),
        "airline_test_macro_f1": float(f1_score(test["label"], test_pred, labels=labels, average="macro")),
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps(results, indent=2))

    started = time.perf_counter()
    descriptions = {"sentiment": {label: head.descriptions[label] for label in labels}}
    labelled = {"sentiment": pd.concat([train, validation])}
    fitted = fit_label_free(descriptions, labelled, params.training.label_free, seed=params.training.seed)
    with tempfile.TemporaryDirectory() as folder:
        save_head_model(
            fitted["sentiment"],
            Path(folder) / "sentiment",
            support[["text"]].head(3).reset_index(drop=True),
            model_cleaning(params.data.cleaning),
        )
        model = load_model_dir(Path(folder), ["sentiment"])["sentiment"]
        support_proba = predict_proba(model, support["text"])
        test_proba = predict_proba(model, test["text"])
    model_labels = np.asarray(support_proba.columns)
    support_proba, test_proba = support_proba.to_numpy(), test_proba.to_numpy()
    results["label_free"] = {
        **negative_figures(support["sentiment"], model_labels[support_proba.argmax(axis=1)]),
        "airline_test_macro_f1": float(
            f1_score(test["label"], model_labels[test_proba.argmax(axis=1)], labels=labels, average="macro")
        ),
        "temperature": fitted["sentiment"].temperature,
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps(results, indent=2))
    args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
