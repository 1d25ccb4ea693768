"""Throughput and peak memory of `urgency predict` (all three heads) on N tickets.

Builds an N-row CSV from the demo data's ticket texts, runs the real console script on it in a
fresh process with the exported champion models, and prints tickets/second and the process's
peak RSS. Memory should stay flat as N grows (the file is streamed in chunks).

    .venv/bin/python bench/bench_predict.py [--model-dir models] [--rows 10000 100000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

MEASURE = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True);"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def make_tickets(rows: int, path: Path) -> None:
    from urgency.config import load_params
    from urgency.data import load_tickets

    params = load_params("params.yaml")
    tickets = load_tickets(params.data.sources).tickets[["id", "subject", "body"]]
    sample = tickets.sample(n=rows, replace=rows > len(tickets), random_state=0)
    sample.assign(id=range(rows)).to_csv(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", default="models")
    parser.add_argument("--rows", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--chunk-size", type=int, default=5000)
    args = parser.parse_args()
    urgency = Path(sys.executable).parent / "urgency"
    print(f"{'tickets':>9} {'seconds':>8} {'tickets/s':>10} {'peak RSS MB':>12}")
    with tempfile.TemporaryDirectory() as folder:
        for rows in args.rows:
            source = Path(folder) / f"tickets_{rows}.csv"
            make_tickets(rows, source)
            target = Path(folder) / f"scored_{rows}.csv"
            command = [
                str(urgency),
                "predict",
                "--model-dir",
                args.model_dir,
                "-i",
                str(source),
                "-o",
                str(target),
                "--chunk-size",
                str(args.chunk_size),
            ]
            started = time.perf_counter()
            # A fresh wrapper per run, so the peak RSS it reports is this run's alone.
            done = subprocess.run(
                [sys.executable, "-c", MEASURE, *command], check=True, capture_output=True, text=True
            )
            seconds = time.perf_counter() - started
            peak_mb = int(done.stdout.split()[-1]) / 1024
            assert len(pd.read_csv(target, usecols=["urgency"])) == rows
            print(f"{rows:>9} {seconds:>8.1f} {rows / seconds:>10.0f} {peak_mb:>12.0f}", flush=True)


if __name__ == "__main__":
    main()
