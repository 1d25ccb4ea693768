"""Text impact signals (params `signals`), measured on the hand-labelled support set.

The signals' model is built exactly as `urgency train` builds it (`urgency.label_free.fit_signals`)
and read exactly as predict reads it (`urgency.predict.signal_confidences`): per signal
P(signal vs other) at the signals' temperature. The 400 tickets of
`data/labelled/support_sentiment.csv` carry a 0/1 column per signal. The threshold per signal
is CHOSEN ON THIS SAME SET (the F1-best one), so its precision and recall are optimistic; the
rules file's `text_signals` thresholds come from here (rules.yaml says which run).

    HF_HUB_OFFLINE=1 python bench/bench_text_signals.py [--params params.yaml]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench_label_free import support_set  # this folder is on sys.path when run as a script

from urgency.config import load_params
from urgency.label_free import fit_signals
from urgency.predict import signal_confidences
from urgency.transformer_model import embed, softmax


def best_threshold(truth: np.ndarray, score: np.ndarray) -> dict[str, float]:
    best = {"f1": -1.0}
    for threshold in np.unique(np.round(score, 3)):
        predicted = score >= threshold
        tp = int((predicted & truth).sum())
        precision = tp / max(int(predicted.sum()), 1)
        recall = tp / max(int(truth.sum()), 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-9)
        if f1 > best["f1"]:
            best = {"threshold": float(threshold), "precision": precision, "recall": recall, "f1": f1}
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--output", type=Path, default=Path("bench/text_signals.json"))
    args = parser.parse_args()
    params = load_params(args.params)
    if params.signals is None:
        raise SystemExit(f"{args.params} has no `signals` block to measure")
    support = support_set(args.params, params)
    lf = params.training.label_free
    fitted = fit_signals(params.signals, lf)
    vectors = embed(
        fitted.encoder,
        fitted.tokenizer,
        support["text"].tolist(),
        max_length=lf.max_length,
        batch_size=lf.batch_size,
        normalize=True,
    )
    proba = softmax((vectors @ fitted.weight.T + fitted.bias) / fitted.temperature)
    confidences = signal_confidences(proba, fitted.labels)
    results = {}
    for position, name in enumerate(params.signals.descriptions):
        confidence = confidences[:, position]
        truth = support[name].astype(int).to_numpy() == 1
        at_half = confidence >= 0.5
        tp = int((at_half & truth).sum())
        results[name] = {
            "positives": int(truth.sum()),
            "at_0.5": {
                "precision": tp / max(int(at_half.sum()), 1),
                "recall": tp / max(int(truth.sum()), 1),
                "flagged": int(at_half.sum()),
            },
            "chosen_on_this_set": best_threshold(truth, confidence),
        }
        print(name, json.dumps(results[name]))
    args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
