"""Throughput of the scoring rules, alone and as a share of end-to-end scoring (predict + rules).

Builds N tickets from the configured ticket texts with seeded random metadata (plan, VIP, impact,
region, ...), predicts them with the champion models in chunks as `urgency score` does, then
applies the rules file to the predictions. Prints tickets/second for each stage, the rules' share
of the end-to-end time, and the latency of one `decide` call (what the service pays per ticket).

    .venv/bin/python bench/bench_scoring.py [--model-dir models | --params p.yaml] [--rows 20000]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from urgency.config import HEADS, load_params
from urgency.data import load_tickets
from urgency.models import load_model_dir, load_registered_models
from urgency.predict import predict_frame
from urgency.rules import load_rules
from urgency.rules.engine import decide
from urgency.scoring import decide_frame, head_outputs, queue_order

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
METADATA = {
    "plan": ["free", "standard", "premium", "enterprise", ""],
    "vip": ["true", "false", "false", "false", ""],
    "account_type": ["business", "consumer", "partner", "internal", ""],
    "customer_category": ["new", "existing", "existing", "at_risk", ""],
    "persona": ["end_user", "admin", "developer", "executive", ""],
    "users_affected": ["1", "3", "8", "60", ""],
    "service_down": ["true", "false", "false", "false", ""],
    "request_type": ["incident", "service_request", "question", "security", ""],
    "region": ["emea", "americas"],
    "language": ["en", "de", "es"],
    "channel": ["email", "web", "chat", "phone"],
    "custom_regulated": ["true", "false", "false", "false"],
}


def make_tickets(params_path: Path, rows: int) -> pd.DataFrame:
    params = load_params(params_path)
    texts = load_tickets(params.data.sources).tickets[["subject", "body"]]
    sample = texts.sample(n=rows, replace=rows > len(texts), random_state=0).reset_index(drop=True)
    generator = np.random.default_rng(0)
    for column, values in METADATA.items():
        sample[column] = generator.choice(values, size=rows)
    minutes = generator.integers(0, 7 * 24 * 60, size=rows)
    sample["created_at"] = [(NOW - timedelta(minutes=int(m))).isoformat() for m in minutes]
    return sample.fillna("")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--model-dir", type=Path, default=None, help="default: the registry champions")
    parser.add_argument("--rules", type=Path, default=None, help="default: scoring.rules in the params")
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--chunk-size", type=int, default=5000)
    args = parser.parse_args()

    params = load_params(args.params)
    rules = load_rules(args.rules or params.scoring.rules, category_labels=params.heads.category.labels)
    if args.model_dir is not None:
        models = load_model_dir(args.model_dir, HEADS)
    else:
        models = load_registered_models(
            HEADS,
            tracking_uri=params.mlflow.tracking_uri,
            model_names={head: params.mlflow.model_name(head) for head in HEADS},
            alias=params.mlflow.champion_alias,
        )
    tickets = make_tickets(args.params, args.rows)

    started = time.perf_counter()
    predicted = pd.concat(
        [
            predict_frame(
                models,
                tickets.iloc[start : start + args.chunk_size],
                subject_column="subject",
                body_column="body",
                max_text_chars=params.data.max_text_chars,
            )
            for start in range(0, len(tickets), args.chunk_size)
        ]
    )
    predict_seconds = time.perf_counter() - started

    started = time.perf_counter()
    decisions = decide_frame(predicted, rules, NOW)
    queue_order(pd.concat([predicted, decisions], axis=1))
    rules_seconds = time.perf_counter() - started

    # One ticket at a time, as the service will call it.
    records = predicted.head(2000).astype(object).where(predicted.head(2000).notna(), None).to_dict("records")
    started = time.perf_counter()
    for record in records:
        decide(head_outputs(record), record, rules, NOW)
    single_seconds = (time.perf_counter() - started) / len(records)

    total = predict_seconds + rules_seconds
    print(f"tickets: {args.rows} ({len(rules.rule_names())} rules, {len(HEADS)} heads)")
    print(f"{'stage':<28} {'seconds':>8} {'tickets/s':>10}")
    print(f"{'predict (3 heads)':<28} {predict_seconds:>8.2f} {args.rows / predict_seconds:>10.0f}")
    print(f"{'rules (decide_frame + sort)':<28} {rules_seconds:>8.2f} {args.rows / rules_seconds:>10.0f}")
    print(f"{'end to end':<28} {total:>8.2f} {args.rows / total:>10.0f}")
    print(f"rules share of end-to-end time: {rules_seconds / total:.1%}")
    print(f"one decide() call: {single_seconds * 1e6:.0f} microseconds")
    priorities = decisions["priority"].value_counts().sort_index()
    print("priorities: " + ", ".join(f"{level} {count}" for level, count in priorities.items()))
    print(f"needs human triage: {decisions['needs_human_triage'].mean():.1%}")


if __name__ == "__main__":
    main()
