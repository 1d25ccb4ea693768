"""Training time and peak memory of a baseline head against the number of tickets.

Each size is fitted in a fresh process (so its peak RSS is its own) on a seeded sample of the
category head's train split from the demo params, and scored on the fixed test split.

    .venv/bin/python bench/bench_train.py [--params params.yaml] [--sizes 5000 10000 20000 40000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HEAD = "category"


def fit_once(params_path: str, size: int) -> dict[str, float]:
    from urgency.config import load_params
    from urgency.data import configured_head_dataset, load_tickets
    from urgency.evaluate import classification_report

    params = load_params(params_path)
    tickets = load_tickets(params.data.sources).tickets
    dataset = configured_head_dataset(tickets, HEAD, params.data, params.splits)
    pool = dataset[dataset["split"] != "test"]
    # Past the labelled rows there are no more tickets: sample with replacement, and say so.
    train = pool.sample(n=size, replace=size > len(pool), random_state=0)
    validation = train.sample(frac=0.15, random_state=1)
    train = train.drop(validation.index)
    test = dataset[dataset["split"] == "test"]

    from urgency.train import fit_baseline

    started = time.perf_counter()
    model = fit_baseline(train, validation, params.heads.get(HEAD).baseline)
    seconds = time.perf_counter() - started
    import pandas as pd

    probabilities = pd.DataFrame(model.predict_proba(test[["text"]]), columns=model.classes_)
    report = classification_report(
        test["label"], probabilities, list(params.heads.get(HEAD).labels), "Hardware"
    )
    return {
        "tickets": size,
        "with_replacement": size > len(pool),
        "fit_seconds": round(seconds, 2),
        "test_macro_f1": round(report["macro_f1"], 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000, 40000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(fit_once(args.params, args.one)))
        return
    print(f"{'tickets':>8} {'fit s':>7} {'peak RSS MB':>12} {'test macro-F1':>14}")
    for size in args.sizes:
        done = subprocess.run(
            [sys.executable, str(Path(__file__)), "--params", args.params, "--one", str(size)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(done.stdout.strip().splitlines()[-1])
        note = " (sampled with replacement)" if row["with_replacement"] else ""
        figures = f"{row['tickets']:>8} {row['fit_seconds']:>7} {row['peak_rss_mb']:>12}"
        print(f"{figures} {row['test_macro_f1']:>14}{note}", flush=True)


if __name__ == "__main__":
    main()
