"""Text impact signals read by label-free detectors, measured on the hand-labelled support set.

Each signal is a binary label-free head (`urgency.label_free`): labels [<signal>, other], the
signal described by a few sentences, `other` by the ordinary requests every signal shares. Its
confidence is P(<signal>) with the default temperature. The 400 tickets of
`data/labelled/support_sentiment.csv` carry a 0/1 column per signal; the threshold per signal is
CHOSEN ON THIS SAME SET (the F1-best one), so its precision and recall are optimistic.

    HF_HUB_OFFLINE=1 python bench/bench_text_signals.py [--params params.yaml]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench_label_free import support_set  # this folder is on sys.path when run as a script

from urgency.config import load_params
from urgency.label_free import fit_label_free
from urgency.transformer_model import embed, softmax

OTHER = [
    "I would like information about your pricing plans.",
    "How do I change the language of the user interface?",
    "Please update the billing address on our account.",
    "One report shows the wrong date format.",
    "Could you explain how to export a spreadsheet?",
    "The application is a bit slow when I open large files.",
    "I forgot my password and need to reset it.",
    "We would like to add a new feature to our subscription.",
]

SIGNALS = {
    "service_down": [
        "Our whole system is down and nobody can access the platform.",
        "The website is offline, the server crashed and the service is unavailable.",
        "Production outage: the application cannot be reached at all.",
        "The network and VPN are down, the database server is not responding.",
    ],
    "many_users": [
        "All our employees are affected by this problem.",
        "The whole team and several departments cannot work.",
        "Many of our customers and users report the same issue.",
        "Everyone in the company is impacted.",
    ],
    "security": [
        "We detected suspicious logins to an administrator account.",
        "Our account was hacked and there was unauthorized access to our data.",
        "A data breach exposed customer records.",
        "We received a phishing e-mail and found malware on a computer.",
    ],
    "data_loss": [
        "All our files were deleted and cannot be recovered.",
        "The database is corrupted and records were lost.",
        "Customer data disappeared after the update.",
        "E-mails and documents were overwritten and are gone.",
    ],
    "payment_failure": [
        "Every payment fails and customers cannot check out.",
        "The credit card charge was declined.",
        "We were charged twice on our invoice.",
        "The billing system overcharged us, the amount is wrong.",
    ],
    "legal_deadline": [
        "We must comply with GDPR and HIPAA regulations by the deadline.",
        "Our contract and SLA obligations require a fix.",
        "The audit deadline is next week and we face legal consequences.",
        "Regulatory compliance requires us to meet this obligation.",
    ],
}


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
    support = support_set(args.params, params)
    lf = params.training.label_free
    descriptions = {name: {name: sentences, "other": OTHER} for name, sentences in SIGNALS.items()}
    fitted = fit_label_free(descriptions, {}, lf, seed=params.training.seed)
    first = next(iter(fitted.values()))
    vectors = embed(
        first.encoder,
        first.tokenizer,
        support["text"].tolist(),
        max_length=lf.max_length,
        batch_size=lf.batch_size,
        normalize=True,
    )
    results = {}
    for name, head in fitted.items():
        confidence = softmax((vectors @ head.weight.T) / head.temperature)[:, 0]
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
