"""One encoder for every MiniLM head, and training's embedding cache, measured with the real MiniLM.

1. Training cache: one `embedding` head (support tickets' priority) fitted twice on the same
   rows with `training.embedding_cache` in a fresh folder: the first fit embeds every distinct
   text, the second reads them all from the cache (the anchor: the first fit).
2. Prediction: three MiniLM heads (embedding urgency, embedding category, label-free sentiment
   from params.yaml's descriptions; all on the packaged MiniLM) saved as model folders, then
   1,000 support tickets predicted through `predict.predict_frame`, each mode in a fresh process
   for its peak RSS: `shared` (one encoder, one pass per distinct text) beside the anchor
   `unshared` (URGENCY_SHARE_ENCODERS=0: each head its own copy and pass, as before).

Run from the project folder (it reads ../shared/data through params.yaml):

    HF_HUB_OFFLINE=1 python bench/bench_shared_encoder.py [--params params.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from urgency.config import EmbeddingParams, Params, load_params
from urgency.label_free import fit_label_free
from urgency.models import load_model_dir
from urgency.predict import predict_frame
from urgency.text import ticket_text
from urgency.train import model_cleaning
from urgency.transformer import Split, fit_embedding, save_head_model
from urgency.transformer_model import SHARING_VARIABLE

SOURCE = "support_tickets_synthetic"
TRAIN_ROWS = 2000
PREDICT_ROWS = 1000


def support_tickets(params: Params) -> pd.DataFrame:
    source = next(s for s in params.data.sources if s.name == SOURCE)
    return pd.read_csv(source.path)


def labelled(tickets: pd.DataFrame, label: str, params: Params) -> pd.DataFrame:
    text = ticket_text(tickets["subject"], tickets["body"], params.data.max_text_chars)
    return pd.DataFrame({"text": text.to_numpy(), "label": tickets[label].astype(str).to_numpy()})


def timed_fit(splits: dict[str, Split], params: EmbeddingParams, cache: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    fitted = fit_embedding(splits, params, full_run=True, seed=0, embedding_cache=cache)
    return time.perf_counter() - started, fitted


def build(params: Params, folder: Path) -> dict[str, float]:
    """Fit and save the three heads; the training cache's first and second fit, in seconds."""
    tickets = support_tickets(params).sample(frac=1.0, random_state=0)
    train, validation = tickets.iloc[:TRAIN_ROWS], tickets.iloc[TRAIN_ROWS : TRAIN_ROWS + 500]
    embedding = params.training.embedding
    urgency = {
        "urgency": Split(labelled(train, "priority", params), labelled(validation, "priority", params))
    }
    with tempfile.TemporaryDirectory() as cache:
        first, _ = timed_fit(urgency, embedding, Path(cache))
        second, fitted = timed_fit(urgency, embedding, Path(cache))
        # The category head reads the same texts: all from the cache.
        category = {
            "category": Split(labelled(train, "queue", params), labelled(validation, "queue", params))
        }
        fitted |= fit_embedding(category, embedding, full_run=True, seed=0, embedding_cache=Path(cache))
    head = params.heads.sentiment
    descriptions = {"sentiment": {label: head.descriptions[label] for label in head.labels}}
    fitted |= fit_label_free(descriptions, {}, params.training.label_free, seed=0)
    example = pd.DataFrame({"text": ["server down"]})
    for name, head_fitted in fitted.items():
        save_head_model(head_fitted, folder / name, example, model_cleaning(params.data.cleaning))
    return {"first_fit_seconds": first, "second_fit_seconds": second}


def status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status: VmRSS now, VmHWM its peak (unlike
    getrusage's ru_maxrss, which a child started by fork and exec inherits from its parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def predict_once(params_path: Path, folder: Path) -> dict[str, float]:
    """In this (fresh) process: load the heads, predict the tickets once, report."""
    params = load_params(params_path)
    tickets = support_tickets(params).sample(n=PREDICT_ROWS, random_state=1)
    models = load_model_dir(folder)
    loaded_mb = status_mb("VmRSS")
    started = time.perf_counter()
    scored = predict_frame(models, tickets, max_text_chars=params.data.max_text_chars)
    seconds = time.perf_counter() - started
    encoders = len({id(model.model.unwrap_python_model().encoder) for model in models.values()})
    return {
        "heads": len(models),
        "encoders_in_memory": encoders,
        "tickets": len(scored),
        "tickets_per_second": len(scored) / seconds,
        "rss_after_load_mb": loaded_mb,
        "peak_rss_mb": status_mb("VmHWM"),
    }


def predict_in_child(params_path: Path, folder: Path, shared: bool) -> dict[str, float]:
    env = {**os.environ, SHARING_VARIABLE: "1" if shared else "0", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, __file__, "--params", str(params_path), "--predict", str(folder)]
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--predict", type=Path, help="(internal) predict with the heads in this folder")
    args = parser.parse_args()
    if args.predict:
        print(json.dumps(predict_once(args.params, args.predict)))
        return
    params = load_params(args.params)
    with tempfile.TemporaryDirectory() as folder:
        training = build(params, Path(folder))
        shared = predict_in_child(args.params, Path(folder), shared=True)
        unshared = predict_in_child(args.params, Path(folder), shared=False)
    print(f"training cache, one embedding head on {TRAIN_ROWS} + 500 rows (first fit: the anchor)")
    print(f"  first fit  {training['first_fit_seconds']:7.1f} s")
    first = training["first_fit_seconds"]
    print(f"  second fit {training['second_fit_seconds']:7.1f} s  (first: {first:.1f} s)")
    print(f"prediction, {PREDICT_ROWS} support tickets, 3 MiniLM heads (unshared: the anchor)")
    for name in ("encoders_in_memory", "tickets_per_second", "rss_after_load_mb", "peak_rss_mb"):
        print(f"  {name:20s} shared {shared[name]:8.1f}   unshared {unshared[name]:8.1f}")
    print(json.dumps({"training": training, "shared": shared, "unshared": unshared}))


if __name__ == "__main__":
    main()
