"""Fine-tuning examples/second, inference tickets/second and peak memory of the MiniLM heads.

Each phase runs in a fresh process, so the peak RSS it prints is that phase's alone:

- finetune: one epoch of the shared-encoder fine-tune on a seeded sample of the configured
  tickets (rows spread evenly over the three heads), as `urgency train --family finetune` runs it.
- predict: a transformer head saved as an MLflow model, loaded with `urgency.predict` and run on
  a seeded sample of ticket texts (the demo's mix of lengths), as `urgency predict` does.
- compare-strategies (only with --strategies): the shared encoder against one encoder per head,
  same rows and epochs; prints validation macro-F1 per head (how the default was chosen).

    .venv/bin/python bench/bench_transformer.py [--params params.yaml] [--train-rows 600]
        [--predict-rows 2000] [--max-length 128] [--strategies]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HEADS = ("urgency", "category", "sentiment")


def head_datasets(params_path: str) -> dict[str, Any]:
    from urgency.config import load_params
    from urgency.data import head_dataset, load_tickets

    params = load_params(params_path)
    tickets = load_tickets(params.data.sources).tickets
    return {
        head: head_dataset(
            tickets,
            head,
            max_text_chars=params.data.max_text_chars,
            seed=params.splits.seed,
            validation_fraction=params.splits.validation_fraction,
            test_fraction=params.splits.test_fraction,
        )
        for head in HEADS
    }


def splits(datasets: dict[str, Any], train_rows: int, validation_rows: int) -> dict[str, Any]:
    from urgency.transformer import Split

    return {
        head: Split(
            train=frame[frame["split"] == "train"].sample(n=train_rows, random_state=0),
            validation=frame[frame["split"] == "validation"].sample(n=validation_rows, random_state=0),
        )
        for head, frame in datasets.items()
    }


def phase_finetune(args: argparse.Namespace) -> dict[str, Any]:
    from urgency.config import FinetuneParams
    from urgency.transformer import fit_finetune

    params = FinetuneParams(max_length=args.max_length, batch_size=args.batch_size, epochs=1)
    data = splits(head_datasets(args.params), args.train_rows // len(HEADS), 50)
    started = time.perf_counter()
    fitted = fit_finetune(data, params, full_run=True, seed=0)
    epoch = fitted["urgency"].history[0]
    return {
        "rows": args.train_rows,
        "seconds": time.perf_counter() - started,
        "examples/s": epoch["train_examples_per_second"],
    }


def phase_predict(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    from urgency.models import load_head_model
    from urgency.predict import predict_proba
    from urgency.transformer import FittedHead, load_pretrained, save_head_model

    datasets = head_datasets(args.params)
    texts = pd.concat([frame["text"] for frame in datasets.values()]).sample(
        n=args.predict_rows, random_state=0
    )
    encoder, tokenizer = load_pretrained(None)
    # Throughput depends on the encoder, not on the linear layer's values.
    head = FittedHead(
        head="urgency",
        family="finetune",
        labels=["high", "medium", "low"],
        encoder=encoder,
        tokenizer=tokenizer,
        weight=np.random.default_rng(0).normal(size=(3, encoder.config.hidden_size)),
        bias=np.zeros(3),
        temperature=1.0,
        normalize=False,
        max_length=args.max_length,
        batch_size=64,
        train_rows=0,
        train_seconds=0.0,
        params={},
    )
    with tempfile.TemporaryDirectory() as folder:
        save_head_model(head, Path(folder) / "model", pd.DataFrame({"text": texts.head(2).tolist()}))
        del encoder, head
        started = time.perf_counter()
        model = load_head_model(str(Path(folder) / "model"))
        load_seconds = time.perf_counter() - started
        started = time.perf_counter()
        probabilities = predict_proba(model, texts)
        seconds = time.perf_counter() - started
    assert probabilities.shape == (len(texts), 3)
    return {
        "rows": len(texts),
        "load seconds": load_seconds,
        "seconds": seconds,
        "tickets/s": len(texts) / seconds,
        "median tokens": float(
            np.median([len(ids) for ids in tokenizer(texts.tolist(), truncation=True)["input_ids"]])
        ),
    }


def phase_strategies(args: argparse.Namespace) -> dict[str, Any]:
    from urgency.config import FinetuneParams
    from urgency.transformer import fit_finetune

    data = splits(head_datasets(args.params), args.train_rows // len(HEADS), 500)
    results: dict[str, Any] = {}
    for strategy in ("shared", "separate"):
        params = FinetuneParams(
            max_length=args.max_length, batch_size=args.batch_size, epochs=args.epochs, strategy=strategy
        )
        started = time.perf_counter()
        fitted = fit_finetune(data, params, full_run=True, seed=0)
        results[strategy] = {
            "seconds": time.perf_counter() - started,
            **{head: max(m[f"validation_macro_f1_{head}"] for m in fitted[head].history) for head in HEADS},
        }
    return results


PHASES = {"finetune": phase_finetune, "predict": phase_predict, "compare-strategies": phase_strategies}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--train-rows", type=int, default=600, help="fine-tuning rows, spread over the heads")
    parser.add_argument("--predict-rows", type=int, default=2000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1, help="epochs for --strategies")
    parser.add_argument("--strategies", action="store_true", help="also compare shared and separate encoders")
    parser.add_argument("--phase", choices=list(PHASES), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:  # inside the fresh process: run one phase, print its figures as JSON
        figures = PHASES[args.phase](args)
        figures["peak RSS MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(figures))
        return

    print(f"torch threads: {os.environ.get('OMP_NUM_THREADS', 'default')}, cores: {os.cpu_count()}")
    phases = ["finetune", "predict"] + (["compare-strategies"] if args.strategies else [])
    for phase in phases:
        command = [sys.executable, __file__, "--phase", phase, *sys.argv[1:]]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{phase}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in figures.items()), flush=True)


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} {_fmt(v)}" for k, v in value.items()) + "}"
    return (
        f"{value:,.3f}"
        if isinstance(value, float) and value < 10
        else f"{value:,.0f}"
        if isinstance(value, float)
        else str(value)
    )


if __name__ == "__main__":
    main()
